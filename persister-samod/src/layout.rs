//! Where each samod key lives in a store: the layout, format version 1.
//!
//! See the crate docs ("Layout") for the table; this module is its code.

use std::collections::{BTreeSet, HashMap};

use persister_core::{
    ActorId, Batch, DocumentId, Error, MAX_PEER_ID_LEN, Persister, Result, Write,
};

/// The version of the layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The name [`FORMAT_VERSION`] is refused by, in errors.
pub(crate) const FORMAT_NAME: &str = "persister-samod layout";

/// The reserved document: the layout record and every key of fewer than two
/// components. No samod key component contains `/`, so no samod document is named so.
pub const LAYOUT_DOCUMENT: &str = "/";

/// The name given to a document slot filled by another program (a document stored with
/// no slot-name entry, or into a slot this layout had emptied), so that samod can still
/// load and delete it.
pub const UNNAMED_SNAPSHOT: &str = "persister-compacted";

/// Sync-state entry tags: the first byte of every entry id this layout writes.
const FORMAT_TAG: u8 = 0x00;

/// The sync-state entry of [`LAYOUT_DOCUMENT`] that holds the layout record.
pub const LAYOUT_RECORD: &[u8] = &[FORMAT_TAG];
const KEY_TAG: u8 = 0x01;
const SLOT_TAG: u8 = 0x02;

/// The value of the layout record: this magic, then the version as 4 big-endian bytes.
const FORMAT_MAGIC: &[u8] = b"persister-samod\0";

const INCREMENTAL: &str = "incremental";
const SNAPSHOT: &str = "snapshot";

/// The persister document a key lives in.
pub(crate) fn document_of(key: &[String]) -> DocumentId {
    match key {
        [first, _, ..] => DocumentId::from(first.as_str()),
        _ => DocumentId::from(LAYOUT_DOCUMENT),
    }
}

/// The part of a key that names its entry inside [`document_of`]: everything after the
/// first component, or the whole key in the layout document.
pub(crate) fn rest_of(key: &[String]) -> &[String] {
    match key {
        [_, rest @ ..] if !rest.is_empty() => rest,
        whole => whole,
    }
}

/// The samod key of `rest` in document `document`.
pub(crate) fn key_of(document: &DocumentId, rest: Vec<String>) -> Option<Vec<String>> {
    if document.as_bytes() == LAYOUT_DOCUMENT.as_bytes() {
        return Some(rest);
    }
    let mut key = vec![component(document)?];
    key.extend(rest);
    Some(key)
}

/// The document id as a key component, when it can be one: UTF-8, not empty, no `/`.
pub(crate) fn component(document: &DocumentId) -> Option<String> {
    let text = document.as_str()?;
    (!text.is_empty() && !text.contains('/')).then(|| text.to_string())
}

/// The sync-state entry id of a key stored as itself: the tag, then its components
/// joined by `/` (no component is empty or holds a `/`, so the join is unambiguous).
pub(crate) fn entry_id(rest: &[String]) -> Result<Vec<u8>> {
    let joined = rest.join("/");
    let mut id = Vec::with_capacity(1 + joined.len());
    id.push(KEY_TAG);
    id.extend_from_slice(joined.as_bytes());
    if id.len() > MAX_PEER_ID_LEN {
        return Err(Error::TooLarge {
            what: "samod storage key",
            len: id.len() as u64,
            max: MAX_PEER_ID_LEN as u64,
        });
    }
    Ok(id)
}

/// What a sync-state entry id of this layout is.
pub(crate) enum Entry {
    /// The layout record.
    Format,
    /// The name of the snapshot in the document slot.
    SlotName,
    /// A key stored as itself, with these components.
    Key(Vec<String>),
}

pub(crate) fn decode_entry(document: &DocumentId, id: &[u8]) -> Result<Entry> {
    let bad = |what: &str| {
        Error::corrupt(
            format!(
                "{what} in the sync-state entry {id:02x?} of document {document}, which persister-samod layout {FORMAT_VERSION} does not write"
            ),
            format!("document {document}"),
            None,
        )
    };
    match id.split_first() {
        Some((&FORMAT_TAG, [])) => Ok(Entry::Format),
        Some((&SLOT_TAG, [])) => Ok(Entry::SlotName),
        Some((&KEY_TAG, joined)) => {
            let joined = std::str::from_utf8(joined).map_err(|_| bad("a key that is not UTF-8"))?;
            if joined.is_empty() {
                return Ok(Entry::Key(Vec::new()));
            }
            let parts: Vec<String> = joined.split('/').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                return Err(bad("a key with an empty component"));
            }
            Ok(Entry::Key(parts))
        }
        _ => Err(bad("an unknown tag")),
    }
}

/// The layout version a layout record names (the value of the sync-state entry
/// [`LAYOUT_RECORD`] of [`LAYOUT_DOCUMENT`]), or `None` when `value` is no
/// persister-samod layout record. A store with such a record in that place is a
/// persister-samod store, whose documents' sync-state entries belong to the layout.
pub fn layout_version(value: &[u8]) -> Option<u32> {
    value
        .strip_prefix(FORMAT_MAGIC)
        .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
        .map(u32::from_be_bytes)
}

/// The layout record's entry id and value.
pub(crate) fn format_entry() -> (Vec<u8>, Vec<u8>) {
    let mut value = FORMAT_MAGIC.to_vec();
    value.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    (vec![FORMAT_TAG], value)
}

/// Checks the layout record of a store, writing it into a store that has none.
pub(crate) fn check_format(layout: &mut impl Persister<Error = Error>) -> Result<()> {
    let (id, expected) = format_entry();
    match layout.get_sync_state(&id)? {
        None => {
            layout.apply(Batch::new().set_sync_state(id, expected))?;
            layout.flush()?;
            Ok(())
        }
        Some(value) => {
            let version = layout_version(&value).ok_or_else(|| {
                Error::corrupt(
                    "the layout record of document \"/\" is not a persister-samod record",
                    "document \"/\"",
                    None,
                )
            })?;
            if version != FORMAT_VERSION {
                return Err(Error::UnsupportedFormat {
                    what: FORMAT_NAME,
                    path: "document \"/\" of the store".into(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
            Ok(())
        }
    }
}

/// The actor and seq a change is stored under, when `data` is exactly one change chunk
/// (plain or compressed) whose hash is `hash`. Anything else is stored as itself.
pub(crate) fn change_key(hash: &str, data: &[u8]) -> Option<(ActorId, u64)> {
    let change = automerge::Change::try_from(data).ok()?;
    if change.hash().to_string() != hash {
        return None;
    }
    let actor = ActorId::new(change.actor_id().to_bytes());
    actor.validate().ok()?;
    Some((actor, change.seq()))
}

/// The hash of a stored change, which is its key's last component.
pub(crate) fn change_hash(
    document: &DocumentId,
    actor: &ActorId,
    seq: u64,
    data: &[u8],
) -> Result<String> {
    automerge::Change::try_from(data)
        .map(|change| change.hash().to_string())
        .map_err(|e| {
            Error::corrupt(
                format!("the change ({actor}, {seq}) of document {document} is not an automerge change: {e}"),
                format!("document {document}"),
                None,
            )
        })
}

/// Where one document's keys are: which change holds which hash, and the snapshots.
///
/// Built from the store when a document is first used, then kept up to date by every
/// write this module translates.
#[derive(Debug, Default)]
pub(crate) struct DocIndex {
    changes: HashMap<String, (ActorId, u64)>,
    owners: HashMap<(ActorId, u64), String>,
    /// The name of the snapshot in the document slot; `None` when the slot is vacant.
    slot: Option<String>,
    /// Snapshots stored as themselves, beside the one in the slot.
    spare_snapshots: BTreeSet<String>,
}

/// A change read from the store, with its hash.
pub(crate) struct StoredChange {
    pub(crate) data: Vec<u8>,
    pub(crate) hash: String,
}

impl DocIndex {
    /// Reads a document's index, returning its changes too (they had to be read).
    pub(crate) fn read(
        id: &DocumentId,
        p: &impl Persister<Error = Error>,
    ) -> Result<(DocIndex, Vec<StoredChange>)> {
        let mut index = DocIndex::default();
        let mut changes = Vec::new();
        for (actor, seq, data) in p.get_change_entries()? {
            let hash = change_hash(id, &actor, seq, &data)?;
            index.changes.insert(hash.clone(), (actor.clone(), seq));
            index.owners.insert((actor.clone(), seq), hash.clone());
            changes.push(StoredChange { data, hash });
        }
        let mut named = None;
        for peer in p.get_peer_ids()? {
            match decode_entry(id, &peer)? {
                Entry::SlotName => {
                    let name = p
                        .get_sync_state(&peer)?
                        .ok_or_else(|| missing(id, "the slot name"))?;
                    let name = String::from_utf8(name).map_err(|_| {
                        Error::corrupt(
                            format!("the snapshot name of document {id} is not UTF-8"),
                            format!("document {id}"),
                            None,
                        )
                    })?;
                    named = Some(name);
                }
                Entry::Key(parts) => {
                    if let [kind, name] = parts.as_slice()
                        && kind == SNAPSHOT
                    {
                        index.spare_snapshots.insert(name.clone());
                    }
                }
                Entry::Format => {}
            }
        }
        index.slot = match named {
            Some(name) if !name.is_empty() => Some(name),
            // A vacated slot (empty name) is empty; bytes in it were put there by other
            // code since, and are loaded like those in a slot this layout never named.
            vacated => match p.get_document()? {
                Some(bytes) if vacated.is_none() || !bytes.is_empty() => {
                    Some(UNNAMED_SNAPSHOT.to_string())
                }
                _ => None,
            },
        };
        Ok((index, changes))
    }

    /// The hash of the change stored under `(actor, seq)`, if this index knows it.
    pub(crate) fn hash_of(&self, actor: &ActorId, seq: u64) -> Option<&str> {
        self.owners.get(&(actor.clone(), seq)).map(String::as_str)
    }

    /// The name of the snapshot in the slot.
    pub(crate) fn slot(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// Where the change `hash` is stored, when it is stored as a change.
    pub(crate) fn change_of(&self, hash: &str) -> Option<&(ActorId, u64)> {
        self.changes.get(hash)
    }

    /// Adds to `out` the writes of a put of `rest` in document `id`.
    pub(crate) fn put(
        &mut self,
        id: &DocumentId,
        p: &impl Persister<Error = Error>,
        out: &mut Pending,
        rest: &[String],
        data: Vec<u8>,
    ) -> Result<()> {
        match rest {
            [kind, hash] if kind == INCREMENTAL => {
                let entry = entry_id(rest)?;
                if let Some((actor, seq)) = self.changes.remove(hash) {
                    self.owners.remove(&(actor.clone(), seq));
                    out.push(Write::RemoveChange { actor, seq });
                }
                match change_key(hash, &data) {
                    Some((actor, seq)) if !self.owners.contains_key(&(actor.clone(), seq)) => {
                        out.push(Write::RemoveSyncState { peer: entry });
                        self.changes.insert(hash.clone(), (actor.clone(), seq));
                        self.owners.insert((actor.clone(), seq), hash.clone());
                        out.push(Write::InsertChange {
                            actor,
                            seq,
                            value: data,
                        });
                    }
                    // Not a change with this hash, or another change holds its (actor,
                    // seq) (a forked actor): stored as itself, so nothing is replaced.
                    _ => out.push(Write::SetSyncState {
                        peer: entry,
                        state: data,
                    }),
                }
            }
            [kind, name] if kind == SNAPSHOT => {
                if self.slot.as_deref() == Some(name) {
                    out.push(Write::SetDocument(data));
                    return Ok(());
                }
                // The newest snapshot takes the slot; the one there moves beside it until
                // samod deletes it, so two snapshots are never one.
                if let Some(old) = self.slot.take() {
                    let bytes = out
                        .document(p)?
                        .ok_or_else(|| missing(id, "the document slot"))?;
                    out.push(Write::SetSyncState {
                        peer: entry_id(&[SNAPSHOT.to_string(), old.clone()])?,
                        state: bytes,
                    });
                    self.spare_snapshots.insert(old);
                }
                if self.spare_snapshots.remove(name) {
                    out.push(Write::RemoveSyncState {
                        peer: entry_id(rest)?,
                    });
                }
                out.push(Write::SetDocument(data));
                out.push(Write::SetSyncState {
                    peer: vec![SLOT_TAG],
                    state: name.as_bytes().to_vec(),
                });
                self.slot = Some(name.clone());
            }
            _ => out.push(Write::SetSyncState {
                peer: entry_id(rest)?,
                state: data,
            }),
        }
        Ok(())
    }

    /// Adds to `out` the writes of a delete of `rest` in document `id`.
    pub(crate) fn delete(
        &mut self,
        id: &DocumentId,
        p: &impl Persister<Error = Error>,
        out: &mut Pending,
        rest: &[String],
    ) -> Result<()> {
        match rest {
            [kind, hash] if kind == INCREMENTAL => {
                if let Some((actor, seq)) = self.changes.remove(hash) {
                    self.owners.remove(&(actor.clone(), seq));
                    out.push(Write::RemoveChange { actor, seq });
                }
                out.push(Write::RemoveSyncState {
                    peer: entry_id(rest)?,
                });
            }
            [kind, name] if kind == SNAPSHOT && self.slot.as_deref() == Some(name) => {
                // The slot never stays empty while a spare snapshot exists.
                match self.spare_snapshots.pop_last() {
                    Some(next) => {
                        let peer = entry_id(&[SNAPSHOT.to_string(), next.clone()])?;
                        let bytes = out
                            .entry(p, &peer)?
                            .ok_or_else(|| missing(id, "a spare snapshot"))?;
                        out.push(Write::SetDocument(bytes));
                        out.push(Write::SetSyncState {
                            peer: vec![SLOT_TAG],
                            state: next.as_bytes().to_vec(),
                        });
                        out.push(Write::RemoveSyncState { peer });
                        self.slot = Some(next);
                    }
                    None => {
                        out.push(Write::SetDocument(Vec::new()));
                        out.push(Write::SetSyncState {
                            peer: vec![SLOT_TAG],
                            state: Vec::new(),
                        });
                        self.slot = None;
                    }
                }
            }
            [kind, name] if kind == SNAPSHOT => {
                self.spare_snapshots.remove(name);
                out.push(Write::RemoveSyncState {
                    peer: entry_id(rest)?,
                });
            }
            _ => out.push(Write::RemoveSyncState {
                peer: entry_id(rest)?,
            }),
        }
        Ok(())
    }
}

/// What [`check_document`] found in one document of a persister-samod store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DocumentCheck {
    /// Snapshots and incrementals stored as sync-state entries (snapshots kept beside
    /// the newest, incrementals that are not one change under their hash), each of
    /// which loaded with automerge.
    pub chunks_in_entries: u64,
    /// Other keys stored as sync-state entries (in the reserved document, the
    /// store-wide keys), whose values this layout does not interpret.
    pub other_keys: u64,
}

/// Checks what a samod repo would load from document `id` of a persister-samod store
/// beyond its changes and its document slot (which
/// [`PersistentDoc`](https://docs.rs/persister-automerge) loads): every sync-state entry
/// must be one this layout writes, the slot's name must be UTF-8 and name a stored
/// snapshot, every stored change must be an automerge change, and every snapshot or
/// incremental stored as an entry must load with automerge on its own, whole and with
/// its checksums.
///
/// samod itself loads a document's chunks one after another and skips, with a warning
/// in its log, any chunk that fails to load, so a chunk this check refuses would leave
/// its edits out of the document samod serves.
///
/// # Errors
///
/// [`Error::Corrupt`] naming the entry or key at fault, or the store's error from a
/// read.
pub fn check_document(id: &DocumentId, p: &impl Persister<Error = Error>) -> Result<DocumentCheck> {
    let (index, _) = DocIndex::read(id, p)?;
    if index.slot().is_some() && p.get_document()?.is_none() {
        return Err(missing(id, "the document slot"));
    }
    let mut check = DocumentCheck::default();
    for peer in p.get_peer_ids()? {
        let Entry::Key(parts) = decode_entry(id, &peer)? else {
            continue;
        };
        let value = p
            .get_sync_state(&peer)?
            .ok_or_else(|| missing(id, "a key entry"))?;
        match parts.as_slice() {
            [kind, _] if kind == SNAPSHOT || kind == INCREMENTAL => {
                let loaded = std::panic::catch_unwind(|| automerge::Automerge::load(&value));
                let problem = match loaded {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("automerge panicked loading it".to_string()),
                };
                if let Some(problem) = problem {
                    return Err(Error::corrupt(
                        format!(
                            "the samod key {} of document {id} does not load with automerge: {problem}",
                            key_of(id, parts.clone()).unwrap_or(parts).join("/")
                        ),
                        format!("document {id}"),
                        None,
                    ));
                }
                check.chunks_in_entries += 1;
            }
            _ => check.other_keys += 1,
        }
    }
    Ok(check)
}

fn missing(id: &DocumentId, what: &str) -> Error {
    Error::corrupt(
        format!("{what} of document {id} is named in its index entries but not stored"),
        format!("document {id}"),
        None,
    )
}

/// The writes of one batch being built, readable before it is applied.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    batch: Batch,
    document: Option<Vec<u8>>,
    entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Pending {
    fn push(&mut self, write: Write) {
        match &write {
            Write::SetDocument(value) => self.document = Some(value.clone()),
            Write::SetSyncState { peer, state } => {
                self.entries.insert(peer.clone(), Some(state.clone()));
            }
            Write::RemoveSyncState { peer } => {
                self.entries.insert(peer.clone(), None);
            }
            _ => {}
        }
        self.batch.push(write);
    }

    fn document(&self, p: &impl Persister<Error = Error>) -> Result<Option<Vec<u8>>> {
        match &self.document {
            Some(value) => Ok(Some(value.clone())),
            None => p.get_document(),
        }
    }

    fn entry(&self, p: &impl Persister<Error = Error>, peer: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.entries.get(peer) {
            Some(value) => Ok(value.clone()),
            None => p.get_sync_state(peer),
        }
    }

    /// The batch.
    pub(crate) fn into_batch(self) -> Batch {
        self.batch
    }
}

/// Every stored key of one document under `prefix` (components after the document's
/// own), with its value. An entry the index names but the store lacks is an error.
pub(crate) fn read_range(
    id: &DocumentId,
    p: &impl Persister<Error = Error>,
    index: &DocIndex,
    changes: Option<Vec<StoredChange>>,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Vec<u8>)>,
) -> Result<()> {
    let wants = |kind: &str, name: &str| match prefix {
        [] => true,
        [k] => k == kind,
        [k, n] => k == kind && n == name,
        _ => false,
    };
    let under = |parts: &[String]| parts.len() >= prefix.len() && parts[..prefix.len()] == *prefix;
    if matches!(prefix, [] | [_] | [_, _]) && prefix.first().is_none_or(|k| k == INCREMENTAL) {
        let changes = match changes {
            Some(changes) => changes,
            None => {
                let mut read = Vec::new();
                for (actor, seq, data) in p.get_change_entries()? {
                    let hash = match index.hash_of(&actor, seq) {
                        Some(hash) => hash.to_string(),
                        None => change_hash(id, &actor, seq, &data)?,
                    };
                    read.push(StoredChange { data, hash });
                }
                read
            }
        };
        for change in changes {
            if wants(INCREMENTAL, &change.hash) {
                out.push((vec![INCREMENTAL.to_string(), change.hash], change.data));
            }
        }
    }
    if let Some(name) = index.slot()
        && wants(SNAPSHOT, name)
    {
        let bytes = p
            .get_document()?
            .ok_or_else(|| missing(id, "the document slot"))?;
        out.push((vec![SNAPSHOT.to_string(), name.to_string()], bytes));
    }
    for peer in p.get_peer_ids()? {
        if let Entry::Key(parts) = decode_entry(id, &peer)?
            && under(&parts)
        {
            let value = p
                .get_sync_state(&peer)?
                .ok_or_else(|| missing(id, "a key entry"))?;
            out.push((parts, value));
        }
    }
    Ok(())
}

/// The value of one key of a document, if stored.
pub(crate) fn read_one(
    id: &DocumentId,
    p: &impl Persister<Error = Error>,
    index: &DocIndex,
    rest: &[String],
) -> Result<Option<Vec<u8>>> {
    match rest {
        [kind, hash] if kind == INCREMENTAL => {
            if let Some((actor, seq)) = index.change_of(hash) {
                let found = p
                    .get_change_entries()?
                    .into_iter()
                    .find(|(a, s, _)| a == actor && s == seq)
                    .map(|(_, _, data)| data);
                return found
                    .map(Some)
                    .ok_or_else(|| missing(id, "an indexed change"));
            }
        }
        [kind, name] if kind == SNAPSHOT && index.slot() == Some(name) => {
            return p
                .get_document()?
                .map(Some)
                .ok_or_else(|| missing(id, "the document slot"));
        }
        _ => {}
    }
    p.get_sync_state(&entry_id(rest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_documents_and_back() {
        let key = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(
            document_of(&key(&["storage-adapter-id"])),
            DocumentId::from("/")
        );
        assert_eq!(document_of(&key(&[])), DocumentId::from("/"));
        assert_eq!(
            document_of(&key(&["abc", "snapshot", "h"])),
            DocumentId::from("abc")
        );
        assert_eq!(
            rest_of(&key(&["abc", "snapshot", "h"])),
            key(&["snapshot", "h"]).as_slice()
        );
        assert_eq!(rest_of(&key(&["abc"])), key(&["abc"]).as_slice());
        assert_eq!(
            key_of(&DocumentId::from("abc"), key(&["snapshot", "h"])),
            Some(key(&["abc", "snapshot", "h"]))
        );
        assert_eq!(
            key_of(&DocumentId::from("/"), key(&["x"])),
            Some(key(&["x"]))
        );
        assert_eq!(key_of(&DocumentId::from("a/b"), key(&["x"])), None);
    }

    #[test]
    fn entry_ids_round_trip_and_are_bounded() -> Result<()> {
        let rest = vec!["sync-state".to_string(), "peer".to_string()];
        let id = entry_id(&rest)?;
        assert!(matches!(decode_entry(&"d".into(), &id)?, Entry::Key(parts) if parts == rest));
        assert!(
            matches!(decode_entry(&"d".into(), &entry_id(&[])?)?, Entry::Key(parts) if parts.is_empty())
        );
        assert!(decode_entry(&"d".into(), &[0x7f]).is_err());
        assert!(matches!(
            entry_id(&["x".repeat(2000)]),
            Err(Error::TooLarge { .. })
        ));
        Ok(())
    }
}
