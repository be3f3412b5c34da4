//! A full disk (ENOSPC) and a read-only file system (EROFS), through the simulated
//! disk: a clear error naming the path and what to do, a poisoned handle, and every
//! flushed batch there once the disk is usable again. And failed syncs, which drop what
//! they were to write as Linux does: every flush acknowledged before the failure and
//! after reopening the store in the same process survives a power loss.

use std::io;
use std::path::Path;
use std::sync::Arc;

use persister_core::{ActorId, DocumentId, Error, Persister, Result, Store};

use crate::io::Fs;
use crate::sim::{CrashMode, Fault, Rng, SimFs};
use crate::{FsOptions, FsStore, format};

fn open(fs: &SimFs) -> Result<FsStore> {
    FsStore::open_on(
        Arc::new(fs.clone()),
        Path::new("/disk/store"),
        FsOptions::default(),
    )
}

fn change(seq: u64) -> Vec<(ActorId, u64, Vec<u8>)> {
    vec![(ActorId::new([1; 16]), seq, vec![seq as u8; 2000])]
}

/// Flushes change 2 after change 1 while `fault` is on (for a new document too when
/// `new_doc`), checks the error and the poison, then clears the fault and reopens.
fn fault_during_flush(fault: Fault, kind: io::ErrorKind, advice: &str) -> Result<()> {
    let fs = SimFs::new();
    let (id, new_id) = (DocumentId::from("doc"), DocumentId::from("new"));
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.flush()?;
    let mut fresh = store.open_document(&new_id)?;
    fresh.insert_changes(change(1))?;

    fs.set_fault(Some(fault));
    p.insert_changes(change(2))?;
    for (handle, doc) in [(&mut p, &id), (&mut fresh, &new_id)] {
        let err = handle.flush().unwrap_err();
        let message = err.to_string();
        match &err {
            Error::Io { source, path, .. } => {
                assert_eq!(source.kind(), kind, "{message}");
                assert!(path.starts_with("/disk/store"), "{message}");
            }
            other => panic!("{doc}: expected an I/O error, got {other}"),
        }
        assert!(message.contains(advice), "{message}");
        assert!(matches!(handle.flush(), Err(Error::Poisoned { .. })));
        assert!(matches!(
            handle.insert_changes(change(3)),
            Err(Error::Poisoned { .. })
        ));
    }
    drop((p, fresh));
    // The poison stays with the document until the store is reopened.
    let mut again = store.open_document(&id)?;
    assert!(matches!(
        again.insert_changes(change(3)),
        Err(Error::Poisoned { .. })
    ));
    drop(again);
    drop(store);

    // Space freed, or the file system remounted read-write.
    fs.set_fault(None);
    let store = open(&fs)?;
    assert_eq!(store.list_documents()?, vec![id.clone()]);
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?, vec![vec![1; 2000]]);
    p.insert_changes(change(4))?;
    p.flush()?;
    drop(p);
    store.close()?;
    let store = open(&fs)?;
    assert_eq!(store.open_document(&id)?.get_changes()?.len(), 2);
    Ok(())
}

#[test]
fn full_disk_fails_the_flush_clearly_and_loses_nothing_flushed() -> Result<()> {
    fault_during_flush(Fault::Full, io::ErrorKind::StorageFull, "free space on it")
}

#[test]
fn read_only_file_system_fails_the_flush_clearly_and_loses_nothing_flushed() -> Result<()> {
    fault_during_flush(
        Fault::ReadOnly,
        io::ErrorKind::ReadOnlyFilesystem,
        "remount it read-write",
    )
}

#[test]
fn full_disk_leaves_a_torn_tail_that_is_reported_and_cut() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.flush()?;
    fs.set_fault(Some(Fault::Full));
    p.insert_changes(change(2))?;
    assert!(p.flush().is_err());
    drop((p, store));
    fs.set_fault(None);
    // No clean-close record after a failed flush: the half write is a torn tail.
    let store = open(&fs)?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 1);
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(reported[0].truncated && reported[0].bytes > 0);
    Ok(())
}

#[test]
fn read_only_file_system_refuses_a_writable_open_clearly_and_reads_read_only() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.close()?;
    store.close()?;
    fs.set_fault(Some(Fault::ReadOnly));
    let err = open(&fs).unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == io::ErrorKind::ReadOnlyFilesystem),
        "{err}"
    );
    assert!(err.to_string().contains("open_read_only"), "{err}");
    let store = FsStore::open_read_only_on(Arc::new(fs.clone()), Path::new("/disk/store"))?;
    assert_eq!(store.open_document(&id)?.get_changes()?.len(), 1);
    store.close()
}

/// A migration whose new marker fails to be written leaves the store of format version
/// 2 in every file: its marker, its clean-close record, and the logs written next.
#[test]
fn a_migration_that_fails_to_write_the_marker_leaves_the_store_as_it_was() -> Result<()> {
    let fs = SimFs::new();
    let dir = Path::new("/disk/store");
    let id = DocumentId::from("doc");
    // A store as a build of store format version 2 left it.
    open(&fs)?.close()?;
    crate::store::write_marker(&fs, dir, format::UNKEYED_STORE_VERSION)?;
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.close()?;
    store.close()?;
    let version = |name: &str| -> u32 {
        let bytes = fs.read(&dir.join(name)).expect(name);
        u32::from_le_bytes(bytes[8..12].try_into().unwrap())
    };
    assert_eq!(version("CLOSED"), 2);

    fs.fail_next_sync();
    let migrate = FsOptions::default().with_migrate_format(true);
    let err = FsStore::open_on(Arc::new(fs.clone()), dir, migrate).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("STORE.tmp")),
        "{err}"
    );
    assert_eq!(version("STORE"), 2);
    assert_eq!(version("CLOSED"), 2);

    let store = open(&fs)?;
    assert_eq!(store.format_version(), Some(2));
    let new = DocumentId::from("new");
    let mut p = store.open_document(&new)?;
    p.insert_changes(change(1))?;
    p.close()?;
    let log = store.log_path(&new).expect("a log");
    let log = log.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
    store.close()?;
    assert_eq!(version(&log), format::UNKEYED_LOG_VERSION);
    assert_eq!(version("STORE"), 2);
    assert_eq!(version("CLOSED"), 2);
    Ok(())
}

/// A torn tail whose truncation fails to sync: the truncation may be lost (as a failed
/// flush's pages may be), so the document is poisoned as after a failed flush. Its
/// next handle must not write behind the cut, and the store must not vouch for the
/// cut log with a clean-close record: after a power loss the tail is back, and the
/// store must still open as after a crash, with every flushed change.
#[test]
fn a_failed_sync_of_a_torn_tail_s_truncation_poisons_the_document() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.flush()?;
    let log = store.log_path(&id).expect("a log");
    // Zeroes after the last commit, on disk: what a crash during a flush can leave.
    let io = |e: io::Error| Error::io("write", &log, e);
    let mut file = fs.open(&log, true).map_err(io)?;
    file.read_all().map_err(io)?;
    file.append(&[0; 300]).map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);
    fs.crash_at(fs.ops());
    drop((p, store));
    fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));

    let store = open(&fs)?;
    fs.fail_next_sync();
    let err = store.open_document(&id).unwrap_err();
    assert!(matches!(&err, Error::Io { action: "sync", .. }), "{err}");
    // The tail is cut (the cut's sync failed): reported all the same, once, though
    // this handle finds the log already cut.
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 1);
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].bytes, 300, "{reported:?}");
    let refused = p.insert_changes(change(2));
    assert!(
        matches!(&refused, Err(Error::Poisoned { reason }) if reason.contains("sync")),
        "{refused:?}"
    );
    drop(p);
    // Noted too, so that a store reopened in this process rewrites the log whole
    // before writing to it.
    let dir = Path::new("/disk/store");
    let key = fs.dir_key(dir).map_err(|e| Error::io("look up", dir, e))?;
    assert!(fs.failures().contains(&key, &names_of(&id)));
    let closed = store.close();
    assert!(matches!(&closed, Err(Error::Poisoned { .. })), "{closed:?}");
    assert!(fs.read(&dir.join("CLOSED")).is_none());

    fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
    let store = open(&fs)?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?, vec![vec![1; 2000]]);
    assert_eq!(store.recovered().len(), 1);
    Ok(())
}

/// A removal whose unlink fails leaves the log there: the clean-close record the store
/// was opened with still vouches for it, so a log cut after the clean close (here at
/// the end of its first flush, which reads as a whole, shorter log) is still an error,
/// not the document with its last flush silently missing.
#[test]
fn a_failed_removal_keeps_the_log_checked_against_the_clean_close_record() -> Result<()> {
    let fs = SimFs::new();
    let (a, b) = (DocumentId::from("a"), DocumentId::from("b"));
    let store = open(&fs)?;
    let mut p = store.open_document(&a)?;
    p.insert_changes(change(1))?;
    p.flush()?;
    let log = store.log_path(&a).expect("a log");
    let first_flush = fs.read(&log).expect("the log");
    p.insert_changes(change(2))?;
    p.close()?;
    let mut q = store.open_document(&b)?;
    q.insert_changes(change(1))?;
    q.close()?;
    store.close()?;
    // Cut after the clean close, exactly at the end of the first flush.
    let io = |e: io::Error| Error::io("write", &log, e);
    let mut file = fs.create(&log).map_err(io)?;
    file.append(&first_flush).map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);

    let store = open(&fs)?;
    // A write to another document removes the clean-close record from the disk.
    let mut q = store.open_document(&b)?;
    q.insert_changes(change(2))?;
    q.close()?;
    fs.set_fault(Some(Fault::ReadOnly));
    assert!(store.remove_document(&a).is_err());
    fs.set_fault(None);
    let opened = store.open_document(&a).map(|p| p.sizes().change_count);
    assert!(
        matches!(&opened, Err(Error::Corrupt { what, .. }) if what.contains("closed cleanly")),
        "{opened:?}"
    );
    Ok(())
}

/// Flushes changes 1 and 2 of document `doc`, then change 3 with a sync that fails (on
/// Linux the kernel then marks the flush's pages clean without writing them), and
/// drops the store, as the poison error says to. Gives the log's path.
fn fail_the_third_flush(fs: &SimFs, id: &DocumentId) -> Result<std::path::PathBuf> {
    let store = open(fs)?;
    let mut p = store.open_document(id)?;
    for seq in 1..=2 {
        p.insert_changes(change(seq))?;
        p.flush()?;
    }
    p.insert_changes(change(3))?;
    fs.fail_next_sync();
    let err = p.flush().unwrap_err();
    assert!(matches!(&err, Error::Io { action: "sync", .. }), "{err}");
    let log = store.log_path(id).expect("a log");
    drop(p);
    let closed = store.close();
    assert!(matches!(&closed, Err(Error::Poisoned { .. })), "{closed:?}");
    Ok(log)
}

/// The changes of `id` after a power loss that keeps only what was synced; the store
/// must open and the document load.
fn after_power_loss(fs: &SimFs, id: &DocumentId) -> Result<Vec<Vec<u8>>> {
    fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
    let store = open(fs)?;
    let changes = store.open_document(id)?.get_changes()?;
    store.close()?;
    Ok(changes)
}

/// After a failed sync the application reopens the store in the same process and goes
/// on writing: the reopened store reads the failed flush from the page cache, and a
/// later sync does not write those pages. Appending behind them would acknowledge
/// flushes that a power loss leaves behind a hole, where they read as damage. The log
/// is rewritten whole when it is opened for writing again, so every flush acknowledged
/// before the failure and after the reopen survives the power loss (the failed one, all
/// of it or none).
#[test]
fn flushes_acknowledged_after_reopening_from_a_failed_sync_survive_a_power_loss() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let log = fail_the_third_flush(&fs, &id)?;

    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    // The failed flush's change reads from the page cache: allowed, as the flush's
    // outcome is unknown.
    assert_eq!(p.get_changes()?.len(), 3);
    for seq in 4..=5 {
        p.insert_changes(change(seq))?;
        assert!(p.flush()? > 0);
    }
    drop(p);
    // A second handle, in the same store, appends to the rewritten log as usual.
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(6))?;
    assert!(p.flush()? > 0);
    drop(p);
    assert!(store.recovered().is_empty());
    store.close()?;
    assert!(fs.read(&log).is_some());

    let changes = after_power_loss(&fs, &id)?;
    let expected: Vec<Vec<u8>> = [1, 2, 3, 4, 5, 6].map(|seq| vec![seq; 2000]).into();
    let without_failed: Vec<Vec<u8>> = [1, 2, 4, 5, 6].map(|seq| vec![seq; 2000]).into();
    assert!(
        changes == expected || changes == without_failed,
        "{} changes: {:?}",
        changes.len(),
        changes.iter().map(|c| c[0]).collect::<Vec<_>>()
    );
    Ok(())
}

/// A store reopened after a failed sync that closes without opening the document must
/// not write a clean-close record vouching for the log as it reads: the disk may lack
/// the failed flush, and the record would make the log read as damaged after a power
/// loss, instead of as a crash during that flush.
#[test]
fn a_store_reopened_after_a_failed_sync_writes_no_clean_close_record_for_it() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    fail_the_third_flush(&fs, &id)?;
    let store = open(&fs)?;
    assert_eq!(store.list_documents()?, vec![id.clone()]);
    store.close()?;
    let changes = after_power_loss(&fs, &id)?;
    assert_eq!(&changes[..2], &[vec![1; 2000], vec![2; 2000]]);
    assert!(
        changes.len() == 2 || changes[2] == vec![3; 2000],
        "{changes:?}"
    );
    Ok(())
}

/// The rewrite of a log whose sync failed fails the open when it cannot be done, with
/// an error that says why it was needed; the log stays noted, so the next open tries
/// again, and nothing flushed is lost.
#[test]
fn a_failed_rewrite_after_a_failed_sync_fails_the_open_and_is_tried_again() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    fail_the_third_flush(&fs, &id)?;
    let store = open(&fs)?;
    fs.fail_next_sync();
    let err = store.open_document(&id).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with(names_of(&id))),
        "{message}"
    );
    assert!(message.contains("a sync of it failed earlier"), "{message}");
    assert!(message.contains(".tmp"), "{message}");

    let mut p = store.open_document(&id)?;
    p.insert_changes(change(4))?;
    p.flush()?;
    drop(p);
    store.close()?;
    let changes = after_power_loss(&fs, &id)?;
    assert_eq!(changes.len(), 4, "{changes:?}");
    Ok(())
}

/// A new log whose rename into place was not made durable (the directory's sync
/// failed) is noted like a failed sync: a store reopened in this process renames it
/// again and syncs the directory before writing to it, so the flushes it acknowledges
/// are not lost with a name a power loss takes away.
#[test]
fn a_failed_directory_sync_after_a_new_log_s_rename_is_made_good_before_writing() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    fs.fail_next_dir_sync();
    let err = p.flush().unwrap_err();
    assert!(matches!(&err, Error::Io { action: "sync", .. }), "{err}");
    drop(p);
    let closed = store.close();
    assert!(matches!(&closed, Err(Error::Poisoned { .. })), "{closed:?}");

    let store = open(&fs)?;
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 1);
    p.insert_changes(change(2))?;
    assert!(p.flush()? > 0);
    // The power goes before the store closes (whose clean-close record would sync the
    // directory).
    fs.crash_at(fs.ops());
    drop((p, store));
    let changes = after_power_loss(&fs, &id)?;
    assert_eq!(changes, vec![vec![1; 2000], vec![2; 2000]]);
    Ok(())
}

/// A log rewritten on opening (its sync failed earlier) that ended in a torn tail: the
/// rewrite drops the tail, and when the rewrite fails after its rename (the directory's
/// sync), the next open finds no tail; the first open reported it all the same.
#[test]
fn a_torn_tail_dropped_by_a_rewrite_that_failed_late_is_still_reported() -> Result<()> {
    let fs = SimFs::new();
    let id = DocumentId::from("doc");
    let log = fail_the_third_flush(&fs, &id)?;
    // Bytes after the failed flush's commit, as a crash during a later flush leaves.
    let io = |e: io::Error| Error::io("write", &log, e);
    let mut file = fs.open(&log, true).map_err(io)?;
    file.read_all().map_err(io)?;
    file.append(&[0; 100]).map_err(io)?;
    drop(file);

    let store = open(&fs)?;
    // A rewrite that fails before its rename (its new log's sync) leaves the tail where
    // it was: not reported yet.
    fs.fail_next_sync();
    let err = store.open_document(&id).unwrap_err().to_string();
    assert!(
        err.contains("a sync of it failed earlier") && err.contains(".tmp"),
        "{err}"
    );
    let reported = store.recovered();
    assert!(reported.is_empty(), "{reported:?}");
    // The next directory sync is the rewrite's, after its rename (the store closed
    // poisoned, so there is no clean-close record to remove first).
    fs.fail_next_dir_sync();
    let err = store.open_document(&id).unwrap_err();
    assert!(
        err.to_string().contains("a sync of it failed earlier"),
        "{err}"
    );
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 3);
    let reported = store.recovered();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].bytes, 100, "{reported:?}");
    Ok(())
}

/// The log file name of `id`.
fn names_of(id: &DocumentId) -> String {
    crate::names::hex_name(id).expect("a short id")
}

/// Two paths to one store (through a symlink, and with `..` in it) find the same
/// failed sync, on the real file system: the log whose sync failed through one path is
/// rewritten when the store is opened through the other.
#[cfg(unix)]
#[test]
fn a_failed_sync_is_found_through_another_path_to_the_store() -> Result<()> {
    use std::os::unix::fs::MetadataExt;

    use super::conformance::FaultyFs;
    use crate::io::OsFs;

    let tmp = tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))?;
    let real = tmp.path().join("real");
    let dir = real.join("store");
    let io = |e: io::Error| Error::io("set up", tmp.path(), e);
    std::fs::create_dir(&real).map_err(io)?;
    std::os::unix::fs::symlink(&real, tmp.path().join("link")).map_err(io)?;
    let through_link = tmp.path().join("link").join("store");
    let dotted = real.join("..").join("real").join("store");

    let fs = Arc::new(FaultyFs::default());
    let id = DocumentId::from("doc");
    let store = FsStore::open_on(fs.clone(), &dir, FsOptions::default())?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(change(1))?;
    p.flush()?;
    p.insert_changes(change(2))?;
    fs.fail_next_sync();
    assert!(p.flush().is_err());
    drop((p, store));

    let key = OsFs.dir_key(&dir).map_err(io)?;
    for other in [&through_link, &dotted] {
        assert_eq!(OsFs.dir_key(other).map_err(io)?, key, "{}", other.display());
    }
    let name = names_of(&id);
    assert!(fs.failures().contains(&key, &name));
    let inode = |path: &Path| std::fs::metadata(path).map(|m| m.ino()).map_err(io);
    let before = inode(&dir.join(&name))?;

    let store = FsStore::open_on(fs.clone(), &through_link, FsOptions::default())?;
    let p = store.open_document(&id)?;
    // Rewritten: a new file took the log's name, and the failure is forgotten.
    assert_ne!(inode(&dir.join(&name))?, before);
    assert!(!fs.failures().contains(&key, &name));
    assert_eq!(p.get_changes()?.len(), 2);
    drop(p);
    store.close()?;
    let store = FsStore::open_on(fs.clone(), &dotted, FsOptions::default())?;
    assert_eq!(store.open_document(&id)?.get_changes()?.len(), 2);
    Ok(())
}
