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
    // The torn tail is found and cut at the close, so the record vouches for it.
    FsStore::open(dir.path())?.close()?;
    assert_eq!(fs::metadata(&log)?.len(), len);
    let store = FsStore::open(dir.path())?;
    assert_eq!(store.open_document(&"a".into())?.get_changes()?.len(), 2);
    assert!(store.recovered().is_empty());
    Ok(())
}
