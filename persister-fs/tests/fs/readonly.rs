//! Read-only opens: nothing created, written, cut or removed; a torn tail reported.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use persister_core::{DocumentId, Error, Persister, Store};
use persister_fs::FsStore;

use crate::common::{TestResult, actor, flushed_log};

/// Every name in `dir` with its bytes, mode and modification time, and the directory's.
type Snapshot = BTreeMap<String, (Vec<u8>, u32, SystemTime)>;

fn snapshot(dir: &Path) -> TestResult<Snapshot> {
    let mut out = Snapshot::new();
    let meta = fs::metadata(dir)?;
    out.insert(
        ".".into(),
        (Vec::new(), meta.permissions().mode(), meta.modified()?),
    );
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.insert(
            name,
            (
                fs::read(entry.path())?,
                meta.permissions().mode(),
                meta.modified()?,
            ),
        );
    }
    Ok(out)
}

fn set_modes(dir: &Path, dir_mode: u32, file_mode: u32) -> TestResult {
    for entry in fs::read_dir(dir)? {
        fs::set_permissions(entry?.path(), fs::Permissions::from_mode(file_mode))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode))?;
    Ok(())
}

fn read_only_error(err: &Error) -> bool {
    matches!(err, Error::InvalidInput { reason, .. } if reason.contains("read-only"))
}

#[test]
fn read_only_open_changes_no_byte_and_reports_a_torn_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (a, b) = (DocumentId::from("a"), DocumentId::from("b"));
    flushed_log(dir.path(), &a, 3)?;
    let b_log = flushed_log(dir.path(), &b, 2)?;
    // A crash after a torn write to b's log, and a leftover temporary file.
    fs::remove_file(dir.path().join("CLOSED"))?;
    let clean_len = fs::metadata(&b_log)?.len();
    OpenOptions::new()
        .append(true)
        .open(&b_log)?
        .write_all(&[1, 200, 0, 0, 0, 0, 0, 0, 0, 9, 9])?;
    fs::write(dir.path().join("d63.log.tmp"), b"an interrupted creation")?;
    set_modes(dir.path(), 0o555, 0o444)?;
    let before = snapshot(dir.path())?;

    let store = FsStore::open_read_only(dir.path())?;
    assert!(store.is_read_only());
    // Read-only opens do not block each other; a writer is locked out meanwhile.
    let second = FsStore::open_read_only(dir.path())?;
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    assert_eq!(store.list_documents()?, vec![a.clone(), b.clone()]);
    let mut pa = store.open_document(&a)?;
    assert_eq!(pa.get_changes()?.len(), 3);
    let pb = store.open_document(&b)?;
    assert_eq!(pb.get_changes()?.len(), 2);
    assert_eq!(pb.recovery().truncated_at, None);
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(
        (
            &reported[0].document,
            reported[0].offset,
            reported[0].bytes,
            reported[0].truncated
        ),
        (&Some(b.clone()), clean_len, 11, false)
    );
    // Writes fail with a clear error; a flush with nothing to write is fine.
    let err = pa
        .insert_changes(vec![(actor(1), 9, b"no".to_vec())])
        .unwrap_err();
    assert!(read_only_error(&err), "{err}");
    assert_eq!(pa.flush()?, 0);
    let err = store.remove_document(&a).unwrap_err();
    assert!(read_only_error(&err), "{err}");
    assert!(
        store
            .open_document(&"new".into())?
            .set_document(b"x".to_vec())
            .is_err()
    );
    drop((pa, pb, second));
    store.close()?;

    assert_eq!(
        snapshot(dir.path())?,
        before,
        "the read-only open changed the directory"
    );
    set_modes(dir.path(), 0o700, 0o600)?;
    // A writer then cuts the tail, as it should.
    let store = FsStore::open(dir.path())?;
    store.open_document(&b)?;
    assert!(store.recovered()[0].truncated);
    Ok(())
}

/// A read-only store cannot cut a torn tail, so every handle of the document finds it
/// again: the store still reports the one tail once, not once per handle (which would
/// double the bytes it says were left out).
#[test]
fn a_torn_tail_found_again_by_a_later_handle_is_reported_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = DocumentId::from("b");
    let b_log = flushed_log(dir.path(), &b, 2)?;
    fs::remove_file(dir.path().join("CLOSED"))?;
    let clean_len = fs::metadata(&b_log)?.len();
    OpenOptions::new()
        .append(true)
        .open(&b_log)?
        .write_all(&[1, 200, 0, 0, 0, 0, 0, 0, 0, 9, 9])?;
    let store = FsStore::open_read_only(dir.path())?;
    for _ in 0..3 {
        let p = store.open_document(&b)?;
        assert_eq!(p.recovered_bytes(), 11);
        assert_eq!(p.get_changes()?.len(), 2);
    }
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(
        (reported[0].offset, reported[0].bytes, reported[0].truncated),
        (clean_len, 11, false)
    );
    Ok(())
}

#[test]
fn read_only_open_is_locked_out_by_a_writer_and_needs_no_lock_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    flushed_log(dir.path(), &"a".into(), 1)?;
    let writer = FsStore::open(dir.path())?;
    let err = FsStore::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Locked { path } if path == dir.path()),
        "{err}"
    );
    drop(writer);
    // A copy of a store without its lock file opens read-only, and gets none.
    fs::remove_file(dir.path().join("LOCK"))?;
    let store = FsStore::open_read_only(dir.path())?;
    assert_eq!(store.open_document(&"a".into())?.get_changes()?.len(), 1);
    drop(store);
    assert!(!dir.path().join("LOCK").exists());
    Ok(())
}

#[test]
fn read_only_open_of_a_directory_that_is_no_store_creates_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty");
    fs::create_dir(&empty)?;
    let err = FsStore::open_read_only(&empty).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert_eq!(fs::read_dir(&empty)?.count(), 0);
    let missing = dir.path().join("missing");
    assert!(FsStore::open_read_only(&missing).is_err());
    assert!(!missing.exists());
    Ok(())
}
