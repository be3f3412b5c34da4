//! The conformance suite, on the real file system and on the simulated one, with
//! `fail_next_flush` making the next `fdatasync` fail so the poisoning cases run.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use persister_core::Result;
use persister_core::conformance::Fixture;

use crate::io::{FileKey, Fs, FsFile, FsLock, OsFs, SyncFailures};
use crate::sim::SimFs;
use crate::{FsOptions, FsStore};

/// The operating system's file system, with a switch that fails the next sync, and
/// what another process does just before this one takes a store's lock.
#[derive(Debug, Default)]
pub(super) struct FaultyFs {
    fail_next_sync: Arc<AtomicBool>,
    /// Run with the lock file's path before each exclusive lock is taken.
    pub(super) before_lock: Option<fn(&Path)>,
    /// Its own notes of failed syncs, so that tests do not see each other's (the
    /// injected failures drop no pages).
    sync_failures: SyncFailures,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn FsFile>,
    fail_next_sync: Arc<AtomicBool>,
}

impl FaultyFs {
    /// Makes the next sync of a file fail.
    pub(super) fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// The logs a store noted as failed to sync through this file system.
    pub(super) fn failures(&self) -> &SyncFailures {
        &self.sync_failures
    }

    fn wrap(&self, inner: Box<dyn FsFile>) -> Box<dyn FsFile> {
        Box::new(FaultyFile {
            inner,
            fail_next_sync: Arc::clone(&self.fail_next_sync),
        })
    }
}

impl Fs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.read_dir(dir)
    }
    fn for_each_name(
        &self,
        dir: &Path,
        f: &mut dyn FnMut(String) -> io::Result<()>,
    ) -> io::Result<()> {
        OsFs.for_each_name(dir, f)
    }
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        OsFs.read_prefix(path, max)
    }
    fn open(&self, path: &Path, write: bool) -> io::Result<Box<dyn FsFile>> {
        OsFs.open(path, write).map(|file| self.wrap(file))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        OsFs.create(path).map(|file| self.wrap(file))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        if let Some(before_lock) = self.before_lock {
            before_lock(path);
        }
        OsFs.try_lock(path)
    }
    fn try_lock_shared(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        OsFs.try_lock_shared(path)
    }
    fn dir_key(&self, dir: &Path) -> io::Result<FileKey> {
        OsFs.dir_key(dir)
    }
    fn sync_failures(&self) -> &SyncFailures {
        &self.sync_failures
    }
}

impl FsFile for FaultyFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.inner.sync_data()
    }
}

/// A store in a temporary directory on the real file system.
mod os {
    use super::*;

    pub(super) struct OsFixture {
        dir: tempfile::TempDir,
        fs: Arc<FaultyFs>,
    }

    impl Fixture for OsFixture {
        type Store = FsStore;

        fn open(&self) -> Result<FsStore> {
            FsStore::open_on(self.fs.clone(), self.dir.path(), FsOptions::default())
        }

        fn fail_next_flush(&self, _store: &FsStore) {
            self.fs.fail_next_sync.store(true, Ordering::SeqCst);
        }
    }

    pub(super) fn fixture() -> OsFixture {
        match tempfile::tempdir() {
            Ok(dir) => OsFixture {
                dir,
                fs: Arc::default(),
            },
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        }
    }

    persister_core::conformance_tests!(fixture());
}

/// A store on the simulated file system, reopened without a crash; small rewrite
/// thresholds so the cases also run through log rewrites.
mod sim {
    use super::*;

    pub(super) struct SimFixture {
        fs: SimFs,
    }

    impl Fixture for SimFixture {
        type Store = FsStore;

        fn open(&self) -> Result<FsStore> {
            let options = FsOptions::default().with_rewrite_min_len(4096);
            FsStore::open_on(Arc::new(self.fs.clone()), Path::new("/sim/store"), options)
        }

        fn fail_next_flush(&self, _store: &FsStore) {
            self.fs.fail_next_sync();
        }
    }

    pub(super) fn fixture() -> SimFixture {
        SimFixture { fs: SimFs::new() }
    }

    persister_core::conformance_tests!(fixture());
}
