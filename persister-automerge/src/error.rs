//! The one error type of the crate.

use std::fmt;

use automerge::AutomergeError;
use persister_core::ActorId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a [`PersistentDoc`](crate::PersistentDoc).
///
/// Each message says what happened and ends with what to do about it. Automerge's
/// errors are boxed to keep this type small.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The persister refused a read or a write. Writes it did not apply stay queued in
    /// the document and are retried by the next write or
    /// [`flush`](crate::PersistentDoc::flush); nothing of the in-memory document is
    /// lost. A poisoned handle ([`persister_core::Error::Poisoned`], after a failed
    /// flush) or one that lost its lease ([`persister_core::Error::LeaseLost`]) never
    /// writes again: the changes are then carried over as [`Error::FlushFailed`] says.
    Persister(persister_core::Error),

    /// A write was applied, or nothing was queued, and the flush after it failed: the
    /// writes since the last successful flush may not survive, and the persister
    /// refuses every later write and flush ([`persister_core::Error::Poisoned`]) until
    /// the store is opened again; nothing waits in the queue to be retried. The
    /// document still holds every change in memory: keep a clone of
    /// [`doc`](crate::PersistentDoc::doc), drop the `PersistentDoc`, load the document
    /// again from the reopened store, and merge the clone in with an
    /// [`edit`](crate::PersistentDoc::edit) (see [`PersistentDoc`](crate::PersistentDoc)'s
    /// "After a failed flush").
    FlushFailed(persister_core::Error),

    /// The edit was stored, but the automatic compaction that followed it failed. The
    /// store still holds every change, so nothing is lost; compaction is tried again
    /// after the next write. (A compaction applied whose flush failed is
    /// [`Error::FlushFailed`].) Not so when the handle refused it as poisoned or as
    /// having lost its lease: such a handle writes nothing more, and the edits are
    /// carried over as for a poisoned [`Error::Persister`].
    Compaction(persister_core::Error),

    /// Automerge refused an operation: the closure given to
    /// [`edit`](crate::PersistentDoc::edit) returned an error (its uncommitted operations
    /// were rolled back), or a sync message could not be applied.
    Automerge(Box<AutomergeError>),

    /// The stored document cannot be loaded.
    CorruptDocument(Box<AutomergeError>),

    /// A stored change cannot be decoded, or is stored under a key that is not its own.
    CorruptChange {
        /// The actor of the key it is stored under.
        actor: ActorId,
        /// The sequence number of the key it is stored under.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The stored changes decode one by one but cannot be applied together (for example
    /// two different changes with the same actor and sequence number).
    InconsistentChanges(Box<AutomergeError>),

    /// Automerge failed while loading the stored document or changes: they pass its
    /// checksums but not its own consistency checks, which it enforces by panicking
    /// (caught here). Nothing was written.
    DamagedStore {
        /// What automerge reported.
        reason: String,
    },

    /// A peer's sync message, or a change merged in an edit, left the in-memory
    /// document unusable: automerge failed applying it (a panic, caught), or a change
    /// it brought cannot be stored as received (automerge encodes it into other bytes,
    /// with another hash, which would not load as the same history), or cannot be
    /// stored at all (its actor id is longer than a persister stores). Nothing of it was
    /// written. The document refuses edits, sync and compaction from then on; load it
    /// again from the persister (flushing first keeps what was queued before).
    Broken {
        /// What happened.
        reason: String,
    },

    /// A peer's sync message was refused before anything of it was applied: automerge
    /// would fail using it (a Bloom filter without bits, or too large to probe). The
    /// document is unchanged and stays usable.
    RefusedSyncMessage {
        /// The peer that sent it.
        peer: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },

    /// A stored sync state cannot be decoded.
    CorruptSyncState {
        /// The peer whose state it is.
        peer: Vec<u8>,
        /// What automerge reported.
        source: automerge::sync::DecodeStateError,
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
                "{e} (the document still holds every change in memory: keep a clone of it, load the document again from the reopened store and merge the clone in with an edit)"
            ),
            Error::FlushFailed(e) => write!(
                f,
                "flushing failed: {e}; the writes since the last successful flush may be lost and this handle refuses every later write (the document still holds every change in memory: keep a clone of it, load the document again from the reopened store and merge the clone in with an edit)"
            ),
            Error::Persister(e) => write!(
                f,
                "{e} (the document keeps unwritten changes queued and retries them on the next write or flush)"
            ),
            // Nor is compaction retried by a handle that never writes again.
            Error::Compaction(
                e @ (persister_core::Error::Poisoned { .. }
                | persister_core::Error::LeaseLost { .. }),
            ) => write!(
                f,
                "automatic compaction failed: {e}; this handle writes nothing more, compaction included (the document still holds every change in memory: keep a clone of it, load the document again from the reopened store and merge the clone in with an edit)"
            ),
            Error::Compaction(e) => write!(
                f,
                "automatic compaction failed: {e}; every change is still stored, so nothing is lost, and compaction is retried after the next write"
            ),
            Error::Automerge(e) => write!(
                f,
                "automerge refused the operation: {e}; the document is unchanged by the failed part, fix the edit or the message and try again"
            ),
            Error::CorruptDocument(e) => write!(
                f,
                "the stored document cannot be loaded: {e}; do not write to the store: read out what still reads (open it read-only) or restore a backup"
            ),
            Error::CorruptChange { actor, seq, reason } => write!(
                f,
                "the stored change ({actor}, {seq}) is damaged: {reason}; do not write to the store: read out what still reads (open it read-only) or restore a backup"
            ),
            Error::InconsistentChanges(e) => write!(
                f,
                "the stored changes cannot be applied together: {e}; the store holds changes from incompatible histories: restore a backup or export the document from a peer"
            ),
            Error::DamagedStore { reason } => write!(
                f,
                "the stored document or changes cannot be loaded: {reason}; do not write to the store: read out what still reads (open it read-only) or restore a backup"
            ),
            Error::Broken { reason } => write!(
                f,
                "the document is unusable: {reason}; nothing of it was written: flush, then load the document again from its store"
            ),
            Error::RefusedSyncMessage { peer, reason } => write!(
                f,
                "the sync message of peer {} was refused: {reason}; nothing of it was applied and the document is unchanged",
                hex(peer)
            ),
            Error::CorruptSyncState { peer, source } => write!(
                f,
                "the stored sync state of peer {} is damaged: {source}; remove it (the next sync with that peer starts from scratch)",
                hex(peer)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Persister(e) | Error::FlushFailed(e) | Error::Compaction(e) => Some(e),
            Error::Automerge(e) | Error::CorruptDocument(e) | Error::InconsistentChanges(e) => {
                Some(e.as_ref())
            }
            Error::CorruptSyncState { source, .. } => Some(source),
            Error::CorruptChange { .. }
            | Error::DamagedStore { .. }
            | Error::Broken { .. }
            | Error::RefusedSyncMessage { .. } => None,
        }
    }
}

impl From<persister_core::Error> for Error {
    fn from(e: persister_core::Error) -> Self {
        Error::Persister(e)
    }
}

impl From<AutomergeError> for Error {
    fn from(e: AutomergeError) -> Self {
        Error::Automerge(Box::new(e))
    }
}

/// `bytes` in lowercase hex, for peer ids in messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
