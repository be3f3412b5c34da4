//! The handle of one document.

use std::collections::HashMap;
use std::sync::Arc;

use persister_core::{
    Batch, ChangeEntry, DocumentClaim, DocumentId, Error, Persister, Result, StoredSizes, Write,
};

use crate::layout::{self, DocKeys};
use crate::manifest::{Manifest, StoreManifest, Tally};
use crate::shared::Shared;

/// The handle of one document in a [`SledStore`](crate::SledStore): a [`Persister`].
///
/// It keeps the document's manifest in memory, so [`sizes`](Persister::sizes) is exact
/// and O(1). Every read checks what it returns against the manifest and the values'
/// checksums, and fails with [`Error::Corrupt`] rather than return a part of the data:
/// [`get_change_entries`](Persister::get_change_entries) and
/// [`get_changes`](Persister::get_changes) read all changes,
/// [`get_peer_ids`](Persister::get_peer_ids) and
/// [`get_sync_state`](Persister::get_sync_state) read all sync states (so the latter is
/// O(number of peers)), [`get_document`](Persister::get_document) reads the document.
#[derive(Debug)]
pub struct SledPersister {
    shared: Arc<Shared>,
    keys: DocKeys,
    /// `None` until the document exists.
    manifest: Option<Manifest>,
    /// Payload bytes applied since the last successful flush, by this handle or by
    /// dropped handles of the same document.
    pending: usize,
    claim: DocumentClaim,
}

impl SledPersister {
    pub(crate) fn open(shared: Arc<Shared>, claim: DocumentClaim) -> Result<Self> {
        let keys = DocKeys::new(claim.id())?;
        let manifest = match shared.get(&keys.manifest)? {
            None => None,
            Some(value) => Some(
                layout::unframe(&keys.manifest, &value)
                    .and_then(|(_, m)| Manifest::decode(m))
                    .ok_or_else(|| {
                        shared.corrupt(format!(
                            "the manifest of document {} fails its checksum",
                            claim.id()
                        ))
                    })?,
            ),
        };
        let pending = shared.take_unflushed(claim.id());
        Ok(Self {
            shared,
            keys,
            manifest,
            pending,
            claim,
        })
    }

    /// The document this handle is for.
    pub fn id(&self) -> &DocumentId {
        self.claim.id()
    }

    fn manifest(&self) -> Manifest {
        self.manifest.unwrap_or_default()
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        self.shared
            .corrupt(format!("document {}: {what}", self.id()))
    }

    /// Reads every entry under `prefix`, checks each value's checksum and the whole set
    /// against `expected`, and returns the key suffixes with the payloads.
    fn read_part(
        &self,
        what: &str,
        prefix: &[u8],
        expected: Tally,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut found = Tally::default();
        let mut entries = Vec::new();
        self.shared.scan(prefix, |key, value| {
            let (hash, payload) = layout::unframe(key, value)
                .ok_or_else(|| self.corrupt(format!("one of its {what} fails its checksum")))?;
            found.add(hash, payload.len() as u64);
            // Never more entries than the manifest records: a damaged store cannot make
            // this allocate without bound.
            if found.count > expected.count {
                return Err(self.mismatch(what, found, expected));
            }
            entries.push((key[prefix.len()..].to_vec(), payload.to_vec()));
            Ok(())
        })?;
        if found != expected {
            return Err(self.mismatch(what, found, expected));
        }
        Ok(entries)
    }

    fn mismatch(&self, what: &str, found: Tally, expected: Tally) -> Error {
        self.corrupt(format!(
            "{} {what} of {} bytes found (or more), but its manifest records {} of {} bytes{}",
            found.count,
            found.bytes,
            expected.count,
            expected.bytes,
            if (found.count, found.bytes) == (expected.count, expected.bytes) {
                ", and their checksums disagree with it"
            } else {
                ""
            }
        ))
    }

    fn read_sync_states(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let expected = self.manifest().sync_states;
        self.read_part("sync states", &self.keys.sync_states(), expected)
    }

    /// The `(hash, length)` stored under `key`, as the batch being built leaves it.
    fn stored(&self, staged: &Staged, key: &[u8]) -> Result<Option<(u32, u64)>> {
        if let Some(entry) = staged.get(key) {
            return Ok(*entry);
        }
        match self.shared.get(key)? {
            None => Ok(None),
            Some(value) => layout::claimed(&value)
                .map(Some)
                .ok_or_else(|| self.corrupt("a stored value is shorter than its checksum")),
        }
    }

    /// Stages the replacement of the entry under `key` by `new` (or its removal) in
    /// `batch`, and accounts it in `tally`.
    fn stage(
        &self,
        staged: &mut Staged,
        batch: &mut sled::Batch,
        tally: &mut Tally,
        key: Vec<u8>,
        new: Option<Vec<u8>>,
    ) -> Result<()> {
        let old = self.stored(staged, &key)?;
        if let Some((hash, len)) = old {
            tally.remove(hash, len).ok_or_else(|| {
                self.corrupt("its manifest records fewer entries or bytes than are stored")
            })?;
        }
        match new {
            Some(payload) => {
                let entry = (layout::entry_hash(&key, &payload), payload.len() as u64);
                tally.add(entry.0, entry.1);
                batch.insert(key.as_slice(), layout::frame(&key, &payload));
                staged.insert(key, Some(entry));
            }
            None if old.is_some() => {
                batch.remove(key.as_slice());
                staged.insert(key, None);
            }
            None => {}
        }
        Ok(())
    }
}

/// What the batch being built has written so far: key to `(hash, length)` or removed.
type Staged = HashMap<Vec<u8>, Option<(u32, u64)>>;

impl Persister for SledPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.shared.check_poisoned()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let payload = batch.payload_len();
        let mut manifest = self.manifest();
        let mut staged = Staged::new();
        let mut writes = sled::Batch::default();
        for write in batch {
            let (tally, key, new) = match write {
                Write::InsertChange { actor, seq, value } => (
                    &mut manifest.changes,
                    self.keys.change(&actor, seq),
                    Some(value),
                ),
                Write::RemoveChange { actor, seq } => {
                    (&mut manifest.changes, self.keys.change(&actor, seq), None)
                }
                Write::SetSyncState { peer, state } => (
                    &mut manifest.sync_states,
                    self.keys.sync_state(&peer),
                    Some(state),
                ),
                Write::RemoveSyncState { peer } => {
                    (&mut manifest.sync_states, self.keys.sync_state(&peer), None)
                }
                Write::SetDocument(value) => {
                    // The manifest holds the document's hash; no need to read the old one.
                    let key = self.keys.document();
                    manifest.document =
                        Some((layout::entry_hash(&key, &value), value.len() as u64));
                    writes.insert(key.as_slice(), layout::frame(&key, &value));
                    continue;
                }
            };
            self.stage(&mut staged, &mut writes, tally, key, new)?;
        }
        let key = &self.keys.manifest;
        let framed = layout::frame(key, &manifest.encode());
        // Every applied batch rewrites the manifest, so even a batch whose payload is
        // empty (an empty document, an empty peer id removed) leaves bytes to sync.
        let written = payload.saturating_add(key.len() + framed.len());
        writes.insert(key.as_slice(), framed);
        let created = self
            .manifest
            .is_none()
            .then(|| StoreManifest::document_hash(key));
        self.shared.commit(writes, |documents| {
            if let Some(hash) = created {
                documents.add(hash, 0);
            }
            Ok(())
        })?;
        self.manifest = Some(manifest);
        self.pending = self.pending.saturating_add(written);
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        let expected = self.manifest().changes;
        self.read_part("changes", &self.keys.changes(), expected)?
            .into_iter()
            .map(|(suffix, value)| {
                let (actor, seq) = layout::decode_change(&suffix)
                    .ok_or_else(|| self.corrupt("a change key does not decode"))?;
                Ok((actor, seq, value))
            })
            .collect()
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>> {
        let key = self.keys.document();
        let stored = self.shared.get(&key)?;
        match (self.manifest().document, stored) {
            (None, None) => Ok(None),
            (Some(expected), Some(value)) => match layout::unframe(&key, &value) {
                Some((hash, payload)) if (hash, payload.len() as u64) == expected => {
                    Ok(Some(payload.to_vec()))
                }
                Some(_) => {
                    Err(self.corrupt("the stored document is not the one its manifest records"))
                }
                None => Err(self.corrupt("the stored document fails its checksum")),
            },
            (None, Some(_)) => {
                Err(self.corrupt("a document is stored, but its manifest records none"))
            }
            (Some(_), None) => Err(self.corrupt("its document is missing")),
        }
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_sync_states()?
            .into_iter()
            .find(|(peer, _)| peer == peer_id)
            .map(|(_, state)| state))
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .read_sync_states()?
            .into_iter()
            .map(|(peer, _)| peer)
            .collect())
    }

    fn sizes(&self) -> StoredSizes {
        self.manifest().sizes()
    }

    /// Makes every write applied through this handle, or through an earlier handle of
    /// the document dropped without flushing, durable; see the
    /// [crate docs](crate#durability) for exactly what that covers.
    fn flush(&mut self) -> Result<usize> {
        self.shared.check_poisoned()?;
        if self.pending == 0 {
            return Ok(0);
        }
        let written = self.shared.flush_durable()?;
        // Another handle's flush may have written this handle's bytes already; they
        // were made durable only now.
        Ok(written.max(std::mem::take(&mut self.pending)))
    }
}

impl Drop for SledPersister {
    fn drop(&mut self) {
        // The writes are in sled, visible to the next handle, but not durable: its flush
        // must sync them. The claim is released after this, so that handle sees them.
        if self.pending > 0 {
            self.shared.carry_unflushed(self.claim.id(), self.pending);
        }
    }
}
