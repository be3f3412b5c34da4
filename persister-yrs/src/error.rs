//! The one error type of the crate.

use std::fmt;

use persister_core::ActorId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a [`PersistentYDoc`](crate::PersistentYDoc).
///
/// Each message says what happened and ends with what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The persister refused a read or a write. Writes that failed stay queued in the
    /// document and are retried by the next write or
    /// [`flush`](crate::PersistentYDoc::flush); nothing of the in-memory document is
    /// lost. A poisoned handle ([`persister_core::Error::Poisoned`], after a failed
    /// flush) or one that lost its lease ([`persister_core::Error::LeaseLost`]) never
    /// writes again: the edits are then carried over as [`Error::FlushFailed`] says.
    Persister(persister_core::Error),

    /// A write was applied, or nothing was queued, and the flush after it failed: the
    /// writes since the last successful flush may not survive, and the persister
    /// refuses every later write and flush ([`persister_core::Error::Poisoned`]) until
    /// the store is opened again; nothing waits in the queue to be retried. The
    /// document still holds every edit in memory: take its state with
    /// [`encode_state`](crate::PersistentYDoc::encode_state), drop it, load the
    /// document again from the reopened store, and apply the state with
    /// [`apply_update`](crate::PersistentYDoc::apply_update).
    FlushFailed(persister_core::Error),

    /// The edit was stored, but the automatic compaction that followed it failed. The
    /// store still holds every update, so nothing is lost; compaction is tried again
    /// after the next write. (A compaction applied whose flush failed is
    /// [`Error::FlushFailed`].) Not so when the handle refused it as poisoned or as
    /// having lost its lease: such a handle writes nothing more, and the edits are
    /// carried over as for a poisoned [`Error::Persister`].
    Compaction(persister_core::Error),

    /// The stored document (a Yjs v1 update) cannot be decoded or applied.
    CorruptDocument {
        /// What yrs reported.
        reason: String,
    },

    /// A stored update cannot be decoded or applied.
    CorruptUpdate {
        /// The writer it is stored under.
        actor: ActorId,
        /// The sequence number it is stored under.
        seq: u64,
        /// What yrs reported.
        reason: String,
    },

    /// A received update or sync message cannot be decoded or applied. Whatever part of
    /// it yrs applied before failing is stored.
    InvalidUpdate {
        /// What yrs reported.
        reason: String,
    },

    /// The in-memory document is unusable: yrs panicked applying a peer's update or
    /// running an edit, cannot encode the state one left, or an update it made cannot
    /// be stored (longer than [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN), or not
    /// decodable again). Nothing of that update was written, and the
    /// document refuses edits, sync and compaction from then on; [`flush`] still makes
    /// what was written before durable. Load the document again from its store.
    ///
    /// [`flush`]: crate::PersistentYDoc::flush
    Broken {
        /// What happened.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Such a handle never writes again: the queue cannot drain.
            Error::Persister(
                e @ (persister_core::Error::Poisoned { .. }
                | persister_core::Error::LeaseLost { .. }),
            ) => write!(
                f,
                "{e} (the document still holds every edit in memory: take its state with encode_state, load the document again from the reopened store, apply the state with apply_update, and flush)"
            ),
            Error::FlushFailed(e) => write!(
                f,
                "flushing failed: {e}; the writes since the last successful flush may be lost and this handle refuses every later write (the document still holds every edit in memory: take its state with encode_state, load the document again from the reopened store, apply the state with apply_update, and flush)"
            ),
            Error::Persister(e) => write!(
                f,
                "{e} (the document keeps unwritten updates queued and retries them on the next write or flush)"
            ),
            // Nor is compaction retried by a handle that never writes again.
            Error::Compaction(
                e @ (persister_core::Error::Poisoned { .. }
                | persister_core::Error::LeaseLost { .. }),
            ) => write!(
                f,
                "automatic compaction failed: {e}; this handle writes nothing more, compaction included (the document still holds every edit in memory: take its state with encode_state, load the document again from the reopened store, apply the state with apply_update, and flush)"
            ),
            Error::Compaction(e) => write!(
                f,
                "automatic compaction failed: {e}; every update is still stored, so nothing is lost, and compaction is retried after the next write"
            ),
            Error::CorruptDocument { reason } => write!(
                f,
                "the stored Yjs document cannot be loaded: {reason}; do not write to the store: read out what still reads (open it read-only) or restore a backup"
            ),
            Error::CorruptUpdate { actor, seq, reason } => write!(
                f,
                "the stored Yjs update ({actor}, {seq}) is damaged: {reason}; do not write to the store: read out what still reads (open it read-only) or restore a backup"
            ),
            Error::Broken { reason } => write!(
                f,
                "the document is unusable: {reason}; flush what was written before, then load the document again from its store"
            ),
            Error::InvalidUpdate { reason } => write!(
                f,
                "the received Yjs update cannot be applied: {reason}; whatever part of it applied is stored; ask the peer for its state again (sync step 1)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Persister(e) | Error::FlushFailed(e) | Error::Compaction(e) => Some(e),
            _ => None,
        }
    }
}

impl From<persister_core::Error> for Error {
    fn from(e: persister_core::Error) -> Self {
        Error::Persister(e)
    }
}
