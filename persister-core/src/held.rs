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
    /// Each actor's held changes; once settled, no list is empty.
    changes: BTreeMap<ActorId, Seqs>,
    values: Vec<u8>,
    /// Emptied lists of earlier commits, to reuse.
    spare: Vec<Vec<(u64, Slot)>>,
    /// Some list has inserted changes or vacant slots: [`settle`](Self::settle) has
    /// work to do.
    unsettled: bool,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Entry>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

/// One actor's held changes.
///
/// A change above the actor's highest held seq is appended to `sorted`; one below it
/// and not held goes to `inserted` until [`HeldWrites::settle`] merges the two in one
/// pass. A compaction removes thousands of changes below the few held since the last
/// commit, and inserting each into `sorted` would shift every held change above it. A
/// removal of a change held but not in the engine leaves its slot vacant, for the same
/// reason, until `settle` drops it.
#[derive(Default)]
struct Seqs {
    /// Sorted by seq.
    sorted: Vec<(u64, Slot)>,
    /// Sorted by seq; no seq of `sorted` is here, and each is below its last.
    inserted: Vec<(u64, Slot)>,
}

/// What is held for one change key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// Where its bytes are in `values` (`start`, `len`), or `None` for a removal.
    value: Option<(usize, usize)>,
    /// The engine held the key when the handle first wrote it after the last commit.
    stored: bool,
}

impl Slot {
    /// A slot whose key is no longer held: a removal of a key the engine does not hold
    /// (which is never held otherwise).
    const VACANT: Slot = Slot {
        value: None,
        stored: false,
    };

    fn is_held(&self) -> bool {
        *self != Self::VACANT
    }
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

impl Seqs {
    /// The slot of `seq`, vacant or not.
    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        match find(&self.sorted, seq) {
            Ok(i) => Some(&mut self.sorted[i].1),
            Err(i) if i == self.sorted.len() => None,
            Err(_) => match self.inserted.binary_search_by_key(&seq, |(s, _)| *s) {
                Ok(i) => Some(&mut self.inserted[i].1),
                Err(_) => None,
            },
        }
    }

    fn slot(&self, seq: u64) -> Option<Slot> {
        let slot = match find(&self.sorted, seq) {
            Ok(i) => self.sorted[i].1,
            Err(i) if i == self.sorted.len() => return None,
            Err(_) => {
                let i = self.inserted.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
                self.inserted[i].1
            }
        };
        slot.is_held().then_some(slot)
    }

    /// Adds `slot` for `seq`, which has none.
    fn insert(&mut self, seq: u64, slot: Slot) -> bool {
        match find(&self.sorted, seq) {
            Err(i) if i == self.sorted.len() => {
                self.sorted.push((seq, slot));
                false
            }
            _ => {
                let at = find(&self.inserted, seq).unwrap_or_else(|i| i);
                self.inserted.insert(at, (seq, slot));
                true
            }
        }
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
        self.changes.get(actor)?.slot(seq)
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
    /// does not hold drops what is held instead. Returns what was held for the key
    /// before, as [`change`](Self::change) gives it, by length.
    ///
    /// [`settle`](Self::settle) must run before the changes are read in order
    /// ([`changes`](Self::changes)); lookups of single keys need not wait for it.
    pub(crate) fn put_change(
        &mut self,
        actor: ActorId,
        seq: u64,
        value: Option<&[u8]>,
        stored: bool,
    ) -> Option<Option<u64>> {
        let Self {
            changes,
            values,
            spare,
            unsettled,
            ..
        } = self;
        let mut hold = |stored: bool| {
            if value.is_none() && !stored {
                return Slot::VACANT;
            }
            let value = value.map(|value| {
                let start = values.len();
                values.extend_from_slice(value);
                (start, value.len())
            });
            Slot { value, stored }
        };
        let seqs = match changes.get_mut(&actor) {
            Some(seqs) => seqs,
            None if value.is_none() && !stored => return None,
            None => {
                let sorted = spare.pop().unwrap_or_default();
                changes.entry(actor).or_insert(Seqs {
                    sorted,
                    inserted: Vec::new(),
                })
            }
        };
        if let Some(slot) = seqs.slot_mut(seq) {
            let old = *slot;
            let held = old.is_held();
            *slot = hold(if held { old.stored } else { stored });
            *unsettled |= !slot.is_held();
            return held.then(|| old.value.map(|(_, len)| len as u64));
        }
        let slot = hold(stored);
        if slot.is_held() {
            *unsettled |= seqs.insert(seq, slot);
        }
        None
    }

    /// Brings the held changes back in order after [`put_change`](Self::put_change):
    /// merges each actor's inserted changes into its list and drops vacant slots, in
    /// one pass per list that has any.
    pub(crate) fn settle(&mut self) {
        if !std::mem::take(&mut self.unsettled) {
            return;
        }
        let spare = &mut self.spare;
        self.changes.retain(|_, seqs| {
            if !seqs.inserted.is_empty() {
                // Two sorted runs, which the stable sort merges in one pass.
                seqs.sorted.append(&mut seqs.inserted);
                seqs.sorted.sort_by_key(|(seq, _)| *seq);
            }
            seqs.sorted.retain(|(_, slot)| slot.is_held());
            let keep = !seqs.sorted.is_empty();
            if !keep && spare.len() < SPARE_LISTS {
                spare.push(std::mem::take(&mut seqs.sorted));
            }
            keep
        });
    }

    /// Takes back the buffers of `used`, held writes that were committed, when these
    /// are still empty, so that the next writes reuse them.
    pub(crate) fn reuse(&mut self, mut used: HeldWrites) {
        if !self.changes.is_empty() || self.values.capacity() >= used.values.capacity() {
            return;
        }
        used.values.clear();
        self.values = used.values;
        let lists = std::mem::take(&mut used.changes)
            .into_values()
            .flat_map(|seqs| [seqs.sorted, seqs.inserted]);
        for mut list in lists.chain(used.spare) {
            if self.spare.len() >= SPARE_LISTS {
                break;
            }
            if list.capacity() > 0 {
                list.clear();
                self.spare.push(list);
            }
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
        debug_assert!(
            !self.unsettled,
            "held changes read before they were settled"
        );
        self.changes.iter().flat_map(move |(actor, seqs)| {
            seqs.sorted
                .iter()
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

    /// A compaction's shape: removals of stored changes below the held ones, and of
    /// held ones the engine never had; once settled, the changes read in order.
    #[test]
    fn changes_put_below_the_held_ones_read_in_order_once_settled() {
        let (a, b) = (ActorId::new([1]), ActorId::new([2]));
        let mut held = HeldWrites::default();
        for seq in [10, 11, 12] {
            assert_eq!(
                held.put_change(a.clone(), seq, Some(&[seq as u8]), false),
                None
            );
        }
        held.put_change(b.clone(), 5, Some(b"b5"), true);
        held.settle();
        // Stored changes 1 to 9 removed, below the held ones; then the held 10 and 11.
        for seq in 1..10 {
            assert_eq!(held.put_change(a.clone(), seq, None, true), None);
        }
        assert_eq!(held.put_change(a.clone(), 10, None, true), Some(Some(1)));
        assert_eq!(held.put_change(a.clone(), 11, None, false), Some(Some(1)));
        assert_eq!(
            held.change(&a, 4),
            Some(None),
            "a held removal, before settling"
        );
        assert_eq!(held.change(&a, 10), None, "not stored: not held at all");
        assert_eq!(held.change(&a, 11), None);
        // A vacant slot written again is held again, as a key the engine lacks.
        assert_eq!(held.put_change(a.clone(), 10, Some(b"again"), true), None);
        assert!(held.is_stored_change(&a, 10));
        // An inserted removal overwritten by a value keeps its stored flag.
        assert_eq!(
            held.put_change(a.clone(), 3, Some(b"three"), false),
            Some(None)
        );
        assert!(held.is_stored_change(&a, 3));
        // A removal of a key neither held nor stored holds nothing.
        assert_eq!(held.put_change(b.clone(), 4, None, false), None);
        held.settle();

        let read: Vec<(u8, u64, Option<Vec<u8>>)> = held
            .changes()
            .map(|(actor, seq, value)| (actor.as_bytes()[0], seq, value.map(<[u8]>::to_vec)))
            .collect();
        let mut expected: Vec<(u8, u64, Option<Vec<u8>>)> = (1..10)
            .map(|seq| (1, seq, (seq == 3).then(|| b"three".to_vec())))
            .collect();
        expected.push((1, 10, Some(b"again".to_vec())));
        expected.push((1, 12, Some(vec![12])));
        expected.push((2, 5, Some(b"b5".to_vec())));
        assert_eq!(read, expected);

        // Removing every held change of an actor the engine lacks drops the actor.
        let mut held = HeldWrites::default();
        held.put_change(a.clone(), 1, Some(b"x"), false);
        held.settle();
        held.put_change(a.clone(), 1, None, false);
        held.settle();
        assert!(!held.has_changes());
    }
}
