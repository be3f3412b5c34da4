//! Automerge 0.12 documents that write every change to a [`Persister`] as it happens.
//!
//! ```
//! use automerge::{ObjType, ROOT, ReadDoc, transaction::Transactable};
//! use persister_automerge::{FlushPolicy, Options, PersistentDoc};
//! use persister_core::Store;
//! use persister_redb::RedbStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("notes.redb");
//! {
//!     let store = RedbStore::open(&path)?;
//!     let options = Options::default().with_flush(FlushPolicy::EveryBatches(100));
//!     let mut doc = PersistentDoc::load_with(store.open_document(&"notes".into())?, options)?;
//!
//!     // Each edit is one commit, written to the store before `edit` returns.
//!     let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
//!     doc.edit(|d| d.splice_text(&text, 0, 0, "hello"))?;
//!     doc.edit(|d| d.splice_text(&text, 5, 0, " world"))?;
//!     // Safe to exit once this returns.
//!     doc.close()?;
//! }
//!
//! // Restart: the edits are there.
//! let store = RedbStore::open(&path)?;
//! let doc = PersistentDoc::load(store.open_document(&"notes".into())?)?;
//! let (_, text) = doc.doc().get(ROOT, "text")?.ok_or("no text")?;
//! assert_eq!(doc.doc().text(&text)?, "hello world");
//! # Ok(())
//! # }
//! ```
//!
//! [`PersistentDoc`] wraps an [`automerge::AutoCommit`] over any [`Persister`] of
//! `persister-core`: in memory ([`persister_core::MemoryStore`]) or on disk
//! (`persister-redb`, as above, `persister-fs` or `persister-sled`).
//!
//! - [`load`](PersistentDoc::load) reads the compacted document and applies every
//!   stored change in one go;
//! - [`edit`](PersistentDoc::edit) commits and writes each new change, keyed by actor
//!   and sequence number, before it returns; a write the persister did not apply stays
//!   queued, to be retried by the next write, and the error is returned; a failed flush
//!   is [`Error::FlushFailed`] (the handle writes nothing more, see
//!   [`PersistentDoc`]'s "After a failed flush");
//! - [`generate_sync_message`](PersistentDoc::generate_sync_message) and
//!   [`receive_sync_message`](PersistentDoc::receive_sync_message) sync with peers and
//!   persist each peer's `sync::State` when it changes, in the same batch as the changes
//!   a message brought;
//! - [`compact`](PersistentDoc::compact) (or the [`CompactionTrigger`] of the
//!   [`Options`]) stores the whole document and removes the changes it covers, in one
//!   atomic batch;
//! - [`flush`](PersistentDoc::flush) and [`close`](PersistentDoc::close) say when it is
//!   safe to exit; between them, the [`FlushPolicy`] of the [`Options`] decides.
//!
//! Nothing is read back from the persister after loading: the keys of stored changes
//! are kept in memory, so an edit costs the same however large the document is, and
//! compaction costs one `save` of the document and one batch.
//!
//! Text positions count Unicode code points, whatever features of automerge other
//! crates in the build turn on; [`Options::text_encoding`] sets another count (UTF-16
//! code units for positions from JavaScript, for example).
//!
//! An application that acknowledges edits (to its user, or to a server) learns which
//! change an edit made from [`PersistentDoc::last_change`]: its hash, actor and
//! sequence number.
//!
//! Automerge 0.12 checks a chunk's checksum, and enforces some of its other checks by
//! panicking. A stored document or change that passes the checksum but not those
//! checks is [`Error::DamagedStore`] on load; a peer's message (or a change an edit
//! applies or merges) that does, or that brings a change automerge would store under
//! another hash than the document holds it under, is [`Error::Broken`]: nothing of it
//! is written, and the document must be loaded again. Both rely on catching
//! automerge's panic, so the process must not be built with `panic = "abort"`.

mod doc;
mod error;
mod options;
mod sync;

pub use doc::{ChangeInfo, PersistentDoc};
pub use error::{Error, Result};
pub use options::Options;

/// The automerge this crate is built against, so applications use the same version.
pub use automerge;
/// The persister contract and the in-memory backend.
pub use persister_core;
pub use persister_core::{CompactionTrigger, FlushPolicy, Persister};
