//! What a batch reads from the file before it is held: old lengths and seq bounds.

use persister_core::{ActorId, Result};
use redb::{ReadOnlyTable, ReadTransaction};

use crate::error::{RedbResultExt, corrupt};
use crate::layout::{self, CHANGES, SYNC_STATES};
use crate::shared::Shared;

type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Reads of one document in the file, in one read transaction opened on first need, so
/// that a batch that needs none costs no I/O.
pub(crate) struct Lookup<'a> {
    shared: &'a Shared,
    number: u64,
    txn: Option<ReadTransaction>,
    changes: Option<BytesTable>,
    sync_states: Option<BytesTable>,
}

impl<'a> Lookup<'a> {
    pub fn new(shared: &'a Shared, number: u64) -> Self {
        Self {
            shared,
            number,
            txn: None,
            changes: None,
            sync_states: None,
        }
    }

    fn txn(&mut self) -> Result<&ReadTransaction> {
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => self.shared.begin_read()?,
        };
        Ok(self.txn.insert(txn))
    }

    fn changes(&mut self) -> Result<&BytesTable> {
        let table = match self.changes.take() {
            Some(table) => table,
            None => self.shared.read_table(self.txn()?, CHANGES)?,
        };
        Ok(self.changes.insert(table))
    }

    fn sync_states(&mut self) -> Result<&BytesTable> {
        let table = match self.sync_states.take() {
            Some(table) => table,
            None => self.shared.read_table(self.txn()?, SYNC_STATES)?,
        };
        Ok(self.sync_states.insert(table))
    }

    /// The length of the change stored under `(actor, seq)`, if any.
    pub fn change_len(&mut self, actor: &ActorId, seq: u64) -> Result<Option<u64>> {
        let key = layout::change_key(self.number, actor.as_bytes(), seq);
        let path = &self.shared.path;
        let value = self
            .changes()?
            .get(key.as_slice())
            .or_store("read from", path)?;
        Ok(value.map(|value| value.value().len() as u64))
    }

    /// The length of the sync state stored for `peer`, if any.
    pub fn sync_state_len(&mut self, peer: &[u8]) -> Result<Option<u64>> {
        let key = layout::sync_state_key(self.number, peer);
        let path = &self.shared.path;
        let value = self
            .sync_states()?
            .get(key.as_slice())
            .or_store("read from", path)?;
        Ok(value.map(|value| value.value().len() as u64))
    }

    /// The highest seq stored for `actor`, if any: its last key.
    pub fn max_seq(&mut self, actor: &ActorId) -> Result<Option<u64>> {
        let first = layout::change_key(self.number, actor.as_bytes(), 0);
        let last = layout::change_key(self.number, actor.as_bytes(), u64::MAX);
        let path = &self.shared.path;
        let number = self.number;
        let mut range = self
            .changes()?
            .range(first.as_slice()..=last.as_slice())
            .or_store("read from", path)?;
        let Some(entry) = range.next_back() else {
            return Ok(None);
        };
        let (key, _) = entry.or_store("read from", path)?;
        match layout::decode_change_key(number, key.value()) {
            Some((found, seq)) if found == *actor => Ok(Some(seq)),
            _ => Err(corrupt(
                format!("malformed change key {:?}", key.value()),
                path,
            )),
        }
    }
}
