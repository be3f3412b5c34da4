//! The state of one document held in memory.

use std::collections::BTreeMap;

use crate::{ActorId, Batch, StoredSizes, Write};

/// One document's changes, compacted document and sync states, in memory, with exact
/// [`StoredSizes`].
///
/// It is the memory backend's storage, the fs backend's index, and the model the
/// reliability tests compare every backend against. [`apply`](DocumentState::apply)
/// does not check limits: callers validate the batch first.
///
/// The changes take a few large allocations, not one or more each: a document takes
/// one small write per edit, and thousands of small allocations kept until compaction
/// would be strewn between the application's own (a CRDT's items), which then spread
/// over more cache lines and pages and make the application's own walks slower. Their
/// bytes live in one buffer, which drops the bytes of removed and replaced changes when
/// they outweigh the live ones and empties when the last change goes, as after a
/// compaction; their keys, in one sorted list per actor, where a change above the
/// actor's highest seq (the usual case) is appended and one below it is inserted.
#[derive(Clone, Debug, Default)]
pub struct DocumentState {
    /// By actor, then seq: one `ActorId` per actor, and a seq compares as an integer.
    /// No actor's map is empty. Each value is where its bytes are in `bytes`.
    changes: BTreeMap<ActorId, Seqs>,
    /// The bytes of every change, and of removed ones until they are dropped.
    bytes: Vec<u8>,
    /// How many bytes of `bytes` belong to no change.
    dead: usize,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Vec<u8>>,
    sizes: StoredSizes,
}

/// Where a change's bytes are in [`DocumentState`]'s buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
}

/// One actor's changes: `(seq, where its bytes are)`, sorted by seq, `None` for a
/// removed one until removed ones outnumber the rest.
#[derive(Clone, Debug, Default)]
struct Seqs {
    entries: Vec<(u64, Option<Span>)>,
    live: usize,
}

impl Seqs {
    fn find(&self, seq: u64) -> Result<usize, usize> {
        match self.entries.last() {
            Some((last, _)) if *last < seq => Err(self.entries.len()),
            _ => self.entries.binary_search_by_key(&seq, |(s, _)| *s),
        }
    }

    fn get(&self, seq: u64) -> Option<Span> {
        self.entries[self.find(seq).ok()?].1
    }

    /// Holds `span` for `seq`; returns the span it replaces.
    fn insert(&mut self, seq: u64, span: Span) -> Option<Span> {
        match self.find(seq) {
            Ok(i) => {
                let old = self.entries[i].1.replace(span);
                self.live += usize::from(old.is_none());
                old
            }
            Err(i) => {
                self.entries.insert(i, (seq, Some(span)));
                self.live += 1;
                None
            }
        }
    }

    /// Removes `seq`; returns its span.
    fn remove(&mut self, seq: u64) -> Option<Span> {
        let i = self.find(seq).ok()?;
        let old = self.entries[i].1.take()?;
        self.live -= 1;
        if self.entries.len() >= 64 && self.entries.len() > 2 * self.live {
            self.entries.retain(|(_, span)| span.is_some());
        }
        Some(old)
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn iter(&self) -> impl Iterator<Item = (u64, Span)> + '_ {
        self.entries
            .iter()
            .filter_map(|(seq, span)| span.map(|span| (*seq, span)))
    }

    fn spans_mut(&mut self) -> impl Iterator<Item = &mut Span> {
        self.entries
            .iter_mut()
            .filter_map(|(_, span)| span.as_mut())
    }
}

/// Dead bytes below this are never worth a copy of the live ones.
const MIN_DEAD: usize = 64 * 1024;

/// Equal when they hold the same changes, document and sync states, however their
/// buffers are laid out.
impl PartialEq for DocumentState {
    fn eq(&self, other: &Self) -> bool {
        self.sizes == other.sizes
            && self.document == other.document
            && self.sync_states == other.sync_states
            && self.changes().eq(other.changes())
    }
}

impl Eq for DocumentState {}

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
                let span = Span {
                    start: self.bytes.len(),
                    len: value.len(),
                };
                self.bytes.extend_from_slice(&value);
                let seqs = match self.changes.get_mut(&actor) {
                    Some(seqs) => seqs,
                    None => self.changes.entry(actor).or_default(),
                };
                let old = seqs.insert(seq, span);
                self.sizes
                    .replace_change(old.map(|o| o.len as u64), Some(span.len as u64));
                if let Some(old) = old {
                    self.drop_bytes(old);
                }
            }
            Write::RemoveChange { actor, seq } => {
                let Some(seqs) = self.changes.get_mut(&actor) else {
                    return;
                };
                if let Some(old) = seqs.remove(seq) {
                    self.sizes.replace_change(Some(old.len as u64), None);
                    if seqs.is_empty() {
                        self.changes.remove(&actor);
                    }
                    self.drop_bytes(old);
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
        let bytes = &self.bytes;
        let all = self.changes.iter().flat_map(move |(actor, seqs)| {
            seqs.iter()
                .map(move |(seq, span)| (actor, seq, span.of(bytes)))
        });
        Counted {
            inner: all,
            left: self.sizes.change_count as usize,
        }
    }

    /// The change stored under `(actor, seq)`.
    pub fn change(&self, actor: &ActorId, seq: u64) -> Option<&[u8]> {
        Some(self.changes.get(actor)?.get(seq)?.of(&self.bytes))
    }

    /// Accounts the bytes of a change no longer held, and drops every such byte once
    /// they outweigh the live ones (at once when no change is left).
    fn drop_bytes(&mut self, old: Span) {
        self.dead += old.len;
        if self.changes.is_empty() {
            self.bytes.clear();
            self.dead = 0;
        } else if self.dead >= MIN_DEAD && self.dead > self.bytes.len() / 2 {
            let mut bytes = Vec::with_capacity(self.bytes.len() - self.dead);
            for span in self.changes.values_mut().flat_map(Seqs::spans_mut) {
                let start = bytes.len();
                bytes.extend_from_slice(span.of(&self.bytes));
                span.start = start;
            }
            self.bytes = bytes;
            self.dead = 0;
        }
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

impl Span {
    fn of(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start..self.start + self.len]
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

    #[test]
    fn removed_and_replaced_bytes_are_dropped_and_the_rest_kept() {
        let actor = ActorId::new([7]);
        let value = |seq: u64| vec![seq as u8; 1_000];
        let mut state = DocumentState::new();
        for seq in 0..300 {
            state.apply_write(Write::InsertChange {
                actor: actor.clone(),
                seq,
                value: value(seq),
            });
        }
        // Replacing and removing most changes leaves far more dead bytes than live.
        for seq in 0..100 {
            state.apply_write(Write::InsertChange {
                actor: actor.clone(),
                seq,
                value: vec![1, 2, 3],
            });
        }
        for seq in 100..290 {
            state.apply_write(Write::RemoveChange {
                actor: actor.clone(),
                seq,
            });
        }
        assert!(state.bytes.len() - state.dead < 2 * MIN_DEAD);
        assert!(state.dead < MIN_DEAD || state.dead <= state.bytes.len() / 2);
        assert_eq!(state.changes().len(), 110);
        for seq in 0..100 {
            assert_eq!(state.change(&actor, seq), Some(&[1u8, 2, 3][..]));
        }
        for seq in 290..300 {
            assert_eq!(state.change(&actor, seq), Some(&value(seq)[..]));
        }
        assert_eq!(state.sizes().changes, 100 * 3 + 10 * 1_000);

        // The last change gone, nothing is kept.
        for seq in (0..100).chain(290..300) {
            state.apply_write(Write::RemoveChange {
                actor: actor.clone(),
                seq,
            });
        }
        assert!(state.bytes.is_empty());
        assert_eq!(state, DocumentState::new());
    }
}
