//! A deterministic workload run against a store that may fail or crash under it, and the
//! check that what a store holds afterwards is allowed.
//!
//! The workload has two documents with awkward ids, and rounds of mixed batches (new
//! changes, overwrites, removals, sync states, compactions), each round ending in one
//! flush; it also drops and reopens a handle and removes a document. Every batch inserts
//! a change no other batch has, so every prefix of a document's batches gives a distinct
//! state, and a batch applied in part matches none.

use persister_core::{
    ActorId, Batch, DocumentId, DocumentState, Error, Persister, Store, StoredSizes,
};
use persister_redb::{RedbPersister, RedbStore};
use persister_testkit::Contents;

/// The documents of the workload.
pub const DOCS: [&[u8]; 2] = [b"alpha", b"\0b/10\xff"];

/// How much longer to make the fault and crash runs: `PERSISTER_FAULT_SCALE`, default 1.
pub fn scale() -> usize {
    (persister_testkit::env_count("PERSISTER_FAULT_SCALE", 1) as usize).max(1)
}

pub fn doc_id(doc: usize) -> DocumentId {
    DocumentId::from(DOCS[doc])
}

/// One step of the workload.
#[derive(Clone, Debug)]
pub enum Op {
    Apply(usize, Batch),
    Flush(usize),
    /// Drop the document's handle without flushing, and open it again.
    Reopen(usize),
    /// Drop the document's handle, remove the document, and open it again.
    Remove(usize),
}

/// `rounds` rounds of `batches` batches each, every round ending in one flush.
pub fn ops(rounds: usize, batches: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut next_seq = [1u64; 2];
    let mut counter = 0usize;
    for round in 0..rounds {
        for b in 0..batches {
            let doc = (round + b) % 2;
            let seq = next_seq[doc];
            next_seq[doc] += 1;
            ops.push(Op::Apply(doc, batch(doc, counter, seq)));
            counter += 1;
        }
        if round == 3 {
            ops.push(Op::Reopen(0));
        }
        if round == 6 {
            ops.push(Op::Remove(1));
        }
        ops.push(Op::Flush(round % 2));
    }
    ops
}

fn value(tag: usize, len: usize) -> Vec<u8> {
    let text = format!("value {tag};");
    text.bytes().cycle().take(len.max(text.len())).collect()
}

fn batch(doc: usize, counter: usize, seq: u64) -> Batch {
    let a = ActorId::new([1u8]);
    let a0 = ActorId::new([1u8, 0]);
    let b = ActorId::new([2u8; 16]);
    let tag = counter * 10;
    let peer = |n: usize| format!("peer {}", n % 3).into_bytes();
    // A fresh key in every batch keeps every state distinct.
    let fresh = Batch::new().insert_change(a.clone(), seq, value(tag, 40 + doc));
    match counter % 5 {
        0 => fresh
            .insert_change(a0, seq, value(tag + 1, 60))
            .set_sync_state(peer(counter), value(tag + 2, 30)),
        1 => fresh.insert_change(a.clone(), seq.saturating_sub(1).max(1), value(tag + 1, 90)),
        2 => fresh
            .remove_change(a0, seq.saturating_sub(2))
            .insert_change(b, seq, value(tag + 1, 700)),
        3 => fresh
            .set_document(value(tag + 1, 3000))
            .remove_sync_state(peer(counter + 1)),
        _ => {
            let mut compaction = fresh.set_document(value(tag + 1, 5000));
            for old in 1..seq {
                compaction = compaction.remove_change(b.clone(), old);
            }
            compaction.remove_change(a, seq.saturating_sub(3))
        }
    }
}

/// What a run did: for each document, the state after each of its steps (index 0:
/// empty), and how many of them are durable for sure.
#[derive(Debug, Default)]
pub struct Outcome {
    pub history: [Vec<DocumentState>; 2],
    pub floor: [usize; 2],
    /// Operations that failed, in order.
    pub errors: Vec<String>,
    /// Flushes or removals that returned `Ok` after a fault: never allowed.
    pub ok_after_fault: Vec<String>,
    /// Whether a fault was injected before the store was closed.
    pub fault_before_close: bool,
}

impl Outcome {
    fn new() -> Self {
        Self {
            history: [vec![DocumentState::new()], vec![DocumentState::new()]],
            ..Self::default()
        }
    }

    fn push(&mut self, doc: usize, batch: Option<Batch>) {
        let mut state = match batch {
            Some(_) => self.history[doc].last().cloned().unwrap_or_default(),
            None => DocumentState::new(),
        };
        if let Some(batch) = batch {
            state.apply(batch);
        }
        self.history[doc].push(state);
    }

    /// Cuts the history of `doc` back to the latest step at or past its floor that
    /// `handle` (just opened) holds; records an error when it holds none.
    fn rewind(&mut self, doc: usize, handle: &RedbPersister, op: usize) {
        let got = match Snapshot::read(handle) {
            Ok(got) => got,
            Err(err) => return self.errors.push(format!("op {op} read: {err}")),
        };
        let floor = self.floor[doc];
        let history = &mut self.history[doc];
        match (floor..history.len())
            .rev()
            .find(|&k| Snapshot::of(&history[k]) == got)
        {
            Some(k) => history.truncate(k + 1),
            None => self.errors.push(format!(
                "op {op}: document {doc} reopened at no step at or past {floor}"
            )),
        }
    }

    fn durable(&mut self, doc: usize) {
        self.floor[doc] = self.history[doc].len() - 1;
    }
}

/// Runs `ops` on the store `open` gives, going on after errors (later operations must
/// fail too, or be allowed to succeed). `fault_fired` says whether a fault has been
/// injected yet.
pub fn run(
    open: impl FnOnce() -> persister_core::Result<RedbStore>,
    ops: &[Op],
    fault_fired: &dyn Fn() -> bool,
) -> Outcome {
    let mut outcome = Outcome::new();
    let store = match open() {
        Ok(store) => store,
        Err(err) => {
            outcome.errors.push(format!("open: {err}"));
            outcome.fault_before_close = fault_fired();
            return outcome;
        }
    };
    let mut handles: [Option<RedbPersister>; 2] = [None, None];
    let reopen = |handles: &mut [Option<RedbPersister>; 2], doc: usize, outcome: &mut Outcome| {
        handles[doc] = None;
        match store.open_document(&doc_id(doc)) {
            Ok(handle) => handles[doc] = Some(handle),
            Err(err) => outcome.errors.push(format!("open document {doc}: {err}")),
        }
    };
    reopen(&mut handles, 0, &mut outcome);
    reopen(&mut handles, 1, &mut outcome);
    for (i, op) in ops.iter().enumerate() {
        let fired = fault_fired();
        match op {
            Op::Apply(doc, batch) => {
                let Some(handle) = &mut handles[*doc] else {
                    continue;
                };
                match handle.apply(batch.clone()) {
                    Ok(()) => outcome.push(*doc, Some(batch.clone())),
                    Err(err) => outcome.errors.push(format!("op {i} apply: {err}")),
                }
            }
            Op::Flush(doc) => {
                let Some(handle) = &mut handles[*doc] else {
                    continue;
                };
                match handle.flush() {
                    Ok(_) if fired => outcome.ok_after_fault.push(format!("op {i} flush")),
                    Ok(_) => outcome.durable(*doc),
                    Err(err) => outcome.errors.push(format!("op {i} flush: {err}")),
                }
            }
            Op::Reopen(doc) => {
                // Dropping the handle discarded what it held since its last flush (its
                // own, or one past `max_pending_bytes`): the new handle is at some step
                // at or past the floor, and the history goes on from there.
                // After a fault the store's view is not what a reopen of the file gives:
                // the whole history stays possible then.
                reopen(&mut handles, *doc, &mut outcome);
                if let (Some(handle), false) = (&handles[*doc], fired) {
                    outcome.rewind(*doc, handle, i);
                }
            }
            Op::Remove(doc) => {
                handles[*doc] = None;
                let removed = store.remove_document(&doc_id(*doc));
                // Whether or not it failed, the removal may be there.
                outcome.push(*doc, None);
                match removed {
                    Ok(()) if fired => outcome.ok_after_fault.push(format!("op {i} remove")),
                    Ok(()) => outcome.durable(*doc),
                    Err(err) => outcome.errors.push(format!("op {i} remove: {err}")),
                }
                reopen(&mut handles, *doc, &mut outcome);
            }
        }
    }
    outcome.fault_before_close = fault_fired();
    drop(handles);
    drop(store);
    outcome
}

/// Everything one document holds, as read through its handle, with its sizes.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    contents: Contents,
    sizes: StoredSizes,
}

impl Snapshot {
    pub fn read(p: &RedbPersister) -> Result<Self, Error> {
        Ok(Self {
            contents: Contents::read(p)?,
            sizes: p.sizes(),
        })
    }

    pub fn of(state: &DocumentState) -> Self {
        Self {
            contents: Contents::of(state),
            sizes: state.sizes(),
        }
    }
}

/// Checks that each document of `store` is in a state of its history at or past its
/// floor, with exact sizes, and that only the workload's documents are listed.
pub fn check_recovered(store: &RedbStore, outcome: &Outcome) -> Result<(), String> {
    let listed = store
        .list_documents()
        .map_err(|e| format!("list_documents: {e}"))?;
    if let Some(stranger) = listed.iter().find(|id| !DOCS.contains(&id.as_bytes())) {
        return Err(format!("an unknown document is listed: {stranger:?}"));
    }
    for doc in 0..2 {
        let p = store
            .open_document(&doc_id(doc))
            .map_err(|e| format!("document {doc}: open: {e}"))?;
        let got = Snapshot::read(&p).map_err(|e| format!("document {doc}: read: {e}"))?;
        let history = &outcome.history[doc];
        let floor = outcome.floor[doc];
        let matching: Vec<usize> = (0..history.len())
            .filter(|&k| Snapshot::of(&history[k]) == got)
            .collect();
        if !matching.iter().any(|&k| k >= floor) {
            return Err(format!(
                "document {doc} is at step(s) {matching:?} of {} (none means a state no prefix of its batches gives); at least step {floor} was durable",
                history.len() - 1
            ));
        }
        if !got.contents.is_empty() && !listed.contains(&doc_id(doc)) {
            return Err(format!("document {doc} holds data but is not listed"));
        }
    }
    Ok(())
}
