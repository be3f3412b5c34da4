//! Writes a handle has applied but not yet committed to its engine.

use std::collections::BTreeMap;
use std::fmt;

use crate::ActorId;

/// The newest value of each key a handle wrote since its last commit: `Some(bytes)`, or
/// `None` where it removed the key. Reads look here first, then in the engine; an
/// [`Engine`](crate::Engine)'s [`commit`](crate::Engine::commit) writes them.
///
/// Each held change and sync state also records whether the engine held its key when
/// the handle first wrote it after the last commit ([`is_stored_change`]), so an
/// engine that must account out the value it replaces reads only keys it holds. A
/// removal of a key the engine does not hold is not held at all.
///
/// [`is_stored_change`]: HeldWrites::is_stored_change
///
/// The held changes take a few buffers, reused from one commit to the next, rather
/// than one or more allocations each: a document writes a small change per edit, and
/// a thousand small allocations made and freed between two flushes would be strewn
/// between the application's own (a CRDT's items), which then spread over more cache
/// lines and make the application's own walks slower. Their bytes are appended to one
/// buffer (a replaced change's old bytes stay there until the commit; they are counted
/// in [`bytes`](Self::bytes) like every write held, so `max_pending_bytes` bounds them
/// too); their keys are one sorted list per actor, where a seq above the actor's
/// highest (the usual case) is appended.
#[derive(Default)]
pub struct HeldWrites {
    /// Each actor's held changes, sorted by seq; no list is empty.
    changes: BTreeMap<ActorId, Vec<(u64, Slot)>>,
    values: Vec<u8>,
    /// Emptied lists of earlier commits, to reuse.
    spare: Vec<Vec<(u64, Slot)>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Entry>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

/// What is held for one change key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// Where its bytes are in `values` (`start`, `len`), or `None` for a removal.
    value: Option<(usize, usize)>,
    /// The engine held the key when the handle first wrote it after the last commit.
    stored: bool,
}

/// How many spare lists the held writes keep.
const SPARE_LISTS: usize = 4;

/// Where `seq` is in `seqs`, or where it would go; a seq above the last is found
/// without a search.
fn find(seqs: &[(u64, Slot)], seq: u64) -> std::result::Result<usize, usize> {
    match seqs.last() {
        Some((last, _)) if *last < seq => Err(seqs.len()),
        _ => seqs.binary_search_by_key(&seq, |(s, _)| *s),
    }
}

#[derive(Debug)]
struct Entry {
    value: Option<Vec<u8>>,
    /// The engine held the key when the handle first wrote it after the last commit.
    stored: bool,
}

/// A key's state in the held writes: `None` when they do not hold it (read the engine),
/// `Some(None)` when it was removed, `Some(Some(value))` when it was written.
pub type HeldValue<'a> = Option<Option<&'a [u8]>>;

impl HeldWrites {
    /// Payload bytes of the batches held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts `bytes` more payload bytes held.
    pub(crate) fn add_bytes(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn slot(&self, actor: &ActorId, seq: u64) -> Option<Slot> {
        let seqs = self.changes.get(actor)?;
        Some(seqs[find(seqs, seq).ok()?].1)
    }

    fn value(&self, (start, len): (usize, usize)) -> &[u8] {
        self.values.get(start..start + len).unwrap_or_default()
    }

    /// What is held for the change `(actor, seq)`.
    pub fn change(&self, actor: &ActorId, seq: u64) -> HeldValue<'_> {
        self.slot(actor, seq)
            .map(|slot| slot.value.map(|v| self.value(v)))
    }

    /// Whether the engine held the change `(actor, seq)` when it was first held (false
    /// when it is not held).
    pub fn is_stored_change(&self, actor: &ActorId, seq: u64) -> bool {
        self.slot(actor, seq).is_some_and(|slot| slot.stored)
    }

    /// What is held for the sync state of `peer`.
    pub fn sync_state(&self, peer: &[u8]) -> HeldValue<'_> {
        self.sync_states.get(peer).map(|e| e.value.as_deref())
    }

    /// Whether the engine held the sync state of `peer` when it was first held (false
    /// when it is not held).
    pub fn is_stored_sync_state(&self, peer: &[u8]) -> bool {
        self.sync_states.get(peer).is_some_and(|e| e.stored)
    }

    /// The document held, if one was set.
    pub fn document(&self) -> Option<&[u8]> {
        self.document.as_deref()
    }

    /// Whether any change (or its removal) is held.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Whether any sync state (or its removal) is held.
    pub fn has_sync_states(&self) -> bool {
        !self.sync_states.is_empty()
    }

    /// Holds `value` for `(actor, seq)`, or its removal (`None`); `stored` says whether
    /// the engine holds the key, for a key not held yet. A removal of a key the engine
    /// does not hold drops what is held instead.
    pub(crate) fn put_change(
        &mut self,
        actor: ActorId,
        seq: u64,
        value: Option<&[u8]>,
        stored: bool,
    ) {
        let found = self.changes.get(&actor).map(|seqs| find(seqs, seq));
        let stored = match (found, self.changes.get(&actor)) {
            (Some(Ok(i)), Some(seqs)) => seqs[i].1.stored,
            _ => stored,
        };
        if value.is_none() && !stored {
            if let (Some(Ok(i)), Some(seqs)) = (found, self.changes.get_mut(&actor)) {
                seqs.remove(i);
                if seqs.is_empty() {
                    self.changes.remove(&actor);
                }
            }
            return;
        }
        let value = value.map(|value| {
            let start = self.values.len();
            self.values.extend_from_slice(value);
            (start, value.len())
        });
        let slot = Slot { value, stored };
        let seqs = match self.changes.get_mut(&actor) {
            Some(seqs) => seqs,
            None => {
                let seqs = self.spare.pop().unwrap_or_default();
                self.changes.entry(actor).or_insert(seqs)
            }
        };
        match find(seqs, seq) {
            Ok(i) => seqs[i].1 = slot,
            Err(i) => seqs.insert(i, (seq, slot)),
        }
    }

    /// Takes back the buffers of `used`, held writes that were committed, when these
    /// are still empty, so that the next writes reuse them.
    pub(crate) fn reuse(&mut self, mut used: HeldWrites) {
        if !self.changes.is_empty() || self.values.capacity() >= used.values.capacity() {
            return;
        }
        used.values.clear();
        self.values = used.values;
        let lists = std::mem::take(&mut used.changes).into_values();
        for mut list in lists.chain(used.spare) {
            if self.spare.len() >= SPARE_LISTS {
                break;
            }
            list.clear();
            self.spare.push(list);
        }
    }

    /// Holds `value` for the sync state of `peer`, or its removal (`None`), as
    /// [`put_change`](Self::put_change) does.
    pub(crate) fn put_sync_state(&mut self, peer: Vec<u8>, value: Option<Vec<u8>>, stored: bool) {
        let stored = self.sync_states.get(&peer).map_or(stored, |e| e.stored);
        if value.is_none() && !stored {
            self.sync_states.remove(&peer);
            return;
        }
        self.sync_states.insert(peer, Entry { value, stored });
    }

    /// Holds the document.
    pub(crate) fn put_document(&mut self, value: Vec<u8>) {
        self.document = Some(value);
    }

    /// Every held change, ordered by `(actor bytes, seq)`.
    pub fn changes(&self) -> impl Iterator<Item = (&ActorId, u64, Option<&[u8]>)> {
        self.changes.iter().flat_map(move |(actor, seqs)| {
            seqs.iter()
                .map(move |(seq, slot)| (actor, *seq, slot.value.map(|v| self.value(v))))
        })
    }

    /// Every held sync state, ordered by peer id.
    pub fn sync_states(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.sync_states
            .iter()
            .map(|(peer, entry)| (peer.as_slice(), entry.value.as_deref()))
    }
}

/// Counts, not contents: the held writes may take megabytes.
impl fmt::Debug for HeldWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldWrites")
            .field("changes", &self.changes().count())
            .field("document", &self.document.as_ref().map(Vec::len))
            .field("sync_states", &self.sync_states.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_of_keys_the_engine_does_not_hold_are_dropped() {
        let actor = ActorId::new([1]);
        let mut held = HeldWrites::default();
        held.put_change(actor.clone(), 1, Some(b"new"), false);
        held.put_change(actor.clone(), 1, None, true);
        assert_eq!(held.change(&actor, 1), None, "the first write decides");
        held.put_change(actor.clone(), 2, Some(b"replaced"), true);
        held.put_change(actor.clone(), 2, None, false);
        assert_eq!(held.change(&actor, 2), Some(None));
        assert!(held.is_stored_change(&actor, 2));
        held.put_sync_state(b"p".to_vec(), None, false);
        assert_eq!(held.sync_state(b"p"), None);
        held.put_sync_state(b"q".to_vec(), None, true);
        assert_eq!(held.sync_state(b"q"), Some(None));
        assert!(held.is_stored_sync_state(b"q") && !held.is_stored_sync_state(b"p"));
    }
}
