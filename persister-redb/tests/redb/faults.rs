//! I/O faults on a real file: each `write`, `set_len` and `sync_data` of a workload
//! fails once, or fails with every later call. Every fault must come back as an `Err`
//! (never a panic, never an `Ok` from a flush after it), and reopening the file without
//! faults must give a store holding at least everything flushed before the fault.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use persister_redb::{RedbOptions, RedbStore};

use crate::backends::{FaultControl, open_faulty};
use crate::workload::{self, Op, check_recovered};

fn options() -> RedbOptions {
    RedbOptions::default().max_pending_bytes(4096)
}

/// Runs the workload on a copy of `base` with `control`'s faults, then checks the file.
fn run_with_fault(
    base: &Path,
    path: &Path,
    ops: &[Op],
    control: FaultControl,
) -> std::result::Result<(), String> {
    fs::copy(base, path).map_err(|e| e.to_string())?;
    let control = Arc::new(control);
    let outcome = workload::run(|| open_faulty(path, &control, options()), ops, &|| {
        control.fired()
    });
    if !control.fired() {
        return Err("the fault was never reached: the workload is not deterministic".into());
    }
    if !outcome.ok_after_fault.is_empty() {
        return Err(format!(
            "succeeded after the fault: {:?}",
            outcome.ok_after_fault
        ));
    }
    if outcome.fault_before_close && outcome.errors.is_empty() {
        return Err("the fault was not reported by any operation".into());
    }
    let store = RedbStore::open_with(path, options())
        .map_err(|e| format!("reopening without faults failed: {e}"))?;
    check_recovered(&store, &outcome)
}

#[test]
fn io_faults_are_errors_and_lose_nothing_flushed() -> std::result::Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let base = dir.path().join("base.redb");
    drop(RedbStore::open_with(&base, options()).map_err(|e| e.to_string())?);
    let ops = workload::ops(10, 2 * workload::scale());

    let path = dir.path().join("store.redb");
    fs::copy(&base, &path).map_err(|e| e.to_string())?;
    let probe = Arc::new(FaultControl::default());
    let outcome = workload::run(|| open_faulty(&path, &probe, options()), &ops, &|| false);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let total = probe.calls();
    let (syncs, set_lens) = (probe.syncs(), probe.set_lens());
    assert!(
        syncs >= 10 && set_lens > 0,
        "{syncs} syncs, {set_lens} set_len calls"
    );

    for at in 0..total {
        for forever in [false, true] {
            let _ = fs::remove_file(&path);
            let run = || run_with_fault(&base, &path, &ops, FaultControl::failing_at(at, forever));
            let mode = if forever { "from" } else { "at" };
            match catch_unwind(AssertUnwindSafe(run)) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(format!("failing {mode} call {at} of {total}: {err}")),
                Err(_) => return Err(format!("failing {mode} call {at} of {total}: a panic")),
            }
        }
    }
    println!(
        "failed each of the {total} write/set_len/sync_data calls ({set_lens} set_len, {syncs} sync_data), once and for good"
    );
    Ok(())
}

#[test]
fn a_full_disk_or_read_only_file_system_is_a_clear_error_and_loses_nothing_flushed()
-> persister_core::Result<()> {
    use persister_core::{ActorId, Error, Persister, Store};
    for (errno, words) in [
        (28, "the disk is full"),
        (30, "the file system is read-only"),
    ] {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let path = dir.path().join("store.redb");
        drop(RedbStore::open(&path)?);
        let actor = ActorId::new([1]);
        {
            let control = Arc::new(FaultControl::default());
            let store = open_faulty(&path, &control, RedbOptions::default())?;
            let mut doc = store.open_document(&"doc".into())?;
            doc.insert_changes(vec![(actor.clone(), 1, b"flushed".to_vec())])?;
            doc.flush()?;
            doc.close()?;
            drop(store);
            // The writes opening the store makes, counted on a copy.
            let copy = dir.path().join("copy.redb");
            std::fs::copy(&path, &copy).map_err(|e| Error::io("copy", &copy, e))?;
            let probe = Arc::new(FaultControl::default());
            let opened = open_faulty(&copy, &probe, RedbOptions::default())?;
            drop(opened.open_document(&"doc".into())?);
            let opening = probe.calls();
            drop(opened);
            let control = Arc::new(FaultControl::failing_at(opening, true).with_errno(errno));
            // Every write and sync from then on fails, as on a disk that filled up (or
            // went read-only) and stays so.
            let store = open_faulty(&path, &control, RedbOptions::default())?;
            let mut doc = store.open_document(&"doc".into())?;
            doc.insert_changes(vec![(actor.clone(), 2, b"not flushed".to_vec())])?;
            let err = doc.flush().expect_err("the flush must fail");
            let message = err.to_string();
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            assert!(message.contains(words), "{message}");
            assert!(message.contains("store.redb"), "names the file: {message}");
            let again = doc.insert_changes(vec![(actor.clone(), 3, b"later".to_vec())]);
            assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
        }
        // Space freed (or remounted): everything flushed before is there.
        let store = RedbStore::open(&path)?;
        let mut doc = store.open_document(&"doc".into())?;
        let changes = doc.get_change_entries()?;
        assert_eq!(changes, vec![(actor.clone(), 1, b"flushed".to_vec())]);
        doc.insert_changes(vec![(actor.clone(), 4, b"after".to_vec())])?;
        doc.close()?;
    }
    Ok(())
}
