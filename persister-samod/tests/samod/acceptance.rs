//! automerge-repo's storage adapter acceptance suite, ported, on every backend; and on
//! samod's own in-memory storage, which shows the suite expects only what samod does.

mod memory {
    persister_samod::acceptance_tests!(crate::support::fresh(crate::support::named("memory")));
}

mod redb {
    persister_samod::acceptance_tests!(crate::support::fresh(crate::support::named("redb")));
}

mod fs {
    persister_samod::acceptance_tests!(crate::support::fresh(crate::support::named("fs")));
}

mod sled {
    persister_samod::acceptance_tests!(crate::support::fresh(crate::support::named("sled")));
}

mod samod_in_memory {
    persister_samod::acceptance_tests!((samod::storage::InMemoryStorage::new(), ()));
}
