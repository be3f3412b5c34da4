//! Atomic batches of writes.

use crate::ids::{MAX_BATCH_LEN, MAX_VALUE_LEN, check_len, validate_peer_id};
use crate::{ActorId, Result};

/// One write to a persister. A [`Batch`] is a sequence of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Store a change under `(actor, seq)`, replacing any value already there.
    InsertChange {
        /// The actor that made the change.
        actor: ActorId,
        /// The change's sequence number for that actor.
        seq: u64,
        /// The change's bytes.
        value: Vec<u8>,
    },
    /// Remove the change under `(actor, seq)`; nothing happens when there is none.
    RemoveChange {
        /// The actor that made the change.
        actor: ActorId,
        /// The change's sequence number for that actor.
        seq: u64,
    },
    /// Store the compacted document, replacing any document already there.
    SetDocument(Vec<u8>),
    /// Store the sync state of a peer, replacing any state already there.
    SetSyncState {
        /// The peer's id.
        peer: Vec<u8>,
        /// The encoded sync state.
        state: Vec<u8>,
    },
    /// Remove the sync state of a peer; nothing happens when there is none.
    RemoveSyncState {
        /// The peer's id.
        peer: Vec<u8>,
    },
}

impl Write {
    /// The bytes of keys and values this write carries.
    pub fn payload_len(&self) -> usize {
        match self {
            Write::InsertChange { actor, value, .. } => actor.as_bytes().len() + 8 + value.len(),
            Write::RemoveChange { actor, .. } => actor.as_bytes().len() + 8,
            Write::SetDocument(value) => value.len(),
            Write::SetSyncState { peer, state } => peer.len() + state.len(),
            Write::RemoveSyncState { peer } => peer.len(),
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            Write::InsertChange { actor, value, .. } => {
                actor.validate()?;
                check_len("change", value.len(), MAX_VALUE_LEN)
            }
            Write::RemoveChange { actor, .. } => actor.validate(),
            Write::SetDocument(value) => check_len("document", value.len(), MAX_VALUE_LEN),
            Write::SetSyncState { peer, state } => {
                validate_peer_id(peer)?;
                check_len("sync state", state.len(), MAX_VALUE_LEN)
            }
            Write::RemoveSyncState { peer } => validate_peer_id(peer),
        }
    }
}

/// Writes applied all-or-nothing by [`Persister::apply`](crate::Persister::apply).
///
/// Writes take effect in the order they were added, so a later write to the same key
/// wins. Build one with the chained methods:
///
/// ```
/// use persister_core::{ActorId, Batch};
///
/// let actor = ActorId::new([1; 16]);
/// let batch = Batch::new()
///     .set_document(b"compacted".to_vec())
///     .remove_change(actor.clone(), 1)
///     .remove_change(actor, 2);
/// assert_eq!(batch.len(), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write.
    pub fn push(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// Adds an [`Write::InsertChange`].
    pub fn insert_change(mut self, actor: ActorId, seq: u64, value: Vec<u8>) -> Self {
        self.push(Write::InsertChange { actor, seq, value });
        self
    }

    /// Adds a [`Write::RemoveChange`].
    pub fn remove_change(mut self, actor: ActorId, seq: u64) -> Self {
        self.push(Write::RemoveChange { actor, seq });
        self
    }

    /// Adds a [`Write::SetDocument`].
    pub fn set_document(mut self, document: Vec<u8>) -> Self {
        self.push(Write::SetDocument(document));
        self
    }

    /// Adds a [`Write::SetSyncState`].
    pub fn set_sync_state(mut self, peer: Vec<u8>, state: Vec<u8>) -> Self {
        self.push(Write::SetSyncState { peer, state });
        self
    }

    /// Adds a [`Write::RemoveSyncState`].
    pub fn remove_sync_state(mut self, peer: Vec<u8>) -> Self {
        self.push(Write::RemoveSyncState { peer });
        self
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// The writes, by value.
    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The bytes of keys and values the batch carries.
    pub fn payload_len(&self) -> usize {
        self.writes.iter().map(Write::payload_len).sum()
    }

    /// Checks every limit: actor ids of 1 to [`MAX_ACTOR_ID_LEN`](crate::MAX_ACTOR_ID_LEN)
    /// bytes, peer ids of at most [`MAX_PEER_ID_LEN`](crate::MAX_PEER_ID_LEN), values of at
    /// most [`MAX_VALUE_LEN`], and at most [`MAX_BATCH_LEN`] bytes in all. Every backend
    /// calls this before applying anything, so a refused batch leaves no trace.
    pub fn validate(&self) -> Result<()> {
        validate_writes(&self.writes)
    }
}

/// [`Batch::validate`] of a batch holding `writes`.
pub(crate) fn validate_writes(writes: &[Write]) -> Result<()> {
    for write in writes {
        write.validate()?;
    }
    let len = writes.iter().map(Write::payload_len).sum();
    check_len("batch", len, MAX_BATCH_LEN)
}

impl From<Vec<Write>> for Batch {
    fn from(writes: Vec<Write>) -> Self {
        Self { writes }
    }
}

impl FromIterator<Write> for Batch {
    fn from_iter<I: IntoIterator<Item = Write>>(iter: I) -> Self {
        Self {
            writes: iter.into_iter().collect(),
        }
    }
}

impl Extend<Write> for Batch {
    fn extend<I: IntoIterator<Item = Write>>(&mut self, iter: I) {
        self.writes.extend(iter);
    }
}

impl IntoIterator for Batch {
    type Item = Write;
    type IntoIter = std::vec::IntoIter<Write>;

    fn into_iter(self) -> Self::IntoIter {
        self.writes.into_iter()
    }
}
