//! The shared conformance suite, on a real file behind a backend that can fail the next
//! `sync_data`, so that the poisoning cases run.

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

/// A store in a fresh directory, opened through a [`FaultBackend`] over its file (real
/// reads, writes, syncs and locks, and a switch that fails the next sync); reopening is
/// opening the same file again.
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

    fn fail_next_flush(&self, _store: &RedbStore) {
        self.control.fail_next_sync();
    }
}

persister_core::conformance_tests!(FaultFixture::new());
