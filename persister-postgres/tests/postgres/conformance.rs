//! The whole conformance suite, each case in a fresh schema of the shared server.

use persister_core::Result;
use persister_core::conformance::Fixture;
use persister_postgres::{PostgresOptions, PostgresStore};

use crate::cluster::{fresh_schema, server};

struct PgFixture {
    url: String,
    schema: String,
}

impl Fixture for PgFixture {
    type Store = PostgresStore;

    fn open(&self) -> Result<PostgresStore> {
        PostgresStore::open_with(
            &self.url,
            PostgresOptions::default().schema(self.schema.clone()),
        )
    }

    fn fail_next_flush(&self, store: &PostgresStore) {
        store.fail_next_flush();
    }
}

fn fixture() -> PgFixture {
    PgFixture {
        url: server().url(),
        schema: fresh_schema(),
    }
}

persister_core::conformance_tests!(fixture());
