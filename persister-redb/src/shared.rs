//! What a store and its handles share: the database, and the state of the handles.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use persister_core::scratch::ScratchDir;
use persister_core::{DocumentId, Error, OpenDocuments, Result};
use redb::{
    Durability, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError,
    WriteTransaction,
};

use crate::RedbOptions;
use crate::error::{RedbResultExt, corrupt, from_redb};
use crate::file::Db;
use crate::group::Committer;
use crate::layout::{self, DOCUMENTS, DocumentRecord, META, META_NEXT_DOCUMENT};

/// What the store and its handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub db: Db,
    /// Refuses every write: a store opened read-only, or a repaired copy read as one.
    pub read_only: bool,
    /// The directory of the repaired copy a read-only store reads, removed after the
    /// database is closed.
    pub scratch: Option<ScratchDir>,
    pub path: PathBuf,
    pub options: RedbOptions,
    pub open: OpenDocuments,
    /// Set when a commit fails: redb then refuses further writes, and so do we.
    poisoned: Mutex<Option<String>>,
    /// Documents an open handle has written to but not yet committed to the file: they
    /// exist, so `list_documents` lists them.
    unwritten: Mutex<BTreeSet<DocumentId>>,
    /// Flushes waiting to share a commit (group commit).
    pub committer: Committer,
}

impl Shared {
    pub fn new(db: Db, path: PathBuf, options: RedbOptions) -> Self {
        Self {
            db,
            read_only: false,
            scratch: None,
            path,
            options,
            open: OpenDocuments::new(),
            poisoned: Mutex::new(None),
            unwritten: Mutex::default(),
            committer: Committer::default(),
        }
    }

    pub fn check_poisoned(&self) -> Result<()> {
        match &*lock(&self.poisoned) {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned by `err` (the first reason stays), and returns it.
    pub fn poison_with(&self, err: Error) -> Error {
        lock(&self.poisoned).get_or_insert_with(|| poison_reason(&err));
        err
    }

    pub fn begin_read(&self) -> Result<ReadTransaction> {
        self.db.begin_read().or_store("read from", &self.path)
    }

    /// Begins a write transaction; fails with `Poisoned` once a commit has failed.
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        self.check_poisoned()?;
        match &self.db {
            Db::ReadWrite(db) if !self.read_only => {
                db.begin_write().or_store("write to", &self.path)
            }
            _ => Err(Error::InvalidInput {
                what: "write",
                reason: format!(
                    "the store at {} was opened read-only; open it with RedbStore::open to write",
                    self.path.display()
                ),
            }),
        }
    }

    /// Commits `txn`, poisoning the store if that fails.
    pub fn commit(&self, mut txn: WriteTransaction, durability: Durability) -> Result<()> {
        let committed = txn
            .set_durability(durability)
            .or_store("commit to", &self.path)
            .and_then(|()| txn.commit().or_store("commit to", &self.path));
        committed.map_err(|err| self.poison_with(err))
    }

    /// Opens one of our tables in a read transaction; a missing table is damage.
    pub fn read_table(
        &self,
        txn: &ReadTransaction,
        table: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<ReadOnlyTable<&'static [u8], &'static [u8]>> {
        txn.open_table(table).map_err(|err| match err {
            TableError::TableDoesNotExist(name) => {
                corrupt(format!("table {name} is missing"), &self.path)
            }
            other => from_redb(other, "read from", &self.path),
        })
    }

    /// The record of document `id`, if it is stored.
    pub fn read_record(
        &self,
        txn: &ReadTransaction,
        id: &DocumentId,
    ) -> Result<Option<DocumentRecord>> {
        let table = self.read_table(txn, DOCUMENTS)?;
        let record = table.get(id.as_bytes()).or_store("read from", &self.path)?;
        record
            .map(|bytes| self.decode_record(id, bytes.value()))
            .transpose()
    }

    pub fn remove_record(&self, txn: &WriteTransaction, id: &DocumentId) -> Result<Option<u64>> {
        let mut table = txn.open_table(DOCUMENTS).or_store("write to", &self.path)?;
        let removed = table
            .remove(id.as_bytes())
            .or_store("write to", &self.path)?;
        removed
            .map(|bytes| Ok(self.decode_record(id, bytes.value())?.number))
            .transpose()
    }

    pub fn decode_record(&self, id: &DocumentId, bytes: &[u8]) -> Result<DocumentRecord> {
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
    pub fn allocate_number(&self, txn: &WriteTransaction) -> Result<u64> {
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

    /// Records that document `id` exists but is not yet in the file.
    pub fn mark_unwritten(&self, id: &DocumentId, unwritten: bool) {
        let mut set = lock(&self.unwritten);
        if unwritten {
            set.insert(id.clone());
        } else {
            set.remove(id);
        }
    }

    /// The documents open handles have written to but not yet committed.
    pub fn unwritten(&self) -> BTreeSet<DocumentId> {
        lock(&self.unwritten).clone()
    }
}

/// What poisoned a handle or store, for [`Error::Poisoned`]: the error's message, or
/// the reason it already carries.
pub(crate) fn poison_reason(err: &Error) -> String {
    match err {
        Error::Poisoned { reason } => reason.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
