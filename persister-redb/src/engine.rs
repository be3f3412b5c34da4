//! The redb [`Engine`]: documents in five tables of one redb file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use persister_core::{
    ActorId, ChangeEntry, DocumentId, Engine, Error, PendingDocument, Record, Recovered, Result,
    StoredKey,
};
use redb::{
    Durability, OwnedRange, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::RedbOptions;
use crate::error::{RedbResultExt, corrupt};
use crate::file::Db;
use crate::layout::{
    self, CHANGES, COMPACTED, DOCUMENTS, DocumentRecord, LogEntry, META, META_NEXT_DOCUMENT,
    SYNC_STATES,
};
use crate::log::{self, CommitLog, Keying, RECORD_HEADER_LEN};
use crate::redo::{self, Ops, Tab};

type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;
type BytesTableDefinition = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The storage engine of a [`RedbStore`](crate::RedbStore): one redb file, its
/// documents addressed by number (see the [file layout](crate#file-layout)).
///
/// A commit is made durable by the commit log (or, without one, by a redb transaction
/// with `Durability::Immediate`); its operations reach redb in a transaction of their
/// own or one shared with other commits (see [`RedbEngine::commit`](Engine::commit)).
/// Reads each run in one read transaction, after every commit's operations reached
/// redb, so they see one state holding every commit made.
#[derive(Debug)]
pub struct RedbEngine {
    /// The database; `None` only once [`close`](Engine::close) has taken it to close it.
    db: Option<Db>,
    writer: Mutex<Writer>,
    /// The writer holds logged operations not yet applied to redb (see
    /// [`Writer::deferred`]): a read applies them first.
    deferred: AtomicBool,
    /// The torn tail of the commit log that opening dropped (or found, read-only).
    pub(crate) recovered: Vec<Recovered>,
    /// Refuses every write: a store opened read-only.
    pub(crate) read_only: bool,
    path: PathBuf,
    options: RedbOptions,
    /// The store's table layout version, as opening found it or migrated it.
    layout_version: u32,
}

impl RedbEngine {
    pub(crate) fn new(
        db: Db,
        path: PathBuf,
        options: RedbOptions,
        log: LogState,
        layout_version: u32,
    ) -> Self {
        let read_only = matches!(db, Db::ReadOnly(_));
        Self {
            db: Some(db),
            writer: Mutex::new(Writer::new(log)),
            deferred: AtomicBool::new(false),
            recovered: Vec::new(),
            read_only,
            path,
            options,
            layout_version,
        }
    }

    /// A read transaction, after the operations the writer deferred are applied, so
    /// that it sees every commit made.
    fn begin_read(&self) -> Result<ReadTransaction> {
        if self.deferred.load(Ordering::Acquire) {
            let mut writer = self.lock_writer();
            self.apply_deferred(&mut writer)?;
        }
        self.db()?.begin_read().or_store("read from", &self.path)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the operations the writer deferred to redb, in one transaction committed
    /// without a sync (the log holds them durably), which records them applied. A
    /// failure poisons the store: what the log holds is then known only to a reopen,
    /// and a read that went on would miss commits the writer acknowledged.
    fn apply_deferred(&self, writer: &mut Writer) -> Result<()> {
        if writer.deferred.is_empty() {
            return Ok(());
        }
        self.check_not_failed(writer)?;
        writer.failed = true;
        let LogState::Open(log) = &writer.log else {
            return Err(Error::backend(
                "redb",
                "operations were deferred without an open commit log",
            ));
        };
        self.commit_logged(log, &writer.deferred)?;
        self.forget_deferred(&mut writer.deferred);
        writer.failed = false;
        Ok(())
    }

    /// Applies `operations`, those of every record `log` holds that redb does not, in
    /// one transaction committed without a sync (the log holds them durably), which
    /// records them applied.
    fn commit_logged(&self, log: &CommitLog, operations: &[u8]) -> Result<()> {
        let entry = LogEntry {
            epoch: log.epoch(),
            open: true,
            applied: log.next(),
            keying: log.keying(),
        };
        let txn = self.begin_write()?;
        redo::apply(&txn, operations, &self.path)?;
        layout::set_log_state(&txn, entry, &self.path)?;
        self.commit_txn(txn, Durability::None)
    }

    /// The database, until [`close`](Engine::close) takes it.
    fn db(&self) -> Result<&Db> {
        self.db.as_ref().ok_or_else(|| Error::Poisoned {
            reason: format!("the store {} is closed", self.path.display()),
        })
    }

    fn begin_write(&self) -> Result<WriteTransaction> {
        self.check_writable()?;
        match self.db()? {
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
    ) -> Result<OwnedRange<&'static [u8], &'static [u8]>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, table)?;
        let range = layout::document_range(number);
        table
            .range_owned(range.start.as_slice()..range.end.as_slice())
            .or_store("read from", &self.path)
    }

    fn get(&self, table: BytesTableDefinition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read()?;
        let table = self.read_table(&txn, table)?;
        let value = table.get(key).or_store("read from", &self.path)?;
        Ok(value.map(|value| value.value().to_vec()))
    }

    /// Writes one document's pending writes into `ops` and returns its number, which a
    /// new document gets here, within `txn`.
    fn encode_pending(
        &self,
        txn: Option<&WriteTransaction>,
        pending: &PendingDocument<u64>,
        ops: &mut Ops<'_>,
    ) -> Result<u64> {
        let n = match (pending.address, txn) {
            (Some(n), _) => n,
            (None, None) => {
                return Err(Error::backend(
                    "redb",
                    "a new document's number is given within a transaction",
                ));
            }
            (None, Some(txn)) => {
                let n = self.allocate_number(txn)?;
                ops.next_document_at_least(n + 1);
                n
            }
        };
        let writes = &pending.writes;
        let mut key = Vec::new();
        // Each actor's removals, in seq order, removed together once its run ends.
        let mut removed: Vec<u64> = Vec::new();
        let mut changes = writes.changes().peekable();
        while let Some((actor, seq, value)) = changes.next() {
            match value {
                Some(value) => {
                    layout::encode_change_key(&mut key, n, actor.as_bytes(), seq);
                    ops.put(Tab::Changes, &key, value);
                }
                None => removed.push(seq),
            }
            let run_ends = changes.peek().is_none_or(|(next, _, _)| *next != actor);
            if run_ends && !removed.is_empty() {
                ops.remove_changes(n, actor.as_bytes(), &removed);
                removed.clear();
            }
        }
        if let Some(document) = writes.document() {
            ops.put(Tab::Compacted, &layout::document_key(n), document);
        }
        for (peer, value) in writes.sync_states() {
            let key = layout::sync_state_key(n, peer);
            match value {
                Some(value) => ops.put(Tab::SyncStates, &key, value),
                None => ops.remove(Tab::SyncStates, &key),
            }
        }
        let record = DocumentRecord {
            number: n,
            sizes: pending.sizes,
        };
        ops.put(Tab::Documents, pending.id.as_bytes(), &record.encode());
        Ok(n)
    }

    /// Applies the deferred operations (see [`Writer::deferred`]), then those in
    /// `writer.record`, to `txn` and commits it: to the commit log (synced when
    /// `durable`, while redb commits) once the log is open, otherwise to redb alone.
    /// `committed` runs once redb has committed, even if the log's sync then fails.
    ///
    /// Operations are applied before anything is written, so that one they refuse
    /// changes nothing, except for a logged durable commit of operations that
    /// `apply` says can fail only as redb itself fails: those are applied while the log
    /// syncs. Any failure after the first write, a panic included, poisons the store.
    fn commit_record(
        &self,
        writer: &mut Writer,
        txn: WriteTransaction,
        durable: bool,
        apply: Apply,
        committed: impl FnOnce(),
    ) -> Result<()> {
        let large = writer.operations().len() >= DIRECT_COMMIT_BYTES;
        let late = apply == Apply::WhileSyncing
            && durable
            && !large
            && matches!(writer.log, LogState::Open(_));
        // Deferred operations are older than this commit's: applied first, in the same
        // transaction, which records their records applied too.
        redo::apply(&txn, &writer.deferred, &self.path)?;
        if !late {
            redo::apply(&txn, writer.operations(), &self.path)?;
        }
        // Failed until it returns: a panic below (in redb, say) leaves the store poisoned,
        // since a record may be in the log that the file does not hold.
        writer.failed = true;
        let deferred = &mut writer.deferred;
        let result = (|| match &mut writer.log {
            LogState::Absent => {
                let durability = match durable {
                    true => Durability::Immediate,
                    false => Durability::None,
                };
                self.commit_txn(txn, durability)?;
                committed();
                Ok(())
            }
            LogState::Closed { epoch, keyed } => {
                // The log is made (empty) before the store names it open: a store that
                // names its log open always has one.
                let log = CommitLog::create(&log::log_path(&self.path), *epoch, *keyed)?;
                let entry = LogEntry {
                    epoch: *epoch,
                    open: true,
                    applied: 0,
                    keying: log.keying(),
                };
                layout::set_log_state(&txn, entry, &self.path)?;
                self.commit_txn(txn, Durability::Immediate)?;
                committed();
                writer.log = LogState::Open(log);
                Ok(())
            }
            LogState::Open(log) if durable && large => {
                // Large: written once, to the file, rather than to the log and later the
                // file. A durable commit makes what the log holds durable too, so the log
                // starts again empty (unless it is).
                let entry = LogEntry {
                    epoch: log.epoch() + u64::from(log.next() > 0),
                    open: true,
                    applied: 0,
                    keying: log.keying(),
                };
                layout::set_log_state(&txn, entry, &self.path)?;
                self.commit_txn(txn, Durability::Immediate)?;
                self.forget_deferred(deferred);
                committed();
                match log.next() > 0 {
                    true => log.clear(entry.epoch),
                    false => Ok(()),
                }
            }
            LogState::Open(log) => {
                // The file holds this record once this transaction is in it.
                let entry = LogEntry {
                    epoch: log.epoch(),
                    open: true,
                    applied: log.next() + 1,
                    keying: log.keying(),
                };
                // Logged, then committed while the log syncs (a sync waits for the
                // disk; redb's commit works the processor). Once the record is logged,
                // a crash before the transaction is durable leaves it for the next open
                // to replay, as a later crash does. Should redb's commit or the sync
                // fail, the store is poisoned, and a reopen finds the commit whole or
                // not at all.
                layout::set_log_state(&txn, entry, &self.path)?;
                log.append(&mut writer.record)?;
                // A checkpoint makes everything durable in the file: the log's sync is
                // then not needed.
                let checkpoint = log.len() > self.options.checkpoint_log_bytes;
                let operations = &writer.record[RECORD_HEADER_LEN..];
                let commit = || {
                    if late {
                        redo::apply(&txn, operations, &self.path)?;
                    }
                    self.commit_txn(txn, Durability::None)
                };
                let (synced, redb) = match durable && !checkpoint {
                    true => log.sync_during(commit),
                    false => (Ok(()), commit()),
                };
                redb?;
                // redb holds them now: a checkpoint below must not apply them again,
                // over this commit's operations.
                self.forget_deferred(deferred);
                committed();
                synced?;
                match checkpoint {
                    true => self.checkpoint(log, deferred, true),
                    false => Ok(()),
                }
            }
        })();
        writer.failed = result.is_err();
        result
    }

    /// Forgets the deferred operations, which redb now holds.
    fn forget_deferred(&self, deferred: &mut Vec<u8>) {
        deferred.clear();
        self.deferred.store(false, Ordering::Release);
    }

    /// Commits `writer.record` to the open commit log alone, synced when `durable`,
    /// and defers its operations (see [`Writer::deferred`]): no redb transaction, so
    /// that a flush of a few small changes costs about one append and one sync. Once
    /// the deferred operations pass [`DEFERRED_BYTES`], this commit applies them all
    /// while the log syncs; a checkpoint applies them in its own commit.
    fn commit_deferred(&self, writer: &mut Writer, durable: bool) -> Result<()> {
        // Failed until it returns, as in `commit_record`.
        writer.failed = true;
        let Writer {
            record,
            log,
            deferred,
            ..
        } = writer;
        let LogState::Open(log) = log else {
            return Err(Error::backend(
                "redb",
                "a deferred commit without an open log",
            ));
        };
        log.append(record)?;
        let own = record.len() - RECORD_HEADER_LEN;
        deferred.extend_from_slice(&record[RECORD_HEADER_LEN..]);
        self.deferred.store(true, Ordering::Release);
        if log.len() > self.options.checkpoint_log_bytes {
            // A checkpoint makes everything durable in the file: the log's sync is then
            // not needed.
            self.checkpoint(log, deferred, true)?;
        } else if deferred.len() >= DEFERRED_BYTES || (durable && own >= APPLY_WITH_BYTES) {
            let (synced, applied) = match durable {
                true => log.sync_during(|| self.commit_logged(log, deferred)),
                false => (Ok(()), self.commit_logged(log, deferred)),
            };
            applied?;
            self.forget_deferred(deferred);
            synced?;
        } else if durable {
            log.sync()?;
        }
        writer.failed = false;
        Ok(())
    }

    /// Makes everything committed durable in the file with one durable redb commit that
    /// starts the next epoch, naming the log open or closed, then clears the log (when
    /// it stays open).
    ///
    /// Operations the writer deferred (`deferred`) are applied in the same commit.
    fn checkpoint(&self, log: &mut CommitLog, deferred: &mut Vec<u8>, open: bool) -> Result<()> {
        let txn = self.begin_write()?;
        redo::apply(&txn, deferred, &self.path)?;
        let entry = LogEntry {
            epoch: log.epoch() + 1,
            open,
            applied: 0,
            keying: log.keying(),
        };
        layout::set_log_state(&txn, entry, &self.path)?;
        self.commit_txn(txn, Durability::Immediate)?;
        self.forget_deferred(deferred);
        match open {
            true => log.clear(log.epoch() + 1),
            false => Ok(()),
        }
    }

    /// Fails once a commit has failed: what the file and the log hold is then known
    /// only to a reopen.
    fn check_not_failed(&self, writer: &Writer) -> Result<()> {
        match writer.failed {
            true => Err(Error::Poisoned {
                reason: format!(
                    "an earlier commit to {} failed; reopen the store",
                    self.path.display()
                ),
            }),
            false => Ok(()),
        }
    }

    /// Checkpoints and closes the commit log, if it is open: the file then holds
    /// everything, and the log is removed. After a failed commit, with a log or without,
    /// nothing is written, the log (if any) stays for the next open to replay, and the
    /// failure is reported: a checked close must not call a store whose sync failed
    /// closed cleanly.
    fn close_log(&self) -> Result<()> {
        let mut writer = self.lock_writer();
        self.check_not_failed(&writer)?;
        let writer = &mut *writer;
        let LogState::Open(log) = &mut writer.log else {
            return Ok(());
        };
        let result = self.checkpoint(log, &mut writer.deferred, false);
        let epoch = log.epoch() + 1;
        let keyed = matches!(log.keying(), Keying::Keyed(_));
        let path = log.path().to_path_buf();
        if result.is_ok() {
            writer.log = LogState::Closed { epoch, keyed };
            // A log left behind names an older epoch and reads as nothing.
            let _ = std::fs::remove_file(&path);
        }
        writer.failed |= result.is_err();
        result
    }
}

/// A commit of at least this many bytes of operations is made durable in the file
/// directly, not through the commit log: its data dominates its cost, and writing it
/// once halves that; a disk that fills up then holds it once, not twice. Below it, the
/// log's sync overlaps redb's applying the operations, which a direct commit does
/// before its own sync: a flush of a thousand small changes (about 70 KB) takes about
/// half as long logged as direct.
const DIRECT_COMMIT_BYTES: usize = 1024 * 1024;

/// How many bytes of logged operations the writer defers before a commit applies them
/// to redb (see [`Writer::deferred`]): redb then writes each touched page once for
/// many commits rather than once each, and a commit of a few small changes is one
/// append and one sync. It bounds the memory they take and the work one commit does
/// for the commits before it.
const DEFERRED_BYTES: usize = 4 * 1024 * 1024;

/// A durable commit of at least this many bytes of operations applies what is deferred,
/// its own included, while the log syncs: applying it is worth a transaction, and the
/// processor would otherwise wait for the disk. A flush of a thousand small changes
/// (about 70 KB) is such a commit; a flush of a few is not.
const APPLY_WITH_BYTES: usize = 32 * 1024;

/// When [`RedbEngine::commit_record`] applies a commit's operations to its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Apply {
    /// Before anything is written, always: applying them reads what the store holds,
    /// which may refuse them.
    First,
    /// While the commit log syncs, when the commit is logged and durable; otherwise
    /// first. Only for operations that read nothing the store holds, so that applying
    /// them fails only as redb fails (an I/O error, a damaged page), as its commit may.
    WhileSyncing,
}

/// Where commits go.
#[derive(Debug)]
pub(crate) enum LogState {
    /// To redb alone: a store of layout 1, a store on a backend, a read-only store.
    Absent,
    /// A store with a commit log that is not open: the next commit creates the log and
    /// is a durable redb commit that names it open for `epoch`.
    Closed {
        epoch: u64,
        /// Whether the log's records carry a key (log format version 2, a store of
        /// layout 3), or not (version 1, layout 2).
        keyed: bool,
    },
    /// To redb without a sync, and to the log.
    Open(CommitLog),
}

/// The commit side of the engine, one commit at a time.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The commit being made: a log record's header, then its operations.
    record: Vec<u8>,
    log: LogState,
    /// A commit failed: the store is poisoned, and closing does not checkpoint.
    failed: bool,
    /// Operations of the logged commits whose records follow the last one applied to
    /// redb, one after another: commits whose documents all have numbers are appended
    /// to the log alone, and redb gets their operations in one transaction once these
    /// pass [`DEFERRED_BYTES`], before a read, a checkpoint or any other commit.
    deferred: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(log: LogState) -> Self {
        Self {
            record: Vec::new(),
            log,
            failed: false,
            deferred: Vec::new(),
        }
    }

    /// Starts a record and gives the operations to fill it with.
    fn start(&mut self) -> Ops<'_> {
        self.record.clear();
        self.record.resize(RECORD_HEADER_LEN, 0);
        Ops(&mut self.record)
    }

    fn operations(&self) -> &[u8] {
        &self.record[RECORD_HEADER_LEN..]
    }
}

impl Drop for RedbEngine {
    /// Checkpoints an open commit log, as [`close`](Engine::close) does, ignoring errors:
    /// what is not checkpointed stays in the log, and the next open replays it.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.close_log();
        }
    }
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

    /// One commit for every document. Without a commit log (see the [crate
    /// docs](crate#the-commit-log)), one write transaction that commits with
    /// `Durability::Immediate` (one sync, more when the file grows) when durable,
    /// `Durability::None` otherwise. With one, its operations are appended to the log,
    /// and a durable commit syncs the log; they wait to reach redb when every document
    /// has its number, and otherwise go, after what waits, into a transaction that
    /// commits without a sync while the log syncs. A failure before anything is written
    /// changes nothing.
    fn commit(&self, documents: &mut [PendingDocument<u64>], durable: bool) -> Result<()> {
        let mut writer = self.lock_writer();
        self.check_not_failed(&writer)?;
        self.check_writable()?;
        // Documents that all have numbers need nothing from redb: their commit is
        // encoded without a transaction, and, logged, deferred.
        let numbered = documents.iter().all(|pending| pending.address.is_some());
        let mut numbers = Vec::with_capacity(documents.len());
        let txn = match numbered {
            true => {
                let mut ops = writer.start();
                for pending in documents.iter() {
                    numbers.push(self.encode_pending(None, pending, &mut ops)?);
                }
                let small = writer.operations().len() < DIRECT_COMMIT_BYTES;
                if small && matches!(writer.log, LogState::Open(_)) {
                    return self.commit_deferred(&mut writer, durable);
                }
                self.begin_write()?
            }
            false => {
                let txn = self.begin_write()?;
                let mut ops = writer.start();
                for pending in documents.iter() {
                    numbers.push(self.encode_pending(Some(&txn), pending, &mut ops)?);
                }
                txn
            }
        };
        // Nothing here reads what the store holds (a new document's number was read
        // above), so applying can fail only as redb fails.
        self.commit_record(&mut writer, txn, durable, Apply::WhileSyncing, || {
            for (pending, number) in documents.iter_mut().zip(numbers) {
                pending.address = Some(number);
            }
        })
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

    /// One durable commit, when the document is stored.
    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let mut writer = self.lock_writer();
        self.check_not_failed(&writer)?;
        let txn = self.begin_write()?;
        // On an error the transaction is dropped, which aborts it; a failed I/O is
        // latched by redb and reported by the next commit.
        if !redo::is_stored(&txn, id.as_bytes(), &self.path)? {
            return Ok(());
        }
        writer.start().remove_document(id.as_bytes());
        // The removal reads the document's record, which may be damaged: refused, it
        // must change nothing.
        self.commit_record(&mut writer, txn, true, Apply::First, || ())
    }

    fn recovered(&self) -> Vec<Recovered> {
        self.recovered.clone()
    }

    /// The store's table layout version: 1, 2 or 3 (see
    /// [`RedbOptions::migrate_format`](crate::RedbOptions::migrate_format)).
    fn format_version(&self) -> Option<u32> {
        Some(self.layout_version)
    }

    /// Checkpoints an open commit log and removes it, then closes the redb file,
    /// reporting what failed: a store that an earlier failed commit poisoned is reported
    /// as [`Error::Poisoned`], whether or not it has a log, and a failure of redb's own
    /// close (writing or syncing its allocator state and clean-shutdown header, after
    /// which the next open repairs the file) as that error. The file and its lock are
    /// released either way.
    fn close(mut self) -> Result<()> {
        let result = self.close_log();
        let path = self.path.clone();
        let db = self.db.take();
        drop(self);
        let closed = match db {
            Some(Db::ReadWrite(db) | Db::ReadOnly(db)) => db.close().or_store("close", &path),
            None => Ok(()),
        };
        result.and(closed)
    }
}

#[cfg(test)]
impl RedbEngine {
    /// The bytes the open commit log holds, 0 without one.
    fn log_len(&self) -> u64 {
        match &self.lock_writer().log {
            LogState::Open(log) => log.len(),
            _ => 0,
        }
    }

    /// Whether operations wait to reach redb.
    fn has_deferred(&self) -> bool {
        !self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deferred
            .is_empty()
    }

    /// Makes the next sync of the commit log fail with `error`; false if the log is not
    /// open.
    fn fail_next_log_sync(&self, error: std::io::Error) -> bool {
        let writer = self.lock_writer();
        match &writer.log {
            LogState::Open(log) => {
                log.fail_next_sync(error);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use persister_core::{ActorId, DocumentId, Error, Persister, Store};

    use crate::{RedbOptions, RedbStore};

    /// A commit that does not wait (it numbers a new document, or removes one) applies
    /// what waits first, then its own operations, in one transaction; when its record
    /// passes the checkpoint bound, the checkpoint right after must not apply what
    /// waited a second time, over them.
    #[test]
    fn a_checkpoint_right_after_a_commit_does_not_apply_what_waited_twice()
    -> persister_core::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let path = dir.path().join("store.redb");
        let bound = 16 * 1024;
        let options = RedbOptions::default().checkpoint_log_bytes(bound);
        let actor = ActorId::new([7]);
        let store = RedbStore::open_with(&path, options.clone())?;
        let engine = store.inner.engine();
        let mut doc = store.open_document(&"doc".into())?;
        let mut gone = store.open_document(&"gone".into())?;
        let mut pad = store.open_document(&"pad".into())?;
        // First flushes number the documents (and open the log).
        doc.set_sync_state(b"peer".to_vec(), vec![1; 10])?;
        gone.insert_changes(vec![(actor.clone(), 1, vec![1; 10])])?;
        pad.insert_changes(vec![(actor.clone(), 1, vec![1; 10])])?;
        store.flush_documents(&mut [&mut doc, &mut gone, &mut pad])?;

        // Flushes of `pad` until the log holds exactly `bound - room` bytes: small ones,
        // then one whose value fills the gap (a flush's record is its value and a fixed
        // overhead, measured on the first).
        let mut seq = 1;
        let mut pad_to = |pad: &mut crate::RedbPersister, room: u64| {
            let mut flush = |pad: &mut crate::RedbPersister, len: u64| {
                seq += 1;
                let before = engine.log_len();
                pad.insert_changes(vec![(actor.clone(), seq, vec![2; len as usize])])?;
                pad.flush()?;
                Ok::<_, Error>(engine.log_len() - before - len)
            };
            let overhead = flush(pad, 40)?;
            while engine.log_len() + room + overhead + 400 < bound {
                flush(pad, 40)?;
            }
            let gap = bound - room - engine.log_len();
            flush(pad, gap - overhead)?;
            assert_eq!(engine.log_len(), bound - room);
            Ok::<_, Error>(())
        };

        // Case 1: a change to the document in a commit that waits, then another in a
        // group with a new document, whose record passes the bound. Its record (with
        // its sizes) is in both; the group's must stay.
        // (Opening a document reads, and a read applies what waits: "new" is opened
        // first.)
        let mut new = store.open_document(&"new".into())?;
        new.insert_changes(vec![(actor.clone(), 1, vec![4; 3000])])?;
        doc.insert_changes(vec![(actor.clone(), 1, vec![2; 3000])])?;
        doc.flush()?;
        pad_to(&mut pad, 2000)?;
        doc.insert_changes(vec![(actor.clone(), 2, vec![3; 20])])?;
        assert!(engine.has_deferred());
        let before = engine.log_len();
        store.flush_documents(&mut [&mut doc, &mut new])?;
        assert!(engine.log_len() < before, "the group's commit checkpointed");
        drop(doc);
        let doc = store.open_document(&"doc".into())?;
        assert_eq!(doc.sizes().change_count, 2);
        assert_eq!(doc.get_changes()?, vec![vec![2; 3000], vec![3; 20]]);

        // Case 2: a document whose flushes wait, removed by a commit that passes it.
        gone.insert_changes(vec![(actor.clone(), 2, vec![5; 3000])])?;
        gone.flush()?;
        drop(gone);
        pad_to(&mut pad, 5)?;
        assert!(engine.has_deferred());
        let before = engine.log_len();
        store.remove_document(&"gone".into())?;
        assert!(engine.log_len() < before, "the removal checkpointed");
        let listed = store.list_documents()?;
        assert!(!listed.contains(&DocumentId::from("gone")), "{listed:?}");

        drop((doc, new, pad));
        store.close()?;
        let store = RedbStore::open_with(&path, options)?;
        let listed = store.list_documents()?;
        assert!(!listed.contains(&DocumentId::from("gone")), "{listed:?}");
        let doc = store.open_document(&"doc".into())?;
        assert_eq!(doc.sizes().change_count, 2);
        assert_eq!(doc.get_changes()?, vec![vec![2; 3000], vec![3; 20]]);
        Ok(())
    }

    /// A commit whose log sync failed, but whose redb commit the file kept (redb makes
    /// a pending commit durable when the poisoned store is dropped), with its record
    /// then torn in the log: nothing of it was dropped, so neither a writable nor a
    /// read-only open reports a torn tail, and both read the commit.
    #[test]
    fn a_torn_record_the_file_holds_is_reported_by_no_open() -> persister_core::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let path = dir.path().join("store.redb");
        let actor = ActorId::new([7]);
        {
            let store = RedbStore::open(&path)?;
            let mut first = store.open_document(&"first".into())?;
            first.insert_changes(vec![(actor.clone(), 1, b"one".to_vec())])?;
            first.flush()?; // opens the log
            // A new document's commit goes to redb (without a sync) while the log syncs.
            let mut second = store.open_document(&"second".into())?;
            second.insert_changes(vec![(actor.clone(), 1, b"two".to_vec())])?;
            let injected = std::io::Error::other("injected fdatasync failure");
            assert!(store.inner.engine().fail_next_log_sync(injected));
            assert!(second.flush().is_err());
        }
        // The record, torn: its header and a few bytes of its payload are left.
        let log = crate::log::log_path(&path);
        let bytes = std::fs::read(&log).map_err(|e| Error::io("read", &log, e))?;
        let cut = 48 + crate::log::RECORD_HEADER_LEN + 4;
        std::fs::write(&log, &bytes[..cut]).map_err(|e| Error::io("write", &log, e))?;
        let copy = dir.path().join("copy.redb");
        std::fs::copy(&path, &copy).map_err(|e| Error::io("copy", &path, e))?;
        let copy_log = crate::log::log_path(&copy);
        std::fs::copy(&log, &copy_log).map_err(|e| Error::io("copy", &log, e))?;

        let read_only = RedbStore::open_read_only(&path)?;
        assert_eq!(read_only.recovered(), vec![]);
        let doc = read_only.open_document(&"second".into())?;
        assert_eq!(doc.get_changes()?, vec![b"two".to_vec()]);
        drop((doc, read_only));
        let store = RedbStore::open(&copy)?;
        assert_eq!(store.recovered(), vec![]);
        let doc = store.open_document(&"second".into())?;
        assert_eq!(doc.get_changes()?, vec![b"two".to_vec()]);
        Ok(())
    }

    /// A sync of the commit log that fails on the log's thread, while redb commits the
    /// same group: every handle of the group gets an error, the store takes no more
    /// writes, and a reopen finds the group whole or not at all, after everything
    /// flushed before it.
    #[test]
    fn a_failed_log_sync_poisons_the_store_and_a_reopen_finds_the_group_whole_or_not_at_all()
    -> persister_core::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let path = dir.path().join("store.redb");
        let actor = ActorId::new([7]);
        let change = |seq: u64| (actor.clone(), seq, format!("change {seq}").into_bytes());
        let ids = ["a", "b", "c"].map(persister_core::DocumentId::from);
        {
            let store = RedbStore::open(&path)?;
            let mut docs = Vec::new();
            for id in &ids {
                let mut doc = store.open_document(id)?;
                doc.insert_changes(vec![change(1)])?;
                docs.push(doc);
            }
            // The first commit opens the log; the second is logged.
            store.flush_documents(&mut docs.iter_mut().collect::<Vec<_>>())?;
            for doc in &mut docs {
                doc.insert_changes(vec![change(2)])?;
            }
            store.flush_documents(&mut docs.iter_mut().collect::<Vec<_>>())?;
            let injected = std::io::Error::other("injected fdatasync failure");
            assert!(store.inner.engine().fail_next_log_sync(injected));
            for doc in &mut docs {
                doc.insert_changes(vec![change(3)])?;
            }
            let failed = store.flush_documents(&mut docs.iter_mut().collect::<Vec<_>>());
            let err = failed.expect_err("the group's sync failed");
            assert!(
                err.to_string().contains("injected fdatasync failure"),
                "{err}"
            );
            for doc in &mut docs {
                let again = doc.insert_changes(vec![change(4)]);
                assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
                // The group's operations wait to reach redb (they were deferred), so a
                // read, which would miss them, is refused too.
                let read = doc.get_change_entries();
                assert!(matches!(read, Err(Error::Poisoned { .. })), "{read:?}");
            }
            let other = store.open_document(&"d".into()).and_then(|mut doc| {
                doc.insert_changes(vec![change(1)])?;
                doc.flush()
            });
            assert!(other.is_err(), "the store is poisoned: {other:?}");
        }
        let store = RedbStore::open(&path)?;
        let found: Vec<_> = ids
            .iter()
            .map(|id| store.open_document(id)?.get_change_entries())
            .collect::<persister_core::Result<_>>()?;
        let before = vec![change(1), change(2)];
        let whole = vec![change(1), change(2), change(3)];
        assert!(
            found.iter().all(|entries| *entries == before)
                || found.iter().all(|entries| *entries == whole),
            "{found:?}"
        );
        Ok(())
    }
}
