//! The sled [`Engine`]: reads checked against the manifests, commits as one sled batch.

use std::path::Path;

use persister_core::{
    ActorId, ChangeEntry, DocumentId, Engine, Error, PendingDocument, Record, Result, StoredKey,
};

use crate::SledEngine;
use crate::layout::{self, DocKeys, MANIFESTS};
use crate::manifest::{Manifest, StoreManifest, Tally};

/// Where a [`SledEngine`] keeps one stored document: its keys, and its manifest as the
/// last read or commit left it, which every read is checked against.
#[derive(Clone, Debug)]
pub struct SledAddress {
    keys: DocKeys,
    manifest: Manifest,
}

impl SledEngine {
    fn address_corrupt(&self, address: &SledAddress, what: impl std::fmt::Display) -> Error {
        let id = DocumentId::new(address.keys.manifest.get(3..).unwrap_or_default());
        self.corrupt(format!("document {id}: {what}"))
    }

    /// Reads every entry sled holds under `prefix`, checks each value's checksum and the
    /// whole set against `expected`, and returns the key suffixes with the payloads.
    fn read_part(
        &self,
        address: &SledAddress,
        what: &str,
        prefix: &[u8],
        expected: Tally,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut found = Tally::default();
        let mut entries = Vec::new();
        self.scan(prefix, |key, value| {
            let (hash, payload) = layout::unframe(key, value).ok_or_else(|| {
                self.address_corrupt(address, format!("one of its {what} fails its checksum"))
            })?;
            found.add(hash, payload.len() as u64);
            // Never more entries than the manifest records: a damaged store cannot make
            // this allocate without bound.
            if found.count > expected.count {
                return Err(self.mismatch(address, what, found, expected));
            }
            entries.push((key[prefix.len()..].to_vec(), payload.to_vec()));
            Ok(())
        })?;
        if found != expected {
            return Err(self.mismatch(address, what, found, expected));
        }
        Ok(entries)
    }

    fn mismatch(&self, address: &SledAddress, what: &str, found: Tally, expected: Tally) -> Error {
        self.address_corrupt(
            address,
            format!(
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
            ),
        )
    }

    fn read_sync_states(&self, address: &SledAddress) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (prefix, expected) = (address.keys.sync_states(), address.manifest.sync_states);
        self.read_part(address, "sync states", &prefix, expected)
    }

    /// The `(hash, length)` of the value stored under `key`, which must be there.
    fn stored_claim(&self, address: &SledAddress, key: &[u8]) -> Result<(u32, u64)> {
        let value = self.get(key)?.ok_or_else(|| {
            self.address_corrupt(address, "an entry it holds is missing from sled")
        })?;
        layout::claimed(&value).ok_or_else(|| {
            self.address_corrupt(address, "a stored value is shorter than its checksum")
        })
    }

    /// Adds one document's writes to `batch` and returns its new address.
    fn stage(
        &self,
        batch: &mut sled::Batch,
        pending: &PendingDocument<SledAddress>,
    ) -> Result<SledAddress> {
        let mut address = match &pending.address {
            Some(address) => address.clone(),
            None => SledAddress {
                keys: DocKeys::new(&pending.id)?,
                manifest: Manifest::default(),
            },
        };
        let writes = &pending.writes;
        let keys = address.keys.clone();
        let mut replace = |tally: &mut Tally, key: Vec<u8>, stored: bool, new: Option<&[u8]>| {
            if stored {
                let (hash, len) = self.stored_claim(&address, &key)?;
                tally.remove(hash, len).ok_or_else(|| {
                    self.address_corrupt(
                        &address,
                        "its manifest records fewer entries or bytes than are stored",
                    )
                })?;
            }
            match new {
                Some(payload) => {
                    tally.add(layout::entry_hash(&key, payload), payload.len() as u64);
                    let framed = layout::frame(&key, payload);
                    batch.insert(key, framed);
                }
                None => batch.remove(key),
            }
            Ok::<_, Error>(())
        };
        let mut manifest = address.manifest;
        for (actor, seq, value) in writes.changes() {
            let stored = writes.is_stored_change(actor, seq);
            replace(
                &mut manifest.changes,
                keys.change(actor, seq),
                stored,
                value,
            )?;
        }
        for (peer, value) in writes.sync_states() {
            let stored = writes.is_stored_sync_state(peer);
            replace(
                &mut manifest.sync_states,
                keys.sync_state(peer),
                stored,
                value,
            )?;
        }
        if let Some(value) = writes.document() {
            let key = keys.document();
            manifest.document = Some((layout::entry_hash(&key, value), value.len() as u64));
            batch.insert(key.as_slice(), layout::frame(&key, value));
        }
        if manifest.sizes() != pending.sizes {
            return Err(self.address_corrupt(
                &address,
                "its manifest disagrees with the sizes its handle kept",
            ));
        }
        let framed = layout::frame(&keys.manifest, &manifest.encode());
        batch.insert(keys.manifest.as_slice(), framed);
        address.manifest = manifest;
        Ok(address)
    }
}

impl Engine for SledEngine {
    type Address = SledAddress;

    fn path(&self) -> &Path {
        &self.path
    }

    fn max_pending_bytes(&self) -> usize {
        self.max_pending_bytes
    }

    fn check_writable(&self) -> Result<()> {
        SledEngine::check_writable(self)
    }

    /// Always [`FORMAT_VERSION`](crate::FORMAT_VERSION), the only version there is.
    fn format_version(&self) -> Option<u32> {
        Some(crate::FORMAT_VERSION)
    }

    fn read_record(&self, id: &DocumentId) -> Result<Option<Record<SledAddress>>> {
        let keys = DocKeys::new(id)?;
        let Some(value) = self.get(&keys.manifest)? else {
            // Data without a manifest is damage: read it against an empty manifest, so
            // that every read of it fails rather than finding nothing.
            if self.last_key(&keys.data)?.is_some() {
                let manifest = Manifest::default();
                let sizes = manifest.sizes();
                let address = SledAddress { keys, manifest };
                return Ok(Some(Record { address, sizes }));
            }
            return Ok(None);
        };
        let manifest = layout::unframe(&keys.manifest, &value)
            .and_then(|(_, m)| Manifest::decode(m))
            .ok_or_else(|| {
                self.corrupt(format!("the manifest of document {id} fails its checksum"))
            })?;
        let sizes = manifest.sizes();
        Ok(Some(Record {
            address: SledAddress { keys, manifest },
            sizes,
        }))
    }

    fn max_seqs(&self, address: &SledAddress, actors: &[&ActorId]) -> Result<Vec<Option<u64>>> {
        let mut maxima = Vec::with_capacity(actors.len());
        for actor in actors {
            let prefix = address.keys.actor_changes(actor);
            let max = match self.last_key(&prefix)? {
                None => None,
                Some(key) => Some(
                    key.get(prefix.len()..)
                        .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| {
                            self.address_corrupt(address, "a change key does not decode")
                        })?,
                ),
            };
            maxima.push(max);
        }
        Ok(maxima)
    }

    fn stored_lengths(
        &self,
        address: &SledAddress,
        keys: &[StoredKey<'_>],
    ) -> Result<Vec<Option<u64>>> {
        keys.iter()
            .map(|key| {
                let key = match key {
                    StoredKey::Change(actor, seq) => address.keys.change(actor, *seq),
                    StoredKey::SyncState(peer) => address.keys.sync_state(peer),
                };
                match self.get(&key)? {
                    None => Ok(None),
                    Some(value) => layout::claimed(&value)
                        .map(|(_, len)| Some(len))
                        .ok_or_else(|| {
                            self.address_corrupt(
                                address,
                                "a stored value is shorter than its checksum",
                            )
                        }),
                }
            })
            .collect()
    }

    fn read_changes(&self, address: &SledAddress) -> Result<Vec<ChangeEntry>> {
        let expected = address.manifest.changes;
        self.read_part(address, "changes", &address.keys.changes(), expected)?
            .into_iter()
            .map(|(suffix, value)| {
                let (actor, seq) = layout::decode_change(&suffix)
                    .ok_or_else(|| self.address_corrupt(address, "a change key does not decode"))?;
                Ok((actor, seq, value))
            })
            .collect()
    }

    fn read_document(&self, address: &SledAddress) -> Result<Option<Vec<u8>>> {
        let key = address.keys.document();
        let corrupt = |what| Err(self.address_corrupt(address, what));
        match (address.manifest.document, self.get(&key)?) {
            (None, None) => Ok(None),
            (Some(expected), Some(value)) => match layout::unframe(&key, &value) {
                Some((hash, payload)) if (hash, payload.len() as u64) == expected => {
                    Ok(Some(payload.to_vec()))
                }
                Some(_) => corrupt("the stored document is not the one its manifest records"),
                None => corrupt("the stored document fails its checksum"),
            },
            (None, Some(_)) => corrupt("a document is stored, but its manifest records none"),
            (Some(_), None) => corrupt("its document is missing"),
        }
    }

    /// Reads every sync state of the document, to check them against the manifest: this
    /// is O(number of peers).
    fn read_sync_state(&self, address: &SledAddress, peer: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_sync_states(address)?
            .into_iter()
            .find(|(found, _)| found == peer)
            .map(|(_, state)| state))
    }

    fn read_peers(&self, address: &SledAddress) -> Result<Vec<(Vec<u8>, u64)>> {
        Ok(self
            .read_sync_states(address)?
            .into_iter()
            .map(|(peer, state)| (peer, state.len() as u64))
            .collect())
    }

    /// One sled batch for every document, with their manifests and the store manifest;
    /// when durable, then one flush of sled and the syncs it leaves undone.
    fn commit(&self, documents: &mut [PendingDocument<SledAddress>], durable: bool) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut addresses = Vec::with_capacity(documents.len());
        let mut created = Vec::new();
        for pending in documents.iter() {
            let address = self.stage(&mut batch, pending)?;
            if pending.address.is_none() {
                created.push(StoreManifest::document_hash(&address.keys.manifest));
            }
            addresses.push(address);
        }
        self.apply_batch(batch, |tally| {
            for hash in created {
                tally.add(hash, 0);
            }
            Ok(())
        })?;
        // Applied: sled holds the writes now, and reads must check them against the new
        // manifests, even if the flush below fails.
        for (pending, address) in documents.iter_mut().zip(addresses) {
            pending.address = Some(address);
        }
        if durable {
            self.flush_durable()?;
        }
        Ok(())
    }

    /// Holds the writer while it reads, so no document is created or removed meanwhile,
    /// and checks the documents found against the store manifest.
    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        let expected = self.lock_writer();
        let mut found = Tally::default();
        let mut ids = Vec::new();
        self.scan(MANIFESTS, |key, value| {
            let id = layout::decode_manifest_key(key)
                .ok_or_else(|| self.corrupt("a manifest key that does not decode"))?;
            let decoded = layout::unframe(key, value).and_then(|(_, m)| Manifest::decode(m));
            if decoded.is_none() {
                return Err(
                    self.corrupt(format!("the manifest of document {id} fails its checksum"))
                );
            }
            found.add(StoreManifest::document_hash(key), 0);
            ids.push(id);
            Ok(())
        })?;
        if found != expected.documents {
            return Err(self.corrupt(format!(
                "{} documents found, but the store manifest records {} (or other ids)",
                found.count, expected.documents.count
            )));
        }
        Ok(ids)
    }

    /// One batch removing every key of the document, then a durable flush.
    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let keys = DocKeys::new(id)?;
        let mut batch = sled::Batch::default();
        let mut any = false;
        self.scan(&keys.data, |key, _| {
            batch.remove(key);
            any = true;
            Ok(())
        })?;
        let existed = self.get(&keys.manifest)?.is_some();
        if !existed && !any {
            return Ok(());
        }
        batch.remove(keys.manifest.as_slice());
        let removed = existed.then(|| StoreManifest::document_hash(&keys.manifest));
        self.apply_batch(batch, |documents| match removed {
            Some(hash) => documents.remove(hash, 0).ok_or_else(|| {
                self.corrupt("the store manifest counts fewer documents than exist")
            }),
            None => Ok(()),
        })?;
        self.flush_durable()
    }

    /// Releases sled, then reports a poisoning (a sled panic, a failed write or flush)
    /// that core's store may not have seen: a checked shutdown never reports `Ok` for
    /// a store that could not make a flush durable.
    fn close(mut self) -> Result<()> {
        let poisoned = self.check_poisoned();
        self.release()?;
        poisoned
    }
}
