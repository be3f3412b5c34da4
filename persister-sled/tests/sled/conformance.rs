//! The shared conformance suite on sled: a fresh directory per case, reopening is
//! opening the same directory again.

use persister_core::Result;
use persister_core::conformance::Fixture;
use persister_sled::SledStore;

struct SledFixture {
    dir: tempfile::TempDir,
}

impl Fixture for SledFixture {
    type Store = SledStore;

    fn open(&self) -> Result<SledStore> {
        SledStore::open(self.dir.path().join("store"))
    }

    fn fail_next_flush(&self, store: &SledStore) {
        store.fail_next_flush();
    }
}

fn fixture() -> SledFixture {
    SledFixture {
        dir: tempfile::tempdir().expect("a temporary directory"),
    }
}

persister_core::conformance_tests!(fixture());
