//! The redb [`Engine`]: documents in five tables of one redb file.

use std::path::{Path, PathBuf};

use persister_core::scratch::ScratchDir;
use persister_core::{
    ActorId, ChangeEntry, DocumentId, Engine, Error, PendingDocument, Record, Result, StoredKey,
};
use redb::{
    Durability, Range, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::RedbOptions;
use crate::error::{RedbResultExt, corrupt};
use crate::file::Db;
use crate::layout::{
    self, CHANGES, COMPACTED, DOCUMENTS, DocumentRecord, META, META_NEXT_DOCUMENT, SYNC_STATES,
};

type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;
type BytesTableDefinition = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The storage engine of a [`RedbStore`](crate::RedbStore): one redb file, its
/// documents addressed by number (see the [file layout](crate#file-layout)).
///
/// A commit is one redb write transaction; a durable one commits with
/// `Durability::Immediate`. Reads each run in one read transaction, so they see one
/// committed state.
#[derive(Debug)]
pub struct RedbEngine {
    db: Db,
    /// Refuses every write: a store opened read-only, or a repaired copy read as one.
    pub(crate) read_only: bool,
    /// The directory of the repaired copy a read-only store reads, removed after the
    /// database is closed (fields drop in order).
    pub(crate) scratch: Option<ScratchDir>,
    path: PathBuf,
    options: RedbOptions,
}

impl RedbEngine {
    pub(crate) fn new(db: Db, path: PathBuf, options: RedbOptions) -> Self {
        let read_only = matches!(db, Db::ReadOnly(_));
        Self {
            db,
            read_only,
            scratch: None,
            path,
            options,
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        self.db.begin_read().or_store("read from", &self.path)
    }

    fn begin_write(&self) -> Result<WriteTransaction> {
        self.check_writable()?;
        match &self.db {
            Db::ReadWrite(db) => db.begin_write().or_store("write to", &self.path),
            Db::ReadOnly(_) => Err(Error::read_only(&self.path, "RedbStore::open")),
        }
    }

    /// Commits `txn` with `durability`.
    fn commit_txn(&self, mut txn: WriteTransaction, durability: Durability) -> Result<()> {
        txn.set_durability(durability)
            .or_store("commit to", &self.path)?;
        txn.commit().or_store("commit to", &self.path)
    }

    fn read_table(&self, txn: &ReadTransaction, table: BytesTableDefinition) -> Result<BytesTable> {
        crate::file::read_table(txn, table, &self.path)
    }

    fn decode_record(&self, id: &DocumentId, bytes: &[u8]) -> Result<DocumentRecord> {
        DocumentRecord::decode(bytes).ok_or_else(|| {
            corrupt(
                format!(
                    "the record of document {id} is {} bytes, not 48",
                    bytes.len()
                ),
                &self.path,
            )
        })
    }

    /// Gives the next document number, within `txn`.
    fn allocate_number(&self, txn: &WriteTransaction) -> Result<u64> {
        let mut meta = txn.open_table(META).or_store("write to", &self.path)?;
        let next = meta
            .get(META_NEXT_DOCUMENT)
            .or_store("read from", &self.path)?
            .and_then(|bytes| layout::u64_be(bytes.value()))
            .ok_or_else(|| corrupt("the next document number is missing", &self.path))?;
        // The last number is never given, so that every document's key range has an end.
        if next >= u64::MAX - 1 {
            return Err(corrupt("document numbers are exhausted", &self.path));
        }
        meta.insert(META_NEXT_DOCUMENT, (next + 1).to_be_bytes().as_slice())
            .or_store("write to", &self.path)?;
        Ok(next)
    }

    /// The entries of `table` that belong to the document numbered `number`, in key
    /// order.
    fn document_range(
        &self,
        table: BytesTableDefinition,
        number: u64,
    ) -> Result<Range<'static, &'static [u8], &'static [u8]>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, table)?;
        let range = layout::document_range(number);
        table
            .range(range.start.as_slice()..range.end.as_slice())
            .or_store("read from", &self.path)
    }

    fn get(&self, table: BytesTableDefinition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, table)?;
        let value = table.get(key).or_store("read from", &self.path)?;
        Ok(value.map(|value| value.value().to_vec()))
    }

    /// Writes one document's pending writes into `txn` and returns its number.
    fn write_pending(&self, txn: &WriteTransaction, pending: &PendingDocument<u64>) -> Result<u64> {
        let path = &self.path;
        let n = match pending.address {
            Some(n) => n,
            None => self.allocate_number(txn)?,
        };
        let writes = &pending.writes;
        if writes.has_changes() {
            let mut table = txn.open_table(CHANGES).or_store("write to", path)?;
            let mut key = Vec::new();
            // Each actor's removals, in seq order, removed together once its run ends.
            let mut removed: Vec<u64> = Vec::new();
            let mut changes = writes.changes().peekable();
            while let Some((actor, seq, value)) = changes.next() {
                match value {
                    Some(value) => {
                        layout::encode_change_key(&mut key, n, actor.as_bytes(), seq);
                        table
                            .insert(key.as_slice(), value)
                            .or_store("write to", path)?;
                    }
                    None => removed.push(seq),
                }
                let run_ends = changes.peek().is_none_or(|(next, _, _)| *next != actor);
                if run_ends && !removed.is_empty() {
                    remove_changes(&mut table, n, actor.as_bytes(), &removed)
                        .or_store("write to", path)?;
                    removed.clear();
                }
            }
        }
        if let Some(document) = writes.document() {
            let mut table = txn.open_table(COMPACTED).or_store("write to", path)?;
            table
                .insert(layout::document_key(n).as_slice(), document)
                .or_store("write to", path)?;
        }
        if writes.has_sync_states() {
            let mut table = txn.open_table(SYNC_STATES).or_store("write to", path)?;
            for (peer, value) in writes.sync_states() {
                let key = layout::sync_state_key(n, peer);
                match value {
                    Some(value) => table.insert(key.as_slice(), value).map(drop),
                    None => table.remove(key.as_slice()).map(drop),
                }
                .or_store("write to", path)?;
            }
        }
        let record = DocumentRecord {
            number: n,
            sizes: pending.sizes,
        };
        let mut table = txn.open_table(DOCUMENTS).or_store("write to", path)?;
        table
            .insert(pending.id.as_bytes(), record.encode().as_slice())
            .or_store("write to", path)?;
        Ok(n)
    }

    /// Removes the record of `id` and its data within `txn`; whether it was stored.
    fn remove_in(&self, txn: &WriteTransaction, id: &DocumentId) -> Result<bool> {
        let path = &self.path;
        let mut documents = txn.open_table(DOCUMENTS).or_store("write to", path)?;
        let removed = documents.remove(id.as_bytes()).or_store("write to", path)?;
        let Some(number) = removed
            .map(|bytes| Ok::<_, Error>(self.decode_record(id, bytes.value())?.number))
            .transpose()?
        else {
            return Ok(false);
        };
        let range = layout::document_range(number);
        for table in [CHANGES, SYNC_STATES] {
            let mut table = txn.open_table(table).or_store("write to", path)?;
            table
                .retain_in(range.start.as_slice()..range.end.as_slice(), |_, _| false)
                .or_store("write to", path)?;
        }
        let mut compacted = txn.open_table(COMPACTED).or_store("write to", path)?;
        compacted
            .remove(layout::document_key(number).as_slice())
            .or_store("write to", path)?;
        Ok(true)
    }
}

/// Removes the changes `seqs` (sorted, each once) of `actor` in document `number`.
///
/// A compaction removes thousands of consecutive changes: removed one key at a time,
/// each removal walks the tree from its root and shifts the rest of its leaf. When the
/// seqs are dense in the range they span (at least half of its seqs), one scan of that
/// range removes them instead, keeping every other key in it; sparse ones are removed
/// one by one, so that the scan never visits many keys it keeps.
fn remove_changes(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    number: u64,
    actor: &[u8],
    seqs: &[u64],
) -> std::result::Result<(), redb::StorageError> {
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    if seqs.len() < 2 || (last - first) / 2 >= seqs.len() as u64 {
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

impl Engine for RedbEngine {
    /// The document's number, which prefixes every key of its data.
    type Address = u64;

    fn path(&self) -> &Path {
        &self.path
    }

    fn max_pending_bytes(&self) -> usize {
        self.options.max_pending_bytes
    }

    fn check_writable(&self) -> Result<()> {
        match self.read_only {
            true => Err(Error::read_only(&self.path, "RedbStore::open")),
            false => Ok(()),
        }
    }

    fn read_record(&self, id: &DocumentId) -> Result<Option<Record<u64>>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, DOCUMENTS)?;
        let record = table.get(id.as_bytes()).or_store("read from", &self.path)?;
        record
            .map(|bytes| {
                let record = self.decode_record(id, bytes.value())?;
                Ok(Record {
                    address: record.number,
                    sizes: record.sizes,
                })
            })
            .transpose()
    }

    /// Each actor's last key, in one read transaction.
    fn max_seqs(&self, number: &u64, actors: &[&ActorId]) -> Result<Vec<Option<u64>>> {
        let path = &self.path;
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, CHANGES)?;
        let mut maxima = Vec::with_capacity(actors.len());
        for actor in actors {
            let first = layout::change_key(*number, actor.as_bytes(), 0);
            let last = layout::change_key(*number, actor.as_bytes(), u64::MAX);
            let mut range = table
                .range(first.as_slice()..=last.as_slice())
                .or_store("read from", path)?;
            let max = match range.next_back() {
                None => None,
                Some(entry) => {
                    let (key, _) = entry.or_store("read from", path)?;
                    match layout::decode_change_key(*number, key.value()) {
                        Some((found, seq)) if found == **actor => Some(seq),
                        _ => {
                            let what = format!("malformed change key {:?}", key.value());
                            return Err(corrupt(what, path));
                        }
                    }
                }
            };
            maxima.push(max);
        }
        Ok(maxima)
    }

    /// The lengths, in one read transaction.
    fn stored_lengths(&self, number: &u64, keys: &[StoredKey<'_>]) -> Result<Vec<Option<u64>>> {
        let path = &self.path;
        let txn = self.begin_read()?;
        let changes = self.read_table(&txn, CHANGES)?;
        let sync_states = self.read_table(&txn, SYNC_STATES)?;
        let mut lengths = Vec::with_capacity(keys.len());
        for key in keys {
            let value = match key {
                StoredKey::Change(actor, seq) => {
                    let key = layout::change_key(*number, actor.as_bytes(), *seq);
                    changes.get(key.as_slice())
                }
                StoredKey::SyncState(peer) => {
                    sync_states.get(layout::sync_state_key(*number, peer).as_slice())
                }
            }
            .or_store("read from", path)?;
            lengths.push(value.map(|value| value.value().len() as u64));
        }
        Ok(lengths)
    }

    fn read_changes(&self, number: &u64) -> Result<Vec<ChangeEntry>> {
        let path = &self.path;
        let mut entries = Vec::new();
        for entry in self.document_range(CHANGES, *number)? {
            let (key, value) = entry.or_store("read from", path)?;
            let (actor, seq) = layout::decode_change_key(*number, key.value())
                .ok_or_else(|| corrupt(format!("malformed change key {:?}", key.value()), path))?;
            entries.push((actor, seq, value.value().to_vec()));
        }
        Ok(entries)
    }

    fn read_document(&self, number: &u64) -> Result<Option<Vec<u8>>> {
        self.get(COMPACTED, layout::document_key(*number).as_slice())
    }

    fn read_sync_state(&self, number: &u64, peer: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(SYNC_STATES, &layout::sync_state_key(*number, peer))
    }

    fn read_peers(&self, number: &u64) -> Result<Vec<(Vec<u8>, u64)>> {
        let path = &self.path;
        let mut peers = Vec::new();
        for entry in self.document_range(SYNC_STATES, *number)? {
            let (key, value) = entry.or_store("read from", path)?;
            let peer = layout::decode_sync_state_key(*number, key.value())
                .ok_or_else(|| corrupt("a sync-state key of another document", path))?;
            peers.push((peer.to_vec(), value.value().len() as u64));
        }
        Ok(peers)
    }

    /// One write transaction for every document; `Durability::Immediate` (one sync,
    /// more when the file grows) when durable, `Durability::None` otherwise. A failure
    /// before the commit drops the transaction, which aborts it.
    fn commit(&self, documents: &mut [PendingDocument<u64>], durable: bool) -> Result<()> {
        let txn = self.begin_write()?;
        let mut numbers = Vec::with_capacity(documents.len());
        for pending in documents.iter() {
            numbers.push(self.write_pending(&txn, pending)?);
        }
        let durability = match durable {
            true => Durability::Immediate,
            false => Durability::None,
        };
        self.commit_txn(txn, durability)?;
        for (pending, number) in documents.iter_mut().zip(numbers) {
            pending.address = Some(number);
        }
        Ok(())
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, DOCUMENTS)?;
        let mut ids = Vec::new();
        for entry in table.iter().or_store("read from", &self.path)? {
            let (id, _) = entry.or_store("read from", &self.path)?;
            ids.push(DocumentId::from(id.value()));
        }
        Ok(ids)
    }

    /// One synced commit, when the document is stored.
    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let txn = self.begin_write()?;
        // On an error the transaction is dropped, which aborts it; a failed I/O is
        // latched by redb and reported by the next commit.
        if self.remove_in(&txn, id)? {
            self.commit_txn(txn, Durability::Immediate)?;
        }
        Ok(())
    }
}
