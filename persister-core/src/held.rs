//! Writes a handle has applied but not yet committed to its engine.

use std::collections::BTreeMap;
use std::fmt;

use crate::ActorId;

/// The newest value of each key a handle wrote since its last commit: `Some(bytes)`, or
/// `None` where it removed the key. Reads look here first, then in the engine; an
/// [`Engine`](crate::Engine)'s [`commit`](crate::Engine::commit) writes them.
#[derive(Default)]
pub struct HeldWrites {
    changes: BTreeMap<ActorId, BTreeMap<u64, Option<Vec<u8>>>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

/// A key's state in the overlay: `None` when the overlay does not hold it (read the
/// file), `Some(None)` when it was removed, `Some(Some(value))` when it was written.
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

    /// What is held for the change `(actor, seq)`.
    pub fn change(&self, actor: &ActorId, seq: u64) -> HeldValue<'_> {
        self.changes
            .get(actor)
            .and_then(|seqs| seqs.get(&seq))
            .map(Option::as_deref)
    }

    /// What is held for the sync state of `peer`.
    pub fn sync_state(&self, peer: &[u8]) -> HeldValue<'_> {
        self.sync_states.get(peer).map(Option::as_deref)
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

    /// Holds `value` for `(actor, seq)`; `None` holds a removal.
    pub(crate) fn put_change(&mut self, actor: ActorId, seq: u64, value: Option<Vec<u8>>) {
        self.changes.entry(actor).or_default().insert(seq, value);
    }

    /// Drops what is held for `(actor, seq)`, for a key the engine cannot hold.
    pub(crate) fn forget_change(&mut self, actor: &ActorId, seq: u64) {
        if let Some(seqs) = self.changes.get_mut(actor) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.changes.remove(actor);
            }
        }
    }

    /// Holds `value` for the sync state of `peer`; `None` holds a removal.
    pub(crate) fn put_sync_state(&mut self, peer: Vec<u8>, value: Option<Vec<u8>>) {
        self.sync_states.insert(peer, value);
    }

    /// Drops what is held for `peer`, for a key the engine cannot hold.
    pub(crate) fn forget_sync_state(&mut self, peer: &[u8]) {
        self.sync_states.remove(peer);
    }

    /// Holds the document.
    pub(crate) fn put_document(&mut self, value: Vec<u8>) {
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
