//! The store: one redb file holding every document.

use std::path::{Path, PathBuf};

use persister_core::scratch::ScratchDir;
use persister_core::{EngineStore, Error, Result};
use redb::StorageBackend;

use crate::error::{RedbResultExt, from_redb};
use crate::file::{self, Db};
use crate::{RedbEngine, RedbOptions, RedbPersister};

/// Every document of one redb file.
///
/// Opening takes redb's lock on the file: a second open of the same file, from this
/// process or another, fails at once with [`Error::Locked`](persister_core::Error::Locked). The store is `Send + Sync`;
/// share it (by reference or in an `Arc`) to serve different documents from different
/// threads. Its handles ([`RedbPersister`]) keep the file open until the last one is
/// dropped.
///
/// Dropping the store and its handles closes the file and releases its lock before the
/// last drop returns; [`close`](persister_core::Store::close) does the same and reports a store that is
/// still in use. A handle's unflushed writes never reach the file (see
/// [`RedbPersister`]).
///
/// Clones share the open file, like an `Arc`.
#[derive(Clone, Debug)]
pub struct RedbStore {
    inner: EngineStore<RedbEngine>,
}

impl RedbStore {
    /// Opens the store at `path` with the default [`RedbOptions`], creating it if the
    /// file does not exist.
    ///
    /// Fails with [`Error::Locked`](persister_core::Error::Locked) when the file is open elsewhere,
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) when it is not a store, [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat) when it is
    /// a store of another layout version, and [`Error::Corrupt`](persister_core::Error::Corrupt) when verifying it finds
    /// damage.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens the store at `path`, creating it if the file does not exist.
    ///
    /// A new store is created crash-safely: under a temporary name in the same directory,
    /// synced, then moved into place and the directory synced, so a crash never leaves a
    /// half-made file at `path`. A crash can leave the temporary file
    /// (`.<name>.<pid>.<n>.creating`) behind; it may be deleted.
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbStore> {
        let path = path.as_ref();
        if !path.exists() {
            file::create(path, &options)?;
        }
        file::check_magic(path)?;
        // redb releases its lock explicitly when the database is dropped, so a store this
        // process closed can be opened again at once, even while a child process forked
        // by another thread still holds a copy of the file's descriptor.
        let db = file::open_verified(&options, path, |builder| builder.open(path))
            .or_store("open", path)?;
        Self::from_database(Db::ReadWrite(db), path.to_path_buf(), options)
    }

    /// Opens the existing store at `path` for reading only, with the default
    /// [`RedbOptions`].
    ///
    /// Nothing is written: the file is opened read-only (so this works on a read-only
    /// file or mount), nothing is created or repaired. A file that was not closed
    /// cleanly, which redb must repair before reading it, is copied into a scratch
    /// directory under `$TMPDIR` and the copy is repaired and read (see
    /// [`persister_core::scratch`]). Other read-only opens
    /// may share the file; a process that has it open for writing makes this fail with
    /// [`Error::Locked`]. Every write through the store or its handles fails with
    /// [`Error::InvalidInput`]; flushing with nothing written returns 0.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref();
        file::check_magic(path)?;
        let options = RedbOptions::default();
        match file::open_verified(&options, path, |builder| builder.open_read_only(path)) {
            Ok(db) => Self::from_database(Db::ReadOnly(db), path.to_path_buf(), options),
            // Not closed cleanly: redb must repair it before it can be read, which writes.
            // The repair is made on a copy, so the file itself stays untouched.
            Err(redb::DatabaseError::RepairAborted) => Self::open_repaired_copy(path, options),
            Err(err) => Err(from_redb(err, "open", path)),
        }
    }

    /// Opens a copy of `path`, in a scratch directory, for writing (which repairs it),
    /// as a read-only store that names `path` in its messages.
    fn open_repaired_copy(path: &Path, options: RedbOptions) -> Result<RedbStore> {
        let scratch = ScratchDir::new("redb-copy")?;
        let copy = scratch.path().join("store.redb");
        std::fs::copy(path, &copy).map_err(|err| Error::io("copy", path, err))?;
        let db = file::open_verified(&options, &copy, |builder| builder.open(&copy));
        let db = Db::ReadWrite(db.or_store("open", path)?);
        file::check_layout(&db, path)?;
        let mut engine = RedbEngine::new(db, path.to_path_buf(), options);
        engine.read_only = true;
        engine.scratch = Some(scratch);
        Ok(RedbStore {
            inner: EngineStore::new(engine),
        })
    }

    /// Opens the store held by `backend`, initializing it if it is empty: for tests that
    /// inject I/O faults or simulate power loss, and for storage that is not a file.
    ///
    /// `path` is used only in messages. The backend must keep redb's
    /// [`StorageBackend`] contract; locking is whatever the backend implements.
    pub fn open_on_backend(
        backend: impl StorageBackend,
        path: impl Into<PathBuf>,
        options: RedbOptions,
    ) -> Result<RedbStore> {
        let path = path.into();
        let db = file::builder(&options)
            .create_with_backend(backend)
            .or_store("open", &path)?;
        Self::from_database(Db::ReadWrite(db), path, options)
    }

    fn from_database(db: Db, path: PathBuf, options: RedbOptions) -> Result<RedbStore> {
        file::check_layout(&db, &path)?;
        Ok(RedbStore {
            inner: EngineStore::new(RedbEngine::new(db, path, options)),
        })
    }

    /// The path of the file (or, with [`RedbStore::open_on_backend`], the path given for
    /// messages).
    pub fn path(&self) -> &Path {
        self.inner.path()
    }
}

persister_core::forward_store!(RedbStore, inner, RedbPersister);
