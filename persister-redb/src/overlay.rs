//! Writes a handle has applied but not yet committed to the file.

use std::collections::BTreeMap;
use std::fmt;

use persister_core::ActorId;

/// The newest value of each key a handle wrote since its last commit: `Some(bytes)`, or
/// `None` where it removed the key. Reads look here first, then in the file.
///
/// The held changes take a few buffers, reused from one commit to the next, rather
/// than one or more allocations each: a document writes a small change per edit, and
/// a thousand small allocations made and freed between two flushes would be strewn
/// between the application's own (a CRDT's items), which then spread over more cache
/// lines and make the application's own walks slower. Their bytes are appended to
/// one buffer (a replaced change's old bytes stay there until the commit; they are
/// counted in [`bytes`](Self::bytes) like every write held, so `max_pending_bytes`
/// bounds them too); their keys are one sorted list per actor, where a seq above the
/// actor's highest (the usual case) is appended.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Each actor's held changes, sorted by seq. No list is all [`Slot::Forgotten`].
    changes: BTreeMap<ActorId, List>,
    values: Vec<u8>,
    /// Emptied lists of earlier commits, to reuse.
    spare: Vec<Vec<(u64, Slot)>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

/// What the overlay holds for one change key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Written: where its bytes are in `values` (`start`, `len`).
    Written(usize, usize),
    /// Removed.
    Removed,
    /// Nothing (the file decides), after [`Overlay::forget_change`].
    Forgotten,
}

/// One actor's held changes, sorted by seq, and how many of them are forgotten.
#[derive(Debug, Default)]
struct List {
    seqs: Vec<(u64, Slot)>,
    forgotten: usize,
}

/// How many spare lists an overlay keeps.
const SPARE_LISTS: usize = 4;

/// A key's state in the overlay: `None` when the overlay does not hold it (read the
/// file), `Some(None)` when it was removed, `Some(Some(value))` when it was written.
pub(crate) type Held<'a> = Option<Option<&'a [u8]>>;

impl Overlay {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn add_bytes(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    pub fn change(&self, actor: &ActorId, seq: u64) -> Held<'_> {
        let seqs = &self.changes.get(actor)?.seqs;
        let slot = seqs[find(seqs, seq).ok()?].1;
        self.held(slot)
    }

    fn held(&self, slot: Slot) -> Held<'_> {
        match slot {
            Slot::Written(start, len) => Some(Some(&self.values[start..start + len])),
            Slot::Removed => Some(None),
            Slot::Forgotten => None,
        }
    }

    /// Empties `used`, an overlay whose writes were committed, into this one's spare
    /// buffers when this one is still empty, so that the next writes reuse them.
    pub fn reuse(&mut self, mut used: Overlay) {
        if !self.changes.is_empty() || self.values.capacity() >= used.values.capacity() {
            return;
        }
        used.values.clear();
        self.values = used.values;
        let lists = std::mem::take(&mut used.changes).into_values();
        for mut list in lists.map(|list| list.seqs).chain(used.spare) {
            if self.spare.len() >= SPARE_LISTS {
                break;
            }
            list.clear();
            self.spare.push(list);
        }
    }

    pub fn sync_state(&self, peer: &[u8]) -> Held<'_> {
        self.sync_states.get(peer).map(Option::as_deref)
    }

    pub fn document(&self) -> Option<&[u8]> {
        self.document.as_deref()
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn has_sync_states(&self) -> bool {
        !self.sync_states.is_empty()
    }

    /// Holds `value` for `(actor, seq)`; `None` holds a removal.
    pub fn put_change(&mut self, actor: ActorId, seq: u64, value: Option<&[u8]>) {
        let slot = match value {
            Some(value) => {
                let start = self.values.len();
                self.values.extend_from_slice(value);
                Slot::Written(start, value.len())
            }
            None => Slot::Removed,
        };
        let list = match self.changes.get_mut(&actor) {
            Some(list) => list,
            None => {
                let seqs = self.spare.pop().unwrap_or_default();
                let list = List { seqs, forgotten: 0 };
                self.changes.entry(actor).or_insert(list)
            }
        };
        match find(&list.seqs, seq) {
            Ok(i) => {
                if list.seqs[i].1 == Slot::Forgotten {
                    list.forgotten -= 1;
                }
                list.seqs[i].1 = slot;
            }
            Err(i) => list.seqs.insert(i, (seq, slot)),
        }
    }

    /// Drops what is held for `(actor, seq)`, for a key the file cannot hold.
    pub fn forget_change(&mut self, actor: &ActorId, seq: u64) {
        let Some(list) = self.changes.get_mut(actor) else {
            return;
        };
        let Ok(i) = find(&list.seqs, seq) else {
            return;
        };
        if list.seqs[i].1 == Slot::Forgotten {
            return;
        }
        list.seqs[i].1 = Slot::Forgotten;
        list.forgotten += 1;
        let held = list.seqs.len() - list.forgotten;
        if held == 0 {
            self.changes.remove(actor);
        } else if list.seqs.len() >= 64 && list.seqs.len() > 2 * held {
            list.seqs.retain(|(_, s)| *s != Slot::Forgotten);
            list.forgotten = 0;
        }
    }

    pub fn put_sync_state(&mut self, peer: Vec<u8>, value: Option<Vec<u8>>) {
        self.sync_states.insert(peer, value);
    }

    pub fn forget_sync_state(&mut self, peer: &[u8]) {
        self.sync_states.remove(peer);
    }

    pub fn put_document(&mut self, value: Vec<u8>) {
        self.document = Some(value);
    }

    /// Every held change, ordered by `(actor bytes, seq)`.
    pub fn changes(&self) -> impl Iterator<Item = (&ActorId, u64, Option<&[u8]>)> {
        self.changes.iter().flat_map(move |(actor, list)| {
            list.seqs
                .iter()
                .filter_map(move |(seq, slot)| Some((actor, *seq, self.held(*slot)?)))
        })
    }

    /// Every held sync state, ordered by peer id.
    pub fn sync_states(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.sync_states
            .iter()
            .map(|(peer, value)| (peer.as_slice(), value.as_deref()))
    }
}

/// Where `seq` is in `seqs`, or where it would go; a seq above the last is found
/// without a search.
fn find(seqs: &[(u64, Slot)], seq: u64) -> Result<usize, usize> {
    match seqs.last() {
        Some((last, _)) if *last < seq => Err(seqs.len()),
        _ => seqs.binary_search_by_key(&seq, |(s, _)| *s),
    }
}

/// Counts, not contents: the overlay may hold megabytes.
impl fmt::Debug for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlay")
            .field("changes", &self.changes().count())
            .field("document", &self.document.as_ref().map(Vec::len))
            .field("sync_states", &self.sync_states.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}
