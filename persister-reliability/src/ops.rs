//! The operations of the model and kill tests, and the small key space they draw
//! from: few documents, actors, sequence numbers and peers, so that random
//! operations overwrite and remove each other's data often.

use persister_core::{
    ActorId, Batch, DocumentId, DynPersister, MAX_ACTOR_ID_LEN, MAX_PEER_ID_LEN, MAX_VALUE_LEN,
    Persister, Result, Write,
};

use crate::Rng;

/// The document ids: empty, prefixes of each other, path-like, not UTF-8.
pub const DOCUMENTS: [&[u8]; 6] = [b"", b"a", b"a/../b", b"1", b"10", b"\xff\x00"];

/// The sequence numbers changes are stored under, including both extremes.
pub const SEQS: [u64; 6] = [0, 1, 2, 3, 4, u64::MAX];

/// How many actors and peers [`actor`] and [`peer`] tell apart.
pub const ACTORS: usize = 4;
/// See [`ACTORS`].
pub const PEERS: usize = 4;

/// The id of document `i` (modulo the number of [`DOCUMENTS`]).
pub fn document_id(i: usize) -> DocumentId {
    DocumentId::new(DOCUMENTS[i % DOCUMENTS.len()])
}

/// Actor `i`: one byte, a prefix of another, the typical 16 bytes, the maximum.
pub fn actor(i: usize) -> ActorId {
    match i % ACTORS {
        0 => ActorId::new([1]),
        1 => ActorId::new([1, 0]),
        2 => ActorId::new([2; 16]),
        _ => ActorId::new(vec![3; MAX_ACTOR_ID_LEN]),
    }
}

/// Peer `i`: empty, a prefix of another, with a NUL, not UTF-8.
pub fn peer(i: usize) -> Vec<u8> {
    match i % PEERS {
        0 => Vec::new(),
        1 => b"p".to_vec(),
        2 => b"p\0q".to_vec(),
        _ => vec![0xff; 3],
    }
}

/// A write that breaks a limit, so that its whole batch must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadWrite {
    /// A document one byte over [`MAX_VALUE_LEN`] (zeroed lazily, so cheap to make).
    ValueTooLarge,
    /// A change whose actor id is empty.
    EmptyActor,
    /// A change whose actor id is one byte over the maximum.
    ActorTooLong,
    /// A sync state whose peer id is one byte over the maximum.
    PeerTooLong,
}

impl BadWrite {
    /// Every kind.
    pub const ALL: [BadWrite; 4] = [
        BadWrite::ValueTooLarge,
        BadWrite::EmptyActor,
        BadWrite::ActorTooLong,
        BadWrite::PeerTooLong,
    ];

    /// The write itself.
    pub fn write(self) -> Write {
        match self {
            BadWrite::ValueTooLarge => Write::SetDocument(vec![0; MAX_VALUE_LEN + 1]),
            BadWrite::EmptyActor => Write::InsertChange {
                actor: ActorId::new(Vec::new()),
                seq: 1,
                value: b"x".to_vec(),
            },
            BadWrite::ActorTooLong => Write::RemoveChange {
                actor: ActorId::new(vec![4; MAX_ACTOR_ID_LEN + 1]),
                seq: 1,
            },
            BadWrite::PeerTooLong => Write::SetSyncState {
                peer: vec![5; MAX_PEER_ID_LEN + 1],
                state: b"s".to_vec(),
            },
        }
    }
}

/// One step of a model or kill test. Documents are indices into [`DOCUMENTS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Apply a batch with [`Persister::apply`].
    Apply {
        /// The document.
        doc: usize,
        /// The batch.
        batch: Batch,
    },
    /// Apply one write through the matching single-write method
    /// ([`Persister::insert_changes`] and friends).
    Single {
        /// The document.
        doc: usize,
        /// The write.
        write: Write,
    },
    /// Apply `batch` with `bad` inserted at position `at`: it must be refused whole.
    Refused {
        /// The document.
        doc: usize,
        /// The valid writes around the bad one.
        batch: Batch,
        /// The write over a limit.
        bad: BadWrite,
        /// Where it goes in the batch (clamped to its length).
        at: usize,
    },
    /// Compaction: set the document and remove every change with a sequence number up
    /// to `up_to`, in one batch.
    Compact {
        /// The document.
        doc: usize,
        /// The compacted document.
        document: Vec<u8>,
        /// The last sequence number removed, for every actor.
        up_to: u64,
    },
    /// Flush the document's handle.
    Flush {
        /// The document.
        doc: usize,
    },
    /// Flush every handle with writes since its last flush.
    FlushAll,
    /// Drop every handle and the store, and open it again.
    Reopen,
    /// Remove the document with all its data.
    RemoveDocument {
        /// The document.
        doc: usize,
    },
}

impl Op {
    /// The document and the batch this op applies and that must succeed, if any.
    pub fn batch(&self) -> Option<(usize, Batch)> {
        match self {
            Op::Apply { doc, batch } => Some((*doc, batch.clone())),
            Op::Single { doc, write } => Some((*doc, Batch::from(vec![write.clone()]))),
            Op::Compact {
                doc,
                document,
                up_to,
            } => Some((*doc, compaction(document.clone(), *up_to))),
            _ => None,
        }
    }
}

/// The compaction batch: the document, then the removal of every change of every
/// actor with a sequence number up to `up_to`.
pub fn compaction(document: Vec<u8>, up_to: u64) -> Batch {
    let mut batch = Batch::new().set_document(document);
    for a in 0..ACTORS {
        for seq in SEQS.into_iter().filter(|&s| s <= up_to) {
            batch.push(Write::RemoveChange {
                actor: actor(a),
                seq,
            });
        }
    }
    batch
}

/// `batch` with `bad` inserted at position `at` (clamped to its length).
pub fn with_bad_write(batch: &Batch, bad: BadWrite, at: usize) -> Batch {
    let mut writes = batch.writes().to_vec();
    writes.insert(at.min(writes.len()), bad.write());
    Batch::from(writes)
}

/// Applies `write` through the single-write method that matches it.
pub fn apply_single(p: &mut DynPersister, write: Write) -> Result<()> {
    match write {
        Write::InsertChange { actor, seq, value } => p.insert_changes(vec![(actor, seq, value)]),
        Write::RemoveChange { actor, seq } => p.remove_changes(vec![(&actor, seq)]),
        Write::SetDocument(value) => p.set_document(value),
        Write::SetSyncState { peer, state } => p.set_sync_state(peer, state),
        Write::RemoveSyncState { peer } => p.remove_sync_states(&[peer.as_slice()]),
    }
}

/// A random value: mostly short, sometimes empty, sometimes over a 4 KiB page.
pub fn random_value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 0,
        1 => 4096 + rng.index(1024),
        _ => 1 + rng.index(64),
    };
    rng.bytes(len)
}

/// A random valid write on the small key space.
pub fn random_write(rng: &mut Rng) -> Write {
    let seq = SEQS[rng.index(SEQS.len())];
    match rng.below(10) {
        0..=4 => Write::InsertChange {
            actor: actor(rng.index(ACTORS)),
            seq,
            value: random_value(rng),
        },
        5 => Write::RemoveChange {
            actor: actor(rng.index(ACTORS)),
            seq,
        },
        6 => Write::SetDocument(random_value(rng)),
        7 | 8 => Write::SetSyncState {
            peer: peer(rng.index(PEERS)),
            state: random_value(rng),
        },
        _ => Write::RemoveSyncState {
            peer: peer(rng.index(PEERS)),
        },
    }
}

/// A random batch of 1 to 8 valid writes.
pub fn random_batch(rng: &mut Rng) -> Batch {
    (0..1 + rng.index(8)).map(|_| random_write(rng)).collect()
}

/// One random step of a kill-test workload on documents `0..docs`: batches, single
/// writes, compactions, refused batches (never the large one: a workload must stay
/// quick), removals and flushes of every handle.
pub fn random_workload_op(rng: &mut Rng, docs: usize) -> Op {
    let doc = rng.index(docs);
    match rng.below(100) {
        0..=44 => Op::Apply {
            doc,
            batch: random_batch(rng),
        },
        45..=64 => Op::Single {
            doc,
            write: random_write(rng),
        },
        65..=71 => Op::Compact {
            doc,
            document: random_value(rng),
            up_to: SEQS[rng.index(SEQS.len())],
        },
        72..=74 => Op::Refused {
            doc,
            batch: random_batch(rng),
            bad: BadWrite::ALL[1 + rng.index(BadWrite::ALL.len() - 1)],
            at: rng.index(9),
        },
        75..=77 => Op::RemoveDocument { doc },
        _ => Op::FlushAll,
    }
}

/// The deterministic workload of `seed`: `len` steps on documents `0..docs`.
pub fn workload(seed: u64, len: usize, docs: usize) -> Vec<Op> {
    workload_of(seed, len, docs, false)
}

/// As [`workload`]; with `payload_only`, a step that would apply a batch carrying
/// no payload byte (an empty document, the removal of the empty peer id's sync
/// state) is drawn again, to keep a known bug of one backend out of a test of the
/// others' promises (see `RELIABILITY.md`).
pub fn workload_of(seed: u64, len: usize, docs: usize, payload_only: bool) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            loop {
                let op = random_workload_op(&mut rng, docs);
                let no_payload = op
                    .batch()
                    .is_some_and(|(_, b)| !b.is_empty() && b.payload_len() == 0);
                if !(payload_only && no_payload) {
                    break op;
                }
            }
        })
        .collect()
}
