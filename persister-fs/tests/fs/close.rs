//! Closing: what a drop discards, and the checked close of handles and stores.

use std::fs;

use persister_core::{DocumentId, Error, Persister, Store};
use persister_fs::FsStore;

use crate::common::{TestResult, actor};

#[test]
fn closing_a_handle_flushes_and_reports() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(vec![(actor(1), 1, b"kept".to_vec())])?;
    p.close()?;
    // Released: the document opens again at once.
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?, vec![b"kept".to_vec()]);
    p.insert_changes(vec![(actor(1), 2, b"dropped".to_vec())])?;
    drop(p);
    store.close()?;
    let store = FsStore::open(dir.path())?;
    assert_eq!(
        store.open_document(&id)?.get_changes()?,
        vec![b"kept".to_vec()]
    );
    Ok(())
}

#[test]
fn closing_a_store_with_open_handles_is_refused_and_the_last_handle_closes_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&"doc".into())?;
    p.set_document(b"x".to_vec())?;
    let err = store.close().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { reason, .. } if reason.contains("still open")),
        "{err}"
    );
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    // The handle still works; closing it, the last one, closes the store.
    p.close()?;
    assert!(dir.path().join("CLOSED").exists());
    let store = FsStore::open(dir.path())?;
    assert_eq!(
        store.open_document(&"doc".into())?.get_document()?,
        Some(b"x".to_vec())
    );
    Ok(())
}

#[test]
fn clean_close_record_is_removed_before_the_first_write_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let closed = dir.path().join("CLOSED");
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&"doc".into())?;
    p.set_document(b"x".to_vec())?;
    p.flush()?;
    drop(p);
    assert!(!closed.exists());
    store.close()?;
    let record = fs::read(&closed)?;
    // Opening and reading write nothing, and the record stays as it was.
    let store = FsStore::open(dir.path())?;
    store.open_document(&"doc".into())?.get_document()?;
    drop(store);
    assert_eq!(fs::read(&closed)?, record);
    // The first write removes it; the close writes it again.
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&"doc".into())?;
    p.set_document(b"y".to_vec())?;
    assert!(closed.exists(), "applying writes nothing");
    p.flush()?;
    assert!(!closed.exists());
    drop(p);
    drop(store);
    assert!(closed.exists());
    assert_ne!(fs::read(&closed)?, record);
    Ok(())
}

#[test]
fn a_clean_close_after_a_crash_checks_the_logs_no_handle_opened() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = crate::common::flushed_log(dir.path(), &"a".into(), 2)?;
    let len = fs::metadata(&log)?.len();
    fs::remove_file(dir.path().join("CLOSED"))?;
    let mut bytes = fs::read(&log)?;
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&log, &bytes)?;
    // The torn tail is found at the close, which leaves it, and writes no record that
    // would vouch for the log: cut there, it would be dropped and never reported.
    FsStore::open(dir.path())?.close()?;
    assert!(fs::read(&log)? == bytes, "the close changed the log");
    assert!(!dir.path().join("CLOSED").exists());
    // The next open cuts it and reports it, as after any crash.
    let store = FsStore::open(dir.path())?;
    assert_eq!(store.open_document(&"a".into())?.get_changes()?.len(), 2);
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!((reported[0].offset, reported[0].bytes), (len, 3));
    assert_eq!(fs::metadata(&log)?.len(), len);
    // Whole now, the log is vouched for by the record the close writes.
    store.close()?;
    assert!(dir.path().join("CLOSED").exists());
    let store = FsStore::open(dir.path())?;
    assert_eq!(store.open_document(&"a".into())?.get_changes()?.len(), 2);
    assert!(store.recovered().is_empty());
    Ok(())
}

/// After a crash, a close that opened no document checks the logs, and writes the
/// record when each of them is whole.
#[test]
fn a_clean_close_after_a_crash_vouches_for_whole_logs_no_handle_opened() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = crate::common::flushed_log(dir.path(), &"a".into(), 2)?;
    let closed = dir.path().join("CLOSED");
    fs::remove_file(&closed)?;
    FsStore::open(dir.path())?.close()?;
    assert!(closed.exists());
    // The record vouches for the log exactly: a record cut off its end is an error.
    let len = fs::metadata(&log)?.len();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)?
        .set_len(len - 1)?;
    let store = FsStore::open(dir.path())?;
    assert!(matches!(
        store.open_document(&"a".into()),
        Err(Error::Corrupt { .. })
    ));
    Ok(())
}

/// A cleanly closed store of documents "a" and "b", one change each.
fn closed_store(dir: &std::path::Path) -> TestResult {
    let store = FsStore::open(dir)?;
    for id in ["a", "b"] {
        let mut p = store.open_document(&DocumentId::from(id))?;
        p.insert_changes(vec![(actor(1), 1, id.as_bytes().to_vec())])?;
        p.close()?;
    }
    store.close()?;
    Ok(())
}

#[test]
fn a_log_renamed_after_a_clean_close_is_an_error_when_listed_or_opened() -> TestResult {
    let dir = tempfile::tempdir()?;
    closed_store(dir.path())?;
    // "a" becomes "c": as many logs as the record names, so the store opens.
    fs::rename(dir.path().join("d61.log"), dir.path().join("d63.log"))?;
    let store = FsStore::open(dir.path())?;
    assert!(matches!(store.list_documents(), Err(Error::Corrupt { .. })));
    for id in ["a", "c"] {
        assert!(
            matches!(
                store.open_document(&DocumentId::from(id)),
                Err(Error::Corrupt { .. })
            ),
            "{id}"
        );
    }
    // "b" is exactly as closed.
    let b = store.open_document(&DocumentId::from("b"))?;
    assert_eq!(b.get_changes()?, vec![b"b".to_vec()]);
    Ok(())
}

#[test]
fn a_log_missing_after_a_clean_close_fails_the_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    closed_store(dir.path())?;
    fs::remove_file(dir.path().join("d61.log"))?;
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    Ok(())
}

#[test]
fn documents_not_opened_keep_their_recorded_ends_through_writes_and_removals() -> TestResult {
    let dir = tempfile::tempdir()?;
    closed_store(dir.path())?;
    let store = FsStore::open(dir.path())?;
    // Neither document was opened: one is removed, a new one written (which removes
    // the record from disk), and the close writes a record from what it had.
    store.remove_document(&DocumentId::from("a"))?;
    // Removed, it opens as a new, empty document.
    let a = store.open_document(&DocumentId::from("a"))?;
    assert!(a.get_changes()?.is_empty());
    drop(a);
    let mut c = store.open_document(&DocumentId::from("c"))?;
    c.insert_changes(vec![(actor(1), 1, b"c".to_vec())])?;
    c.close()?;
    assert!(!dir.path().join("CLOSED").exists());
    assert_eq!(
        store.list_documents()?,
        vec![DocumentId::from("b"), DocumentId::from("c")]
    );
    store.close()?;
    assert!(dir.path().join("CLOSED").exists());
    // The new record vouches for "b" exactly: a byte cut off its end (which after a
    // crash would be a torn tail, dropped) is an error.
    let b_log = dir.path().join("d62.log");
    let len = fs::metadata(&b_log)?.len();
    let store = FsStore::open(dir.path())?;
    assert_eq!(
        store.list_documents()?,
        vec![DocumentId::from("b"), DocumentId::from("c")]
    );
    assert_eq!(
        store.open_document(&DocumentId::from("b"))?.get_changes()?,
        vec![b"b".to_vec()]
    );
    drop(store);
    fs::OpenOptions::new()
        .write(true)
        .open(&b_log)?
        .set_len(len - 1)?;
    let store = FsStore::open(dir.path())?;
    assert!(matches!(
        store.open_document(&DocumentId::from("b")),
        Err(Error::Corrupt { .. })
    ));
    Ok(())
}
