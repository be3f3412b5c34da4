//! Reads: the file and the pending writes merged, checked against the stored sizes.

use persister_core::{ChangeEntry, Result, merge_held};
use redb::{Range, TableDefinition};

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
        let held = self
            .overlay
            .changes()
            .map(|(actor, seq, value)| ((actor.clone(), seq), value.map(<[u8]>::to_vec)));
        let mut keep = |(actor, seq), value| entries.push((actor, seq, value));
        match self.number {
            None => merge_held(std::iter::empty::<Result<_>>(), held, &mut keep)?,
            Some(number) => self.read_document_range(CHANGES, number, |stored| {
                let stored = stored.map(|entry| {
                    let (key, value) = entry.or_store("read from", path)?;
                    let key = layout::decode_change_key(number, key.value()).ok_or_else(|| {
                        corrupt(format!("malformed change key {:?}", key.value()), path)
                    })?;
                    Ok((key, value.value().to_vec()))
                });
                merge_held(stored, held, &mut keep)
            })?,
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
        // Only the peer ids and the states' lengths are needed.
        let held = self
            .overlay
            .sync_states()
            .map(|(peer, value)| (peer.to_vec(), value.map(|v| v.len() as u64)));
        let mut keep = |peer, len| {
            peers.push(peer);
            bytes += len;
        };
        match self.number {
            None => merge_held(std::iter::empty::<Result<_>>(), held, &mut keep)?,
            Some(number) => self.read_document_range(SYNC_STATES, number, |stored| {
                let stored = stored.map(|entry| {
                    let (key, value) = entry.or_store("read from", path)?;
                    let peer = layout::decode_sync_state_key(number, key.value())
                        .ok_or_else(|| corrupt("a sync-state key of another document", path))?;
                    Ok((peer.to_vec(), value.value().len() as u64))
                });
                merge_held(stored, held, &mut keep)
            })?,
        }
        self.check_count(
            "sync states",
            peers.len(),
            bytes,
            (self.sizes.sync_state_count, self.sizes.sync_states),
        )?;
        Ok(peers)
    }

    /// Calls `read` with the entries of `table` that belong to the document numbered
    /// `number`, in key order.
    fn read_document_range<T>(
        &self,
        table: TableDefinition<'static, &'static [u8], &'static [u8]>,
        number: u64,
        read: impl FnOnce(Range<'static, &'static [u8], &'static [u8]>) -> Result<T>,
    ) -> Result<T> {
        let shared = &self.shared;
        let txn = shared.begin_read()?;
        let table = shared.read_table(&txn, table)?;
        let range = layout::document_range(number);
        let entries = table
            .range(range.start.as_slice()..range.end.as_slice())
            .or_store("read from", &shared.path)?;
        read(entries)
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
