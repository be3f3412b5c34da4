//! The [`Persister`](persister_core::Persister) backend on [redb](https://docs.rs/redb) 5:
//! one file holds any number of documents. The recommended default backend.
//!
//! # Example
//!
//! ```
//! use persister_core::{ActorId, Batch, Persister, Store};
//! use persister_redb::RedbStore;
//!
//! # fn main() -> Result<(), persister_core::Error> {
//! # let dir = tempfile::tempdir().map_err(|e| persister_core::Error::io("create", "tempdir", e))?;
//! let path = dir.path().join("notes.redb");
//! let store = RedbStore::open(&path)?; // creates the file
//! let mut doc = store.open_document(&"notes".into())?;
//!
//! let actor = ActorId::new([0xab; 16]);
//! doc.insert_changes(vec![(actor.clone(), 1, b"change 1".to_vec())])?;
//! doc.insert_changes(vec![(actor.clone(), 2, b"change 2".to_vec())])?;
//! assert_eq!(doc.get_changes()?.len(), 2); // visible before the flush
//! assert!(doc.flush()? > 0); // durable from here on
//!
//! // Compaction is one batch: the document and the removal of what it covers.
//! doc.apply(Batch::new().set_document(b"compacted".to_vec()).remove_change(actor.clone(), 1).remove_change(actor, 2))?;
//! doc.flush()?;
//! drop(doc);
//! drop(store);
//!
//! let store = RedbStore::open(&path)?;
//! let doc = store.open_document(&"notes".into())?;
//! assert_eq!(doc.get_document()?, Some(b"compacted".to_vec()));
//! assert_eq!(doc.sizes().change_count, 0); // exact at once, without reading the changes
//! # Ok(())
//! # }
//! ```
//!
//! # What survives what
//!
//! The guarantees are those of the [`Persister` contract](persister_core::Persister#contract);
//! here is what they mean for this backend.
//!
//! | event | what you get after reopening |
//! |---|---|
//! | the process is killed | every batch up to the last successful `flush` of its document, perhaps some after it, in order, each whole or absent |
//! | power loss or OS crash | the same, provided the disk honours `fsync` |
//! | an I/O error (disk full, failing disk) | the operation returns `Err`, never a wrong `Ok`; once a write to the file has failed, the store is poisoned (every write and flush returns [`Error::Poisoned`]); after reopening, everything flushed before the error |
//! | the file damaged by something other than redb | opening with [`RedbOptions::verify_on_open`] (the default) checks every page and fails with [`Error::Corrupt`]; nothing is repaired |
//!
//! redb checks page checksums when it verifies a file, not on every read. Damage done
//! while a store is open, or present in a file opened without verification, may read
//! back wrong or make redb panic; this crate's own checks (entries against the stored
//! sizes, the shape of every key) catch part of it and fail with [`Error::Corrupt`].
//!
//! Not survived: a disk or file system that acknowledges `fsync` without persisting
//! (some consumer SSDs, some virtual disks), deleting or replacing the file or, before
//! the store was closed cleanly, its commit log (a missing log is refused, not
//! ignored), writes by
//! another program, and network file systems whose locks do not work (two writers
//! would damage the file). After a crash the store cannot tell how many unflushed
//! batches were lost; it knows only that the flushed ones were not.
//!
//! What you must do:
//!
//! - call [`flush`](persister_core::Persister::flush) when your durability policy says
//!   so ([`AutoFlush`](persister_core::AutoFlush) does it for you), and before exiting;
//! - on [`Error::Poisoned`], or any error from `flush`, drop every handle and the store,
//!   then open it again: redb repairs the file, and the writes since the last successful
//!   flush may or may not be there;
//! - on [`Error::Corrupt`], stop writing to the file, copy out what still reads, and
//!   restore a backup;
//! - on [`Error::Locked`], close the other process (or store) holding the file.
//!
//! # Writes, flushes and group commit
//!
//! The handle is core's [`EnginePersister`](persister_core::EnginePersister): it holds
//! writes in memory, where reads see them, until `flush`; flushes what it holds before
//! it would pass [`RedbOptions::max_pending_bytes`]; discards what it holds when dropped
//! ([contract point 12](persister_core::Persister#contract)); and shares one commit
//! among handles that flush at the same time, without waiting for company
//! ([group commit](persister_core::EngineStore)): a failed shared commit poisons every
//! handle it carried, and the store. Here a commit is one append to the
//! [commit log](#the-commit-log) and one `fdatasync`; its writes reach redb's B-trees
//! in a transaction shared with other commits.
//! [`flush_documents`](persister_core::Store::flush_documents) commits many handles'
//! writes in one transaction: the store-wide flush, for a timer or a shutdown.
//!
//! # The commit log
//!
//! A durable redb commit rewrites every copy-on-write page it touched (a few per
//! document) and syncs them, which costs several times the disk's `fdatasync` of one
//! small append. So a store keeps a commit log beside its file, `<file>.log`, as SQLite
//! keeps a write-ahead log:
//!
//! - A commit is written as a list of key-level operations
//!   (`redo` in the source documents their bytes) and appended to the log as one record
//!   with a CRC-32C; a flush then syncs the log. The record of a group commit carries
//!   every document of the group, so one sync covers them all.
//! - Every record also carries the log's **key**: 16 random bytes drawn from the
//!   operating system when the log is created and kept in the store's `"log"` entry.
//!   Records hold change values, which are an application's (or a peer's) bytes, and a
//!   value can hold bytes laid out as a record with a valid checksum; the key, which no
//!   value can know, is what tells the log's records from such bytes, so that stored
//!   data never makes a crash read as damage. (`log` in the source documents the log's
//!   bytes, format version 2.)
//! - **Applying to redb is deferred.** When every document of a commit already has its
//!   number (only a document's first commit gives it one), the commit is the append and
//!   the sync alone: its operations wait in memory, and redb gets those of many commits
//!   in one transaction, committed without a sync (`Durability::None`), so that each
//!   page it touches is rewritten once for all of them. That happens when they pass
//!   4 MiB (the commit that passes it applies them while the log syncs), at a
//!   checkpoint, before any other commit (in the same transaction), before any read
//!   (so a read sees every commit made), and with a durable commit of 32 KiB of
//!   operations or more (a flush of many changes, whose own apply is worth a
//!   transaction, while the log syncs on a thread of its own). So a flush of a few
//!   small changes costs about one append and one sync, and a store's memory holds at
//!   most some 4 MiB of operations not yet in redb. The price is paid by reads: one
//!   that finds operations waiting waits for the commit in progress, if any, then
//!   applies them (up to those 4 MiB: milliseconds) before it reads.
//! - Other commits (one that numbers a new document, a removal) apply their operations,
//!   after the deferred ones, to a redb transaction that commits without a sync while
//!   the log syncs. (Operations that read what the store holds, a document's removal,
//!   are applied before anything is written, so that a damaged record they refuse
//!   changes nothing.)
//! - A commit that fails once its record is in the log (its sync, redb applying it or
//!   redb's commit), or a failure to apply deferred operations, poisons the store: it
//!   refuses writes, and reads too while it holds deferred operations, which a read
//!   would miss; a reopen finds every commit whole or not at all, never in part.
//! - The log file is filled with zeroes ahead of its records (from 64 KiB to 1 MiB at a
//!   time) and reused after a checkpoint, so an append rarely allocates or changes the
//!   file's length, and its sync writes the appended bytes alone.
//! - A durable commit of 1 MiB of operations or more goes to the file directly, with
//!   `Durability::Immediate`: its data dominates its cost, so it is written once rather
//!   than twice, and a disk that fills up holds it once.
//! - When the log passes [`RedbOptions::checkpoint_log_bytes`] (8 MiB by default), a
//!   **checkpoint** makes the file hold everything: one durable redb commit, which also
//!   advances the log's epoch in `persister_meta`, then the log's header is rewritten
//!   for the new epoch and synced. Records carry their epoch, so those of an older
//!   epoch never read as current.
//! - Every redb transaction that applies logged commits also records how many of the
//!   epoch's records the file holds, so a replay skips those.
//! - The first commit after opening is a durable redb commit that names the log open;
//!   closing the store (or dropping it) checkpoints, names the log closed and removes
//!   it, so a store closed cleanly is its one file again.
//! - Opening a store that names its log open (it was not closed cleanly) replays the
//!   log's records the file does not hold (those after the count above), in order, in
//!   durable commits of about 1 MiB, each recording how far it got; the last names the
//!   log closed. Operations set or remove keys (removing a document reads the number
//!   its record names; the next document number only grows), so replaying them in
//!   order from the state the count describes gives the state after the last whole
//!   record. A torn tail (an incomplete last record, with no valid record of the epoch
//!   anywhere after it) is dropped and reported by
//!   [`Store::recovered`](persister_core::Store::recovered), without a document (the log
//!   is the whole store's). A damaged or missing record with a valid one after it, a
//!   missing log, a log shorter than its header, a file at the log's path that does not
//!   start with the log's magic number, a log whose key is not the one the store names
//!   (another store's log), a header of a newer epoch than the store's, or one that
//!   names a log format version this build does not know and fails its checksum (which covers
//!   the version) is [`Error::Corrupt`]; an unknown version in a header that passes it is
//!   [`Error::UnsupportedFormat`]. A header that fails its checksum is taken for one a
//!   crash tore while a checkpoint rewrote it only when no record of the epoch follows.
//! - A read-only open of such a store replays the log into memory, over the file, and
//!   touches neither file.
//! - After a full disk, the replay needs room for the commits the log holds beyond the
//!   file (at most `checkpoint_log_bytes` and one commit) and redb's pages around them:
//!   free about 1.5 times that (12 MiB with the defaults), then reopen. A disk tends to
//!   fill at a checkpoint, when the log is at its longest. A replay that runs out of
//!   room keeps what it committed, says in its error how much room the rest needs, and
//!   the next reopen goes on from there.
//!
//! Stores of layout 1 (made before the log existed) have no log and commit with
//! `Durability::Immediate`, as before; so do stores opened with
//! [`RedbStore::open_on_backend`]. Layout 1 is read and written as it is.
//!
//! Stores of layout 2 have a log whose records carry no key (log format version 1).
//! They are read and written as they are, with logs of that format, so that the builds
//! that wrote them still open them: nothing migrates a store silently. Their logs keep
//! the weakness the key removes (a stored value laid out as a record can make a crash
//! read as damage). A writable open with [`RedbOptions::migrate_format`] replays the
//! log, if the store was not closed cleanly, then makes the store layout 3 in one
//! durable commit, which rewrites the `"log"` entry and `format_version`; a build of
//! layout 2 then refuses the store with [`Error::UnsupportedFormat`]. Stores opened with
//! [`RedbStore::open_on_backend`] keep their layout.
//!
//! # Every sync
//!
//! This backend syncs files only in these places:
//!
//! - `flush`, and the flush a handle makes past `max_pending_bytes`: one `fdatasync` of
//!   the commit log (on the flushing thread, or on the log's own while redb applies
//!   operations), shared by the flushes of a group commit (without a log: one commit
//!   with `Durability::Immediate`, one `fsync` of the file and more when the commit
//!   grows it);
//! - [`remove_document`](persister_core::Store::remove_document): the same, since the
//!   contract makes a removal durable when it returns;
//! - the first commit after opening (it creates the log: the log, its directory when
//!   the file is new, then a durable redb commit), a durable commit of 1 MiB or more
//!   (a durable redb commit, then the log's new header when it held records), a
//!   checkpoint (a durable redb commit, then the log's new header), and closing (a
//!   durable redb commit);
//! - creating a store: the new file and its directory (see [`RedbStore::open_with`]);
//! - opening a store that was not closed cleanly: the replay of its log is one durable
//!   commit, and redb's repair rewrites and syncs its allocator state.
//! - opening a store of layout 2 with [`RedbOptions::migrate_format`]: one durable
//!   commit makes it layout 3.
//!
//! # File layout
//!
//! A store is a redb file (it starts with redb's magic number, see [`is_redb_file`])
//! with five tables. Every key is a byte string, compared byte by byte; every integer is
//! big-endian.
//!
//! | table | key | value |
//! |---|---|---|
//! | `persister_meta` | `"format"`, `"format_version"`, `"next_document"`, `"log"` | `b"persister-redb"`; u32 `3`; u64, the number the next new document gets; the commit log's state: its epoch (u64), whether it is open (one byte, `1` or `0`), how many of the epoch's records the file holds (u64), the key of its records (16 bytes; zeroes before the first log) |
//! | `persister_documents` | document id bytes, as given | 48 bytes: the document number, then its sizes (`changes`, `document`, `sync_states`, `change_count`, `sync_state_count`), six u64 |
//! | `persister_changes` | number (u64) ‖ actor id with each `00` byte written `00 FF` ‖ `00 00` ‖ seq (u64) | change bytes |
//! | `persister_compacted` | number (u64) | compacted document bytes |
//! | `persister_sync_states` | number (u64) ‖ peer id bytes | sync state bytes |
//!
//! Each document gets a number when it is first stored, and every key of its data starts
//! with it. Numbers have a fixed width, so documents are exactly isolated whatever their
//! ids hold (`"1"` and `"10"`, `""` and `"a"`, NUL, `/`, bytes that are not UTF-8): the id
//! appears only as a whole key of `persister_documents`. Within a document, change keys
//! sort by actor bytes, then numeric seq: the escaped actor id is followed by `00 00`,
//! below any byte an escaped id can continue with, so an actor id sorts before every
//! longer id it is a prefix of. The sizes are written in the same transaction as the
//! data, which keeps [`sizes`](persister_core::Persister::sizes) exact and O(1) after a
//! reopen; reads check them against what they find and fail with [`Error::Corrupt`] on a
//! mismatch.
//!
//! # Opening
//!
//! - A missing file is created crash-safely: redb writes its magic number last, so a
//!   crash while creating leaves a file redb refuses; the store is therefore made under
//!   a temporary name in the same directory, synced, moved into place, and the directory
//!   synced.
//! - An existing file must be a store: another file fails with [`Error::NotAStore`], a
//!   store whose `format_version` this build does not know with
//!   [`Error::UnsupportedFormat`] naming both versions. With
//!   [`RedbOptions::verify_on_open`], a file redb closed cleanly is refused before a
//!   byte of it is written (its tables are read in the check below); redb's open of any
//!   other file writes its header, and repairs a file a crash left, before the tables
//!   can be read.
//! - A store's name with `.log` appended must be a name the file system takes (it is
//!   the [commit log](#the-commit-log)'s): a longer one fails with
//!   [`Error::InvalidInput`], for a new store before anything is created, and for an
//!   existing one where the check above refuses a file that is no store.
//! - With [`RedbOptions::verify_on_open`] (the default) redb checks every page's checksum
//!   before the store is used, through a page cache of at most 4 MiB, so that the
//!   memory of opening does not grow with the file (5.4 MiB at 10,000 and at 100,000
//!   documents). A file redb closed cleanly is checked with the check's own writes
//!   kept in memory, then opened without it (one sync; the open compares the file's
//!   first page with the one the check read, and checks again in place if another
//!   process changed the file in between); a file a crash left is checked and
//!   repaired in place.
//! - redb locks the file: a second open, from any process, fails at once with
//!   [`Error::Locked`]. Only the process holding the lock writes the commit log.
//! - After a crash, opening repairs the file (redb walks it to rebuild its allocator
//!   state), which takes time proportional to the file's size, and replays the commit
//!   log (see [The commit log](#the-commit-log)).
//!
//! # Limits and threads
//!
//! Batches are checked with [`Batch::validate`](persister_core::Batch::validate) before
//! anything is held or written, so a value over
//! [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN) or a batch over
//! [`MAX_BATCH_LEN`](persister_core::MAX_BATCH_LEN) is refused whole. A [`RedbStore`] is
//! `Send + Sync` and serves different documents from different threads (concurrent
//! flushes share commits, see above); each [`RedbPersister`] is `Send`.
//!
//! # Testing with faults
//!
//! With the `fault-injection` feature, `RedbStore::fail_next_flush` makes the next
//! flush fail as a failed `fsync` would, as on every disk backend of the workspace
//! (`fail_next_flush` on `SledStore` and `FsStore` too), so that an application's tests
//! can check what it does then. [`RedbStore::open_on_backend`] opens a store on any
//! redb [`StorageBackend`](redb::StorageBackend): the crate's own tests use it to fail
//! chosen I/O calls inside redb and to simulate power loss at every I/O call of a
//! workload.
//!
//! [`Error::Poisoned`]: persister_core::Error::Poisoned
//! [`Error::Corrupt`]: persister_core::Error::Corrupt
//! [`Error::Locked`]: persister_core::Error::Locked
//! [`Error::NotAStore`]: persister_core::Error::NotAStore
//! [`Error::InvalidInput`]: persister_core::Error::InvalidInput
//! [`Error::UnsupportedFormat`]: persister_core::Error::UnsupportedFormat

mod engine;
mod error;
mod file;
mod layout;
mod log;
mod options;
mod overlay;
mod redo;
mod store;

pub use engine::RedbEngine;
pub use file::is_redb_file;
pub use options::RedbOptions;
pub use store::RedbStore;

/// The handle of one document of a [`RedbStore`]: core's
/// [`EnginePersister`](persister_core::EnginePersister) on the [`RedbEngine`] (see
/// [Writes, flushes and group commit](crate#writes-flushes-and-group-commit)).
pub type RedbPersister = persister_core::EnginePersister<RedbEngine>;

/// The version of the table layout this build writes (`format_version` in
/// `persister_meta`): 3, with a [commit log](crate#the-commit-log) whose records carry a
/// key. Layout 1 is read and written too, without a log, and so is layout 2 (a log
/// without a key), which [`RedbOptions::migrate_format`] makes layout 3.
pub const FORMAT_VERSION: u32 = layout::FORMAT_VERSION;
