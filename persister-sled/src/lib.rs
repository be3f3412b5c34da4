//! A [`Persister`](persister_core::Persister) backend on sled 0.34.7, for applications
//! that keep their CRDT documents in sled, with the checks sled itself lacks, and a
//! way out to another backend.
//!
//! ```
//! use persister_core::{ActorId, Batch, Persister, Store};
//! use persister_sled::SledStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path().join("docs"))?;
//! let mut doc = store.open_document(&"notes".into())?;
//!
//! let actor = ActorId::new([0xab; 16]);
//! doc.insert_changes(vec![(actor.clone(), 1, b"change 1".to_vec())])?;
//! // Compaction is one atomic batch.
//! doc.apply(Batch::new().set_document(b"compacted".to_vec()).remove_change(actor, 1))?;
//! assert!(doc.flush()? > 0); // durable from here on
//! drop((doc, store));
//!
//! let store = SledStore::open(dir.path().join("docs"))?;
//! let doc = store.open_document(&"notes".into())?;
//! assert_eq!(doc.get_document()?, Some(b"compacted".to_vec()));
//! assert_eq!(doc.sizes().document, 9); // exact right after reopening, without reading
//! # Ok(())
//! # }
//! ```
//!
//! One sled database (a directory) is one [`SledStore`] with any number of documents;
//! [`is_sled_store`] tells such a directory apart.
//!
//! # Layout
//!
//! Format version [`FORMAT_VERSION`] keeps everything in sled's default tree, under keys
//! whose first byte says what they are (`u16be`/`u64be`: big-endian integers, `id`: the
//! document id's bytes):
//!
//! | key | value |
//! |---|---|
//! | `00 "format"` | `"PSLEDFMT"`, `u32be` format version, `u32be` crc32c of those 12 bytes |
//! | `00 "store"` | store manifest: `u64be` sequence number of the last batch, `u64be` document count, `u64be` document digest |
//! | `01 u16be(len) id` | the document's manifest (below) |
//! | `02 u16be(len) id 01` | the document |
//! | `02 u16be(len) id 02 escape(actor) 00 00 u64be(seq)` | a change |
//! | `02 u16be(len) id 03 peer` | a sync state |
//!
//! Document ids are length-prefixed, so no document's keys start with another's: `"1"`
//! and `"10"` share no prefix, as they would with a raw prefix. Actor ids are
//! escape-encoded (each `00` byte written `00 ff`) and end with `00 00`, so keys sort by
//! actor bytes and then by numeric seq, an actor that is a prefix of another first, and
//! [`get_changes`](persister_core::Persister::get_changes) returns sled's key order
//! as it is. [`list_documents`](persister_core::Store::list_documents) sorts the ids by
//! their bytes in memory.
//!
//! Every value but the format value is framed as `u32be(crc32c(key ++ payload)) ++
//! payload`: the checksum covers the key, so a value found under another key fails it.
//!
//! # Manifests: no partial reads
//!
//! sled 0.34 silently returns partial data from a damaged file: recovery stops reading
//! the log at the damage, and the pages it did not reach keep older versions. So each
//! document has a manifest, rewritten in the same sled batch as every change to the
//! document (sled applies a batch atomically, across crashes too). It records, for the
//! changes and for the sync states, the count, the total bytes and a digest (the
//! wrapping sum of the entries' checksums), and the document's length and checksum
//! (61 bytes: changes `u64be` count, bytes, digest; sync states the same; a flag byte,
//! `u64be` length and `u32be` checksum of the document).
//!
//! A read returns data only when it matches the manifest: a missing, extra, damaged or
//! stale entry fails it with [`Error::Corrupt`](persister_core::Error::Corrupt). (A
//! stale entry whose checksum happens to keep the digest equal, about 1 in 2³² for
//! damage that keeps count and bytes equal, passes.) The manifest also gives exact
//! [`sizes`](persister_core::Persister::sizes) in O(1) right after reopening. The store
//! manifest does the same for the set of documents that `list_documents` returns.
//!
//! # The mark file
//!
//! A damaged log can also make sled recover an *older* state that is consistent in
//! itself. Every batch increments the store manifest's sequence number; after each
//! flush, the file `persister-sled.mark` in the store directory records the sequence
//! number made durable (two slots, each `"PSLDMARK"`, `u32be` version 1, `u64be`
//! sequence number, `u32be` crc32c; a write goes to the older slot). Opening a store
//! that holds fewer batches than its mark fails with `Corrupt`: flushed data was lost.
//! A store whose mark file is missing or damaged (and that has applied any batch) is
//! refused the same way, so copy the whole directory, never only sled's files.
//!
//! # Durability
//!
//! The handle is core's [`EnginePersister`](persister_core::EnginePersister): it holds
//! writes in memory, where reads see them, until
//! [`flush`](persister_core::Persister::flush) writes all of them to sled in one atomic
//! batch (sled's cost is per batch: each costs it a write and a `sync_file_range` of its
//! log buffer, whatever its size); it flushes what it holds before it would pass
//! [`SledOptions::max_pending_bytes`], discards it when dropped unflushed ([contract
//! point 12](persister_core::Persister#contract)), and handles that flush at the same
//! time share one batch and one flush ([group commit](persister_core::EngineStore)).
//! Once a flush returns `Ok`, its writes are in files that have been `fsync`ed: it calls
//! sled's own `flush` (which writes sled's buffers with `sync_file_range`; that alone
//! syncs neither the file's metadata nor the drive's cache), then `fsync`s every new
//! blob file (sled keeps values and nodes over about 128 KiB in separate files it never
//! syncs), the blob directory, the `db` file and the store directory, and last advances
//! the mark file and `fsync`s it. Creating a store also `fsync`s the directory holding
//! the store's directory (and those holding the directories sled made for it), so that
//! a new store cannot vanish with what was flushed into it; a store reopened before its
//! first batch (its creation may have stopped before those syncs) syncs the directory
//! holding its entry again, and those holding its ancestors' up to the root of its file
//! system, where the process may open them.
//!
//! So flushed writes survive a process crash. What is not guaranteed:
//!
//! - **Power loss.** After a flush the bytes are on disk (on a file system and drive
//!   that honour `fsync`), but sled 0.34 was not built for power loss: writes made after
//!   the flush can reach the disk in any order, partly, and sled's recovery can then
//!   stop early and recover fewer batches. If that loses a flushed batch, opening fails
//!   with [`Error::Corrupt`](persister_core::Error::Corrupt) (the mark file) rather
//!   than returning the older state; the data may still be in the file, but sled does
//!   not read it. Where power loss matters, use `persister-redb` or `persister-fs`.
//! - **Unflushed writes** are held by their handle and lost in a crash: after a crash,
//!   each document is as its last successful flush left it.
//! - **sled's background flusher** is off unless [`SledOptions::flush_every_ms`] turns
//!   it on; when on, it `fsync`s the `db` file behind the application's back, but
//!   promises nothing more than the above.
//!
//! After a failed flush or write (or a panic inside sled), every handle of the store is
//! poisoned, including one whose flush was already under way (a second `fsync` after a
//! failed one can succeed without writing what the first one dropped): writes and
//! flushes return [`Error::Poisoned`](persister_core::Error::Poisoned) until the store
//! and all its handles are dropped and it is opened again. Reads still work.
//!
//! # Damaged stores and panics
//!
//! What happens to a damaged store, as this crate's tests measure it (1 to 8 flipped
//! bytes in sled's files, hundreds of seeds): sled fails to open it (an
//! [`Error::Corrupt`](persister_core::Error::Corrupt) for its checksum errors, an
//! [`Error::Backend`](persister_core::Error::Backend) for the others), or opens it and
//! recovers an older state, which the mark file turns into `Corrupt` on open. With the
//! mark file reset, the manifests still ensure each read returns a whole version of a
//! document, never a mix or a part. No read returned other data.
//!
//! Opening a damaged store in place is not free of harm: sled's recovery takes the
//! first damaged message for the torn tail of a crash, and overwrites the log after it
//! (and `fsync`s) while it opens, before this crate can compare the store with its
//! mark. So [`SledStore::open`] first opens a copy of the store's directory (see
//! [`SledOptions::check_copy_first`]) and opens the store itself only when the copy
//! opened without damage: a damaged store is refused untouched.
//! [`SledStore::open_read_only`] reads such a copy and never writes the store.
//!
//! # A full disk
//!
//! On a file system that fills up, sled 0.34 can hang inside its own I/O threads
//! instead of returning an error (seen once in this workspace's tests on a full tmpfs,
//! and passing in other runs). Keep sled stores on disks with room to spare, or move
//! them to `persister-redb` (`persister copy`).
//!
//! # Closing
//!
//! Dropping the store (once its handles are dropped), or
//! [`close`](persister_core::Store::close), returns only once sled has let go of its
//! lock on the `db` file: sled's background threads keep its descriptor for a moment
//! after the database is dropped, and a child process forked meanwhile by another
//! thread shares it until its `exec`, so the drop waits, up to two seconds, until it can
//! take that lock itself. The next open, in this process or another, then never waits.
//!
//! sled 0.34 can also panic on damaged files, while opening them or reading from them.
//! This crate catches those panics (with the default `panic = "unwind"`), returns
//! `Corrupt` and poisons the store; sled's panic message is still printed by the panic
//! hook. With `panic = "abort"` the process aborts instead. Nothing of this crate
//! panics on its own.
//!
//! # A known engine deadlock
//!
//! sled 0.34.7 can deadlock under heavy rewriting: when removals free the segment at
//! the end of its log, one of its (at most seven) I/O threads truncates the file while
//! the writing thread waits for it holding the segment lock; if every I/O thread is
//! already waiting for that lock, nothing proceeds. The more batches an application
//! writes to sled, the likelier it is: replaying the 259,778-edit automerge-paper trace
//! with one sled batch per edit (automatic compaction removing thousands of changes per
//! batch) hung after 15,000 to 47,000 commits in every run, while the same replay
//! flushed every 1,000 edits, as handles now write to sled once per flush, completes in
//! every run so far. The bug is still in sled, and an application that flushes after
//! every small write gives it more chances; sled 1.0 is still alpha. For large,
//! long-lived documents prefer `persister-redb` or `persister-fs`, and move existing
//! stores with [`copy_document`](persister_core::copy_document) (see below).
//!
//! # Memory of opening a large store
//!
//! Opening a store costs memory that grows with the number of documents, and this
//! crate cannot change it: sled 0.34 rebuilds its page table (every page's location)
//! when it opens a database and keeps it while the database is open, whatever
//! `cache_capacity` says: 6.9 MiB for 10,000 documents of 10 changes, 53 MiB for
//! 100,000 (the workspace's benchmark, row 9, which also shows that neither
//! [`SledOptions::check_copy_first`] nor sled's cache is the cause). Where that
//! matters, prefer `persister-redb` or `persister-fs`, whose opening memory does not
//! grow with the number of documents.
//!
//! # Locking
//!
//! sled locks its `db` file; a second [`SledStore::open`] of an open store, from this
//! process or another one, fails at once with
//! [`Error::Locked`](persister_core::Error::Locked). A
//! [`SledStore::open_read_only`] holds that lock shared only while it copies the store:
//! readers then open beside each other, and writers get `Locked`.
//!
//! # Leaving sled
//!
//! [`copy_document`](persister_core::copy_document) copies a document, with its
//! changes, document and sync states, from a `SledStore` into any other store, in one
//! batch, and checks the copy's sizes:
//!
//! ```
//! use persister_core::{copy_document, MemoryStore, Persister, Store};
//! use persister_sled::SledStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let sled = SledStore::open(dir.path())?;
//! sled.open_document(&"notes".into())?.set_document(b"doc".to_vec())?;
//! let other = MemoryStore::new(); // or persister_redb::RedbStore::open(path)?
//! for id in sled.list_documents()? {
//!     let mut dst = other.open_document(&id)?;
//!     copy_document(&sled.open_document(&id)?, &mut dst)?;
//!     dst.flush()?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Data written by `automerge-persistent-sled` uses another layout; this crate refuses
//! to open it ([`Error::NotAStore`](persister_core::Error::NotAStore)).

mod calls;
mod copy;
mod durable;
mod engine;
mod layout;
mod manifest;
mod mark;
mod options;
mod shared;
mod store;

use std::path::Path;

pub use engine::SledAddress;
pub use options::SledOptions;
pub use shared::SledEngine;
pub use store::{FORMAT_VERSION, SledStore};

/// The handle of one document in a [`SledStore`]: core's
/// [`EnginePersister`](persister_core::EnginePersister) on the [`SledEngine`] (see
/// [Durability](crate#durability)). Every read of sled is checked against the
/// document's manifest and the values' checksums, and fails with
/// [`Error::Corrupt`](persister_core::Error::Corrupt) rather than return a part of the
/// data, so a sync state or the peer ids read all sync states: O(number of peers).
pub type SledPersister = persister_core::EnginePersister<SledEngine>;

/// Whether `path` looks like a sled database directory (it holds sled's `conf` and `db`
/// files), so a tool can pick this backend from a path. It does not open the store nor
/// check that this crate wrote it.
pub fn is_sled_store(path: impl AsRef<Path>) -> bool {
    let path = path.as_ref();
    path.join("conf").is_file() && path.join("db").is_file()
}

/// Closes a database opened with sled itself (as a program does before it moves to
/// [`SledStore`]), and returns once sled has let go of its lock on the `db` file in
/// `dir`, so that a [`SledStore`], or another process, can open the directory at once.
///
/// sled 0.34 lets go of that lock a moment after its `Db` is dropped (its background
/// threads keep the file open), so opening the directory right after a plain `drop`
/// can fail with [`Error::Locked`](persister_core::Error::Locked).
///
/// # Errors
///
/// [`Error::Locked`](persister_core::Error::Locked) if the lock is still held two
/// seconds later (another process opened the directory meanwhile).
pub fn close_database(db: sled::Db, dir: impl AsRef<Path>) -> persister_core::Result<()> {
    calls::close(db, dir.as_ref())
}
