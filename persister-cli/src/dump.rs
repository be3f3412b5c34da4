//! One document's whole content in memory: what `copy`, `export`, `import` and
//! `verify` move around.

use std::path::Path;

use persister_core::{
    ActorId, Batch, ChangeEntry, DocumentId, Error, MAX_BATCH_LEN, Persister, Result, StoredSizes,
    Write,
};

/// Everything a persister holds for one document: its compacted form, its changes
/// ordered by `(actor bytes, seq)`, and its sync states ordered by peer id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentDump {
    /// The document's id.
    pub id: DocumentId,
    /// The compacted document, if one is stored.
    pub document: Option<Vec<u8>>,
    /// The changes with their keys, ordered by `(actor bytes, seq)`.
    pub changes: Vec<ChangeEntry>,
    /// The sync states as `(peer id, state)`, ordered by peer id.
    pub sync_states: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How many payload bytes one batch of [`DocumentDump::write_into`] carries at most, so
/// that a document larger than [`MAX_BATCH_LEN`] still copies.
const CHUNK_LEN: usize = MAX_BATCH_LEN / 4;

impl DocumentDump {
    /// Reads everything `persister` holds for document `id`, and checks that it adds up
    /// to the sizes the persister records: a mismatch is [`Error::Corrupt`] naming
    /// `store`.
    pub fn read<P>(id: &DocumentId, persister: &P, store: &Path) -> Result<Self>
    where
        P: Persister<Error = Error> + ?Sized,
    {
        let document = persister.get_document()?;
        let changes = persister.get_change_entries()?;
        let mut sync_states = Vec::new();
        for peer in persister.get_peer_ids()? {
            let state = persister.get_sync_state(&peer)?.ok_or_else(|| {
                Error::corrupt(
                    format!(
                        "document {id}: peer {} is listed but has no sync state",
                        DocumentId::from(peer.clone())
                    ),
                    store,
                    None,
                )
            })?;
            sync_states.push((peer, state));
        }
        let dump = Self {
            id: id.clone(),
            document,
            changes,
            sync_states,
        };
        let (recorded, found) = (persister.sizes(), dump.sizes());
        if recorded != found {
            return Err(Error::corrupt(
                format!(
                    "document {id}: the store records {} but its entries add up to {}",
                    describe(&recorded),
                    describe(&found)
                ),
                store,
                None,
            ));
        }
        Ok(dump)
    }

    /// The sizes a persister holding this document reports.
    pub fn sizes(&self) -> StoredSizes {
        let len = |v: &[u8]| v.len() as u64;
        StoredSizes {
            changes: self.changes.iter().map(|(_, _, v)| len(v)).sum(),
            document: self.document.as_deref().map_or(0, len),
            sync_states: self.sync_states.iter().map(|(_, s)| len(s)).sum(),
            change_count: self.changes.len() as u64,
            sync_state_count: self.sync_states.len() as u64,
        }
    }

    /// Writes the document into `dst`, which must hold nothing, in as few batches as
    /// the batch limit allows, and checks `dst`'s sizes afterwards. It does not flush.
    ///
    /// A dump that holds nothing (a document emptied by removals, which its store still
    /// lists) is written as one batch that removes a sync state that is not there: a
    /// non-empty batch, so the flush makes the document exist, holding nothing, as in
    /// the source.
    pub fn write_into<P>(self, dst: &mut P) -> Result<StoredSizes>
    where
        P: Persister<Error = Error> + ?Sized,
    {
        if !dst.sizes().is_empty() || dst.get_document()?.is_some() {
            return Err(Error::InvalidInput {
                what: "destination document",
                reason: format!("document {} already holds data", self.id),
            });
        }
        let expected = self.sizes();
        let writes = self
            .document
            .map(Write::SetDocument)
            .into_iter()
            .chain(
                self.changes
                    .into_iter()
                    .map(|(actor, seq, value)| Write::InsertChange { actor, seq, value }),
            )
            .chain(
                self.sync_states
                    .into_iter()
                    .map(|(peer, state)| Write::SetSyncState { peer, state }),
            );
        let mut batch = Batch::new();
        // The batch's payload, counted as it grows (`Batch::payload_len` sums every
        // write: calling it per write made this quadratic in the number of changes).
        let mut batch_len = 0;
        for write in writes {
            let len = write.payload_len();
            if !batch.is_empty() && batch_len + len > CHUNK_LEN {
                dst.apply(std::mem::take(&mut batch))?;
                batch_len = 0;
            }
            batch_len += len;
            batch.push(write);
        }
        if batch.is_empty() {
            batch = Batch::new().remove_sync_state(Vec::new());
        }
        dst.apply(batch)?;
        let written = dst.sizes();
        if written != expected {
            return Err(Error::InvalidInput {
                what: "copy",
                reason: format!(
                    "document {} holds {} after writing {}",
                    self.id,
                    describe(&written),
                    describe(&expected)
                ),
            });
        }
        Ok(written)
    }

    /// A checksum of the whole content (id, document, changes, sync states), to check
    /// a copy by reading it back.
    pub fn digest(&self) -> u32 {
        let mut crc = 0;
        let mut add = |bytes: &[u8]| {
            crc = crc32c::crc32c_append(crc, &(bytes.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, bytes);
        };
        add(self.id.as_bytes());
        match &self.document {
            Some(document) => {
                add(b"\x01");
                add(document);
            }
            None => add(b"\x00"),
        }
        for (actor, seq, value) in &self.changes {
            add(actor.as_bytes());
            add(&seq.to_be_bytes());
            add(value);
        }
        add(b"sync states");
        for (peer, state) in &self.sync_states {
            add(peer);
            add(state);
        }
        crc
    }

    /// The distinct actors of the changes, each with its number of changes, lowest and
    /// highest seq, and bytes.
    pub fn actors(&self) -> Vec<ActorSummary> {
        let mut actors: Vec<ActorSummary> = Vec::new();
        for (actor, seq, value) in &self.changes {
            match actors.last_mut() {
                Some(last) if &last.actor == actor => {
                    last.changes += 1;
                    last.last_seq = *seq;
                    last.bytes += value.len() as u64;
                }
                _ => actors.push(ActorSummary {
                    actor: actor.clone(),
                    changes: 1,
                    first_seq: *seq,
                    last_seq: *seq,
                    bytes: value.len() as u64,
                }),
            }
        }
        actors
    }
}

/// The changes of one actor in a [`DocumentDump`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorSummary {
    /// The actor.
    pub actor: ActorId,
    /// How many changes it has stored.
    pub changes: u64,
    /// Its lowest stored seq.
    pub first_seq: u64,
    /// Its highest stored seq.
    pub last_seq: u64,
    /// The bytes of its stored changes.
    pub bytes: u64,
}

/// Sizes in words, for messages.
pub(crate) fn describe(s: &StoredSizes) -> String {
    format!(
        "{} changes ({} bytes), a document of {} bytes, {} sync states ({} bytes)",
        s.change_count, s.changes, s.document, s.sync_state_count, s.sync_states
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use persister_core::MemoryPersister;

    fn sample() -> DocumentDump {
        DocumentDump {
            id: "notes".into(),
            document: Some(b"doc".to_vec()),
            changes: vec![
                (ActorId::new([1]), 1, b"a".to_vec()),
                (ActorId::new([1]), 2, b"bb".to_vec()),
                (ActorId::new([2]), 7, b"ccc".to_vec()),
            ],
            sync_states: vec![(b"peer".to_vec(), b"state".to_vec())],
        }
    }

    #[test]
    fn a_dump_round_trips_through_a_persister() -> Result<()> {
        let dump = sample();
        let mut p = MemoryPersister::new();
        let sizes = dump.clone().write_into(&mut p)?;
        assert_eq!(sizes, dump.sizes());
        let read = DocumentDump::read(&dump.id, &p, Path::new("memory"))?;
        assert_eq!(read, dump);
        assert_eq!(read.digest(), dump.digest());
        // Writing into a document that holds data is refused.
        assert!(dump.write_into(&mut p).is_err());
        Ok(())
    }

    #[test]
    fn digest_sees_every_part() {
        let base = sample();
        let mut other = base.clone();
        other.sync_states.clear();
        assert_ne!(base.digest(), other.digest());
        let mut other = base.clone();
        other.document = None;
        assert_ne!(base.digest(), other.digest());
        let mut other = base.clone();
        other.changes[0].1 = 3;
        assert_ne!(base.digest(), other.digest());
    }

    /// writing a document of many small changes must take time linear in its
    /// changes (an automerge document holds one change per edit: hundreds of
    /// thousands are common). `copy`, `import`, `verify` and `info` all write a dump
    /// this way.
    #[test]
    fn writing_many_small_changes_takes_linear_time() -> Result<()> {
        let n = 200_000u64;
        let dump = DocumentDump {
            id: "many".into(),
            changes: (1..=n)
                .map(|seq| (ActorId::new([1; 16]), seq, vec![0; 8]))
                .collect(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let mut p = MemoryPersister::new();
        let sizes = dump.write_into(&mut p)?;
        let took = started.elapsed();
        assert_eq!(sizes.change_count, n);
        assert!(
            took < std::time::Duration::from_secs(20),
            "writing {n} changes took {took:?}"
        );
        Ok(())
    }

    #[test]
    fn actors_are_summarised_in_order() {
        let actors = sample().actors();
        assert_eq!(actors.len(), 2);
        assert_eq!(
            (actors[0].changes, actors[0].first_seq, actors[0].last_seq),
            (2, 1, 2)
        );
        assert_eq!((actors[1].changes, actors[1].bytes), (1, 3));
    }
}
