//! The shared conformance suite: on a real file behind a backend that can fail the next
//! `sync_data`, so that the poisoning cases run there (a store on a backend has no
//! commit log); and on stores opened as applications open them, with the commit log,
//! where the poisoning cases use the store's `fail_next_flush`.

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

/// Stores opened with [`RedbStore::open_with`], as applications open them: commits go
/// through the commit log, small ones wait to reach redb, and every reopen goes through
/// a clean close (or, after a failed flush, a replay of the log).
mod logged {
    use super::*;

    pub struct LoggedFixture {
        dir: TempDir,
        options: RedbOptions,
    }

    impl Fixture for LoggedFixture {
        type Store = RedbStore;

        fn open(&self) -> Result<RedbStore> {
            RedbStore::open_with(self.dir.path().join("store.redb"), self.options.clone())
        }

        fn fail_next_flush(&self, store: &RedbStore) {
            store.fail_next_flush();
        }
    }

    pub fn fixture() -> LoggedFixture {
        LoggedFixture {
            dir: temp_dir(),
            options: RedbOptions::default(),
        }
    }

    persister_core::conformance_tests!(fixture());

    /// The same with a commit log of at most 4 KiB, so that the cases also run
    /// through checkpoints.
    mod checkpointed {
        use super::*;

        pub fn fixture() -> LoggedFixture {
            LoggedFixture {
                dir: temp_dir(),
                options: RedbOptions::default().checkpoint_log_bytes(4096),
            }
        }

        persister_core::conformance_tests!(fixture());
    }
}
