//! The directory: file names, permissions, the marker, and what opening does to it.

use std::collections::BTreeSet;
use std::fs;

use persister_core::{DocumentId, Error, MAX_DOCUMENT_ID_LEN, Persister, Store};
use persister_fs::{FsStore, is_fs_store};

use crate::common::{TestResult, flushed_log};

fn names(dir: &std::path::Path) -> std::io::Result<BTreeSet<String>> {
    fs::read_dir(dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect()
}

#[test]
fn ids_become_lowercase_hex_or_hash_names_inside_the_store() -> TestResult {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("store");
    let long_a = DocumentId::from(vec![b'x'; MAX_DOCUMENT_ID_LEN]);
    let mut long_b = vec![b'x'; MAX_DOCUMENT_ID_LEN];
    long_b[MAX_DOCUMENT_ID_LEN - 1] = b'y';
    let long_b = DocumentId::from(long_b);
    let ids = [
        DocumentId::from(""),
        DocumentId::from("A"),
        DocumentId::from("a"),
        DocumentId::from("../x"),
        DocumentId::from(vec![0xff]),
        long_a.clone(),
        long_b.clone(),
    ];
    {
        let store = FsStore::open(&dir)?;
        for (i, id) in ids.iter().enumerate() {
            let mut p = store.open_document(id)?;
            p.set_document(vec![i as u8])?;
            p.flush()?;
        }
    }
    let found = names(&dir)?;
    for expected in [
        "STORE",
        "LOCK",
        "d.log",
        "d41.log",
        "d61.log",
        "d2e2e2f78.log",
        "dff.log",
    ] {
        assert!(
            found.contains(expected),
            "{expected} missing from {found:?}"
        );
    }
    let hashed: Vec<_> = found.iter().filter(|n| n.starts_with('h')).collect();
    assert_eq!(hashed.len(), 2, "{found:?}");
    // Seven logs, the marker, the lock and the clean-close record.
    assert!(found.contains("CLOSED"), "{found:?}");
    assert_eq!(found.len(), 10, "{found:?}");
    for name in &found {
        assert!(name.len() <= 255);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'-')
                || name == "STORE"
                || name == "LOCK"
                || name == "CLOSED",
            "{name}"
        );
    }
    assert_eq!(names(parent.path())?, BTreeSet::from(["store".to_string()]));

    let store = FsStore::open(&dir)?;
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(store.list_documents()?, expected);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.open_document(id)?.get_document()?,
            Some(vec![i as u8])
        );
    }
    Ok(())
}

#[cfg(unix)]
#[test]
fn store_directory_is_0700_and_files_are_0600() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("new").join("store");
    flushed_log(&dir, &"doc".into(), 2)?;
    let mode = |path: &std::path::Path| -> std::io::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&dir)?, 0o700);
    assert_eq!(mode(&parent.path().join("new"))?, 0o700);
    for name in names(&dir)? {
        assert_eq!(mode(&dir.join(&name))?, 0o600, "{name}");
    }
    Ok(())
}

#[test]
fn marker_identifies_the_store() -> TestResult {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("store");
    assert!(!is_fs_store(&dir));
    fs::create_dir(&dir)?;
    assert!(!is_fs_store(&dir), "an empty directory is not a store");
    let store = FsStore::open(&dir)?;
    assert_eq!(store.path(), dir);
    assert!(is_fs_store(&dir));
    assert!(!is_fs_store(parent.path()));
    Ok(())
}

#[test]
fn directory_of_other_files_is_not_made_a_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("notes.txt"), b"mine")?;
    let err = FsStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert_eq!(
        names(dir.path())?,
        BTreeSet::from(["notes.txt".to_string()])
    );
    assert!(!is_fs_store(dir.path()));
    Ok(())
}

#[test]
fn opening_removes_leftover_temporary_files_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    flushed_log(dir.path(), &"a".into(), 2)?;
    fs::write(dir.path().join("d61.log.tmp"), b"an interrupted rewrite")?;
    fs::write(dir.path().join("d62.log.tmp"), b"an interrupted creation")?;
    fs::write(dir.path().join("README"), b"not ours")?;
    let store = FsStore::open(dir.path())?;
    let found = names(dir.path())?;
    assert!(!found.iter().any(|n| n.ends_with(".tmp")), "{found:?}");
    assert!(found.contains("README"));
    assert_eq!(store.list_documents()?, vec![DocumentId::from("a")]);
    assert_eq!(store.open_document(&"a".into())?.get_changes()?.len(), 2);
    Ok(())
}

#[test]
fn unflushed_writes_of_a_dropped_handle_are_discarded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&id)?;
    p.set_document(b"pending".to_vec())?;
    assert!(store.log_path(&id).is_none(), "apply writes nothing");
    assert_eq!(store.list_documents()?, vec![id.clone()]);
    drop(p);
    // Never flushed: the document does not exist.
    assert!(store.list_documents()?.is_empty());
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, None);
    p.set_document(b"flushed".to_vec())?;
    assert!(p.flush()? > 0);
    p.set_document(b"lost".to_vec())?;
    drop(p);
    // The next handle sees exactly the last flush, in this store and after reopening.
    let p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, Some(b"flushed".to_vec()));
    drop((p, store));
    let store = FsStore::open(dir.path())?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, Some(b"flushed".to_vec()));
    assert!(store.recovered().is_empty());
    Ok(())
}

#[test]
fn flush_returns_the_bytes_it_wrote() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FsStore::open(dir.path())?;
    let id = DocumentId::from("doc");
    let mut p = store.open_document(&id)?;
    p.insert_changes(vec![(crate::common::actor(1), 1, vec![0; 1000])])?;
    let first = p.flush()? as u64;
    let log = store.log_path(&id).unwrap();
    assert_eq!(fs::metadata(&log)?.len(), first);
    p.insert_changes(vec![(crate::common::actor(1), 2, vec![0; 10])])?;
    p.insert_changes(vec![(crate::common::actor(1), 3, vec![0; 10])])?;
    let second = p.flush()? as u64;
    assert_eq!(fs::metadata(&log)?.len(), first + second);
    assert_eq!(p.flush()?, 0);
    Ok(())
}

#[cfg(unix)]
#[test]
fn directory_of_files_with_non_utf8_names_is_not_made_a_store() -> TestResult {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // A user's directory whose one file has a Latin-1 name ("café.txt"), as older
    // systems wrote them: it holds other files and no marker, so it is no store.
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join(OsStr::from_bytes(b"caf\xe9.txt")), b"mine")?;
    let opened = FsStore::open(dir.path());
    let made = is_fs_store(dir.path());
    assert!(
        matches!(opened, Err(Error::NotAStore { .. })),
        "{opened:?}; the directory was made a store: {made}"
    );
    assert!(!made);
    Ok(())
}
