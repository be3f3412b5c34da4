//! The registry of persister backends: for programs that pick a backend at run time
//! (from a flag, a configuration file, or the store they are given).
//!
//! ```
//! use persister_backends::{Access, Registry};
//! use persister_core::{Persister, Store};
//!
//! # fn main() -> Result<(), persister_core::Error> {
//! let registry = Registry::standard();
//! let dir = tempfile::tempdir().map_err(|e| persister_core::Error::io("create", "a temporary directory", e))?;
//! let path = dir.path().join("notes.redb");
//!
//! // A new store of a backend chosen by name...
//! let store = registry.backend("redb")?.open(&path, Access::Create)?;
//! let mut doc = store.open_document(&"notes".into())?; // a DynPersister
//! doc.set_document(b"hello".to_vec())?;
//! doc.close()?;
//! drop(store);
//!
//! // ...and an existing store, whose backend is recognised from what is on disk.
//! let backend = registry.detect(&path)?;
//! assert_eq!((backend.name(), backend.format_version()), ("redb", persister_redb::FORMAT_VERSION));
//! let store = registry.open(&path, Access::ReadOnly)?;
//! assert_eq!(store.open_document(&"notes".into())?.get_document()?, Some(b"hello".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! Each [`Backend`] is one entry: its name, its store format version, what its stores
//! are ([`StoreKind`]: a file, a directory, a URL), how to recognise one, and how to
//! open one read-only, read-write, or as a new store ([`Access`]). Every store opens
//! as a [`DynStore`](persister_core::DynStore), whose handles are
//! [`DynPersister`](persister_core::DynPersister)s. [`Registry::standard`] holds
//! redb, sled, fs and postgres; a backend of your own is one more entry, made with
//! [`Backend::new`] and added with [`Registry::with`]. [`Location`] is one store to
//! open again and again, for tests and harnesses.
//!
//! Every error is a [`persister_core::Error`]. Boxed handles flush one by one under
//! [`Store::flush_documents`](persister_core::Store::flush_documents); a program that
//! needs one backend's group commit across documents opens that backend's store
//! itself.

mod backend;
mod builtin;
mod location;
mod registry;
mod shown;

pub use backend::{Access, Backend, StoreKind};
pub use location::Location;
pub use registry::Registry;
pub use shown::shown;
