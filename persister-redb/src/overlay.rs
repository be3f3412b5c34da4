//! Writes a handle has applied but not yet committed to the file.

use std::collections::BTreeMap;
use std::fmt;

use persister_core::ActorId;

/// The newest value of each key a handle wrote since its last commit: `Some(bytes)`, or
/// `None` where it removed the key. Reads look here first, then in the file.
#[derive(Default)]
pub(crate) struct Overlay {
    changes: BTreeMap<ActorId, BTreeMap<u64, Option<Vec<u8>>>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

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
        self.changes
            .get(actor)
            .and_then(|seqs| seqs.get(&seq))
            .map(Option::as_deref)
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
    pub fn put_change(&mut self, actor: ActorId, seq: u64, value: Option<Vec<u8>>) {
        self.changes.entry(actor).or_default().insert(seq, value);
    }

    /// Drops what is held for `(actor, seq)`, for a key the file cannot hold.
    pub fn forget_change(&mut self, actor: &ActorId, seq: u64) {
        if let Some(seqs) = self.changes.get_mut(actor) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.changes.remove(actor);
            }
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
        self.changes.iter().flat_map(|(actor, seqs)| {
            seqs.iter()
                .map(move |(seq, value)| (actor, *seq, value.as_deref()))
        })
    }

    /// Every held sync state, ordered by peer id.
    pub fn sync_states(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.sync_states
            .iter()
            .map(|(peer, value)| (peer.as_slice(), value.as_deref()))
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
