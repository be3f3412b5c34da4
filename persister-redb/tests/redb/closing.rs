//! Closing a store checked (`Store::close`): it reports what went wrong, including a
//! failed sync that poisoned the store, whether or not the store has a commit log.

use persister_core::{Error, Persister, Result, Store};
use persister_redb::RedbOptions;

use crate::pending::{change, new_faulty_store};

/// A store without a commit log (on a backend, as a store of layout 1 is) whose flush
/// failed to sync: a checked close must not report success. A store with a log reports
/// the same failure as `Poisoned`; the file's own state is for the next open to repair.
#[test]
fn closing_a_store_whose_sync_failed_reports_it() -> Result<()> {
    let (_dir, _path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut doc = store.open_document(&"doc".into())?;
    doc.apply(change(1, 10))?;
    doc.flush()?;
    doc.apply(change(2, 10))?;
    control.fail_next_sync();
    let failed = doc.flush();
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    drop(doc);
    let closed = store.close();
    assert!(
        closed.is_err(),
        "a checked close after a failed sync gave {closed:?}"
    );
    Ok(())
}

/// redb's own close writes its allocator state and a clean-shutdown header and syncs
/// them: a checked close whose sync fails reports it, rather than call the file closed
/// cleanly. Every flush before it stays: the next open repairs the file and finds them.
#[test]
fn closing_reports_a_failure_of_redb_s_own_close() -> Result<()> {
    let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut doc = store.open_document(&"doc".into())?;
    doc.apply(change(1, 10))?;
    doc.flush()?;
    drop(doc);
    let syncs = control.syncs();
    control.fail_next_sync();
    let closed = store.close();
    assert!(
        control.syncs() > syncs,
        "redb's close did not sync, so this test shows nothing"
    );
    assert!(matches!(closed, Err(Error::Io { .. })), "{closed:?}");
    let store = persister_redb::RedbStore::open(&path)?;
    let doc = store.open_document(&"doc".into())?;
    assert_eq!(doc.get_changes()?, vec![vec![1; 10]]);
    Ok(())
}
