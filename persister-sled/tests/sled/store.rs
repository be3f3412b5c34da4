//! The store's own behaviour: locking, formats, what it refuses to open, the mark file.

use std::path::Path;

use persister_core::{ActorId, Error, Persister, Result, Store};
use persister_sled::{FORMAT_VERSION, SledOptions, SledStore, is_sled_store};
use persister_testkit::Contents;

use crate::child;
use crate::raw::{copy_dir, open_raw};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Writes one flushed document `doc` holding `value`.
fn write(store: &SledStore, doc: &str, value: &[u8]) -> Result<()> {
    let mut p = store.open_document(&doc.into())?;
    p.insert_changes(vec![(ActorId::new([1]), 1, value.to_vec())])?;
    p.set_document(value.to_vec())?;
    p.flush()?;
    Ok(())
}

/// The child side of `second_process_is_refused_with_locked`: reports how opening went.
pub fn try_open(dir: &Path) {
    match SledStore::open(dir) {
        Ok(_) => println!("RESULT opened"),
        Err(Error::Locked { path }) => println!("RESULT locked {}", path.display()),
        Err(e) => println!("RESULT error {e}"),
    }
}

#[test]
fn second_process_is_refused_with_locked() -> Result<()> {
    let dir = tempdir();
    let path = dir.path().join("store");
    let store = SledStore::open(&path)?;
    let output = child::command("try-open", &path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|l| Some(l.split_once("RESULT ")?.1))
        .unwrap_or("nothing");
    assert_eq!(result, format!("locked {}", path.display()), "{stdout}");
    drop(store);

    // Once the store is closed, the child opens it.
    let output = child::command("try-open", &path)
        .output()
        .expect("run the child");
    assert!(String::from_utf8_lossy(&output.stdout).contains("RESULT opened"));
    Ok(())
}

#[test]
fn second_open_in_the_same_process_is_refused_with_locked() -> Result<()> {
    let dir = tempdir();
    let store = SledStore::open(dir.path())?;
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    // A handle keeps the database open after its store is dropped.
    let handle = store.open_document(&"doc".into())?;
    drop(store);
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    drop(handle);
    SledStore::open(dir.path())?;
    Ok(())
}

#[test]
fn options_are_applied_and_path_is_kept() -> Result<()> {
    let dir = tempdir();
    let mut options = SledOptions::default();
    options.flush_every_ms = Some(50);
    options.cache_capacity = 4 * 1024 * 1024;
    options.high_throughput = true;
    let store = SledStore::open_with(dir.path(), options)?;
    assert_eq!(store.path(), dir.path());
    write(&store, "doc", b"value")?;
    drop(store);
    let store = SledStore::open(dir.path())?;
    let p = store.open_document(&"doc".into())?;
    assert_eq!(p.get_document()?, Some(b"value".to_vec()));
    Ok(())
}

#[test]
fn options_sled_cannot_run_with_are_refused() {
    let dir = tempdir();
    let mut tiny_cache = SledOptions::default();
    tiny_cache.cache_capacity = 255;
    let mut spinning = SledOptions::default();
    spinning.flush_every_ms = Some(0);
    for options in [tiny_cache, spinning] {
        let err = SledStore::open_with(dir.path(), options).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    }
    assert!(!is_sled_store(dir.path()), "a refused open created files");
}

#[test]
fn sled_stores_are_recognised() -> Result<()> {
    let dir = tempdir();
    let path = dir.path().join("store");
    assert!(!is_sled_store(&path));
    drop(SledStore::open(&path)?);
    assert!(is_sled_store(&path));
    assert!(!is_sled_store(dir.path()));
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(!is_sled_store(&file));
    Ok(())
}

#[test]
fn unknown_format_version_is_refused_naming_both() -> Result<()> {
    let dir = tempdir();
    assert_eq!(SledStore::open(dir.path())?.format_version(), Some(1));
    let db = open_raw(dir.path());
    let mut value = b"PSLEDFMT".to_vec();
    value.extend_from_slice(&2u32.to_be_bytes());
    value.extend_from_slice(&crc32c::crc32c(&value).to_be_bytes());
    db.insert(b"\x00format", value).unwrap();
    drop(db);
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(FORMAT_VERSION, 1);
    assert!(err.to_string().contains("version 2") && err.to_string().contains("version 1"));
    Ok(())
}

#[test]
fn foreign_sled_database_is_not_a_store() {
    // Laid out as automerge-persistent-sled does: raw prefix, actor, seq.
    let dir = tempdir();
    let db = open_raw(dir.path());
    db.insert(b"doc1\x01\x02\x03", b"change".to_vec()).unwrap();
    drop(db);
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    // Nothing in this workspace imports that layout: the error must not send the user
    // looking for an import.
    let message = err.to_string();
    assert!(!message.contains("import"), "{message}");
    assert!(message.contains("automerge-persistent-sled"), "{message}");
    // Nothing was written: sled still holds only the foreign key.
    let db = open_raw(dir.path());
    assert_eq!(db.len(), 1);
}

#[test]
fn files_and_foreign_directories_are_not_stores() {
    let dir = tempdir();
    let file = dir.path().join("a.redb");
    std::fs::write(&file, b"not sled").unwrap();
    assert!(matches!(
        SledStore::open(&file),
        Err(Error::NotAStore { .. })
    ));
    let other = dir.path().join("fs-store");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("log"), b"other backend").unwrap();
    assert!(matches!(
        SledStore::open(&other),
        Err(Error::NotAStore { .. })
    ));
    assert!(
        !other.join("db").exists(),
        "sled created files in a foreign directory"
    );
}

/// sled's files from an earlier flush put back under a later mark: the flushed batches
/// since are gone, and opening says so.
#[test]
fn store_that_lost_flushed_batches_is_refused() -> Result<()> {
    let dir = tempdir();
    let (live, backup) = (dir.path().join("live"), dir.path().join("backup"));
    let store = SledStore::open(&live)?;
    write(&store, "doc", b"first")?;
    drop(store);
    copy_dir(&live, &backup);
    let store = SledStore::open(&live)?;
    write(&store, "doc2", b"second")?;
    drop(store);
    std::fs::copy(
        live.join("persister-sled.mark"),
        backup.join("persister-sled.mark"),
    )
    .unwrap();
    let err = SledStore::open(&backup).unwrap_err();
    assert!(
        err.is_corrupt() && err.to_string().contains("lost flushed data"),
        "{err}"
    );

    // The same files with their own mark open fine.
    std::fs::remove_dir_all(&backup).unwrap();
    copy_dir(&live, &backup);
    let store = SledStore::open(&backup)?;
    assert_eq!(store.list_documents()?.len(), 2);
    Ok(())
}

#[test]
fn missing_mark_file_is_refused_once_anything_was_written() -> Result<()> {
    let dir = tempdir();
    // Before any batch, a lost mark is recreated (creation may have stopped there).
    drop(SledStore::open(dir.path())?);
    std::fs::remove_file(dir.path().join("persister-sled.mark")).unwrap();
    let store = SledStore::open(dir.path())?;
    write(&store, "doc", b"x")?;
    drop(store);
    std::fs::remove_file(dir.path().join("persister-sled.mark")).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    Ok(())
}

/// A document with a large value goes through sled's blob files, which the flush syncs.
#[test]
fn large_values_round_trip_through_blob_files() -> Result<()> {
    let dir = tempdir();
    let store = SledStore::open(dir.path())?;
    let mut p = store.open_document(&"big".into())?;
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    p.set_document(big.clone())?;
    p.insert_changes(vec![(ActorId::new([9]), 1, big[..300_000].to_vec())])?;
    assert!(p.flush()? >= big.len());
    drop((p, store));
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert!(blobs > 0, "sled kept the large values in its log");
    let store = SledStore::open(dir.path())?;
    let p = store.open_document(&"big".into())?;
    let contents = Contents::read(&p)?;
    assert_eq!(contents.document, Some(big.clone()));
    assert_eq!(contents.changes[0].2, big[..300_000]);
    Ok(())
}

#[test]
fn a_full_disk_or_read_only_file_system_at_flush_is_a_clear_error_and_loses_nothing_flushed()
-> Result<()> {
    // The sled engine itself may hang on a really full disk (see the crate docs), so
    // the errors come from the fault double, as the disk reports them.
    for (errno, words) in [
        (28, "the disk is full"),
        (30, "the file system is read-only"),
    ] {
        let dir = tempdir();
        let actor = ActorId::new([1]);
        {
            let store = SledStore::open(dir.path())?;
            let mut doc = store.open_document(&"doc".into())?;
            doc.insert_changes(vec![(actor.clone(), 1, b"flushed".to_vec())])?;
            doc.flush()?;
            doc.insert_changes(vec![(actor.clone(), 2, b"not flushed".to_vec())])?;
            store.fail_next_flush_with(std::io::Error::from_raw_os_error(errno));
            let err = doc.flush().expect_err("the flush must fail");
            let message = err.to_string();
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            assert!(message.contains(words), "{message}");
            let dir_name = dir.path().display().to_string();
            assert!(message.contains(&dir_name), "names the store: {message}");
            // Poisoned: nothing more is accepted until the store is reopened.
            let again = doc.insert_changes(vec![(actor.clone(), 3, b"later".to_vec())]);
            assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
            assert!(matches!(doc.flush(), Err(Error::Poisoned { .. })));
        }
        // Space freed (or remounted): everything flushed before the error is there, and
        // the store takes writes again.
        let store = SledStore::open(dir.path())?;
        let mut doc = store.open_document(&"doc".into())?;
        let changes = doc.get_change_entries()?;
        assert_eq!(
            changes.first(),
            Some(&(actor.clone(), 1, b"flushed".to_vec()))
        );
        assert!(changes.len() <= 2, "a prefix of the batches: {changes:?}");
        doc.insert_changes(vec![(actor.clone(), 4, b"after".to_vec())])?;
        doc.close()?;
    }
    Ok(())
}
