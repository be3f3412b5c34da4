//! The in-memory backend.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{
    Batch, ChangeEntry, DocumentClaim, DocumentId, DocumentState, Error, OpenDocuments, Persister,
    Result, Store, StoredSizes,
};

type Documents = Arc<Mutex<BTreeMap<DocumentId, DocumentState>>>;

/// A store that keeps every document in memory, for tests and for programs that sync
/// documents without keeping them.
///
/// Clones share the same documents, so "reopening" a memory store is cloning it.
/// Nothing survives the process. As on every backend, a handle dropped without a flush
/// discards its writes since its last flush (a handle keeps a copy of the document as it
/// was at its last flush from its first write after it).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    documents: Documents,
    open: OpenDocuments,
    fail_next_flush: Arc<AtomicBool>,
    /// Why a flush of one of its handles failed, if one did since the store was last
    /// closed: [`close`](Store::close) reports it.
    failed: Failed,
}

/// Why a flush failed, shared by a store and its handles.
type Failed = Arc<Mutex<Option<String>>>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next [`flush`](Persister::flush) of any handle of this store fail, as a
    /// failed `fsync` would, so tests can check what a program does then: the handle is
    /// poisoned, and the store's next [`close`](Store::close) reports the failure.
    pub fn fail_next_flush(&self) {
        self.fail_next_flush.store(true, Ordering::SeqCst);
    }
}

impl Store for MemoryStore {
    type Persister = MemoryPersister;

    fn open_document(&self, id: &DocumentId) -> Result<MemoryPersister> {
        let claim = self.open.claim(id)?;
        Ok(MemoryPersister {
            documents: Arc::clone(&self.documents),
            id: id.clone(),
            fail_next_flush: Arc::clone(&self.fail_next_flush),
            failed: Arc::clone(&self.failed),
            pending: 0,
            dirty: false,
            poisoned: None,
            flushed: None,
            _claim: Some(claim),
        })
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        Ok(lock(&self.documents).keys().cloned().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let _claim = self.open.claim(id)?;
        lock(&self.documents).remove(id);
        Ok(())
    }

    /// Reports an open handle, then a flush of a handle that failed since the store was
    /// last closed, as [`Error::Poisoned`].
    fn close(self) -> Result<()> {
        self.open.check_none_open()?;
        match lock(&self.failed).take() {
            Some(reason) => Err(Error::Poisoned { reason }),
            None => Ok(()),
        }
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        Store::close(*self)
    }
}

/// One document kept in memory: a [`Persister`] with exact, O(1) sizes.
///
/// Made on its own with [`MemoryPersister::new`], or as a handle of a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryPersister {
    documents: Documents,
    id: DocumentId,
    fail_next_flush: Arc<AtomicBool>,
    failed: Failed,
    pending: usize,
    /// Whether a batch was applied since the last flush (its payload may be 0 bytes).
    dirty: bool,
    poisoned: Option<String>,
    /// For a handle of a store, once it wrote since its last flush: the document as it
    /// was then (`None` when it did not exist), restored when the handle is dropped.
    flushed: Option<Option<DocumentState>>,
    _claim: Option<DocumentClaim>,
}

impl Default for MemoryPersister {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPersister {
    /// An empty document, in no store.
    pub fn new() -> Self {
        Self {
            documents: Documents::default(),
            id: DocumentId::default(),
            fail_next_flush: Arc::default(),
            failed: Failed::default(),
            pending: 0,
            dirty: false,
            poisoned: None,
            flushed: None,
            _claim: None,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&DocumentState) -> T) -> T {
        let documents = lock(&self.documents);
        match documents.get(&self.id) {
            Some(state) => f(state),
            None => f(&DocumentState::default()),
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Persister for MemoryPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.check_poisoned()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.pending += batch.payload_len();
        self.dirty = true;
        let mut documents = lock(&self.documents);
        if self._claim.is_some() && self.flushed.is_none() {
            self.flushed = Some(documents.get(&self.id).cloned());
        }
        documents.entry(self.id.clone()).or_default().apply(batch);
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        Ok(self.read(|state| {
            state
                .changes()
                .map(|(actor, seq, value)| (actor.clone(), seq, value.to_vec()))
                .collect()
        }))
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.read(|state| {
            state
                .changes()
                .map(|(_, _, value)| value.to_vec())
                .collect()
        }))
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.read(|state| state.document().map(<[u8]>::to_vec)))
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read(|state| state.sync_state(peer_id).map(<[u8]>::to_vec)))
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.read(|state| state.sync_states().map(|(peer, _)| peer.to_vec()).collect()))
    }

    fn sizes(&self) -> StoredSizes {
        self.read(DocumentState::sizes)
    }

    fn flush(&mut self) -> Result<usize> {
        self.check_poisoned()?;
        if self.fail_next_flush.swap(false, Ordering::SeqCst) {
            let reason = "simulated fsync failure".to_string();
            self.poisoned = Some(reason.clone());
            lock(&self.failed).get_or_insert_with(|| reason.clone());
            return Err(Error::io("sync", "<memory>", std::io::Error::other(reason)));
        }
        self.flushed = None;
        // At least 1 when something was pending, even batches of empty values.
        let pending = std::mem::take(&mut self.pending);
        Ok(if std::mem::take(&mut self.dirty) {
            pending.max(1)
        } else {
            0
        })
    }
}

impl Drop for MemoryPersister {
    /// Discards the writes since the last flush (contract point 12).
    fn drop(&mut self) {
        if let Some(flushed) = self.flushed.take() {
            let mut documents = lock(&self.documents);
            match flushed {
                Some(state) => documents.insert(self.id.clone(), state),
                None => documents.remove(&self.id),
            };
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The conformance suite on the memory backend.
#[cfg(test)]
mod conformance {
    use crate::conformance::Fixture;
    use crate::{MemoryStore, Result};

    struct MemoryFixture {
        store: MemoryStore,
    }

    impl Fixture for MemoryFixture {
        type Store = MemoryStore;

        fn open(&self) -> Result<MemoryStore> {
            // Clones share the documents: opening again is reopening.
            Ok(self.store.clone())
        }

        fn fail_next_flush(&self, store: &MemoryStore) {
            store.fail_next_flush();
        }
    }

    fn fixture() -> MemoryFixture {
        MemoryFixture {
            store: MemoryStore::new(),
        }
    }

    crate::conformance_tests!(fixture());
}

/// `flush` returns 0 exactly when nothing was pending (contract point 4); a
/// batch whose writes carry no payload byte (an empty document, the removal of the
/// empty peer id's sync state) is still pending.
#[cfg(test)]
mod flush_count {
    use crate::{MemoryPersister, MemoryStore, Persister, Result, Store};

    #[test]
    fn a_flush_of_a_batch_without_payload_bytes_is_not_zero() -> Result<()> {
        let store = MemoryStore::new();
        let mut handle = store.open_document(&"d".into())?;
        handle.set_document(Vec::new())?;
        assert!(
            handle.flush()? > 0,
            "a pending empty document flushed as nothing"
        );
        assert_eq!(handle.flush()?, 0);
        let mut alone = MemoryPersister::new();
        alone.remove_sync_states(&[b""])?;
        assert!(alone.flush()? > 0, "a pending removal flushed as nothing");
        Ok(())
    }
}
