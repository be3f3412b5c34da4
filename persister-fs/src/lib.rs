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
//! drop((doc, store));
//!
//! let store = FsStore::open(dir.path())?;
//! let doc = store.open_document(&"notes".into())?;
//! assert_eq!(doc.get_changes()?, vec![b"change".to_vec()]);
//! assert_eq!(doc.recovered_bytes(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # The directory
//!
//! | name | what |
//! |---|---|
//! | `STORE` | the marker: magic and store format version ([`is_fs_store`] looks for it) |
//! | `LOCK` | empty; locked exclusively (`File::try_lock`) while a store is open, so a second opener gets [`Error::Locked`](persister_core::Error::Locked) |
//! | `d<hex>.log` | the log of a document whose id has at most 100 bytes: `d`, then the id's bytes in lowercase hex (`d.log` for the empty id) |
//! | `h<hash>-<n>.log` | the log of a longer id: its 64-bit FNV-1a hash in hex and a counter for colliding ids; the full id is in the log header |
//! | `*.tmp` | a log (or marker) being written; removed when the store is opened |
//!
//! No document id reaches the file system as itself, so no id can name a path outside
//! the store, and names are unique on case-insensitive file systems too. Every log
//! header holds its full id, which is checked when the log is opened. A store creates
//! its directories with mode 0700 and its files with mode 0600 on unix. A directory
//! that holds other files and no marker is refused with
//! [`Error::NotAStore`](persister_core::Error::NotAStore).
//!
//! # Durability: what each operation writes
//!
//! - **apply** writes nothing: the batch is validated, encoded as one record into the
//!   document's buffer and applied to the state in memory.
//! - **flush** writes the buffer at the end of the log with one `write` and makes it
//!   durable with one `fdatasync`, and returns the bytes written (0 when nothing was
//!   pending). The first flush of a new document, and a flush that rewrites a log
//!   (see [`FsOptions`]), instead write a whole new log under a `.tmp` name,
//!   `fdatasync` it, rename it into place and sync the directory.
//! - **remove_document** removes the log and syncs the directory.
//! - **opening a document** replays its log; if it ends in a torn tail, it truncates the
//!   tail and syncs the truncation.
//! - **opening a new store** creates its directory (syncing the parent of each new
//!   directory) and writes the marker as a new log is written.
//!
//! Nothing else is written or synced: the application owns the fsync policy. Writes of
//! a handle dropped without a flush stay in the store's memory for the next handle of
//! the same document, and are lost (as in a crash) when the store is dropped.
//!
//! # After a crash
//!
//! Every flush returns only after `fdatasync`, and the first flush of each log file
//! (its header and first records) is synced before the file gets its name. So a crash
//! can damage only what the last, unfinished flush was writing, and each record carries
//! the number of the flush that wrote it, the last record of a flush being marked. When
//! a document is opened:
//!
//! - Records are read until the first invalid one (type 0 or unknown, length 0 or over
//!   [`format::MAX_RECORD_LEN`] or past the end of the file, bad checksum). A
//!   zero-filled tail never reads as records.
//! - If the bytes from there on can all belong to the one unfinished flush (no valid
//!   record of another flush, and no record ending that flush with bytes after it),
//!   they are a **torn tail**: truncated, and reported by
//!   [`FsPersister::recovered_bytes`] and [`FsPersister::recovery`].
//! - Otherwise something already synced was damaged: opening fails with
//!   [`Error::Corrupt`](persister_core::Error::Corrupt) naming the file and the offset
//!   of the first invalid record, and nothing is changed. Damage inside the first flush
//!   of a file, a record of an unexpected flush number, or a payload that fails to
//!   decode behind a valid checksum are corruption too.
//!
//! The recovered document is the state after a prefix of its batches that includes
//! every batch flushed before the crash; a batch is one record, so it is never half
//! there. Two cases cannot be told apart from a crash without a second sync per flush,
//! and are handled as one: damage to the bytes of the last flush itself is dropped as
//! a torn tail and reported; and damage that leaves no valid record after it (a log
//! cut short or zeroed up to its end by something other than a crash) is dropped from
//! where it starts, reported when the cut falls inside a record, and unseen when it
//! falls exactly between records.
//!
//! # How this is tested
//!
//! All file I/O goes through a small internal trait. The crate's unit tests run the
//! store on a simulated file system that loses what was not synced, crash a workload
//! of 10 flushes at every I/O call (dropping all unsynced data, keeping a random subset
//! of unsynced 512-byte sectors, or tearing the last write), crash again at every I/O
//! call of each recovery that truncated a torn tail, and check that every flushed batch
//! survives and no batch is half there. A control run on a disk whose directory syncs do nothing fails, so the
//! loop can fail. `PERSISTER_SIM_SEEDS=n` runs more seeds than the default 10.
//!
//! # Limits
//!
//! Every length read from disk is checked against the bytes present and against its
//! maximum before anything is allocated: record payloads [`format::MAX_RECORD_LEN`],
//! values [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN), ids and peer ids their core
//! maxima. A batch whose encoding is over [`format::MAX_RECORD_LEN`] is refused with
//! [`Error::TooLarge`](persister_core::Error::TooLarge) before anything is applied. A
//! log is read whole into memory when its document is opened.

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

/// The format version of the stores this build reads and writes (the store marker's
/// version; logs and the clean-close record have the same one). The same as
/// [`format::STORE_VERSION`].
pub const FORMAT_VERSION: u32 = format::STORE_VERSION;
pub use persister::{FsPersister, Recovery};
pub use store::{FsStore, is_fs_store};
