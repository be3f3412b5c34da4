//! Crash-safe storage for [samod](https://docs.rs/samod) (the Rust automerge-repo) on
//! any store of this workspace: redb, fs, sled, PostgreSQL, memory.
//!
//! # Example
//!
//! A samod repo on a redb file; an edit, a restart, and the edit is there:
//!
//! ```
//! use automerge::{ReadDoc, ROOT, transaction::Transactable};
//! use persister_redb::RedbStore;
//! use persister_samod::SamodStorage;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("repo.redb");
//! let start = |path: std::path::PathBuf| async move {
//!     let storage = SamodStorage::open(move || RedbStore::open(&path))?;
//!     let repo = samod::Repo::build_tokio().with_storage(storage.clone()).load().await;
//!     Ok::<_, persister_core::Error>((repo, storage))
//! };
//! let text = tokio::runtime::Runtime::new()?.block_on(async {
//!     let (repo, storage) = start(path.clone()).await?;
//!     let doc = repo.create(automerge::Automerge::new()).await?;
//!     doc.with_document(|d| d.transact(|tx| tx.put(ROOT, "greeting", "hello"))).map_err(|f| f.error)?;
//!     repo.stop().await; // each put completed only once durable
//!     storage.close()?; // checked: the store closed cleanly, the file released
//!
//!     let (repo, _) = start(path).await?; // as after a restart
//!     let doc = repo.find(doc.document_id().clone()).await?.ok_or("lost")?;
//!     Ok::<_, Box<dyn std::error::Error>>(doc.with_document(|d| d.get(ROOT, "greeting").map(|v| v.map(|(v, _)| v.to_string())))?)
//! })?;
//! assert_eq!(text.as_deref(), Some("\"hello\""));
//! # Ok(())
//! # }
//! ```
//!
//! Moving to another store changes only the `open` closure: `FsStore::open(dir)` for
//! the fs backend, `SledStore::open(dir)` for sled, `PostgresStore::open(url)` for a
//! schema of a PostgreSQL database, where a flush is the server's synchronous commit.
//! A PostgreSQL store leases each document to the handle that has it open: the storage
//! closes a document's handle, releasing the lease, once the document has gone
//! [`Options::max_handle_age`] without a write (10 s, below the store's default lease
//! of 30 s; keep it below the lease if you shorten that). Give each samod repo a schema
//! of its own: a second storage on the same schema is not refused, but its `open` fails
//! with `Locked` while the first holds the reserved document `/`, and its operations on
//! the documents the first holds fail with `Locked` (and are retried). To move an
//! existing samod store, copy it document by document with the plain
//! [`Store`](persister_core::Store) API (every key lives in a document, see "Layout").
//!
//! # What it promises
//!
//! - **Acknowledged means durable.** A `put` or `delete` future completes only after
//!   the store's [`flush`](persister_core::Persister::flush) of that write returned
//!   `Ok`. Operations queued on one document while the worker was busy are written as
//!   one batch and one flush; the documents with queued writes are flushed one after
//!   another, so a round costs one sync per document on stores whose flush syncs
//!   alone (a store-level group commit, where a store offers one, would share it).
//!   samod deletes the incrementals a snapshot covers only after the snapshot's put
//!   completed, and operations on one document are applied in the order they were
//!   called, each batch whole, so a crash at any point loads to at least one side.
//! - **Errors are never answers.** The samod trait has no error type. A read that
//!   fails (damaged data, an I/O error) is never reported as an absent key or a short
//!   range: it is retried, and reported to the hook ([`Options::on_event`]) and by
//!   [`SamodStorage::health`]. A write that fails stays queued, in order, and is
//!   retried with a backoff (reopening the store when a flush failed) until it is
//!   durable; only then does its future complete. [`WhenUnusable`] chooses between
//!   waiting for the store (the default) and stopping the process.
//! - **Any executor.** The futures are completed by the storage's own worker thread
//!   through a oneshot channel; they work under tokio, a `LocalPool`, gio, or
//!   `futures::executor::block_on`.
//!
//! # Layout (format version 1)
//!
//! samod's keys are lists of strings: `[doc, "incremental", change hash]`,
//! `[doc, "snapshot", compaction hash]`, `["storage-adapter-id"]`, and whatever
//! automerge-repo adds later. Each key lives in the store's document named by its first
//! component, mapped onto the data model so that `persister info`, `persister verify`,
//! sizes and compaction triggers see samod documents as documents:
//!
//! | samod key | where in the store |
//! |---|---|
//! | `[doc, "incremental", h]` whose value is one automerge change chunk (plain or compressed) with hash `h` | document `doc`, the change under its actor and seq (read from the change); `h` is recomputed from the bytes on load |
//! | `[doc, "snapshot", h]`, the newest put | document `doc`, the document slot; its name `h` in the sync-state entry `02` |
//! | any other key `[doc, rest..]`: other snapshots kept beside the newest until samod deletes them, incrementals that are not one change with that hash (a bundle, a document chunk, garbage) or whose actor and seq another change holds, and keys samod may add | document `doc`, the sync-state entry `01` + `rest` joined by `/` |
//! | keys of fewer than two components (`["storage-adapter-id"]`) | the reserved document `/`, sync-state entry `01` + the component |
//! | the layout record | the reserved document `/`, sync-state entry `00`: `persister-samod\0` and the version, 4 bytes big-endian |
//!
//! No samod key component is empty or holds `/`, so the join is unambiguous and no
//! samod document is named `/`. A document slot filled by other code
//! (`persister-automerge`, say), with no name entry or after samod emptied it, loads as
//! the snapshot [`UNNAMED_SNAPSHOT`]; a deleted snapshot leaves the slot empty (zero
//! bytes, name entry empty) unless another snapshot waits beside it, which then takes
//! the slot. `load_range` reads only the documents its prefix names, and compares
//! components whole. A store whose layout record has
//! another version is refused with [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat).
//!
//! A samod document's sync-state entries belong to this layout: do not store sync
//! states there with other code.

mod layout;
mod options;
mod storage;
mod worker;

pub mod acceptance;

pub use layout::{
    DocumentCheck, FORMAT_VERSION, LAYOUT_DOCUMENT, LAYOUT_RECORD, UNNAMED_SNAPSHOT,
    check_document, layout_version,
};
pub use options::{Event, Health, Hook, Options, WhenUnusable};
pub use storage::SamodStorage;
pub use worker::EXIT_CODE;
