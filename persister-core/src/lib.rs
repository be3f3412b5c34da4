//! The contract of a persister for CRDT documents, and what every backend shares.
//!
//! An application keeps each CRDT document (Automerge today) in a [`Persister`]: its
//! changes keyed by actor and sequence number, one compacted document, and the sync
//! state of each peer. It writes every change as it happens, calls
//! [`flush`](Persister::flush) when *its* fsync policy says so (or lets [`AutoFlush`]
//! do it), and compacts when [`sizes`](Persister::sizes) says so ([`CompactionTrigger`]).
//! A [`Store`] holds any number of documents under one path.
//!
//! This crate has the trait and its contract, [`Batch`]es, the one [`Error`] type, the
//! in-memory backend ([`MemoryStore`], [`MemoryPersister`]), and, with the
//! `conformance` feature, the suite every backend runs; the `serde` feature derives
//! `Serialize` and `Deserialize` for [`StoredSizes`]. The disk backends live in
//! `persister-redb` (the recommended default), `persister-fs` and `persister-sled`, a
//! networked one in `persister-postgres`.
//!
//! # Example
//!
//! ```
//! use persister_core::{ActorId, AutoFlush, CompactionTrigger, FlushPolicy, MemoryStore, Persister, Store};
//!
//! # fn main() -> Result<(), persister_core::Error> {
//! let store = MemoryStore::new();
//! let mut doc = AutoFlush::new(store.open_document(&"notes".into())?, FlushPolicy::EveryBatches(100));
//!
//! let actor = ActorId::new([0xab; 16]);
//! for seq in 1..=3 {
//!     doc.insert_changes(vec![(actor.clone(), seq, format!("change {seq}").into_bytes())])?;
//! }
//! assert_eq!(doc.get_changes()?.len(), 3);
//! assert_eq!(doc.sizes().change_count, 3);
//! assert!(!CompactionTrigger::default().should_compact(&doc.sizes()));
//!
//! // Safe to exit once this returns.
//! doc.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Choosing the backend at run time
//!
//! Each backend's store is its own type. To pick one from a configuration file or a
//! command-line flag, wrap it in [`BoxedStore`]: every [`DynStore`] has the same type,
//! and its handles are [`DynPersister`]s (boxed `Persister`s).
//!
//! ```
//! use persister_core::{BoxedStore, DynStore, MemoryStore, Persister, Store};
//!
//! fn open_store(backend: &str) -> Result<DynStore, Box<dyn std::error::Error>> {
//!     Ok(match backend {
//!         "memory" => Box::new(BoxedStore(MemoryStore::new())),
//!         // With the backend crates as dependencies, for example:
//!         // "redb" => Box::new(BoxedStore(persister_redb::RedbStore::open(path)?)),
//!         // "fs" => Box::new(BoxedStore(persister_fs::FsStore::open(path)?)),
//!         other => return Err(format!("unknown backend {other}").into()),
//!     })
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = open_store("memory")?;
//! let mut doc = store.open_document(&"notes".into())?; // a DynPersister
//! doc.set_document(b"hello".to_vec())?;
//! doc.flush()?;
//! assert_eq!(store.list_documents()?, vec!["notes".into()]);
//! # Ok(())
//! # }
//! ```

mod batch;
pub mod checksum;
mod copy;
mod engine;
mod error;
pub mod files;
mod group;
mod handle;
mod held;
mod ids;
mod memory;
mod memory_engine;
mod merge;
mod panics;
mod persister;
mod policy;
mod recovery;
pub mod scratch;
mod sizes;
mod state;
mod store;
mod writer;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use batch::{Batch, Write};
pub use copy::copy_document;
pub use engine::{Engine, PendingDocument, Record, StoredKey, push_actor_key, split_actor_key};
pub use error::{Error, Result};
pub use group::{GroupCommit, GroupCommits, GroupFailure};
pub use handle::{EnginePersister, EngineStore};
pub use held::{HeldValue, HeldWrites};
pub use ids::{
    ActorId, DocumentId, MAX_ACTOR_ID_LEN, MAX_BATCH_LEN, MAX_DOCUMENT_ID_LEN, MAX_PEER_ID_LEN,
    MAX_VALUE_LEN,
};
pub use memory::{MemoryPersister, MemoryStore};
pub use memory_engine::MemoryEngine;
pub use merge::merge_held;
pub use panics::{catch_panic, panic_message};
pub use persister::{ChangeEntry, Persister};
pub use policy::{AutoFlush, CompactionTrigger, FlushPolicy, WriteError};
pub use recovery::Recovered;
pub use sizes::StoredSizes;
pub use state::DocumentState;
pub use store::{
    BoxedStore, DocumentClaim, DynPersister, DynStore, OpenDocuments, Store, flush_each,
    sum_flushed,
};
pub use writer::DocumentWriter;
