//! One fault-injection style on every disk backend: with each crate's `fault-injection`
//! feature, `fail_next_flush_with` makes the next flush fail as the disk would report
//! it. The flush returns an error that says what happened, the handle is poisoned, and
//! after a reopen the document holds everything flushed before, at a prefix of its
//! batches, and takes writes again.

use std::io;

use persister_core::{ActorId, Error, Persister, Result, Store};
use persister_fs::FsStore;
use persister_redb::RedbStore;
use persister_sled::SledStore;

/// Runs the case on one backend: `open` opens (or reopens) the store, `fail` arms its
/// fault.
fn failed_flush_poisons_and_loses_nothing_flushed<S: Store>(
    name: &str,
    open: impl Fn() -> Result<S>,
    fail: impl Fn(&S, io::Error),
) -> Result<()> {
    let actor = ActorId::new([7]);
    for (errno, words) in [
        (28, "the disk is full"),
        (30, "the file system is read-only"),
    ] {
        let id = format!("doc-{errno}").into();
        {
            let store = open()?;
            let mut doc = store.open_document(&id)?;
            doc.insert_changes(vec![(actor.clone(), 1, b"flushed".to_vec())])?;
            assert!(doc.flush()? > 0, "{name}");
            doc.insert_changes(vec![(actor.clone(), 2, b"not flushed".to_vec())])?;
            fail(&store, io::Error::from_raw_os_error(errno));
            let err = doc.flush().expect_err("the flush must fail");
            assert!(matches!(err, Error::Io { .. }), "{name}: {err:?}");
            assert!(err.to_string().contains(words), "{name}: {err}");
            let again = doc.insert_changes(vec![(actor.clone(), 3, b"later".to_vec())]);
            assert!(
                matches!(again, Err(Error::Poisoned { .. })),
                "{name}: {again:?}"
            );
            assert!(matches!(doc.flush(), Err(Error::Poisoned { .. })), "{name}");
            // Reads still work, and see what the handle wrote.
            assert_eq!(doc.get_changes()?.len(), 2, "{name}");
        }
        // Reopened: everything flushed before, and the failed batch whole or not at all.
        let store = open()?;
        let mut doc = store.open_document(&id)?;
        let changes = doc.get_changes()?;
        let flushed = [b"flushed".to_vec()];
        let both = [b"flushed".to_vec(), b"not flushed".to_vec()];
        assert!(changes == flushed || changes == both, "{name}: {changes:?}");
        doc.insert_changes(vec![(actor.clone(), 3, b"after".to_vec())])?;
        assert!(doc.flush()? > 0, "{name}");
        drop(doc);
        store.close()?;
    }
    Ok(())
}

#[test]
fn every_disk_backend_injects_a_failed_flush_the_same_way() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))?;
    let at = |name: &str| dir.path().join(name);
    let redb = at("store.redb");
    failed_flush_poisons_and_loses_nothing_flushed(
        "redb",
        || RedbStore::open(&redb),
        RedbStore::fail_next_flush_with,
    )?;
    let sled = at("sled");
    failed_flush_poisons_and_loses_nothing_flushed(
        "sled",
        || SledStore::open(&sled),
        SledStore::fail_next_flush_with,
    )?;
    let fs = at("fs");
    failed_flush_poisons_and_loses_nothing_flushed(
        "fs",
        || FsStore::open(&fs),
        FsStore::fail_next_flush_with,
    )?;
    Ok(())
}
