//! Group commit: flushes of many handles sharing one transaction and one sync, and what
//! a failure of that shared sync does to every handle it carried.
//!
//! `PERSISTER_GROUP_ROUNDS=n` runs the threaded test `n` times longer (default 1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use persister_core::{ActorId, Batch, Error, Persister, Result, Store};
use persister_redb::{RedbOptions, RedbPersister, RedbStore};

use crate::pending::{change, new_faulty_store};

fn open_all(store: &RedbStore, count: usize) -> Result<Vec<RedbPersister>> {
    (0..count)
        .map(|i| store.open_document(&format!("doc-{i}").as_str().into()))
        .collect()
}

#[test]
fn flush_documents_commits_many_handles_with_the_syncs_of_one() -> Result<()> {
    let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut docs = open_all(&store, 20)?;
    for doc in &mut docs {
        doc.apply(change(1, 2000))?;
        doc.flush()?;
    }
    docs[0].apply(change(2, 10))?;
    let before = control.syncs();
    docs[0].flush()?;
    let one = control.syncs() - before;
    assert!(one >= 1, "a flush must sync");

    for doc in &mut docs {
        doc.apply(change(3, 10))?;
    }
    let before = control.syncs();
    let commits = store.group_commits();
    let mut handles: Vec<&mut RedbPersister> = docs.iter_mut().collect();
    let written = store.flush_documents(&mut handles)?;
    let many = control.syncs() - before;
    // One commit carried all 20 handles.
    let after = store.group_commits();
    assert_eq!(after.commits - commits.commits, 1);
    assert_eq!(after.handles - commits.handles, 20);
    assert_eq!(after.largest, 20);
    assert!(after.commit_nanos > commits.commit_nanos);
    assert_eq!(written, 20 * 10 + 20 * (16 + 8));
    // One commit: the syncs of one flush, and one more if the commit grew the file
    // (redb then syncs its new length too); 20 flushes would take 20 or more.
    assert!(
        many <= one + 1,
        "20 handles took {many} syncs, one handle {one}"
    );
    // Nothing is left to flush, and everything reads back after a reopen.
    for doc in &mut docs {
        assert_eq!(doc.flush()?, 0);
    }
    drop((docs, store));
    let store = RedbStore::open(&path)?;
    for (i, doc) in open_all(&store, 20)?.iter().enumerate() {
        let expected = if i == 0 { 3 } else { 2 };
        assert_eq!(doc.get_changes()?.len(), expected, "document {i}");
    }
    Ok(())
}

#[test]
fn a_failed_shared_sync_poisons_every_handle_it_carried() -> Result<()> {
    let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut docs = open_all(&store, 10)?;
    for doc in &mut docs {
        doc.apply(change(1, 10))?;
    }
    let mut handles: Vec<&mut RedbPersister> = docs.iter_mut().collect();
    store.flush_documents(&mut handles)?;
    for doc in &mut docs {
        doc.apply(change(2, 10))?;
    }
    control.fail_next_sync();
    let mut handles: Vec<&mut RedbPersister> = docs.iter_mut().collect();
    let failed = store.flush_documents(&mut handles);
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert!(control.fired());
    for (i, doc) in docs.iter_mut().enumerate() {
        let flushed = doc.flush();
        assert!(
            matches!(&flushed, Err(Error::Poisoned { reason }) if reason.contains("injected fault")),
            "document {i}: {flushed:?}"
        );
        let applied = doc.apply(change(3, 1));
        assert!(
            matches!(applied, Err(Error::Poisoned { .. })),
            "document {i}: {applied:?}"
        );
        // Reads still see the handle's own writes.
        assert_eq!(doc.get_changes()?.len(), 2);
    }
    drop((docs, store));

    // One transaction: every document has its second change, or none has.
    let store = RedbStore::open(&path)?;
    let counts: Vec<usize> = open_all(&store, 10)?
        .iter()
        .map(|doc| doc.get_changes().map(|c| c.len()))
        .collect::<Result<_>>()?;
    assert!(
        counts.iter().all(|&n| n == counts[0]) && (1..=2).contains(&counts[0]),
        "{counts:?}"
    );
    Ok(())
}

/// Threads flush their own documents at once while one sync fails: no flush that
/// started after the failure returns `Ok`, every thread's handle ends poisoned, and
/// every acknowledged flush is in the file after a reopen.
#[test]
fn threads_flushing_through_a_failed_sync_all_fail_and_lose_nothing_acknowledged() -> Result<()> {
    let rounds = persister_testkit::env_count("PERSISTER_GROUP_ROUNDS", 1);
    const THREADS: usize = 8;
    for round in 0..rounds * 5 {
        let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
        let store = Arc::new(store);
        let start = Arc::new(Barrier::new(THREADS + 1));
        let fault_armed = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, start, armed, control) = (
                    Arc::clone(&store),
                    Arc::clone(&start),
                    Arc::clone(&fault_armed),
                    Arc::clone(&control),
                );
                std::thread::spawn(move || -> std::result::Result<(u64, bool), String> {
                    let mut doc = store
                        .open_document(&format!("doc-{t}").as_str().into())
                        .map_err(|e| e.to_string())?;
                    start.wait();
                    let mut acked = 0;
                    for seq in 1..=10_000u64 {
                        let batch = Batch::new().insert_change(
                            ActorId::new([t as u8 + 1; 16]),
                            seq,
                            vec![seq as u8; 50],
                        );
                        if doc.apply(batch).is_err() {
                            return Ok((acked, true));
                        }
                        // Arm the fault from the first thread once a few flushes ran.
                        if t == 0 && seq == 5 {
                            control.fail_next_sync();
                            armed.store(true, Ordering::SeqCst);
                        }
                        let after_fault = control.fired();
                        match doc.flush() {
                            Ok(_) if after_fault => {
                                return Err(format!(
                                    "thread {t}: a flush after the fault returned Ok"
                                ));
                            }
                            Ok(_) => acked = seq,
                            Err(_) => {
                                let again = doc.flush();
                                if !matches!(again, Err(Error::Poisoned { .. })) {
                                    return Err(format!("thread {t}: not poisoned: {again:?}"));
                                }
                                return Ok((acked, true));
                            }
                        }
                    }
                    Ok((acked, false))
                })
            })
            .collect();
        start.wait();
        let mut acked = Vec::new();
        for thread in threads {
            let outcome = thread
                .join()
                .map_err(|_| Error::InvalidInput {
                    what: "test",
                    reason: "a thread panicked".into(),
                })?
                .map_err(|reason| Error::InvalidInput {
                    what: "test",
                    reason: format!("round {round}: {reason}"),
                })?;
            assert!(outcome.1, "round {round}: a thread never saw the failure");
            acked.push(outcome.0);
        }
        assert!(fault_armed.load(Ordering::SeqCst) && control.fired());
        drop(store);
        let store = RedbStore::open(&path)?;
        for (t, acked) in acked.into_iter().enumerate() {
            let doc = store.open_document(&format!("doc-{t}").as_str().into())?;
            let held = doc.get_changes()?.len() as u64;
            assert!(
                held >= acked,
                "round {round}, thread {t}: {held} changes, {acked} acknowledged"
            );
        }
    }
    Ok(())
}
