//! An [`Engine`] that keeps everything in memory: the smallest complete engine.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine::{Engine, PendingDocument, Record, StoredKey};
use crate::{ActorId, ChangeEntry, DocumentId, Error, Result};

/// An [`Engine`] that keeps every document in memory: the whole [`Engine`] contract in
/// a page, as a model for a new backend, and the engine of tests that need
/// [`EngineStore`](crate::EngineStore)'s behaviour (held writes, group commit) without
/// a disk.
///
/// Clones share the same documents, so "reopening" is making a new
/// [`EngineStore`](crate::EngineStore) on a clone. Nothing survives the process.
///
/// ```
/// use persister_core::{EngineStore, MemoryEngine, Persister, Store};
///
/// let engine = MemoryEngine::new();
/// let store = EngineStore::new(engine.clone());
/// let mut doc = store.open_document(&"notes".into())?;
/// doc.set_document(b"kept".to_vec())?;
/// doc.flush()?;
/// drop((doc, store));
///
/// let store = EngineStore::new(engine);
/// assert_eq!(store.open_document(&"notes".into())?.get_document()?, Some(b"kept".to_vec()));
/// # Ok::<(), persister_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryEngine {
    state: Arc<Mutex<State>>,
    max_pending_bytes: usize,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    records: BTreeMap<DocumentId, Record<u64>>,
    documents: BTreeMap<u64, Document>,
}

#[derive(Debug, Default)]
struct Document {
    changes: BTreeMap<(ActorId, u64), Vec<u8>>,
    document: Option<Vec<u8>>,
    sync_states: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// An empty engine; handles flush what they hold past 64 MiB.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            max_pending_bytes: 64 << 20,
            path: PathBuf::from("(memory)"),
        }
    }

    /// The same engine with handles that flush what they hold past `bytes`.
    pub fn with_max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn document(&self, address: u64) -> Result<&Document> {
        self.documents.get(&address).ok_or_else(|| Error::NotFound {
            what: format!("document number {address}"),
        })
    }
}

impl Engine for MemoryEngine {
    type Address = u64;

    fn path(&self) -> &Path {
        &self.path
    }

    fn max_pending_bytes(&self) -> usize {
        self.max_pending_bytes
    }

    fn read_record(&self, id: &DocumentId) -> Result<Option<Record<u64>>> {
        Ok(self.state().records.get(id).copied())
    }

    fn max_seqs(&self, address: &u64, actors: &[&ActorId]) -> Result<Vec<Option<u64>>> {
        let state = self.state();
        let document = state.document(*address)?;
        Ok(actors
            .iter()
            .map(|&actor| {
                let from = Bound::Included((actor.clone(), 0));
                let to = Bound::Included((actor.clone(), u64::MAX));
                document
                    .changes
                    .range((from, to))
                    .next_back()
                    .map(|((_, seq), _)| *seq)
            })
            .collect())
    }

    fn stored_lengths(&self, address: &u64, keys: &[StoredKey<'_>]) -> Result<Vec<Option<u64>>> {
        let state = self.state();
        let document = state.document(*address)?;
        Ok(keys
            .iter()
            .map(|key| match key {
                StoredKey::Change(actor, seq) => document.changes.get(&((*actor).clone(), *seq)),
                StoredKey::SyncState(peer) => document.sync_states.get(*peer),
            })
            .map(|value| value.map(|v| v.len() as u64))
            .collect())
    }

    fn read_changes(&self, address: &u64) -> Result<Vec<ChangeEntry>> {
        let state = self.state();
        Ok(state
            .document(*address)?
            .changes
            .iter()
            .map(|((actor, seq), value)| (actor.clone(), *seq, value.clone()))
            .collect())
    }

    fn read_document(&self, address: &u64) -> Result<Option<Vec<u8>>> {
        Ok(self.state().document(*address)?.document.clone())
    }

    fn read_sync_state(&self, address: &u64, peer: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .state()
            .document(*address)?
            .sync_states
            .get(peer)
            .cloned())
    }

    fn read_peers(&self, address: &u64) -> Result<Vec<(Vec<u8>, u64)>> {
        let state = self.state();
        let document = state.document(*address)?;
        Ok(document
            .sync_states
            .iter()
            .map(|(peer, state)| (peer.clone(), state.len() as u64))
            .collect())
    }

    fn commit(&self, documents: &mut [PendingDocument<u64>], _durable: bool) -> Result<()> {
        // Under one lock: every document's writes apply together or not at all.
        let mut state = self.state();
        for pending in documents.iter_mut() {
            let address = match pending.address {
                Some(address) => address,
                None => {
                    state.next += 1;
                    state.next
                }
            };
            let document = state.documents.entry(address).or_default();
            let writes = &pending.writes;
            for (actor, seq, value) in writes.changes() {
                let key = (actor.clone(), seq);
                match value {
                    Some(value) => document.changes.insert(key, value.to_vec()),
                    None => document.changes.remove(&key),
                };
            }
            if let Some(value) = writes.document() {
                document.document = Some(value.to_vec());
            }
            for (peer, value) in writes.sync_states() {
                match value {
                    Some(value) => document.sync_states.insert(peer.to_vec(), value.to_vec()),
                    None => document.sync_states.remove(peer),
                };
            }
            let record = Record {
                address,
                sizes: pending.sizes,
            };
            state.records.insert(pending.id.clone(), record);
            pending.address = Some(address);
        }
        Ok(())
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        Ok(self.state().records.keys().cloned().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let mut state = self.state();
        if let Some(record) = state.records.remove(id) {
            state.documents.remove(&record.address);
        }
        Ok(())
    }
}

/// The conformance suite on [`EngineStore`](crate::EngineStore) over the memory engine:
/// the generic handle keeps the whole contract.
#[cfg(test)]
mod conformance {
    use crate::EngineStore;
    use crate::conformance::Fixture;

    use super::MemoryEngine;

    struct EngineFixture {
        engine: MemoryEngine,
    }

    impl Fixture for EngineFixture {
        type Store = EngineStore<MemoryEngine>;

        fn open(&self) -> crate::Result<Self::Store> {
            Ok(EngineStore::new(self.engine.clone()))
        }

        fn fail_next_flush(&self, store: &Self::Store) {
            store.fail_next_flush();
        }
    }

    fn fixture() -> EngineFixture {
        EngineFixture {
            engine: MemoryEngine::new(),
        }
    }

    crate::conformance_tests!(fixture());
}
