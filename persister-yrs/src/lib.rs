//! Yjs documents (yrs 0.28) that write every update to a [`Persister`] as it happens.
//!
//! ```
//! use persister_core::Store;
//! use persister_redb::RedbStore;
//! use persister_yrs::{FlushPolicy, Options, PersistentYDoc};
//! use yrs::{GetString, Text, Transact};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("notes.redb");
//! {
//!     let store = RedbStore::open(&path)?;
//!     let options = Options::default().with_flush(FlushPolicy::EveryBatches(100));
//!     let mut doc = PersistentYDoc::load_with(store.open_document(&"notes".into())?, options)?;
//!     let text = doc.doc().get_or_insert_text("text");
//!
//!     // Each edit is one transaction, its update written before `edit` returns.
//!     doc.edit(|txn| text.insert(txn, 0, "hello"))?;
//!     doc.edit(|txn| text.insert(txn, 5, " world"))?;
//!     // Safe to exit once this returns.
//!     doc.flush()?;
//! }
//!
//! // Restart: the edits are there.
//! let store = RedbStore::open(&path)?;
//! let doc = PersistentYDoc::load(store.open_document(&"notes".into())?)?;
//! let text = doc.doc().get_or_insert_text("text");
//! assert_eq!(text.get_string(&doc.doc().transact()), "hello world");
//! # Ok(())
//! # }
//! ```
//!
//! [`PersistentYDoc`] wraps a [`yrs::Doc`] over any [`Persister`] of `persister-core`:
//! in memory ([`persister_core::MemoryStore`]) or on disk (`persister-redb`, as above,
//! `persister-fs` or `persister-sled`). It is the Yjs counterpart of
//! `persister_automerge::PersistentDoc`, on the same stores.
//!
//! - [`load`](PersistentYDoc::load) applies the stored document in one transaction and
//!   every stored update in another (a large document on a thread of its own, while
//!   the updates are read);
//! - [`edit`](PersistentYDoc::edit) runs one transaction and writes its update before
//!   it returns; a write the persister did not apply stays queued, to be retried by the
//!   next write, and the error is returned; a failed flush is [`Error::FlushFailed`]
//!   (the handle writes nothing more). An update no persister stores (over
//!   [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN)) or a panic in the edit makes the
//!   document unusable ([`Error::Broken`]) instead of queueing what can never be
//!   written;
//! - [`sync_step1`](PersistentYDoc::sync_step1) and
//!   [`receive_sync_message`](PersistentYDoc::receive_sync_message) speak the Yjs sync
//!   protocol (`yrs::sync::SyncMessage`: state vectors, then updates), and what a peer
//!   sends is stored like a local edit;
//! - [`compact`](PersistentYDoc::compact) (or the [`CompactionTrigger`] of the
//!   [`Options`]) stores the whole state as one update and removes the updates it
//!   covers, in one atomic batch;
//! - [`flush`](PersistentYDoc::flush) and [`close`](PersistentYDoc::close) say when it
//!   is safe to exit; between them, the [`FlushPolicy`] of the [`Options`] decides.
//!
//! # What is stored, under which key
//!
//! | part | key | value |
//! |---|---|---|
//! | changes | ([`actor_of`] the writing document's client id: 8 bytes, big-endian; seq) | a Yjs v1 update |
//! | document | | the whole state, a Yjs v1 update (`encode_state_as_update_v1`) |
//! | sync states | | none: the Yjs protocol keeps no state per peer |
//!
//! Every value is a plain Yjs v1 update, so any Yjs implementation can read a store's
//! document and updates.
//!
//! A Yjs update has no identity of its own (no hash, no author and counter), so it is
//! stored under the key of *who stored it*: the client id of the document that wrote
//! it, and a counter of that document's writes. This is sound:
//!
//! - **Concurrent writers on one store.** A store opens one handle per document at a
//!   time, and every load picks a fresh random 53-bit client id (unless
//!   [`Options::client_id`] sets one), so two sessions, in turn or in different
//!   processes over a networked store, write under different actors and never replace
//!   each other's updates. A session that reuses a client id continues its counter
//!   after the largest sequence number stored under it, so it cannot overwrite either.
//!   Different documents of one store have separate keys altogether.
//! - **Several replicas.** Keys never leave a store: replicas exchange updates through
//!   the sync protocol, and each replica stores what it receives under its own key. An
//!   update that reaches a store twice (from two peers, or once as a local edit and
//!   once echoed back) is stored twice; that costs bytes until the next compaction and
//!   nothing else, because applying a Yjs update is idempotent and commutative: loading
//!   the updates in key order, whatever writers they come from, gives the same state
//!   as applying them in the order they happened.
//!
//! # What survives what
//!
//! - **Dropping the document** without [`flush`](PersistentYDoc::flush) discards its
//!   unflushed writes; everything flushed stays.
//! - **A process kill or crash**: everything written before the last successful flush
//!   survives, by the persister's contract, plus possibly some later writes; each
//!   write (an update, or a compaction) is there whole or not at all.
//! - **A power loss**: the same, on backends that promise it (redb, fs).
//! - **A damaged store**: loading fails with an error ([`Error::CorruptDocument`],
//!   [`Error::CorruptUpdate`] or the backend's own); it never returns an empty or
//!   partial document in place of the stored one. A damaged update that yrs decodes
//!   with clocks past `u32::MAX` (yrs 0.28 does not check the sum) is one of these
//!   errors, and [`Error::InvalidUpdate`] from a peer, where yrs is built with overflow
//!   checks: debug builds are; for release builds, add
//!   `[profile.release.package.yrs] overflow-checks = true` to the workspace's
//!   `Cargo.toml`, as this workspace does (without it yrs wraps the clock and decodes
//!   something else). Either way the process must not be built with `panic = "abort"`,
//!   since the check is yrs's overflow panic, caught.
//! - **Sync**: what a peer sent is stored like a local edit; nothing else about a peer
//!   needs to survive, since each sync starts from the two state vectors.

mod doc;
mod error;
mod options;
mod sync;

pub use doc::{PersistentYDoc, actor_of};
pub use error::{Error, Result};
pub use options::Options;

/// The persister contract and the in-memory backend.
pub use persister_core;
pub use persister_core::{CompactionTrigger, FlushPolicy, Persister};
/// The yrs this crate is built against, so applications use the same version.
pub use yrs;
