//! Reads: the file and the pending writes merged, checked against the stored sizes.

use persister_core::{ActorId, ChangeEntry, Result};

use super::RedbPersister;
use crate::error::{RedbResultExt, corrupt};
use crate::layout::{self, CHANGES, COMPACTED, SYNC_STATES};

impl RedbPersister {
    pub(super) fn read_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        let shared = &self.shared;
        let path = &shared.path;
        // Bounded: the count comes from the file.
        let capacity = usize::try_from(self.sizes.change_count)
            .unwrap_or(0)
            .min(1 << 16);
        let mut entries: Vec<ChangeEntry> = Vec::with_capacity(capacity);
        let mut held = self.overlay.changes().peekable();
        let push = |entries: &mut Vec<ChangeEntry>, actor: &ActorId, seq, value: Option<&[u8]>| {
            if let Some(value) = value {
                entries.push((actor.clone(), seq, value.to_vec()));
            }
        };
        if let Some(number) = self.number {
            let txn = shared.begin_read()?;
            let table = shared.read_table(&txn, CHANGES)?;
            let range = layout::document_range(number);
            let stored = table
                .range(range.start.as_slice()..range.end.as_slice())
                .or_store("read from", path)?;
            for entry in stored {
                let (key, value) = entry.or_store("read from", path)?;
                let (actor, seq) =
                    layout::decode_change_key(number, key.value()).ok_or_else(|| {
                        corrupt(format!("malformed change key {:?}", key.value()), path)
                    })?;
                while let Some((a, s, v)) =
                    held.next_if(|(a, s, _)| (a.as_bytes(), *s) < (actor.as_bytes(), seq))
                {
                    push(&mut entries, a, s, v);
                }
                match held.next_if(|(a, s, _)| **a == actor && *s == seq) {
                    Some((_, _, newer)) => push(&mut entries, &actor, seq, newer),
                    None => entries.push((actor, seq, value.value().to_vec())),
                }
            }
        }
        for (a, s, v) in held {
            push(&mut entries, a, s, v);
        }
        let bytes = entries.iter().map(|e| e.2.len() as u64).sum();
        self.check_count(
            "changes",
            entries.len(),
            bytes,
            (self.sizes.change_count, self.sizes.changes),
        )?;
        Ok(entries)
    }

    pub(super) fn read_document(&self) -> Result<Option<Vec<u8>>> {
        if let Some(document) = self.overlay.document() {
            return Ok(Some(document.to_vec()));
        }
        let Some(number) = self.number else {
            return Ok(None);
        };
        let shared = &self.shared;
        let txn = shared.begin_read()?;
        let table = shared.read_table(&txn, COMPACTED)?;
        let document = table
            .get(layout::document_key(number).as_slice())
            .or_store("read from", &shared.path)?
            .map(|value| value.value().to_vec());
        let len = document.as_ref().map_or(0, |d| d.len() as u64);
        if len != self.sizes.document {
            return Err(corrupt(
                format!(
                    "the compacted document of {} is {} bytes, but its record says {}",
                    self.id(),
                    len,
                    self.sizes.document
                ),
                &shared.path,
            ));
        }
        Ok(document)
    }

    pub(super) fn read_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(held) = self.overlay.sync_state(peer_id) {
            return Ok(held.map(<[u8]>::to_vec));
        }
        let Some(number) = self.number else {
            return Ok(None);
        };
        let shared = &self.shared;
        let txn = shared.begin_read()?;
        let table = shared.read_table(&txn, SYNC_STATES)?;
        let key = layout::sync_state_key(number, peer_id);
        let state = table
            .get(key.as_slice())
            .or_store("read from", &shared.path)?
            .map(|value| value.value().to_vec());
        Ok(state)
    }

    pub(super) fn read_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        let shared = &self.shared;
        let path = &shared.path;
        let mut peers = Vec::new();
        let mut bytes = 0u64;
        let mut held = self.overlay.sync_states().peekable();
        let mut push = |peers: &mut Vec<Vec<u8>>, peer: &[u8], value: Option<&[u8]>| {
            if let Some(value) = value {
                peers.push(peer.to_vec());
                bytes += value.len() as u64;
            }
        };
        if let Some(number) = self.number {
            let txn = shared.begin_read()?;
            let table = shared.read_table(&txn, SYNC_STATES)?;
            let range = layout::document_range(number);
            let stored = table
                .range(range.start.as_slice()..range.end.as_slice())
                .or_store("read from", path)?;
            for entry in stored {
                let (key, value) = entry.or_store("read from", path)?;
                let peer = layout::decode_sync_state_key(number, key.value())
                    .ok_or_else(|| corrupt("a sync-state key of another document", path))?;
                while let Some((p, v)) = held.next_if(|(p, _)| *p < peer) {
                    push(&mut peers, p, v);
                }
                match held.next_if(|(p, _)| *p == peer) {
                    Some((_, newer)) => push(&mut peers, peer, newer),
                    None => push(&mut peers, peer, Some(value.value())),
                }
            }
        }
        for (p, v) in held {
            push(&mut peers, p, v);
        }
        self.check_count(
            "sync states",
            peers.len(),
            bytes,
            (self.sizes.sync_state_count, self.sizes.sync_states),
        )?;
        Ok(peers)
    }

    fn check_count(
        &self,
        what: &str,
        count: usize,
        bytes: u64,
        expected: (u64, u64),
    ) -> Result<()> {
        if (count as u64, bytes) != expected {
            return Err(corrupt(
                format!(
                    "document {} holds {count} {what} of {bytes} bytes, but its record says {} of {} bytes",
                    self.id(),
                    expected.0,
                    expected.1
                ),
                &self.shared.path,
            ));
        }
        Ok(())
    }
}
