//! Simulated power loss at every I/O call of a workload.
//!
//! The workload makes 10 flushes over two documents (one named by hex, one by hash),
//! with overwrites and removals that make the logs get rewritten, a document removed
//! and written again, and a handle dropped and reopened. For every I/O call it makes,
//! in each [`CrashMode`] and for each seed, a run crashes at that call; the store is
//! then reopened and each document must hold the state after some prefix of its
//! batches that includes every batch acknowledged by a flush (or a removal). A batch
//! half applied matches no prefix. Then one more batch is flushed, unsynced data is
//! dropped again, and it must be there: recovery left a log that takes appends.
//!
//! `PERSISTER_SIM_SEEDS=n` runs n seeds instead of 10.

use std::path::Path;
use std::sync::Arc;

use persister_core::{
    ActorId, Batch, DocumentId, DocumentState, Error, Persister, Result, Store, Write,
};

use crate::sim::{CrashMode, Rng, SimFs};
use crate::{FsOptions, FsPersister, FsStore};

const FLUSHES: usize = 10;
const DEFAULT_SEEDS: u64 = 10;

fn ids() -> [DocumentId; 2] {
    [
        DocumentId::from("a/../b"),
        DocumentId::from(vec![0xfe; 300]),
    ]
}

fn open(fs: &SimFs) -> Result<FsStore> {
    let options = FsOptions::default()
        .with_rewrite_min_len(2048)
        .with_rewrite_dead_share(0.5);
    FsStore::open_on(Arc::new(fs.clone()), Path::new("/disk/store"), options)
}

/// What happened to one document, in order.
#[derive(Clone, Debug)]
enum Event {
    Apply(Batch),
    Remove,
}

/// A document's events, and how many of them a flush or a removal acknowledged.
#[derive(Debug, Default)]
struct History {
    events: Vec<Event>,
    acked: usize,
}

fn random_batch(rng: &mut Rng) -> Batch {
    let mut batch = Batch::new();
    for _ in 0..=rng.below(4) {
        let actor = ActorId::new(vec![1 + rng.below(3) as u8; 16]);
        let seq = 1 + rng.below(6) as u64;
        let peer = vec![b'p'; rng.below(3)];
        let write = match rng.below(10) {
            0..=4 => Write::InsertChange {
                actor,
                seq,
                value: rng.value(600),
            },
            5 => Write::RemoveChange { actor, seq },
            6 | 7 => Write::SetDocument(rng.value(1500)),
            8 => Write::SetSyncState {
                peer,
                state: rng.value(100),
            },
            _ => Write::RemoveSyncState { peer },
        };
        batch.push(write);
    }
    batch
}

fn handle(handles: &mut [Option<FsPersister>; 2], d: usize) -> Result<&mut FsPersister> {
    handles[d].as_mut().ok_or_else(|| Error::NotFound {
        what: "workload handle".into(),
    })
}

/// Runs the workload until it ends or an I/O call fails, recording every event.
fn workload(fs: &SimFs, seed: u64, history: &mut [History; 2]) -> Result<()> {
    let mut rng = Rng::new(seed);
    let ids = ids();
    let store = open(fs)?;
    let mut handles = [
        Some(store.open_document(&ids[0])?),
        Some(store.open_document(&ids[1])?),
    ];
    for round in 0..FLUSHES {
        for (d, history) in history.iter_mut().enumerate() {
            for _ in 0..=rng.below(3) {
                let batch = random_batch(&mut rng);
                history.events.push(Event::Apply(batch.clone()));
                handle(&mut handles, d)?.apply(batch)?;
            }
        }
        let d = round % 2;
        let applied = history[d].events.len();
        handle(&mut handles, d)?.flush()?;
        history[d].acked = applied;
        if round == 4 {
            // Unflushed writes and all: the removal is durable once it returns.
            handles[1] = None;
            history[1].events.push(Event::Remove);
            store.remove_document(&ids[1])?;
            history[1].acked = history[1].events.len();
            handles[1] = Some(store.open_document(&ids[1])?);
        }
        if round == 6 {
            // Flushed just now, so the next handle replays the log.
            handles[0] = None;
            handles[0] = Some(store.open_document(&ids[0])?);
        }
    }
    Ok(())
}

/// The document as its handle reads it.
fn read_state(p: &FsPersister) -> Result<DocumentState> {
    let mut batch = Batch::new();
    if let Some(document) = p.get_document()? {
        batch.push(Write::SetDocument(document));
    }
    for (actor, seq, value) in p.get_change_entries()? {
        batch.push(Write::InsertChange { actor, seq, value });
    }
    for peer in p.get_peer_ids()? {
        let state = p.get_sync_state(&peer)?.unwrap_or_default();
        batch.push(Write::SetSyncState { peer, state });
    }
    let mut state = DocumentState::new();
    state.apply(batch);
    Ok(state)
}

/// Whether some prefix of `history`, at least the acknowledged one, gives `state` and
/// the document's existence.
fn matches_a_prefix(history: &History, state: &DocumentState, listed: bool) -> bool {
    let mut model = DocumentState::new();
    let mut exists = false;
    for k in 0..=history.events.len() {
        if k > 0 {
            match &history.events[k - 1] {
                Event::Apply(batch) => {
                    model.apply(batch.clone());
                    exists |= !batch.is_empty();
                }
                Event::Remove => (model, exists) = (DocumentState::new(), false),
            }
        }
        if k >= history.acked && model == *state && exists == listed {
            return true;
        }
    }
    false
}

/// Reopens the store after a crash and checks every document; then checks that the
/// recovered logs take durable appends.
fn check(fs: &SimFs, history: &[History; 2]) -> std::result::Result<(), String> {
    let fail = |what: &str, e: Error| format!("{what}: {e}");
    let store = open(fs).map_err(|e| fail("reopening the store", e))?;
    let listed = store.list_documents().map_err(|e| fail("listing", e))?;
    let ids = ids();
    if let Some(stray) = listed.iter().find(|id| !ids.contains(id)) {
        return Err(format!(
            "a document that was never written is listed: {stray}"
        ));
    }
    let mut expected = Vec::new();
    for (id, history) in ids.iter().zip(history) {
        let mut p = store
            .open_document(id)
            .map_err(|e| fail("opening a document", e))?;
        let state = read_state(&p).map_err(|e| fail("reading", e))?;
        if p.sizes() != state.sizes() {
            return Err(format!(
                "{id}: sizes {:?} but contents {:?}",
                p.sizes(),
                state.sizes()
            ));
        }
        if !matches_a_prefix(history, &state, listed.contains(id)) {
            return Err(format!(
                "{id}: the recovered state is no prefix of its {} events that includes the {} acknowledged",
                history.events.len(),
                history.acked
            ));
        }
        let extra = Batch::new().set_sync_state(b"after recovery".to_vec(), id.as_bytes().to_vec());
        p.apply(extra.clone())
            .map_err(|e| fail("writing after recovery", e))?;
        p.flush().map_err(|e| fail("flushing after recovery", e))?;
        let mut state = state;
        state.apply(extra);
        expected.push(state);
    }
    drop(store);
    fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
    let store = open(fs).map_err(|e| fail("reopening after the second crash", e))?;
    for (id, expected) in ids.iter().zip(&expected) {
        let p = store
            .open_document(id)
            .map_err(|e| fail("opening after the second crash", e))?;
        if p.recovered_bytes() != 0 || read_state(&p).ok().as_ref() != Some(expected) {
            return Err(format!("{id}: a write flushed after recovery was lost"));
        }
    }
    Ok(())
}

fn seeds() -> u64 {
    std::env::var("PERSISTER_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

/// Crashes the workload at every I/O call for `seeds` seeds, and checks each crash.
/// Returns the number of crash points checked.
fn crash_everywhere(
    mode: CrashMode,
    seeds: u64,
    break_dir_syncs: bool,
) -> std::result::Result<u64, String> {
    let mut points = 0;
    for seed in 0..seeds {
        let fs = SimFs::new();
        workload(&fs, seed, &mut Default::default()).map_err(|e| format!("seed {seed}: {e}"))?;
        let calls = fs.ops();
        // Call `calls` does not exist: that run ends cleanly, then loses what is unsynced.
        for crash_at in 0..=calls {
            let fs = SimFs::new();
            if break_dir_syncs {
                fs.ignore_dir_syncs();
            }
            fs.crash_at(crash_at);
            let mut history = Default::default();
            let result = workload(&fs, seed, &mut history);
            if result.is_ok() != (crash_at == calls) {
                return Err(format!(
                    "seed {seed}, crash at {crash_at}: the run did not stop there"
                ));
            }
            fs.reboot(mode, &mut Rng::new(seed << 32 | crash_at));
            check(&fs, &history).map_err(|e| {
                format!("{mode:?}, seed {seed}, crash at I/O call {crash_at} of {calls}: {e}")
            })?;
            points += 1;
        }
    }
    Ok(points)
}

fn run(mode: CrashMode) -> std::result::Result<(), String> {
    let seeds = seeds();
    let points = crash_everywhere(mode, seeds, false)?;
    println!("{mode:?}: {seeds} seeds, {points} crash points, every one recovered");
    assert!(
        points > seeds * 40,
        "the workload makes too few I/O calls: {points}"
    );
    Ok(())
}

#[test]
fn power_loss_dropping_unsynced_data_loses_nothing_flushed() -> std::result::Result<(), String> {
    run(CrashMode::DropUnsynced)
}

#[test]
fn power_loss_keeping_some_unsynced_sectors_loses_nothing_flushed()
-> std::result::Result<(), String> {
    run(CrashMode::KeepSomeSectors)
}

#[test]
fn power_loss_tearing_the_last_write_loses_nothing_flushed() -> std::result::Result<(), String> {
    run(CrashMode::TearLastWrite)
}

/// The control: on a disk whose directory syncs do nothing, the same loop finds a
/// flushed write lost, so the loop can fail.
#[test]
fn crash_loop_catches_a_store_whose_directory_syncs_do_nothing() {
    let result = crash_everywhere(CrashMode::DropUnsynced, 1, true);
    assert!(
        matches!(&result, Err(e) if e.contains("acknowledged")),
        "{result:?}"
    );
}
