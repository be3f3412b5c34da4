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
    /// Bytes of a torn tail (an unfinished last flush) dropped from the log, or only
    /// left out on a read-only store; 0 when the log ended cleanly.
    pub dropped_bytes: u64,
    /// The length the log was truncated to, when a torn tail was cut off (for a log
    /// rewritten whole on opening, after a failed sync, the length of the new log).
    pub truncated_at: Option<u64>,
}

/// The handle of one document of an [`FsStore`](crate::FsStore): a [`Persister`]
/// keeping the contract of [`persister_core::Persister`].
///
/// The whole document is held in memory, replayed from its log when the handle is
/// opened. Writes are encoded into one record per batch and buffered;
/// [`flush`](Persister::flush) writes the buffer with one write and one `fdatasync`.
/// Nothing is written or synced at any other time (apart from truncating a torn tail
/// when the document is opened, rewriting a log whose sync failed earlier in the
/// process when it is opened (see [After a failed sync](crate#after-a-failed-sync)),
/// and the store's clean-close record).
///
/// Dropping a handle without flushing discards its unflushed writes: the next handle
/// of the document, in this store or after reopening, sees exactly the state of its
/// last successful flush. Nothing flushed is lost. [`close`](FsPersister::close)
/// flushes, releases the handle and returns the error. A handle poisoned by a failed
/// flush stays poisoned for every handle of the document until the store is reopened,
/// and so does a document whose torn tail could not be cut durably when it was opened.
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
    /// last flush before a crash was unfinished. The store reports the same through
    /// [`Store::recovered`](persister_core::Store::recovered) (and a tail that a rewrite
    /// on opening dropped before it failed, which the next handle no longer finds).
    pub fn recovered_bytes(&self) -> u64 {
        self.doc.recovery().dropped_bytes
    }

    /// Flushes, releases the handle, and returns the flush's error, for a checked
    /// shutdown. If the store was dropped before, this was its last handle: the store
    /// is closed too (see [`FsStore::close`](crate::FsStore::close)) and its error
    /// returned.
    pub fn close(mut self) -> Result<()> {
        let flushed = self.flush();
        let shared = Arc::clone(&self.shared);
        drop(self);
        flushed?;
        match Arc::try_unwrap(shared) {
            Ok(shared) => shared.close(),
            Err(_) => Ok(()),
        }
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
        self.shared.release(&self.doc);
    }
}
