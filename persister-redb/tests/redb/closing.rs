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
