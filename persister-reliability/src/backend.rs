//! The backends under test, opened generically as [`DynStore`]s.

use std::fmt;
use std::path::{Path, PathBuf};

use persister_core::{BoxedStore, DynStore, Error, MemoryStore, Result};

/// A backend of the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `persister_core::MemoryStore`: the reference; "reopening" is cloning it.
    Memory,
    /// `persister_redb::RedbStore`: one file.
    Redb,
    /// `persister_sled::SledStore`: one directory.
    Sled,
    /// `persister_fs::FsStore`: one directory of logs.
    Fs,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 4] = [Backend::Memory, Backend::Redb, Backend::Sled, Backend::Fs];

    /// The backends that keep their data on disk.
    pub const DISK: [Backend; 3] = [Backend::Redb, Backend::Sled, Backend::Fs];

    /// The backend's name, as given on the workload binary's command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redb => "redb",
            Backend::Sled => "sled",
            Backend::Fs => "fs",
        }
    }

    /// The backend called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The path of the store inside the directory `dir` that holds nothing else.
    pub fn store_path(self, dir: &Path) -> PathBuf {
        match self {
            Backend::Memory => dir.to_path_buf(),
            Backend::Redb => dir.join("store.redb"),
            Backend::Sled => dir.join("sled"),
            Backend::Fs => dir.join("fs"),
        }
    }

    /// Opens (creating if needed) the disk store kept in `dir`. The memory backend
    /// has no disk store: use a [`Location`].
    pub fn open_dir(self, dir: &Path) -> Result<DynStore> {
        let path = self.store_path(dir);
        match self {
            Backend::Memory => Err(Error::InvalidInput {
                what: "backend",
                reason: "the memory backend keeps nothing on disk".into(),
            }),
            Backend::Redb => Ok(Box::new(BoxedStore(persister_redb::RedbStore::open(path)?))),
            Backend::Sled => Ok(Box::new(BoxedStore(persister_sled::SledStore::open(path)?))),
            Backend::Fs => Ok(Box::new(BoxedStore(persister_fs::FsStore::open(path)?))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one store lives, so that it can be opened, dropped and opened again.
#[derive(Debug, Clone)]
pub struct Location {
    backend: Backend,
    dir: PathBuf,
    memory: MemoryStore,
}

impl Location {
    /// The store of `backend` kept in `dir` (ignored by the memory backend).
    pub fn new(backend: Backend, dir: impl Into<PathBuf>) -> Self {
        Self {
            backend,
            dir: dir.into(),
            memory: MemoryStore::new(),
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

    /// Opens the store; after every handle of the previous one was dropped, this is
    /// reopening it.
    ///
    /// No retry on [`Error::Locked`]: every disk backend releases its lock before the
    /// drop of its store returns, also while other threads fork children
    /// (`sled_reopen_right_after_drop_is_not_locked` in the tests), so a lock seen here
    /// is really held.
    pub fn open(&self) -> Result<DynStore> {
        match self.backend {
            // Clones share the documents: opening a clone is reopening.
            Backend::Memory => Ok(Box::new(BoxedStore(self.memory.clone()))),
            disk => disk.open_dir(&self.dir),
        }
    }
}
