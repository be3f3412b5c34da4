//! The backends under test: the memory reference and every backend of the standard
//! registry whose stores are on this machine, opened generically as [`DynStore`]s.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use persister_backends::{Registry, StoreKind};
use persister_core::{DynStore, Result};

/// A backend of the registry below.
pub type Backend = &'static persister_backends::Backend;

/// The standard registry, with the memory reference first, and [`REDB_SMALL_LOG`].
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::new().with(persister_backends::Backend::memory());
    for backend in &Registry::standard() {
        registry.add(backend.clone());
    }
    registry.add(redb_small_log());
    registry
});

/// The name of redb with a commit log checkpointed every 2 KiB: its
/// checkpoints, and the operations that wait to reach redb until one, then happen in
/// every workload rather than once in 8 MiB. Only the tests that name it run it.
pub const REDB_SMALL_LOG: &str = "redb-small-log";

/// The log bound of [`REDB_SMALL_LOG`]: a checkpoint every few commits.
const SMALL_LOG_BYTES: u64 = 2048;

fn redb_small_log() -> persister_backends::Backend {
    use persister_backends::Access;
    use persister_core::BoxedStore;
    use persister_redb::{RedbOptions, RedbStore};
    let open = |path: &Path, access: Access| -> Result<DynStore> {
        let options = RedbOptions::default().checkpoint_log_bytes(SMALL_LOG_BYTES);
        Ok(match access {
            Access::ReadOnly => Box::new(BoxedStore(RedbStore::open_read_only(path)?)),
            Access::ReadWrite | Access::Create => {
                Box::new(BoxedStore(RedbStore::open_with(path, options)?))
            }
            Access::Migrate => Box::new(BoxedStore(RedbStore::open_with(
                path,
                options.migrate_format(true),
            )?)),
        })
    };
    persister_backends::Backend::new(
        REDB_SMALL_LOG,
        StoreKind::File,
        persister_redb::FORMAT_VERSION,
        open,
    )
    .with_description("One redb file, its commit log checkpointed every 2 KiB")
}

/// The backend called `name` (as given on the workload binary's command line).
pub fn from_name(name: &str) -> Option<Backend> {
    REGISTRY.get(name)
}

/// The backend called `name`.
///
/// # Panics
///
/// If there is none: the names are the tests' own.
pub fn named(name: &str) -> Backend {
    from_name(name).unwrap_or_else(|| panic!("there is no backend called {name}"))
}

/// Every backend under test: the memory reference first, then every backend whose
/// stores are files or directories.
pub fn all() -> Vec<Backend> {
    REGISTRY
        .iter()
        .filter(|b| b.kind() != StoreKind::Url && b.name() != REDB_SMALL_LOG)
        .collect()
}

/// The backends that keep their data on disk.
pub fn disk() -> Vec<Backend> {
    REGISTRY
        .iter()
        .filter(|b| matches!(b.kind(), StoreKind::File | StoreKind::Directory))
        .filter(|b| b.name() != REDB_SMALL_LOG)
        .collect()
}

/// Where one store lives, so that it can be opened, dropped and opened again.
#[derive(Debug, Clone)]
pub struct Location {
    backend: Backend,
    dir: PathBuf,
    store: persister_backends::Location,
}

impl Location {
    /// The store of `backend` kept in `dir` (a directory that holds nothing else). A
    /// memory store is this location's own, shared by its clones: "reopening" it is
    /// opening the same store again.
    pub fn new(backend: Backend, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let entry = if backend.kind() == StoreKind::Memory {
            persister_backends::Backend::memory()
        } else {
            backend.clone()
        };
        Self {
            backend,
            store: persister_backends::Location::in_dir(entry, &dir),
            dir,
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The directory holding the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's own path inside [`dir`](Location::dir).
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Opens the store (creating it the first time); after every handle of the
    /// previous one was dropped, this is reopening it.
    ///
    /// No retry on [`Error::Locked`](persister_core::Error::Locked): every disk
    /// backend releases its lock before the drop of its store returns, also while
    /// other threads fork children (`sled_reopen_right_after_drop_is_not_locked` in
    /// the tests), so a lock seen here is really held.
    pub fn open(&self) -> Result<DynStore> {
        self.store.open()
    }

    /// Opens the existing store for reading only, as the tools do.
    pub fn open_read_only(&self) -> Result<DynStore> {
        self.store.open_read_only()
    }
}
