//! The handle of one document, and what opening it recovered.

use std::fmt;
use std::sync::Arc;

use persister_core::{
    Batch, ChangeEntry, DocumentClaim, DocumentId, Error, Persister, Result, StoredSizes,
};

use crate::doc::Doc;
use crate::store::Shared;

/// What opening a document found at the end of its log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Bytes of a torn tail (an unfinished last flush) dropped from the log; 0 when the
    /// log ended cleanly.
    pub dropped_bytes: u64,
    /// The length the log was truncated to, when a torn tail was dropped.
    pub truncated_at: Option<u64>,
}

/// The handle of one document of an [`FsStore`](crate::FsStore): a [`Persister`]
/// keeping the contract of [`persister_core::Persister`].
///
/// The whole document is held in memory, replayed from its log when the handle is
/// opened. Writes are encoded into one record per batch and buffered;
/// [`flush`](Persister::flush) writes the buffer with one write and one `fdatasync`.
/// Nothing is written or synced at any other time (apart from truncating a torn tail
/// when the document is opened).
///
/// Dropping a handle without flushing keeps its writes in the store's memory for the
/// next handle of the same document; they are lost, as in a crash, when the store and
/// all its handles are dropped. A handle poisoned by a failed flush stays poisoned for
/// every handle of the document until the store is reopened.
pub struct FsPersister {
    shared: Arc<Shared>,
    doc: Doc,
    _claim: DocumentClaim,
}

impl FsPersister {
    pub(crate) fn new(shared: Arc<Shared>, doc: Doc, claim: DocumentClaim) -> Self {
        Self {
            shared,
            doc,
            _claim: claim,
        }
    }

    /// The document's id.
    pub fn id(&self) -> &DocumentId {
        self.doc.id()
    }

    /// What opening this document recovered from its log.
    pub fn recovery(&self) -> Recovery {
        self.doc.recovery()
    }

    /// The bytes of a torn tail dropped when the document was opened: 0 unless the
    /// last flush before a crash was unfinished.
    pub fn recovered_bytes(&self) -> u64 {
        self.doc.recovery().dropped_bytes
    }
}

impl fmt::Debug for FsPersister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsPersister")
            .field("id", self.doc.id())
            .field("sizes", &self.doc.state().sizes())
            .finish_non_exhaustive()
    }
}

impl Persister for FsPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.doc.apply(&self.shared, batch)
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        Ok(self
            .doc
            .state()
            .changes()
            .map(|(actor, seq, value)| (actor.clone(), seq, value.to_vec()))
            .collect())
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .doc
            .state()
            .changes()
            .map(|(_, _, value)| value.to_vec())
            .collect())
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.doc.state().document().map(<[u8]>::to_vec))
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.doc.state().sync_state(peer_id).map(<[u8]>::to_vec))
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .doc
            .state()
            .sync_states()
            .map(|(peer, _)| peer.to_vec())
            .collect())
    }

    fn sizes(&self) -> StoredSizes {
        self.doc.state().sizes()
    }

    fn flush(&mut self) -> Result<usize> {
        self.doc.flush(&self.shared)
    }
}

impl Drop for FsPersister {
    fn drop(&mut self) {
        if self.doc.needs_parking() {
            self.shared.park(std::mem::take(&mut self.doc));
        }
    }
}
