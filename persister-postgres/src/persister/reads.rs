//! Reads: what the server holds merged with the held writes, checked against the sizes.

use std::sync::Arc;

use persister_core::{ActorId, ChangeEntry, Error, Result, StoredSizes, merge_held};

use super::PostgresPersister;
use postgres::types::ToSql;

use crate::sql::{Q, seq_from_sql};

/// A sync state as the server holds it.
type StoredState = Vec<u8>;

impl PostgresPersister {
    /// The document's sizes record, if it is stored. A negative size (the server stores
    /// them as `int8`, and nothing but a hand's edit makes one) is damage.
    pub(super) fn read_record(&self) -> Result<Option<StoredSizes>> {
        let shared = Arc::clone(&self.shared);
        let id = self.id().as_bytes();
        let row = shared.read("read", &self.place, |conn| {
            let rows = conn.query(&shared.sql, Q::Record, &[&id])?;
            rows.first()
                .map(|row| {
                    let stored: bool = row.try_get(0)?;
                    let orphans: bool = row.try_get(6)?;
                    let mut sizes = [0i64; 5];
                    for (i, size) in sizes.iter_mut().enumerate() {
                        *size = row.try_get(i + 1)?;
                    }
                    Ok((stored, orphans, sizes))
                })
                .transpose()
        })?;
        match row {
            Some((true, _, sizes)) => {
                const NAMES: [&str; 5] = [
                    "change bytes",
                    "document bytes",
                    "sync-state bytes",
                    "change count",
                    "sync-state count",
                ];
                let mut n = [0u64; 5];
                for ((out, size), name) in n.iter_mut().zip(sizes).zip(NAMES) {
                    *out = u64::try_from(size).map_err(|_| {
                        self.mismatch(format!(
                            "the document's sizes record holds a negative {name}, {size}"
                        ))
                    })?;
                }
                Ok(Some(StoredSizes {
                    changes: n[0],
                    document: n[1],
                    sync_states: n[2],
                    change_count: n[3],
                    sync_state_count: n[4],
                }))
            }
            Some((false, true, _)) => Err(self.mismatch(
                "the document has stored changes or sync states but no row in `documents`"
                    .to_string(),
            )),
            _ => Ok(None),
        }
    }

    pub(super) fn read_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        let held = self
            .held
            .changes
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()));
        let mut entries: Vec<ChangeEntry> = Vec::new();
        let keep = |(actor, seq), value| entries.push((actor, seq, value));
        if self.stored {
            let rows = self.read_fenced(Q::Changes, &[&self.id().as_bytes()])?;
            let stored = rows.into_iter().map(|row| {
                let actor: Vec<u8> = row.try_get(1)?;
                let seq: i64 = row.try_get(2)?;
                let value: Vec<u8> = row.try_get(3)?;
                Ok(((ActorId::new(actor), seq_from_sql(seq)), value))
            });
            merge_held(stored, held, keep)
                .map_err(|err: postgres::Error| self.shared.error(&err, "read", &self.place))?;
        } else {
            merge_held(std::iter::empty::<Result<_>>(), held, keep)?;
        }
        let bytes: u64 = entries.iter().map(|e| e.2.len() as u64).sum();
        let sizes = self.sizes;
        if (entries.len() as u64, bytes) != (sizes.change_count, sizes.changes) {
            return Err(self.mismatch(format!(
                "{} changes of {} bytes were read, but the document's sizes record says {} of {}",
                entries.len(),
                bytes,
                sizes.change_count,
                sizes.changes
            )));
        }
        Ok(entries)
    }

    pub(super) fn read_document(&self) -> Result<Option<Vec<u8>>> {
        if let Some(document) = &self.held.document {
            return Ok(Some(document.clone()));
        }
        if !self.stored {
            return Ok(None);
        }
        let rows = self.read_fenced(Q::Document, &[&self.id().as_bytes()])?;
        let document = self.value_of(&rows)?;
        let len = document.as_ref().map_or(0, |d| d.len() as u64);
        if len != self.sizes.document {
            return Err(self.mismatch(format!(
                "the compacted document is {len} bytes, but the document's sizes record says {}",
                self.sizes.document
            )));
        }
        Ok(document)
    }

    pub(super) fn read_sync_state(&self, peer: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(held) = self.held.sync_states.get(peer) {
            return Ok(held.clone());
        }
        if !self.stored {
            return Ok(None);
        }
        let rows = self.read_fenced(Q::SyncState, &[&self.id().as_bytes(), &peer])?;
        let (_, state) = self.checked_sync_states(&rows, true)?;
        Ok(state)
    }

    pub(super) fn read_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        let rows = if self.stored {
            self.read_fenced(Q::Peers, &[&self.id().as_bytes()])?
        } else {
            Vec::new()
        };
        let (peers, _) = self.checked_sync_states(&rows, false)?;
        Ok(peers)
    }

    /// The peers of the stored sync states `rows` (`Q::SyncState` or `Q::Peers`: peer,
    /// length of its state, and with `asked` the state asked for) merged with the held
    /// ones, and the stored state asked for, once their count and bytes are checked
    /// against the sizes record: a state deleted or shortened by hand is damage.
    fn checked_sync_states(
        &self,
        rows: &[postgres::Row],
        asked: bool,
    ) -> Result<(Vec<Vec<u8>>, Option<StoredState>)> {
        let mut state = None;
        let stored = rows.iter().map(|row| {
            let peer: Vec<u8> = row.try_get(1)?;
            let len: i64 = row.try_get(2)?;
            if asked && let Some(found) = row.try_get::<_, Option<Vec<u8>>>(3)? {
                state = Some(found);
            }
            Ok((peer, len.unsigned_abs()))
        });
        let held = self
            .held
            .sync_states
            .iter()
            .map(|(peer, state)| (peer.clone(), state.as_ref().map(|s| s.len() as u64)));
        let mut peers = Vec::new();
        let mut bytes = 0u64;
        let keep = |peer, len: u64| {
            peers.push(peer);
            bytes = bytes.saturating_add(len);
        };
        merge_held(stored, held, keep)
            .map_err(|err: postgres::Error| self.shared.error(&err, "read", &self.place))?;
        let sizes = self.sizes;
        if (peers.len() as u64, bytes) != (sizes.sync_state_count, sizes.sync_states) {
            return Err(self.mismatch(format!(
                "{} sync states of {} bytes were found, but the document's sizes record says {} of {}",
                peers.len(),
                bytes,
                sizes.sync_state_count,
                sizes.sync_states
            )));
        }
        Ok((peers, state))
    }

    /// Runs the read `q`, which starts from the document's lease row and returns its
    /// token in column 0 and what it read from column 1 on (see `CHANGES` in `sql.rs`).
    /// Refuses the read when the lease row no longer carries this handle's token: the
    /// document was taken over (or removed), and what the server holds is no longer
    /// what this handle wrote. Returns the rows that found something (column 1 not
    /// `NULL`: the lease row joined to nothing found none).
    fn read_fenced(&self, q: Q, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>> {
        let shared = &self.shared;
        let mut rows = shared.read("read", &self.place, |conn| {
            conn.query(&shared.sql, q, params)
        })?;
        let token = rows.first().and_then(|row| row.try_get::<_, i64>(0).ok());
        if token == Some(self.token) {
            rows.retain(|row| !matches!(row.try_get::<_, Option<Vec<u8>>>(1), Ok(None)));
            return Ok(rows);
        }
        Err(Error::LeaseLost {
            reason: format!(
                "the lease of {} was taken over by another holder or the document was removed (this handle's fencing token {} is no longer current), so what the server holds is not what this handle wrote: reopen the document",
                self.place, self.token
            ),
        })
    }

    /// The value a [`read_fenced`](Self::read_fenced) of one value found, if any.
    fn value_of(&self, rows: &[postgres::Row]) -> Result<Option<Vec<u8>>> {
        rows.first()
            .map(|row| row.try_get::<_, Vec<u8>>(1))
            .transpose()
            .map_err(|err| self.shared.error(&err, "read", &self.place))
    }

    /// Stored data that disagrees with its sizes record: written by something other
    /// than this backend, or damaged.
    fn mismatch(&self, what: String) -> Error {
        Error::corrupt(
            format!("{what}; the tables were changed by something other than persister-postgres"),
            &self.place,
            None,
        )
    }
}
