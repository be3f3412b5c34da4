//! A store of one backend at one place, to open again and again.

use std::fmt;
use std::path::{Path, PathBuf};

use persister_core::{DynStore, Result};

use crate::{Access, Backend};

/// Where one store lives: a backend and a path (or URL). Opening it after every
/// handle of the previous store was dropped is reopening the store, for tests and
/// harnesses that drop a store and check what comes back.
///
/// Its `Debug` output shows a URL without its password.
#[derive(Clone)]
pub struct Location {
    backend: Backend,
    path: PathBuf,
}

impl Location {
    /// The store of `backend` at `path`.
    pub fn new(backend: Backend, path: impl Into<PathBuf>) -> Self {
        Self {
            backend,
            path: path.into(),
        }
    }

    /// The store of `backend` inside `dir`, a directory that holds nothing else, at
    /// [`Backend::store_in`]; a URL backend's store is at `dir` itself, which should
    /// then be its URL.
    pub fn in_dir(backend: Backend, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let path = backend.store_in(dir).unwrap_or_else(|| dir.to_path_buf());
        Self::new(backend, path)
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The store's path (or URL).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the store read-write, making it empty the first time.
    ///
    /// # Errors
    ///
    /// As [`Backend::open`].
    pub fn open(&self) -> Result<DynStore> {
        self.backend.open(&self.path, Access::ReadWrite)
    }

    /// Opens the store read-only.
    ///
    /// # Errors
    ///
    /// As [`Backend::open`].
    pub fn open_read_only(&self) -> Result<DynStore> {
        self.backend.open(&self.path, Access::ReadOnly)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("backend", &self.backend)
            .field("path", &crate::shown::shown(&self.path))
            .finish()
    }
}
