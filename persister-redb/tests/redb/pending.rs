//! How this backend holds writes between flushes: in memory, committed together by one
//! synced transaction (also past a bound), discarded when a handle is dropped, with
//! exact sizes that cost no I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persister_core::{
    ActorId, Batch, DocumentId, Error, MAX_VALUE_LEN, Persister, Result, Store, StoredSizes,
};
use persister_redb::{RedbOptions, RedbPersister, RedbStore};
use tempfile::TempDir;

use crate::backends::{CrashBackend, FaultControl, open_faulty};

pub(crate) fn new_store() -> Result<(TempDir, PathBuf)> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))?;
    let path = dir.path().join("store.redb");
    drop(RedbStore::open(&path)?);
    Ok((dir, path))
}

/// A new store opened on a file whose I/O the returned control counts and can fail.
pub(crate) fn new_faulty_store(
    options: RedbOptions,
) -> Result<(TempDir, PathBuf, Arc<FaultControl>, RedbStore)> {
    let (dir, path) = new_store()?;
    let control = Arc::new(FaultControl::default());
    let store = open_faulty(&path, &control, options)?;
    Ok((dir, path, control, store))
}

pub(crate) fn change(seq: u64, len: usize) -> Batch {
    Batch::new().insert_change(ActorId::new([1; 16]), seq, vec![seq as u8; len])
}

/// Applies a change of `len` bytes for each of `seqs`, one batch each; returns their
/// payload.
fn apply_changes(
    p: &mut RedbPersister,
    seqs: impl IntoIterator<Item = u64>,
    len: usize,
) -> Result<usize> {
    let mut payload = 0;
    for seq in seqs {
        let batch = change(seq, len);
        payload += batch.payload_len();
        p.apply(batch)?;
    }
    Ok(payload)
}

/// What a power loss now leaves of `disk`: its durable bytes, as a store.
fn after_power_loss(disk: &CrashBackend, name: &str) -> Result<RedbStore> {
    RedbStore::open_on_backend(
        CrashBackend::new(disk.durable(), None),
        name,
        RedbOptions::default(),
    )
}

fn reopened(path: &Path, id: &str) -> Result<(RedbStore, RedbPersister)> {
    let store = RedbStore::open(path)?;
    let p = store.open_document(&id.into())?;
    Ok((store, p))
}

#[test]
fn applying_touches_no_file_and_flush_syncs_once() -> Result<()> {
    let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
    // redb syncs more than once in a commit that grows the file (and a new file starts
    // small): grow it first to the size this test needs, then measure.
    let mut warm = store.open_document(&"warm-up".into())?;
    apply_changes(&mut warm, 1..=3000, 100)?;
    warm.flush()?;
    drop(warm);
    store.remove_document(&"warm-up".into())?;
    let mut p = store.open_document(&"doc".into())?;
    let before = control.calls();
    let payload = apply_changes(&mut p, 1..=1000, 100)?;
    assert_eq!(control.calls(), before, "applying wrote to the file");
    assert_eq!(p.sizes().change_count, 1000);

    let syncs = control.syncs();
    assert_eq!(p.flush()?, payload);
    assert_eq!(control.syncs() - syncs, 1, "one flush, one sync");
    assert_eq!(p.flush()?, 0);
    assert_eq!(control.syncs() - syncs, 1, "an idle flush synced");
    drop((p, store));

    let (_store, p) = reopened(&path, "doc")?;
    assert_eq!(p.get_changes()?.len(), 1000);
    assert_eq!(p.sizes().change_count, 1000);
    Ok(())
}

#[test]
fn past_the_bound_a_handle_flushes_what_it_holds() -> Result<()> {
    // A small cache, so that what redb commits leaves its memory for the file.
    let options = RedbOptions::default()
        .max_pending_bytes(10_000)
        .cache_size(64 * 1024);
    let (_dir, path, control, store) = new_faulty_store(options)?;
    let mut p = store.open_document(&"doc".into())?;
    let syncs = control.syncs();
    let payload = apply_changes(&mut p, 1..=1000, 100)?;
    assert!(
        control.syncs() - syncs >= payload as u64 / 10_000 - 1,
        "past the bound, the held writes were not flushed"
    );
    let syncs = control.syncs();
    // The flush makes durable, and reports, what was held since the last of those.
    let last = p.flush()?;
    assert!(
        last > 0 && last <= 10_000,
        "the last flush wrote {last} bytes"
    );
    assert_eq!(control.syncs() - syncs, 1);
    let entries = p.get_change_entries()?;
    assert_eq!(entries.len(), 1000);
    assert!(
        entries
            .iter()
            .zip(1..)
            .all(|(e, seq)| e.1 == seq && e.2 == vec![seq as u8; 100])
    );
    // What a handle flushed past the bound is kept when it is dropped unflushed.
    p.apply(change(1001, 100))?;
    drop((p, store));
    let (_store, p) = reopened(&path, "doc")?;
    assert_eq!(p.get_change_entries()?, entries);
    Ok(())
}

#[test]
fn overwrites_and_removals_of_committed_keys_keep_sizes_exact() -> Result<()> {
    let (_dir, path) = new_store()?;
    let store = RedbStore::open_with(&path, RedbOptions::default().max_pending_bytes(1000))?;
    let mut p = store.open_document(&"doc".into())?;
    let a = ActorId::new([1; 16]);
    apply_changes(&mut p, (1..=50).step_by(2), 100)?;
    p.flush()?;
    // Some of these keys are in the file, some pending, some committed past the bound;
    // the even ones fill gaps below the highest seq in the file.
    apply_changes(&mut p, (2..=50).step_by(2), 100)?;
    for seq in (1..=50).step_by(3) {
        p.apply(Batch::new().insert_change(a.clone(), seq, vec![0; 7]))?;
    }
    for seq in (1..=50).step_by(4) {
        p.apply(
            Batch::new()
                .remove_change(a.clone(), seq)
                .set_sync_state(vec![seq as u8], vec![1; 9]),
        )?;
    }
    p.apply(
        Batch::new()
            .remove_sync_state(vec![1])
            .remove_sync_state(vec![99]),
    )?;
    let counted = |p: &RedbPersister| -> Result<StoredSizes> {
        let entries = p.get_change_entries()?;
        let peers = p.get_peer_ids()?;
        let mut sync_states = 0;
        for peer in &peers {
            sync_states += p.get_sync_state(peer)?.map_or(0, |s| s.len() as u64);
        }
        Ok(StoredSizes {
            changes: entries.iter().map(|e| e.2.len() as u64).sum(),
            document: 0,
            sync_states,
            change_count: entries.len() as u64,
            sync_state_count: peers.len() as u64,
        })
    };
    let sizes = p.sizes();
    assert_eq!(sizes, counted(&p)?);
    assert_eq!(sizes.change_count, 50 - 13);
    assert_eq!(sizes.sync_state_count, 12);
    p.close()?;
    drop(store);
    let (_store, p) = reopened(&path, "doc")?;
    assert_eq!(p.sizes(), sizes);
    assert_eq!(counted(&p)?, sizes);
    Ok(())
}

#[test]
fn a_dropped_handle_discards_what_it_did_not_flush() -> Result<()> {
    let disk = CrashBackend::new(Vec::new(), None);
    let store = RedbStore::open_on_backend(disk.clone(), "disk", RedbOptions::default())?;
    let id = DocumentId::from("doc");
    let mut p = store.open_document(&id)?;
    p.apply(change(1, 500))?;
    assert_eq!(store.list_documents()?, vec![id.clone()]);
    let calls = disk.calls();
    drop(p);
    assert_eq!(disk.calls(), calls, "dropping a handle wrote to the file");
    assert!(store.list_documents()?.is_empty());

    let mut p = store.open_document(&id)?;
    assert!(p.get_changes()?.is_empty());
    assert_eq!(p.sizes(), StoredSizes::default());
    assert_eq!(p.flush()?, 0, "a dropped handle left something to flush");
    let after = after_power_loss(&disk, "after")?;
    assert!(after.list_documents()?.is_empty());
    Ok(())
}

#[test]
fn unflushed_new_documents_are_listed_and_opened_ones_are_not() -> Result<()> {
    let (_dir, path) = new_store()?;
    let store = RedbStore::open(&path)?;
    let mut written = store.open_document(&"written".into())?;
    let _opened = store.open_document(&"opened".into())?;
    written.apply(Batch::new().remove_change(ActorId::new([1]), 1))?;
    assert_eq!(store.list_documents()?, vec![DocumentId::from("written")]);
    written.flush()?;
    assert_eq!(store.list_documents()?, vec![DocumentId::from("written")]);
    Ok(())
}

#[test]
fn sizes_cost_no_io_and_refused_batches_write_nothing() -> Result<()> {
    let (_dir, _path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut p = store.open_document(&"doc".into())?;
    p.apply(change(1, 10).set_document(vec![2; 20]))?;
    p.flush()?;
    let calls = control.calls();
    let sizes = p.sizes();
    assert_eq!(
        (sizes.changes, sizes.document, sizes.change_count),
        (10, 20, 1)
    );
    let too_large = change(2, 1).set_document(vec![0; MAX_VALUE_LEN + 1]);
    assert!(matches!(p.apply(too_large), Err(Error::TooLarge { .. })));
    assert_eq!(p.sizes(), sizes);
    assert_eq!(p.flush()?, 0, "a refused batch left something pending");
    assert_eq!(control.calls(), calls);
    assert_eq!(p.get_changes()?, vec![vec![1; 10]]);
    Ok(())
}

#[test]
fn a_failed_flush_poisons_every_handle_until_reopened() -> Result<()> {
    let (_dir, path, control, store) = new_faulty_store(RedbOptions::default())?;
    let mut one = store.open_document(&"one".into())?;
    let mut two = store.open_document(&"two".into())?;
    one.apply(change(1, 10))?;
    one.flush()?;
    one.apply(change(2, 10))?;
    two.apply(change(1, 10))?;
    control.fail_next_sync();
    let failed = one.flush();
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    for result in [one.flush(), two.flush()] {
        match result {
            Err(Error::Poisoned { reason }) => {
                // The failure itself, not a message about poisoning.
                assert!(reason.contains("injected fault"), "{reason}");
                assert!(!reason.contains("poisoned"), "{reason}");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(
        two.apply(change(2, 1)),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        store.remove_document(&"three".into()),
        Err(Error::Poisoned { .. })
    ));
    let message = two
        .flush()
        .map(drop)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("reopen"), "{message}");
    // Reads still answer, from the handle's own view.
    assert_eq!(one.get_changes()?.len(), 2);
    drop((one, two, store));

    let (_store, p) = reopened(&path, "one")?;
    assert_eq!(p.get_changes()?.first(), Some(&vec![1; 10]));
    Ok(())
}
