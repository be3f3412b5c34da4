//! Simulated crashes: the machine dies at every I/O call of a workload, and the store
//! must reopen from what a power loss (only synced bytes), a process kill (every
//! written byte), or a power loss after the disk wrote the new header before the pages
//! it points to leaves, with nothing flushed lost and every batch whole or absent.

use std::panic::{AssertUnwindSafe, catch_unwind};

use persister_core::Store;
use persister_redb::{RedbOptions, RedbStore};

use crate::backends::CrashBackend;
use crate::workload::{self, Op, check_recovered};

/// Small enough that handles also commit without syncing between flushes.
fn options() -> RedbOptions {
    RedbOptions::default().max_pending_bytes(4096)
}

fn open_on(disk: &CrashBackend) -> persister_core::Result<RedbStore> {
    RedbStore::open_on_backend(disk.clone(), "simulated-disk", options())
}

/// A new, empty store, cleanly closed.
fn empty_store() -> Vec<u8> {
    let disk = CrashBackend::new(Vec::new(), None);
    drop(open_on(&disk).expect("a store on a healthy disk"));
    assert_eq!(disk.durable(), disk.live(), "closing did not sync");
    disk.durable()
}

/// Crashes the workload at call `at`, then reopens from both crash images.
fn crash_once(image: &[u8], ops: &[Op], at: u64, total: u64) -> Result<(), String> {
    let disk = CrashBackend::new(image.to_vec(), Some(at));
    let outcome = workload::run(|| open_on(&disk), ops, &|| disk.crashed());
    if !disk.crashed() {
        return Err(format!(
            "the workload made fewer than {} calls this time: it is not deterministic",
            at + 1
        ));
    }
    if !outcome.ok_after_fault.is_empty() {
        return Err(format!(
            "succeeded after the crash: {:?}",
            outcome.ok_after_fault
        ));
    }
    // The header written since the last sync reached the disk, the pages it points to
    // did not: the worst order a disk may reorder writes in.
    let mut torn = disk.durable();
    let live = disk.live();
    let header = torn.len().min(live.len()).min(4096);
    torn[..header].copy_from_slice(&live[..header]);
    for (what, image) in [
        ("power loss", disk.durable()),
        ("process kill", live),
        ("power loss with the header written", torn),
    ] {
        let recovered = CrashBackend::new(image, None);
        let store = open_on(&recovered)
            .map_err(|e| format!("{what} at I/O call {at} of {total}: reopening failed: {e}"))?;
        check_recovered(&store, &outcome)
            .map_err(|e| format!("{what} at I/O call {at} of {total}: {e}"))?;
    }
    Ok(())
}

#[test]
fn crash_at_every_io_call_loses_no_flushed_batch() -> Result<(), String> {
    let ops = workload::ops(10, 3 * workload::scale());
    let flushes = ops.iter().filter(|op| matches!(op, Op::Flush(_))).count();
    assert_eq!(flushes, 10);
    let image = empty_store();

    // Count the calls of a run without a crash, which must succeed in full.
    let probe = CrashBackend::new(image.clone(), None);
    let outcome = workload::run(|| open_on(&probe), &ops, &|| false);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(outcome.floor.iter().all(|&f| f > 0), "{:?}", outcome.floor);
    let total = probe.calls();
    check_recovered(
        &open_on(&CrashBackend::new(probe.durable(), None)).map_err(|e| e.to_string())?,
        &outcome,
    )?;

    for at in 0..total {
        match catch_unwind(AssertUnwindSafe(|| crash_once(&image, &ops, at, total))) {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "a crash at I/O call {at} of {total} made the store panic"
                ));
            }
        }
    }
    println!("crashed at each of the {total} I/O calls of a workload with {flushes} flushes");
    Ok(())
}

/// redb writes its magic number last, so a crash while making a store leaves bytes it
/// refuses, or a whole store; that is what makes creating under a temporary name and
/// renaming it into place safe.
#[test]
fn crash_while_creating_leaves_no_store_or_a_whole_one() -> Result<(), String> {
    let probe = CrashBackend::new(Vec::new(), None);
    drop(open_on(&probe).map_err(|e| e.to_string())?);
    let total = probe.calls();
    let (mut refused, mut opened) = (0, 0);
    for at in 0..total {
        let disk = CrashBackend::new(Vec::new(), Some(at));
        assert!(open_on(&disk).is_err() || disk.crashed(), "call {at}");
        let image = disk.durable();
        let has_magic = image.starts_with(b"redb");
        match catch_unwind(AssertUnwindSafe(|| {
            open_on(&CrashBackend::new(image.clone(), None))
        })) {
            Err(_) => {
                return Err(format!(
                    "a crash at call {at} of {total} left a file that panics on open"
                ));
            }
            Ok(Ok(store)) => {
                let listed = store.list_documents().map_err(|e| e.to_string())?;
                assert!(listed.is_empty(), "call {at}: a new store lists {listed:?}");
                opened += 1;
            }
            Ok(Err(err)) => {
                assert!(
                    !has_magic,
                    "call {at}: bytes with redb's magic number failed to open: {err}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "no crash left a partial file: the test proves nothing"
    );
    println!("creating: {total} calls, {refused} crash images refused, {opened} opened");
    Ok(())
}
