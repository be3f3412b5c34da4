//! A commit as bytes: the key-level writes of one commit, applied to a redb
//! transaction the same way when they are made and when the commit log is replayed.
//!
//! Every commit is first written as a list of operations, then applied from that list,
//! so replaying a logged commit runs exactly the code that made it. Each operation sets
//! or removes keys without reading the state it lands on (the removal of a whole
//! document reads only the number its record names), so replaying the log's commits, in
//! order, on the state of the last checkpoint or any later state the file reached gives
//! the state after the last of them.
//!
//! Operations, one after another (integers big-endian, lengths u32):
//!
//! | tag | operation | then |
//! |---|---|---|
//! | `1` | put | table (u8), key length, key, value length, value |
//! | `2` | remove | table (u8), key length, key |
//! | `3` | remove changes | document number (u64), actor length, actor, count, that many seqs (u64) |
//! | `4` | remove a document and its data | id length, id |
//! | `5` | next document number at least | u64 |
//!
//! Tables: `1` `persister_documents`, `2` `persister_changes`, `3`
//! `persister_compacted`, `4` `persister_sync_states`.

use std::path::Path;

use persister_core::Result;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::error::{RedbResultExt, corrupt};
use crate::layout::{
    self, CHANGES, COMPACTED, DOCUMENTS, DocumentRecord, META, META_NEXT_DOCUMENT,
};

const PUT: u8 = 1;
const REMOVE: u8 = 2;
const REMOVE_CHANGES: u8 = 3;
const REMOVE_DOCUMENT: u8 = 4;
const NEXT_DOCUMENT: u8 = 5;

/// A table an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tab {
    Documents = 1,
    Changes = 2,
    Compacted = 3,
    SyncStates = 4,
}

impl Tab {
    fn from_byte(byte: u8) -> Option<Tab> {
        Some(match byte {
            1 => Tab::Documents,
            2 => Tab::Changes,
            3 => Tab::Compacted,
            4 => Tab::SyncStates,
            _ => return None,
        })
    }

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Tab::Documents => DOCUMENTS,
            Tab::Changes => CHANGES,
            Tab::Compacted => COMPACTED,
            Tab::SyncStates => layout::SYNC_STATES,
        }
    }
}

/// Appends operations to a buffer.
pub(crate) struct Ops<'a>(pub &'a mut Vec<u8>);

impl Ops<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    pub fn put(&mut self, table: Tab, key: &[u8], value: &[u8]) {
        self.0.extend_from_slice(&[PUT, table as u8]);
        self.bytes(key);
        self.bytes(value);
    }

    pub fn remove(&mut self, table: Tab, key: &[u8]) {
        self.0.extend_from_slice(&[REMOVE, table as u8]);
        self.bytes(key);
    }

    /// Removes the changes `seqs` (sorted, each once) of `actor` in document `number`.
    pub fn remove_changes(&mut self, number: u64, actor: &[u8], seqs: &[u64]) {
        self.0.push(REMOVE_CHANGES);
        self.0.extend_from_slice(&number.to_be_bytes());
        self.bytes(actor);
        self.0.extend_from_slice(&(seqs.len() as u32).to_be_bytes());
        for seq in seqs {
            self.0.extend_from_slice(&seq.to_be_bytes());
        }
    }

    pub fn remove_document(&mut self, id: &[u8]) {
        self.0.push(REMOVE_DOCUMENT);
        self.bytes(id);
    }

    pub fn next_document_at_least(&mut self, next: u64) {
        self.0.push(NEXT_DOCUMENT);
        self.0.extend_from_slice(&next.to_be_bytes());
    }
}

/// Reads operations; every length is checked against the bytes left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        layout::u32_be(self.take(4)?)
    }

    fn u64(&mut self) -> Option<u64> {
        layout::u64_be(self.take(8)?)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn table(&mut self) -> Option<Tab> {
        Tab::from_byte(self.u8()?)
    }
}

/// The tables of one write transaction, each opened once, when first used.
struct Tables<'t> {
    txn: &'t WriteTransaction,
    open: [Option<Table<'t, &'static [u8], &'static [u8]>>; 4],
}

impl<'t> Tables<'t> {
    fn get(
        &mut self,
        tab: Tab,
        path: &Path,
    ) -> Result<&mut Table<'t, &'static [u8], &'static [u8]>> {
        let slot = &mut self.open[tab as usize - 1];
        match slot {
            Some(table) => Ok(table),
            None => {
                let table = self
                    .txn
                    .open_table(tab.definition())
                    .or_store("write to", path)?;
                Ok(slot.insert(table))
            }
        }
    }
}

/// Applies the operations `ops` within `txn`. Malformed operations (only a damaged log
/// can hold them, behind a valid checksum) fail with [`Error::Corrupt`] naming `path`.
pub(crate) fn apply(txn: &WriteTransaction, ops: &[u8], path: &Path) -> Result<()> {
    let malformed = || corrupt("a commit in the commit log is malformed", path);
    let mut tables = Tables {
        txn,
        open: [None, None, None, None],
    };
    let mut reader = Reader(ops);
    while let Some(tag) = reader.u8() {
        match tag {
            PUT => {
                let (tab, key, value) =
                    (|| Some((reader.table()?, reader.bytes()?, reader.bytes()?)))()
                        .ok_or_else(malformed)?;
                tables
                    .get(tab, path)?
                    .insert(key, value)
                    .or_store("write to", path)?;
            }
            REMOVE => {
                let (tab, key) =
                    (|| Some((reader.table()?, reader.bytes()?)))().ok_or_else(malformed)?;
                tables
                    .get(tab, path)?
                    .remove(key)
                    .or_store("write to", path)?;
            }
            REMOVE_CHANGES => {
                let (number, actor, count) =
                    (|| Some((reader.u64()?, reader.bytes()?, reader.u32()? as usize)))()
                        .ok_or_else(malformed)?;
                let raw = reader
                    .take(count.checked_mul(8).ok_or_else(malformed)?)
                    .ok_or_else(malformed)?;
                let seqs: Vec<u64> = raw
                    .chunks_exact(8)
                    .map(|chunk| {
                        chunk
                            .iter()
                            .fold(0, |seq, &byte| seq << 8 | u64::from(byte))
                    })
                    .collect();
                remove_changes(tables.get(Tab::Changes, path)?, number, actor, &seqs)
                    .or_store("write to", path)?;
            }
            REMOVE_DOCUMENT => {
                let id = reader.bytes().ok_or_else(malformed)?;
                remove_document(&mut tables, id, path)?;
            }
            NEXT_DOCUMENT => {
                let next = reader.u64().ok_or_else(malformed)?;
                let mut meta = txn.open_table(META).or_store("write to", path)?;
                let stored = meta
                    .get(META_NEXT_DOCUMENT)
                    .or_store("read from", path)?
                    .and_then(|bytes| layout::u64_be(bytes.value()))
                    .ok_or_else(|| corrupt("the next document number is missing", path))?;
                if next > stored {
                    meta.insert(META_NEXT_DOCUMENT, next.to_be_bytes().as_slice())
                        .or_store("write to", path)?;
                }
            }
            _ => return Err(malformed()),
        }
    }
    Ok(())
}

/// Removes the record of document `id` and all its data.
fn remove_document(tables: &mut Tables<'_>, id: &[u8], path: &Path) -> Result<()> {
    let removed = tables
        .get(Tab::Documents, path)?
        .remove(id)
        .or_store("write to", path)?
        .map(|bytes| bytes.value().to_vec());
    let Some(record) = removed else {
        return Ok(());
    };
    let number = DocumentRecord::decode(&record)
        .ok_or_else(|| {
            corrupt(
                format!(
                    "the record of document {} is {} bytes, not 48",
                    persister_core::DocumentId::from(id),
                    record.len()
                ),
                path,
            )
        })?
        .number;
    let range = layout::document_range(number);
    for tab in [Tab::Changes, Tab::SyncStates] {
        tables
            .get(tab, path)?
            .retain_in(range.start.as_slice()..range.end.as_slice(), |_, _| false)
            .or_store("write to", path)?;
    }
    tables
        .get(Tab::Compacted, path)?
        .remove(layout::document_key(number).as_slice())
        .or_store("write to", path)?;
    Ok(())
}

/// Removes the changes `seqs` (sorted, each once) of `actor` in document `number`.
///
/// A compaction removes thousands of consecutive changes: removed one key at a time,
/// each removal walks the tree from its root and shifts the rest of its leaf. When the
/// seqs are dense in the range they span (at least half of its seqs), one scan of that
/// range removes them instead, keeping every other key in it; sparse ones are removed
/// one by one, so that the scan never visits many keys it keeps.
fn remove_changes(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    number: u64,
    actor: &[u8],
    seqs: &[u64],
) -> std::result::Result<(), redb::StorageError> {
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    // Seqs out of order (only a forged record has them) are removed one by one too.
    let dense = seqs.is_sorted()
        && last
            .checked_sub(first)
            .is_some_and(|span| span / 2 < seqs.len() as u64);
    if seqs.len() < 2 || !dense {
        let mut key = Vec::new();
        for &seq in seqs {
            layout::encode_change_key(&mut key, number, actor, seq);
            table.remove(key.as_slice())?;
        }
        return Ok(());
    }
    let start = layout::change_key(number, actor, first);
    let end = layout::change_key(number, actor, last);
    // Every key of the range is a change of `actor` (the actor's encoding is followed by
    // a terminator no encoded id continues with), its seq in its last eight bytes.
    table.retain_in(start.as_slice()..=end.as_slice(), |key, _| {
        let seq = key
            .len()
            .checked_sub(8)
            .and_then(|at| layout::u64_be(&key[at..]));
        seq.is_none_or(|seq| seqs.binary_search(&seq).is_err())
    })
}

/// Whether `id`'s removal found anything to remove: read before the operation is
/// written, so that removing a document that is not stored writes nothing.
pub(crate) fn is_stored(txn: &WriteTransaction, id: &[u8], path: &Path) -> Result<bool> {
    let documents = txn.open_table(DOCUMENTS).or_store("write to", path)?;
    Ok(documents.get(id).or_store("read from", path)?.is_some())
}
