//! The handle of one document: writes held in memory, written to sled in one batch by
//! `flush`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use persister_core::{
    ActorId, Batch, ChangeEntry, DocumentClaim, DocumentId, Error, Persister, Result, StoredSizes,
    Write,
};

use crate::held::{self, Entry, Held};
use crate::layout::{self, DocKeys};
use crate::manifest::{Manifest, StoreManifest, Tally};
use crate::shared::Shared;

/// The handle of one document in a [`SledStore`](crate::SledStore): a [`Persister`].
///
/// Writes are held in memory until [`flush`](Persister::flush), which writes all of them
/// to sled in one atomic batch and then makes them durable; reads see them at once. A
/// handle about to hold more than
/// [`max_pending_bytes`](crate::SledOptions::max_pending_bytes) flushes what it holds
/// first. Dropping a handle discards what it holds
/// ([contract point 12](persister_core::Persister#contract)).
///
/// It keeps the document's manifest in memory, so [`sizes`](Persister::sizes) is exact
/// and O(1). Every read of sled checks what it returns against the manifest and the
/// values' checksums, and fails with [`Error::Corrupt`] rather than return a part of the
/// data: [`get_change_entries`](Persister::get_change_entries) and
/// [`get_changes`](Persister::get_changes) read all changes,
/// [`get_peer_ids`](Persister::get_peer_ids) and
/// [`get_sync_state`](Persister::get_sync_state) read all sync states (so the latter is
/// O(number of peers)), [`get_document`](Persister::get_document) reads the document.
#[derive(Debug)]
pub struct SledPersister {
    shared: Arc<Shared>,
    keys: DocKeys,
    /// The document's manifest as sled holds it; `None` until the document is in sled.
    stored: Option<Manifest>,
    /// The manifest as reads see it (sled's with the held writes); `None` until the
    /// document exists.
    manifest: Option<Manifest>,
    held: Held,
    /// For actors written to since the handle last wrote to sled: a seq that no change
    /// of theirs in sled is above (`None` when sled holds none of theirs), so that
    /// appending a change, the usual write, does not read sled.
    sled_max_seq: HashMap<ActorId, Option<u64>>,
    /// The `(hash, length)` of values this handle wrote to sled, by key (at most
    /// [`MAX_KNOWN`]), so that removing or replacing them, as compaction does, does not
    /// read sled.
    known: HashMap<Vec<u8>, (u32, u64)>,
    /// A batch was applied since the handle last wrote to sled.
    dirty: bool,
    /// Bytes applied since the last successful flush.
    pending: usize,
    claim: DocumentClaim,
}

impl SledPersister {
    pub(crate) fn open(shared: Arc<Shared>, claim: DocumentClaim) -> Result<Self> {
        let keys = DocKeys::new(claim.id())?;
        let stored = match shared.get(&keys.manifest)? {
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
        Ok(Self {
            shared,
            keys,
            stored,
            manifest: stored,
            held: Held::default(),
            sled_max_seq: HashMap::new(),
            known: HashMap::new(),
            dirty: false,
            pending: 0,
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

    /// Reads every entry sled holds under `prefix`, checks each value's checksum and the
    /// whole set against `expected`, and returns the key suffixes with the payloads, with
    /// the held writes under `prefix` merged in.
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
        Ok(held::merge(entries, self.held.under(prefix)))
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
        let expected = self.stored.unwrap_or_default().sync_states;
        self.read_part("sync states", &self.keys.sync_states(), expected)
    }

    /// Whether sled may hold a change of `actor` numbered `seq`: not when `seq` is above
    /// every seq of the actor's in sled (read once per actor between two writes to sled).
    fn may_be_in_sled(&mut self, actor: &ActorId, seq: u64) -> Result<bool> {
        if self.stored.is_none() {
            return Ok(false);
        }
        let max = match self.sled_max_seq.get(actor) {
            Some(max) => *max,
            None => {
                let prefix = self.keys.actor_changes(actor);
                let max = match self.shared.last_key(&prefix)? {
                    None => None,
                    Some(key) => Some(
                        key.get(prefix.len()..)
                            .and_then(|seq| <[u8; 8]>::try_from(seq).ok())
                            .map(u64::from_be_bytes)
                            .ok_or_else(|| self.corrupt("a change key does not decode"))?,
                    ),
                };
                self.sled_max_seq.insert(actor.clone(), max);
                max
            }
        };
        Ok(max.is_some_and(|max| seq <= max))
    }

    /// The `(hash, length)` stored under `key`, as the batch being built leaves it, and
    /// whether sled may hold the key; `in_sled` false says it cannot.
    fn current(
        &self,
        staged: &Staged,
        key: &[u8],
        in_sled: bool,
    ) -> Result<(Option<(u32, u64)>, bool)> {
        if let Some(entry) = staged.get(key).or_else(|| self.held.entry(key)) {
            let value = entry.value.as_deref().and_then(layout::claimed);
            return Ok((value, entry.in_sled));
        }
        if self.stored.is_none() || !in_sled {
            return Ok((None, false));
        }
        if let Some(&known) = self.known.get(key) {
            return Ok((Some(known), true));
        }
        match self.shared.get(key)? {
            None => Ok((None, false)),
            Some(value) => layout::claimed(&value)
                .map(|claimed| (Some(claimed), true))
                .ok_or_else(|| self.corrupt("a stored value is shorter than its checksum")),
        }
    }

    /// Stages the replacement of the entry under `key` by `new` (or its removal), and
    /// accounts it in `tally`; `in_sled` false says sled cannot hold `key`.
    fn stage(
        &self,
        staged: &mut Staged,
        tally: &mut Tally,
        (key, in_sled): (Vec<u8>, bool),
        new: Option<Vec<u8>>,
    ) -> Result<()> {
        let (old, in_sled) = self.current(staged, &key, in_sled)?;
        if let Some((hash, len)) = old {
            tally.remove(hash, len).ok_or_else(|| {
                self.corrupt("its manifest records fewer entries or bytes than are stored")
            })?;
        }
        match new {
            Some(payload) => {
                let framed = layout::frame(&key, &payload);
                if let Some((hash, len)) = layout::claimed(&framed) {
                    tally.add(hash, len);
                }
                let value = Some(framed);
                staged.insert(key, Entry { value, in_sled });
            }
            None if old.is_some() => {
                let value = None;
                staged.insert(key, Entry { value, in_sled });
            }
            None => {}
        }
        Ok(())
    }

    /// The first half of a flush: writes what the handle holds to sled, without
    /// syncing. Returns whether it has bytes that a sync must make durable.
    pub(crate) fn write_for_flush(&mut self) -> Result<bool> {
        if self.pending == 0 && !self.dirty {
            return self.shared.check_poisoned().map(|()| false);
        }
        self.shared.check_writable()?;
        self.write_held()?;
        Ok(self.pending > 0)
    }

    /// The second half of a flush, once a sync covered this handle's writes: the bytes
    /// it made durable.
    pub(crate) fn take_flushed(&mut self) -> usize {
        std::mem::take(&mut self.pending)
    }

    /// Whether this handle belongs to the store that shares `shared`.
    pub(crate) fn is_of(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// Writes the held writes and the manifest to sled in one batch, without syncing.
    /// A failure poisons the store (and keeps the writes held, for reads).
    fn write_held(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let manifest = self.manifest();
        let mut batch = sled::Batch::default();
        for (key, value) in self.held.writes() {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        let key = &self.keys.manifest;
        let framed = layout::frame(key, &manifest.encode());
        // Written even when no payload byte is (an empty document, an empty peer id
        // removed), so the flush after it always has bytes to sync.
        let written = key.len() + framed.len();
        batch.insert(key.as_slice(), framed);
        let created = self
            .stored
            .is_none()
            .then(|| StoreManifest::document_hash(key));
        self.shared.commit(batch, |documents| {
            if let Some(hash) = created {
                documents.add(hash, 0);
            }
            Ok(())
        })?;
        self.stored = Some(manifest);
        for (key, entry) in std::mem::take(&mut self.held).into_entries() {
            match entry.value.as_deref().and_then(layout::claimed) {
                Some(claimed) if self.known.len() < MAX_KNOWN || self.known.contains_key(&key) => {
                    self.known.insert(key, claimed);
                }
                _ => {
                    self.known.remove(&key);
                }
            }
        }
        // The seqs sled holds changed: read them again when needed.
        self.sled_max_seq.clear();
        self.dirty = false;
        self.pending = self.pending.saturating_add(written);
        if created.is_some() {
            self.shared.mark_unwritten(self.claim.id(), false);
        }
        Ok(())
    }
}

/// The most values whose `(hash, length)` a handle remembers (about 60 bytes each).
const MAX_KNOWN: usize = 1 << 16;

/// What the batch being built has written so far, by sled key.
type Staged = BTreeMap<Vec<u8>, Entry>;

impl Persister for SledPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.shared.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let payload = batch.payload_len();
        if self.dirty && self.held.bytes().saturating_add(payload) > self.shared.max_pending_bytes {
            self.flush()?;
        }
        // Nothing changes before every write is staged, so a failure applies nothing.
        let mut manifest = self.manifest();
        let mut staged = Staged::new();
        for write in batch {
            let (tally, key, new) = match write {
                Write::InsertChange { actor, seq, value } => (
                    &mut manifest.changes,
                    (
                        self.keys.change(&actor, seq),
                        self.may_be_in_sled(&actor, seq)?,
                    ),
                    Some(value),
                ),
                Write::RemoveChange { actor, seq } => (
                    &mut manifest.changes,
                    (
                        self.keys.change(&actor, seq),
                        self.may_be_in_sled(&actor, seq)?,
                    ),
                    None,
                ),
                Write::SetSyncState { peer, state } => (
                    &mut manifest.sync_states,
                    (self.keys.sync_state(&peer), true),
                    Some(state),
                ),
                Write::RemoveSyncState { peer } => (
                    &mut manifest.sync_states,
                    (self.keys.sync_state(&peer), true),
                    None,
                ),
                Write::SetDocument(value) => {
                    // The manifest holds the document's hash; no need to read the old one.
                    let key = self.keys.document();
                    manifest.document =
                        Some((layout::entry_hash(&key, &value), value.len() as u64));
                    let value = Some(layout::frame(&key, &value));
                    let in_sled = true;
                    staged.insert(key, Entry { value, in_sled });
                    continue;
                }
            };
            self.stage(&mut staged, tally, key, new)?;
        }
        self.held.extend(staged, payload);
        self.manifest = Some(manifest);
        if !self.dirty {
            self.dirty = true;
            if self.stored.is_none() {
                self.shared.mark_unwritten(self.claim.id(), true);
            }
        }
        self.pending = self.pending.saturating_add(payload);
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        let expected = self.stored.unwrap_or_default().changes;
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
        if let Some(held) = self.held.get(&key) {
            return Ok(held.map(|framed| held::payload(framed).to_vec()));
        }
        let stored = self.shared.get(&key)?;
        match (self.stored.unwrap_or_default().document, stored) {
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
        if let Some(held) = self.held.get(&self.keys.sync_state(peer_id)) {
            return Ok(held.map(|framed| held::payload(framed).to_vec()));
        }
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

    /// Writes the held writes to sled in one batch and makes every write applied through
    /// this handle durable; see the [crate docs](crate#durability) for exactly what that
    /// covers.
    fn flush(&mut self) -> Result<usize> {
        if !self.write_for_flush()? {
            return Ok(0);
        }
        let written = self.shared.flush_durable()?;
        // Another handle's flush may have written this handle's bytes already; they
        // were made durable only now.
        Ok(written.max(self.take_flushed()))
    }
}

impl Drop for SledPersister {
    /// Discards the writes held since the last flush (contract point 12): they never
    /// reached sled.
    fn drop(&mut self) {
        self.shared.mark_unwritten(self.claim.id(), false);
    }
}
