//! The state of one document held in memory.

use std::collections::BTreeMap;

use crate::{ActorId, Batch, StoredSizes, Write};

/// One document's changes, compacted document and sync states, in memory, with exact
/// [`StoredSizes`].
///
/// It is the memory backend's storage, the fs backend's index, and the model the
/// reliability tests compare every backend against. [`apply`](DocumentState::apply)
/// does not check limits: callers validate the batch first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentState {
    /// By actor, then seq: one `ActorId` per actor, and a seq compares as an integer.
    /// No actor's map is empty.
    changes: BTreeMap<ActorId, BTreeMap<u64, Vec<u8>>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Vec<u8>>,
    sizes: StoredSizes,
}

impl DocumentState {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies every write of `batch`, in order.
    pub fn apply(&mut self, batch: Batch) {
        for write in batch {
            self.apply_write(write);
        }
    }

    /// Applies one write.
    pub fn apply_write(&mut self, write: Write) {
        let len = |v: &Vec<u8>| v.len() as u64;
        match write {
            Write::InsertChange { actor, seq, value } => {
                let new = len(&value);
                let seqs = match self.changes.get_mut(&actor) {
                    Some(seqs) => seqs,
                    None => self.changes.entry(actor).or_default(),
                };
                let old = seqs.insert(seq, value);
                self.sizes.replace_change(old.as_ref().map(len), Some(new));
            }
            Write::RemoveChange { actor, seq } => {
                let Some(seqs) = self.changes.get_mut(&actor) else {
                    return;
                };
                if let Some(old) = seqs.remove(&seq) {
                    self.sizes.replace_change(Some(len(&old)), None);
                    if seqs.is_empty() {
                        self.changes.remove(&actor);
                    }
                }
            }
            Write::SetDocument(value) => {
                self.sizes.replace_document(len(&value));
                self.document = Some(value);
            }
            Write::SetSyncState { peer, state } => {
                let new = len(&state);
                let old = self.sync_states.insert(peer, state);
                self.sizes
                    .replace_sync_state(old.as_ref().map(len), Some(new));
            }
            Write::RemoveSyncState { peer } => {
                if let Some(old) = self.sync_states.remove(&peer) {
                    self.sizes.replace_sync_state(Some(len(&old)), None);
                }
            }
        }
    }

    /// Every change with its key, ordered by `(actor bytes, seq)`.
    pub fn changes(&self) -> impl ExactSizeIterator<Item = (&ActorId, u64, &[u8])> {
        let all = self.changes.iter().flat_map(|(actor, seqs)| {
            seqs.iter()
                .map(move |(seq, value)| (actor, *seq, value.as_slice()))
        });
        Counted {
            inner: all,
            left: self.sizes.change_count as usize,
        }
    }

    /// The change stored under `(actor, seq)`.
    pub fn change(&self, actor: &ActorId, seq: u64) -> Option<&[u8]> {
        self.changes.get(actor)?.get(&seq).map(Vec::as_slice)
    }

    /// The compacted document, if set.
    pub fn document(&self) -> Option<&[u8]> {
        self.document.as_deref()
    }

    /// The sync state of `peer`.
    pub fn sync_state(&self, peer: &[u8]) -> Option<&[u8]> {
        self.sync_states.get(peer).map(Vec::as_slice)
    }

    /// Every sync state with its peer id, ordered by peer id.
    pub fn sync_states(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.sync_states
            .iter()
            .map(|(peer, state)| (peer.as_slice(), state.as_slice()))
    }

    /// The exact sizes of what is held.
    pub fn sizes(&self) -> StoredSizes {
        self.sizes
    }

    /// Whether nothing at all is held, not even an empty document.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.document.is_none() && self.sync_states.is_empty()
    }

    /// One batch that recreates this state in an empty document.
    pub fn to_batch(&self) -> Batch {
        let mut batch = Batch::new();
        if let Some(document) = &self.document {
            batch.push(Write::SetDocument(document.clone()));
        }
        for (actor, seq, value) in self.changes() {
            batch.push(Write::InsertChange {
                actor: actor.clone(),
                seq,
                value: value.to_vec(),
            });
        }
        for (peer, state) in &self.sync_states {
            batch.push(Write::SetSyncState {
                peer: peer.clone(),
                state: state.clone(),
            });
        }
        batch
    }
}

/// An iterator that knows how many items it has left.
struct Counted<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.left = self.left.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_ordered_by_actor_bytes_then_seq_and_counted() {
        let mut state = DocumentState::new();
        let short = ActorId::new([1]);
        let long = ActorId::new([1, 0]);
        let mut batch = Batch::new();
        for (actor, seq) in [(&long, 1), (&short, 10), (&short, 2), (&long, 0)] {
            batch = batch.insert_change(actor.clone(), seq, vec![seq as u8]);
        }
        state.apply(batch.remove_change(long.clone(), 1));
        let changes = state.changes();
        assert_eq!(changes.len(), 3);
        let keys: Vec<_> = changes.map(|(a, s, _)| (a.clone(), s)).collect();
        assert_eq!(
            keys,
            vec![(short.clone(), 2), (short.clone(), 10), (long.clone(), 0)]
        );
        assert_eq!(state.change(&short, 10), Some(&[10u8][..]));
        assert_eq!(state.change(&long, 1), None);

        // An actor whose last change is removed leaves nothing behind.
        state.apply(Batch::new().remove_change(long.clone(), 0));
        let mut expected = DocumentState::new();
        expected.apply(
            Batch::new()
                .insert_change(short.clone(), 2, vec![2])
                .insert_change(short, 10, vec![10]),
        );
        assert_eq!(state, expected);
    }
}
