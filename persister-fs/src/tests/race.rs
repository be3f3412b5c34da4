//! Two processes opening one empty directory at once: the second to take the lock
//! finds the store the first made, and never writes its own marker over it.

use std::path::Path;
use std::sync::Arc;

use persister_core::Error;

use super::conformance::FaultyFs;
use crate::format::encode_marker;
use crate::names::MARKER;
use crate::{FsOptions, FsStore};

/// What another process does just before this one takes the lock: it makes a store of
/// a later build's format (version 9) in the directory.
fn another_build_makes_the_store(lock: &Path) {
    if let Some(dir) = lock.parent() {
        std::fs::write(dir.join(MARKER), encode_marker(9)).expect("the other marker");
    }
}

#[test]
fn a_store_made_while_this_open_waited_for_the_lock_is_read_not_overwritten() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = dir.path().join("store");
    let mut fs = FaultyFs::default();
    fs.before_lock = Some(another_build_makes_the_store);
    let opened = FsStore::open_on(Arc::new(fs), &store, FsOptions::default());
    assert!(
        matches!(opened, Err(Error::UnsupportedFormat { found: 9, .. })),
        "{:?}",
        opened.map(|_| ())
    );
    let marker = std::fs::read(store.join(MARKER)).expect("the marker");
    assert_eq!(
        marker,
        encode_marker(9),
        "the other build's marker was replaced"
    );
}
