//! The shared conformance suite, twice: on a plain file, and on a backend that can fail
//! the next `sync_data` so that the poisoning cases run.

use std::path::PathBuf;
use std::sync::Arc;

use persister_core::Result;
use persister_core::conformance::Fixture;
use persister_redb::{RedbOptions, RedbStore};
use tempfile::TempDir;

use crate::backends::{FaultControl, open_faulty};

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A store in a fresh directory; reopening is opening the same path again.
pub struct FileFixture {
    dir: TempDir,
}

impl FileFixture {
    pub fn new() -> Self {
        Self { dir: temp_dir() }
    }
}

impl Fixture for FileFixture {
    type Store = RedbStore;

    fn open(&self) -> Result<RedbStore> {
        RedbStore::open(self.dir.path().join("store.redb"))
    }
}

/// The same, opened through a [`FaultBackend`] over the file.
pub struct FaultFixture {
    dir: TempDir,
    control: Arc<FaultControl>,
}

impl FaultFixture {
    pub fn new() -> Self {
        Self {
            dir: temp_dir(),
            control: Arc::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store.redb")
    }
}

impl Fixture for FaultFixture {
    type Store = RedbStore;

    fn open(&self) -> Result<RedbStore> {
        let path = self.path();
        if !path.exists() {
            drop(RedbStore::open(&path)?);
        }
        open_faulty(&path, &self.control, RedbOptions::default())
    }

    fn fail_next_flush(&self, _store: &RedbStore) -> bool {
        self.control.fail_next_sync();
        true
    }
}

mod on_file {
    persister_core::conformance_tests!(super::FileFixture::new());
}

mod on_fault_backend {
    persister_core::conformance_tests!(super::FaultFixture::new());
}
