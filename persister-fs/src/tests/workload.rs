//! The workload the power-loss tests crash, and the check of what a crash left.

use std::path::Path;
use std::sync::Arc;

use persister_core::{
    ActorId, Batch, DocumentId, DocumentState, Error, Persister, Result, Store, Write,
};

use crate::sim::{Rng, SimFs};
use crate::{FsOptions, FsPersister, FsStore};

const FLUSHES: usize = 10;

/// One id named by its hex digits, one by its hash.
fn ids() -> [DocumentId; 2] {
    [
        DocumentId::from("a/../b"),
        DocumentId::from(vec![0xfe; 300]),
    ]
}

fn open(fs: &SimFs) -> Result<FsStore> {
    let options = FsOptions::default()
        .with_rewrite_min_len(1024)
        .with_rewrite_dead_share(0.3);
    FsStore::open_on(Arc::new(fs.clone()), Path::new("/disk/store"), options)
}

/// What happened to one document, in order.
#[derive(Clone, Debug)]
enum Event {
    Apply(Batch),
    Remove,
}

/// A document's events, and how many of them a flush or a removal acknowledged.
#[derive(Clone, Debug, Default)]
pub(super) struct History {
    events: Vec<Event>,
    acked: usize,
    /// Whether the flush whose sync failed was this document's log's (not a new log's,
    /// as a rewrite on flush writes), so that reopening rewrote the log whole.
    pub(super) rewritten_after_failed_sync: bool,
}

/// The histories of the workload's two documents.
pub(super) type Histories = [History; 2];

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

/// Ten flushes over two documents, with overwrites and removals that get the logs
/// rewritten, a document removed and written again, a handle dropped and reopened, a
/// flush whose sync fails followed by reopening the store and writing on, and a clean
/// close.
/// Runs until it ends or an I/O call fails, recording every event first.
pub(super) fn workload(fs: &SimFs, seed: u64, history: &mut Histories) -> Result<()> {
    let mut rng = Rng::new(seed);
    let ids = ids();
    let mut store = open(fs)?;
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
        if round == 8 {
            // The other document's writes are flushed, so the reopening below
            // discards none of them.
            let other = history[1 - d].events.len();
            handle(&mut handles, 1 - d)?.flush()?;
            history[1 - d].acked = other;
            fs.fail_next_sync();
            match handle(&mut handles, d)?.flush() {
                Err(e) if fs.crashed() => return Err(e),
                Err(Error::Io { action: "sync", .. }) => {}
                Err(e) => {
                    return Err(Error::InvalidInput {
                        what: "workload",
                        reason: format!("a flush whose sync failed returned another error: {e}"),
                    });
                }
                Ok(_) => {
                    return Err(Error::InvalidInput {
                        what: "workload",
                        reason: "a flush whose sync failed returned Ok".into(),
                    });
                }
            }
            let dir = Path::new("/disk/store");
            let dir = crate::io::Fs::dir_key(fs, dir).map_err(|e| Error::io("look up", dir, e))?;
            let noted = fs.failures().any_in(&dir);
            // As the poison error says: every handle dropped, the store reopened in
            // the same process. The failed flush is there, all of it or none.
            drop(handles);
            drop(store);
            store = open(fs)?;
            handles = [
                Some(store.open_document(&ids[0])?),
                Some(store.open_document(&ids[1])?),
            ];
            if fs.failures().any_in(&dir) {
                return Err(Error::InvalidInput {
                    what: "workload",
                    reason: "a log whose sync failed was not rewritten when opened again".into(),
                });
            }
            history[d].rewritten_after_failed_sync = noted;
            let p = handle(&mut handles, d)?;
            let kept = matching_prefix(&history[d], &read_state(p)?, true).ok_or_else(|| {
                Error::InvalidInput {
                    what: "workload",
                    reason: "after a failed flush the store reopened to no prefix of the writes"
                        .into(),
                }
            })?;
            history[d].events.truncate(kept);
            // A flush acknowledged after the reopening must survive a power loss.
            let batch = random_batch(&mut rng);
            history[d].events.push(Event::Apply(batch.clone()));
            let p = handle(&mut handles, d)?;
            p.apply(batch)?;
            p.flush()?;
            history[d].acked = history[d].events.len();
            continue;
        }
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
    // Unflushed writes of the last round are discarded; closing writes the clean-close
    // record, whose I/O calls are crash points too.
    drop(handles);
    store.close()
}

/// Why [`recover`] stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// An operation failed: expected only when the simulated machine is down.
    Io(Error),
    /// The store broke its contract.
    Broken(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "an operation failed: {e}"),
            Failure::Broken(what) => f.write_str(what),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Io(e)
    }
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

/// The length of a prefix of `history`, at least the acknowledged one, that gives
/// `state` and the document's existence. A batch applied in part matches no prefix.
fn matching_prefix(history: &History, state: &DocumentState, listed: bool) -> Option<usize> {
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
            return Some(k);
        }
    }
    None
}

/// Reopens the store after a crash, checks each document against its history (and
/// cuts the history to what survived), then writes and flushes one more batch to each,
/// recording it, and closes the store. Returns whether opening dropped a torn tail,
/// which the store's generic report must say too.
pub(super) fn recover(fs: &SimFs, history: &mut Histories) -> Result<bool, Failure> {
    let store = open(fs)?;
    let listed = store.list_documents()?;
    let ids = ids();
    if let Some(stray) = listed.iter().find(|id| !ids.contains(id)) {
        return Err(Failure::Broken(format!(
            "a document never written is listed: {stray}"
        )));
    }
    let mut dropped = false;
    for (id, history) in ids.iter().zip(history) {
        let mut p = store.open_document(id)?;
        let reported = store
            .recovered()
            .iter()
            .any(|r| r.document.as_ref() == Some(id));
        if reported != (p.recovered_bytes() > 0) {
            return Err(Failure::Broken(format!(
                "{id}: the handle and the store report different torn tails"
            )));
        }
        dropped |= p.recovered_bytes() > 0;
        let state = read_state(&p)?;
        if p.sizes() != state.sizes() {
            let sizes = p.sizes();
            return Err(Failure::Broken(format!(
                "{id}: sizes {sizes:?} but contents {:?}",
                state.sizes()
            )));
        }
        let Some(kept) = matching_prefix(history, &state, listed.contains(id)) else {
            return Err(Failure::Broken(format!(
                "{id}: the state is no prefix of its {} events that includes the {} acknowledged",
                history.events.len(),
                history.acked
            )));
        };
        // What the crash lost is gone for good: later events follow the kept prefix.
        history.events.truncate(kept);
        let extra =
            Batch::new().set_sync_state(b"recovered".to_vec(), vec![history.events.len() as u8]);
        history.events.push(Event::Apply(extra.clone()));
        p.apply(extra)?;
        p.flush()?;
        history.acked = history.events.len();
    }
    store.close()?;
    Ok(dropped)
}
