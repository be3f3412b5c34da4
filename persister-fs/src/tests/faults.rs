//! A full disk (ENOSPC) and a read-only file system (EROFS), through the simulated
//! disk: a clear error naming the path and what to do, a poisoned handle, and every
//! flushed batch there once the disk is usable again.

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
    let mut p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 1);
    let refused = p.insert_changes(change(2));
    assert!(
        matches!(&refused, Err(Error::Poisoned { reason }) if reason.contains("sync")),
        "{refused:?}"
    );
    drop(p);
    let closed = store.close();
    assert!(matches!(&closed, Err(Error::Poisoned { .. })), "{closed:?}");
    assert!(fs.read(&Path::new("/disk/store").join("CLOSED")).is_none());

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
