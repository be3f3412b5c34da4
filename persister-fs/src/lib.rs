//! A [`Persister`](persister_core::Persister) backend on our own crash-safe,
//! log-structured directory format.
//!
//! A directory is one [`FsStore`]; each document is one append-only log in it, and
//! **one applied batch is one record**. A document is held in memory (replayed from its
//! log when opened), writes are buffered, and [`flush`](persister_core::Persister::flush)
//! is one `write` and one `fdatasync`. The format and its crash behaviour are meant to
//! be read in one sitting: this page, and [`format`](mod@format) for the bytes.
//!
//! ```
//! use persister_core::{ActorId, Persister, Store};
//! use persister_fs::FsStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = FsStore::open(dir.path())?;
//! let mut doc = store.open_document(&"notes".into())?;
//! doc.insert_changes(vec![(ActorId::new([1; 16]), 1, b"change".to_vec())])?;
//! assert!(doc.flush()? > 0); // durable from here on
//! doc.close()?;
//! store.close()?; // a checked clean close
//!
//! let store = FsStore::open(dir.path())?;
//! let doc = store.open_document(&"notes".into())?;
//! assert_eq!(doc.get_changes()?, vec![b"change".to_vec()]);
//! assert!(store.recovered().is_empty()); // no torn tail was dropped
//! # Ok(())
//! # }
//! ```
//!
//! # The directory
//!
//! | name | what |
//! |---|---|
//! | `STORE` | the marker: magic and store format version ([`is_fs_store`] looks for it) |
//! | `LOCK` | empty; locked exclusively (`flock`) while a store is open, so a second opener gets [`Error::Locked`](persister_core::Error::Locked); shared by read-only opens |
//! | `CLOSED` | the clean-close record: every log's exact length and running checksum, present only while the store is closed cleanly and not written since |
//! | `d<hex>.log` | the log of a document whose id has at most 100 bytes: `d`, then the id's bytes in lowercase hex (`d.log` for the empty id) |
//! | `h<hash>-<n>.log` | the log of a longer id: its 64-bit FNV-1a hash in hex and a counter for colliding ids; the full id is in the log header |
//! | `*.tmp` | a log (or marker, or clean-close record) being written; removed when the store is opened for writing |
//!
//! No document id reaches the file system as itself, so no id can name a path outside
//! the store, and names are unique on case-insensitive file systems too. Every log
//! header holds its full id, which is checked when the log is opened. A store creates
//! its directories with mode 0700 and its files with mode 0600 on unix. A directory
//! that holds other files and no marker is refused with
//! [`Error::NotAStore`](persister_core::Error::NotAStore). The store format version is
//! [`FORMAT_VERSION`] (3): the logs it writes are of log format version 3
//! ([`format::LOG_VERSION`]: every record carries the log's random key). A store of
//! version 2, written by earlier builds, is read and written as it is, its new and
//! rewritten logs of log format version 2, so those builds still open it; it becomes
//! version 3 only when opened with
//! [`FsOptions::migrate_format`](crate::FsOptions::migrate_format), after which its
//! logs of version 2 are read and appended to as they are until rewritten (see
//! [`format`](mod@format)). Builds that know only version 2 refuse a store of version 3.
//! (Builds of this repository between the introduction of log format 3 and that of
//! store format 3 wrote keyed logs into stores of version 2; the builds before them
//! refuse those documents, which this build reads.)
//! A store whose marker is intact and of another version (1, or one after 3) is
//! refused with [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat)
//! naming both versions, none of its logs read. A damaged marker, and in a store of
//! version 2 or 3 a log or clean-close record of a version this build does not read,
//! is damage: [`Error::Corrupt`](persister_core::Error::Corrupt) (see
//! [Versions](mod@format#versions)).
//!
//! # Durability: what each operation writes
//!
//! - **apply** writes nothing: the batch is validated, encoded as one record into the
//!   document's buffer and applied to the state in memory.
//! - **flush** writes the buffer and a commit record (the log's length and running
//!   CRC32C before it) at the end of the log with one `write`, makes it durable with
//!   one `fdatasync`, and returns the bytes written (0 when nothing was pending). The
//!   first flush of a new document, and a flush that rewrites a log (see
//!   [`FsOptions`]), instead write a whole new log under a `.tmp` name, `fdatasync`
//!   it, rename it into place and sync the directory. The first write to any log
//!   after the store was opened first removes the clean-close record and syncs the
//!   directory (once per opening, not per flush).
//! - **remove_document** removes the log and syncs the directory.
//! - **opening a document** replays its log; if it ends in a torn tail (only possible
//!   after a crash), it truncates the tail and syncs the truncation. If that fails, the
//!   open fails and the document is poisoned as by a failed flush (the cut may not be
//!   on disk): its later handles refuse writes, and no clean-close record is written,
//!   until the store is reopened. A log whose sync failed earlier in the process is
//!   rewritten whole when opened for writing (see
//!   [After a failed sync](#after-a-failed-sync)).
//! - **closing the store** ([`FsStore::close`], or dropping the store and its last
//!   handle) writes the clean-close record (`.tmp`, `fdatasync`, rename, directory
//!   sync) if anything was written since it was opened, then releases the lock. The
//!   record is not written after a failed flush (that log may end in a torn write).
//!   After a crash, the close first replays the logs no handle opened, so the record
//!   vouches only for whole logs; if one of them ends in a torn tail, the close
//!   changes nothing and writes no record, and the next open cuts the tail and reports
//!   it.
//! - **opening a new store** creates its directory (syncing the parent of each new
//!   directory), writes the marker as a new log is written, and then syncs the
//!   directory's parent, so that a directory that existed already (made by the
//!   application, or by an open that crashed before its sync) is durable too.
//!
//! Nothing else is written or synced: the application owns the fsync policy.
//!
//! # Many documents flushing at once
//!
//! Each document has its own log, so flushes of different documents never wait for
//! each other in this crate: threads flushing different documents issue their
//! `fdatasync`s at the same time, and the file system merges what it can. On ext4 (and
//! other journaling file systems) the journal commits the metadata of every file synced
//! meanwhile together, but each sync still writes its own log's data. In the
//! benchmark's row 8 (1,000 stored documents, 16 threads, each inserting one change
//! into one of its documents and flushing it), this backend acknowledges 4.2x to 4.4x
//! the disk's raw `fdatasync` rate of the same run (8 runs on 2026-12-07), 2% to 13%
//! below the row's measurement of appending to one plain file per document, each
//! flush one `write` and one `fdatasync` (4.4x to 4.9x in the same runs): the most this
//! design gets from that disk. A simple shared log whose flushes share a write and a
//! sync reached 5.4x to 5.8x, and redb's commit log 6.0x and 6.7x (see
//! `BENCHMARKS.md`). Each flush returns only once its own log is synced.
//! [`Store::flush_documents`](persister_core::Store::flush_documents) flushes the
//! handles from up to 16 threads at once (one sync per document with writes, issued
//! together so that the journal merges them).
//!
//! # Why this backend is not a core engine
//!
//! redb and sled are [`Engine`](persister_core::Engine)s under core's
//! [`EngineStore`](persister_core::EngineStore): a key-value engine stores what the
//! handle holds, at flush. This backend stays a direct implementation of
//! [`Persister`](persister_core::Persister) because its format is the handle's own
//! state: every batch is encoded once, as it is applied, into the record that the log
//! will hold, and the document in memory (read by every read, without I/O) is the log
//! replayed. Under the engine interface the same batch would be held as writes and
//! encoded again at commit, and reads would go through the engine for data the handle
//! already holds decoded; the log's crash rules (a torn tail after the last commit
//! record, the clean-close record) also have no counterpart in an engine's atomic
//! commit. Its sizes, poisoning and drop behaviour keep the same contract, checked by
//! the same conformance suite; `flush` returns the bytes of log records written,
//! where engine backends return the batches' payload.
//!
//! # Stores of many documents
//!
//! Opening a store keeps nothing in memory per document: it walks the directory
//! without holding its listing (counting the logs, removing `.tmp` files, reading the
//! headers of logs named by hash), and checks the clean-close record by reading it in
//! chunks, keeping one entry name in 64 to find the others on disk later (records
//! are written in name order for this; see [`format`](mod@format)). A document is
//! looked up on disk when it is opened (its log's name is its id in hex), and only
//! the documents a store has opened, created or written are held in its index. In the
//! benchmark's row 9 (documents of 10 changes), opening a store of 100,000 documents
//! took 0.8 MiB of memory and one of 10,000 0.6 MiB; the list of 100,000 ids itself
//! (6 MiB) is the only cost that grows, when it is asked for. The clean-close record
//! written at close holds every log, as before.
//!
//! # Closing and dropping
//!
//! Dropping a handle without a flush **discards** its unflushed writes: the next
//! handle of the document, in this store or after reopening, sees exactly the state
//! of its last successful flush. Nothing flushed is lost. A handle poisoned by a
//! failed flush passes its poison to every later handle of the document until the
//! store is reopened. [`FsPersister::close`] flushes, releases the handle and returns
//! the error; [`FsStore::close`] closes cleanly and returns the error, which dropping
//! cannot. Dropping a store returns only once its lock is released: the lock is
//! unlocked explicitly (`LOCK_UN`) before its file is closed, because a child process
//! forked by any thread holds a copy of the lock's open file description until it
//! calls `exec`, so closing the descriptor alone would leave the store locked for that
//! moment. A second process's open is never retried: it fails with `Locked` at once
//! while the store is open, and succeeds as soon as the drop returned.
//!
//! # After a failed sync
//!
//! A flush whose `fdatasync` fails poisons its document until the store is reopened,
//! because on Linux a failed sync marks the file's dirty pages clean without writing
//! them: reading the log keeps showing the flush, but the disk may not hold it, and no
//! later sync of the file writes it. So the store also notes the log, for the whole
//! process (by the store directory's device and inode and the log's name, so that
//! every path to the store, through a symlink or spelled relative, finds the note),
//! and when the log is next opened for writing, by this store or a later one, it is
//! first **rewritten whole** from what reading it gives, as a rewrite on flush writes
//! a log (a new file under a `.tmp` name, synced, renamed over the log, the directory
//! synced): then the disk holds exactly what the store reads, and later flushes append
//! behind durable bytes, not behind a hole that a power loss would turn into
//! [`Error::Corrupt`](persister_core::Error::Corrupt). The failed flush is then there
//! whole (it may also be gone whole, if a power loss came first). If the rewrite
//! fails, opening the document fails with an error saying why it was needed, and the
//! log stays noted for the next try. While a log of the store is noted, closing it
//! writes no clean-close record. A truncation of a torn tail whose sync fails is
//! noted the same way, and so is a new log (a document's first flush, a rewrite on
//! flush) renamed into place when the directory's sync after the rename fails: the
//! rename may not be durable, and the next open renames a rewrite into place again.
//!
//! The note lives in the process: a process that exits after a failed sync takes it
//! along, while the kernel's page cache stays. A new process that opens the store
//! before the machine reboots reads the failed flush and may append behind it as
//! before. After a failed sync that the process cannot outlive, reboot (or drop the
//! page cache) before the store is opened again, or copy the store to a new directory.
//!
//! # Reading only
//!
//! [`FsStore::open_read_only`] creates, writes, truncates, repairs and removes
//! nothing, so it works on a read-only mount or directory. It takes a shared lock on
//! `LOCK` when the file exists (so a writer makes it fail with `Locked`, and read-only
//! opens do not block each other), reports a torn tail through
//! [`Store::recovered`](persister_core::Store::recovered) with `truncated: false`
//! instead of cutting it, and refuses every write with
//! [`Error::InvalidInput`](persister_core::Error::InvalidInput).
//!
//! # After a clean close
//!
//! While the clean-close record exists, no log has been written since it was written,
//! and it holds each log's exact length and running checksum. Opening a document then
//! accepts only exactly that log: a torn tail, a cut anywhere (exactly between
//! records included), a flipped byte or a zeroed block anywhere, in any log, is
//! [`Error::Corrupt`](persister_core::Error::Corrupt) naming the file and the offset,
//! and nothing is changed. So is a log missing from the directory or one the record
//! does not name: opening the store fails when the directory holds another number of
//! logs than the record names (or a log named by hash that it does not name), and
//! otherwise listing the documents fails, and so does opening the document concerned.
//! Damage to the record itself, or to the marker, is an error when the store is opened
//! (the record is checked whole then). Any single damage to a cleanly closed store reads as an error or
//! as exactly the stored data (the test `damage` in `tests/fs/` checks 1,000 random
//! ones in CI).
//!
//! # After a crash
//!
//! Every flush returns only after `fdatasync`, and the first flush of each log file
//! is synced before the file gets its name. So a crash can damage only what the last,
//! unfinished flush was writing. A flush is its batch records and one commit record,
//! each record carrying the flush's number; a flush's batches count only once its
//! commit is read, so a flush is all or nothing. When a document is opened:
//!
//! - Records are read until the first invalid one (type 0 or unknown, length 0 or over
//!   [`format::MAX_RECORD_LEN`] or past the end of the file, not the log's key, bad
//!   checksum). A zero-filled tail never reads as records, and neither do an
//!   application's bytes laid out as records: they lack the log's key, which no value
//!   can know (see [`format`](mod@format)).
//! - If the bytes after the last valid commit can all belong to the one unfinished
//!   flush (no valid record of another flush after the first invalid one, and a valid
//!   commit of that flush only as the very end of the file), they are a **torn
//!   tail**: truncated, and reported by [`Store::recovered`](persister_core::Store::recovered)
//!   (and [`FsPersister::recovery`]).
//! - Otherwise something already synced was damaged: opening fails with
//!   [`Error::Corrupt`](persister_core::Error::Corrupt) naming the file and the offset
//!   of the first invalid record, and nothing is changed. A log without a valid first
//!   flush, a record of an unexpected flush number, a commit whose length or running
//!   checksum does not match the bytes before it (a record lost, added, moved or
//!   spliced from another log), or a payload that fails to decode behind a valid
//!   checksum are corruption too.
//!
//! ## Damage after a crash that cannot be told from a torn tail
//!
//! As in SQLite's and RocksDB's write-ahead logs, a log that was not closed cleanly
//! does not know how long it should be: only a second sync per flush (a durable
//! pointer to the last commit) could tell, and this format does not pay for it. So,
//! when the store was not closed cleanly (no clean-close record), these damages look
//! exactly like a crash and are handled as one:
//!
//! 1. **Damage confined to the last flush**, from the end of the last complete commit
//!    to the end of the file (a flipped byte, a zeroed block, a cut inside it, its
//!    commit record damaged): a crash during that flush leaves the same bytes (the
//!    disk may keep any subset of a flush's unsynced sectors). The whole last flush is
//!    dropped as a torn tail, and reported with its offset and length.
//! 2. **A cut inside an earlier flush, or zeroes from inside an earlier flush to the
//!    end of the file**: what remains ends inside a flush with nothing valid after it,
//!    as a crash during that flush would leave it. Everything from that flush's start
//!    is dropped as a torn tail, and reported.
//! 3. **A cut exactly at the end of a commit record**: the log is then whole and
//!    shorter, as if the later flushes had never happened. Nothing is dropped on open,
//!    so nothing is reported: this loss is silent.
//!
//! Damage with a valid record after it (a flipped byte, a zeroed block or a hostile
//! length anywhere before the last flush, or a later commit) is always detected, and
//! after a clean close every damage above is detected too. Applications that need to
//! know that nothing was lost close the store ([`FsStore::close`], or drop it) before
//! exiting.
//!
//! # How this is tested
//!
//! All file I/O goes through a small internal trait. The crate's unit tests run the
//! store on a simulated file system that loses what was not synced, crash a workload
//! of 10 flushes and a clean close at every I/O call (dropping all unsynced data,
//! keeping a random subset of unsynced 512-byte sectors, or tearing the last write),
//! crash again at every I/O call of each recovery that truncated a torn tail, and
//! check that every flushed batch survives and no batch is half there. The workload
//! also has a flush whose sync fails, after which it reopens the store and flushes on;
//! the simulated disk drops the bytes of a failed sync as Linux does, so that no later
//! sync makes them durable. A control run on a disk whose directory syncs do nothing
//! fails, so the loop can fail.
//! `PERSISTER_SIM_SEEDS=n` runs more seeds than the default 10. The same simulated
//! disk fills up (ENOSPC) and turns read-only (EROFS) on request; a test on a real
//! 1 MiB tmpfs does both where the tests run as root. The integration tests damage a
//! cleanly closed store 1,000 times at random (`PERSISTER_FS_DAMAGE_CASES=n` for more).
//!
//! # Limits
//!
//! Every length read from disk is checked against the bytes present and against its
//! maximum before anything is allocated: record payloads [`format::MAX_RECORD_LEN`],
//! values [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN), ids and peer ids their core
//! maxima. A batch whose encoding is over [`format::MAX_RECORD_LEN`] is refused with
//! [`Error::TooLarge`](persister_core::Error::TooLarge) before anything is applied. A
//! log is read whole into memory when its document is opened.

mod clean;
mod doc;
pub mod format;
mod io;
mod live;
mod names;
mod options;
mod persister;
mod replay;
mod rewrite;
mod store;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use options::FsOptions;

/// The store format version of new stores (the store marker's version). A store of
/// version 2 ([`format::UNKEYED_STORE_VERSION`]) is read and written too, as it is,
/// unless [`FsOptions::migrate_format`] asks for its migration;
/// [`Store::format_version`](persister_core::Store::format_version) gives an open
/// store's. The same as [`format::STORE_VERSION`]; logs have a version of their own,
/// [`format::LOG_VERSION`].
pub const FORMAT_VERSION: u32 = format::STORE_VERSION;
pub use persister::{FsPersister, Recovery};
pub use store::{FsStore, is_fs_store};
