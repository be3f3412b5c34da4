//! The store: one redb file holding every document.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persister_core::{DocumentId, Error, OpenDocuments, Result, Store};
use redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageBackend, TableDefinition, TableError, WriteTransaction,
};

use crate::error::{RedbResultExt, corrupt, from_redb};
use crate::layout::{
    self, CHANGES, COMPACTED, DOCUMENTS, DocumentRecord, FIRST_DOCUMENT, FORMAT_NAME,
    FORMAT_VERSION, META, META_FORMAT, META_NEXT_DOCUMENT, META_VERSION, SYNC_STATES,
};
use crate::{RedbOptions, RedbPersister};

/// The first bytes of every redb file (redb's magic number).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1a, 0x0a, 0xa9, 0x0d, 0x0a];

/// Whether `path` is a file that starts with redb's magic number.
///
/// It says nothing of the file's health nor of whether it holds our tables; opening it
/// checks both. Tools use it to pick the backend of a path.
pub fn is_redb_file(path: impl AsRef<Path>) -> bool {
    matches!(has_redb_magic(path.as_ref()), Ok(true))
}

fn has_redb_magic(path: &Path) -> io::Result<bool> {
    let mut magic = [0; REDB_MAGIC.len()];
    match File::open(path)?.read_exact(&mut magic) {
        Ok(()) => Ok(magic == REDB_MAGIC),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(err) => Err(err),
    }
}

/// Every document of one redb file.
///
/// Opening takes redb's lock on the file: a second open of the same file, from this
/// process or another, fails at once with [`Error::Locked`]. The store is `Send + Sync`;
/// share it (by reference or in an `Arc`) to serve different documents from different
/// threads. Its handles ([`RedbPersister`]) keep the file open until the last one is
/// dropped.
///
/// Dropping the store and its handles closes the file, which commits and syncs what the
/// handles committed without syncing (see [`RedbPersister`]); only [`flush`] promises
/// durability.
///
/// [`flush`]: persister_core::Persister::flush
#[derive(Clone, Debug)]
pub struct RedbStore {
    shared: Arc<Shared>,
}

/// What the store and its handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub db: Database,
    pub path: PathBuf,
    pub options: RedbOptions,
    open: OpenDocuments,
    /// Set when a commit fails: redb then refuses further writes, and so do we.
    poisoned: Mutex<Option<String>>,
    /// Documents an open handle has written to but not yet committed to the file: they
    /// exist, so `list_documents` lists them.
    unwritten: Mutex<BTreeSet<DocumentId>>,
    /// Bytes that dropped handles committed without syncing, by document, so that the
    /// next handle's flush syncs and reports them. Cleared by any synced commit.
    unsynced: Mutex<HashMap<DocumentId, usize>>,
}

impl RedbStore {
    /// Opens the store at `path` with the default [`RedbOptions`], creating it if the
    /// file does not exist.
    ///
    /// Fails with [`Error::Locked`] when the file is open elsewhere,
    /// [`Error::NotAStore`] when it is not a store, [`Error::UnsupportedFormat`] when it is
    /// a store of another layout version, and [`Error::Corrupt`] when verifying it finds
    /// damage.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens the store at `path`, creating it if the file does not exist.
    ///
    /// A new store is created crash-safely: under a temporary name in the same directory,
    /// synced, then moved into place and the directory synced, so a crash never leaves a
    /// half-made file at `path`. A crash can leave the temporary file
    /// (`.<name>.<pid>.<n>.creating`) behind; it may be deleted.
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbStore> {
        let path = path.as_ref();
        if !path.exists() {
            create_file(path, &options)?;
        }
        match has_redb_magic(path) {
            Ok(true) => {}
            Ok(false) => return Err(not_a_store(path)),
            Err(err) => return Err(Error::io("open", path, err)),
        }
        let db = builder(&options).open(path).or_store("open", path)?;
        Self::from_database(db, path.to_path_buf(), options)
    }

    /// Opens the store held by `backend`, initializing it if it is empty: for tests that
    /// inject I/O faults or simulate power loss, and for storage that is not a file.
    ///
    /// `path` is used only in messages. The backend must keep redb's
    /// [`StorageBackend`] contract; locking is whatever the backend implements.
    pub fn open_on_backend(
        backend: impl StorageBackend,
        path: impl Into<PathBuf>,
        options: RedbOptions,
    ) -> Result<RedbStore> {
        let path = path.into();
        let db = builder(&options)
            .create_with_backend(backend)
            .or_store("open", &path)?;
        Self::from_database(db, path, options)
    }

    fn from_database(db: Database, path: PathBuf, options: RedbOptions) -> Result<RedbStore> {
        check_layout(&db, &path)?;
        Ok(RedbStore {
            shared: Arc::new(Shared {
                db,
                path,
                options,
                open: OpenDocuments::new(),
                poisoned: Mutex::new(None),
                unwritten: Mutex::default(),
                unsynced: Mutex::default(),
            }),
        })
    }

    /// The path of the file (or, with [`RedbStore::open_on_backend`], the path given for
    /// messages).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Store for RedbStore {
    type Persister = RedbPersister;

    fn open_document(&self, id: &DocumentId) -> Result<RedbPersister> {
        let claim = self.shared.open.claim(id)?;
        RedbPersister::open(Arc::clone(&self.shared), claim)
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        let shared = &self.shared;
        let txn = shared.begin_read()?;
        let table = shared.read_table(&txn, DOCUMENTS)?;
        let mut ids = lock(&shared.unwritten).clone();
        for entry in table.iter().or_store("read from", &shared.path)? {
            let (id, _) = entry.or_store("read from", &shared.path)?;
            ids.insert(DocumentId::from(id.value()));
        }
        Ok(ids.into_iter().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let _claim = self.shared.open.claim(id)?;
        let shared = &self.shared;
        shared.check_poisoned()?;
        let txn = shared.begin_write()?;
        let removed = (|| {
            let Some(number) = shared.remove_record(&txn, id)? else {
                return Ok(false);
            };
            let path = &shared.path;
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
        })();
        match removed {
            Ok(true) => shared.commit(txn, Durability::Immediate),
            // Nothing stored: nothing to commit.
            Ok(false) => Ok(()),
            Err(err) => Err(shared.poison_with(err)),
        }?;
        lock(&shared.unsynced).remove(id);
        Ok(())
    }
}

impl Shared {
    pub fn check_poisoned(&self) -> Result<()> {
        match &*lock(&self.poisoned) {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned by `err`, and returns it.
    pub fn poison_with(&self, err: Error) -> Error {
        lock(&self.poisoned).get_or_insert_with(|| err.to_string());
        err
    }

    pub fn begin_read(&self) -> Result<ReadTransaction> {
        self.db.begin_read().or_store("read from", &self.path)
    }

    /// Begins a write transaction; fails with `Poisoned` once a commit has failed.
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        self.check_poisoned()?;
        self.db.begin_write().or_store("write to", &self.path)
    }

    /// Commits `txn`, poisoning the store if that fails.
    pub fn commit(&self, mut txn: WriteTransaction, durability: Durability) -> Result<()> {
        let committed = txn
            .set_durability(durability)
            .or_store("commit to", &self.path)
            .and_then(|()| txn.commit().or_store("commit to", &self.path));
        if let Err(err) = committed {
            return Err(self.poison_with(err));
        }
        if matches!(durability, Durability::Immediate) {
            // Everything committed before is durable now.
            lock(&self.unsynced).clear();
        }
        Ok(())
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

    fn remove_record(&self, txn: &WriteTransaction, id: &DocumentId) -> Result<Option<u64>> {
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

    /// Hands bytes committed without syncing from a dropped handle to the next one.
    pub fn carry_unsynced(&self, id: &DocumentId, bytes: usize) {
        *lock(&self.unsynced).entry(id.clone()).or_default() += bytes;
    }

    /// Takes the bytes a dropped handle of `id` left committed without syncing.
    pub fn take_unsynced(&self, id: &DocumentId) -> Option<usize> {
        lock(&self.unsynced).remove(id)
    }
}

fn builder(options: &RedbOptions) -> Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(options.cache_size)
        .set_check_integrity_on_open(options.verify_on_open);
    builder
}

fn not_a_store(path: &Path) -> Error {
    Error::NotAStore {
        what: "a persister-redb store",
        path: path.to_path_buf(),
    }
}

/// Checks our metadata: the format name and a version this build reads. An empty
/// database (just created) gets our tables.
fn check_layout(db: &Database, path: &Path) -> Result<()> {
    let txn = db.begin_read().or_store("read from", path)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let empty = txn
                .list_tables()
                .or_store("read from", path)?
                .next()
                .is_none()
                && txn
                    .list_multimap_tables()
                    .or_store("read from", path)?
                    .next()
                    .is_none();
            drop(txn);
            return if empty {
                initialize(db, path)
            } else {
                Err(not_a_store(path))
            };
        }
        Err(err) => return Err(from_redb(err, "read from", path)),
    };
    let get = |key| -> Result<Option<Vec<u8>>> {
        Ok(meta
            .get(key)
            .or_store("read from", path)?
            .map(|value| value.value().to_vec()))
    };
    if get(META_FORMAT)?.as_deref() != Some(FORMAT_NAME) {
        return Err(not_a_store(path));
    }
    let found = get(META_VERSION)?
        .and_then(|bytes| layout::u32_be(&bytes))
        .ok_or_else(|| corrupt("the format version is missing or malformed", path))?;
    if found != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "persister-redb table layout",
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    for table in [DOCUMENTS, CHANGES, COMPACTED, SYNC_STATES] {
        if let Err(err) = txn.open_table(table) {
            return Err(match err {
                TableError::TableDoesNotExist(name) => {
                    corrupt(format!("table {name} is missing"), path)
                }
                other => from_redb(other, "read from", path),
            });
        }
    }
    Ok(())
}

/// Writes our metadata and creates our tables, durably.
fn initialize(db: &Database, path: &Path) -> Result<()> {
    let txn = db.begin_write().or_store("write to", path)?;
    {
        let mut meta = txn.open_table(META).or_store("write to", path)?;
        for (key, value) in [
            (META_FORMAT, FORMAT_NAME.to_vec()),
            (META_VERSION, FORMAT_VERSION.to_be_bytes().to_vec()),
            (META_NEXT_DOCUMENT, FIRST_DOCUMENT.to_be_bytes().to_vec()),
        ] {
            meta.insert(key, value.as_slice())
                .or_store("write to", path)?;
        }
        for table in [DOCUMENTS, CHANGES, COMPACTED, SYNC_STATES] {
            txn.open_table(table).or_store("write to", path)?;
        }
    }
    txn.commit().or_store("commit to", path)
}

/// Creates a store at `path` crash-safely: a complete file appears there, or none.
fn create_file(path: &Path, options: &RedbOptions) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| Error::InvalidInput {
        what: "store path",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.{}.{}.creating",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let created = create_at(&temp, options).and_then(|()| move_into_place(&temp, path, dir));
    if created.is_err() {
        let _ = fs::remove_file(&temp);
    }
    created
}

fn create_at(temp: &Path, options: &RedbOptions) -> Result<()> {
    let db = builder(options).create(temp).or_store("create", temp)?;
    initialize(&db, temp)?;
    db.close().or_store("close", temp)?;
    File::open(temp)
        .and_then(|file| file.sync_all())
        .map_err(|err| Error::io("sync", temp, err))
}

fn move_into_place(temp: &Path, path: &Path, dir: &Path) -> Result<()> {
    // A hard link never replaces a store another process created meanwhile; where links
    // are not supported, rename.
    match fs::hard_link(temp, path) {
        Ok(()) => fs::remove_file(temp).map_err(|err| Error::io("remove", temp, err))?,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp).map_err(|err| Error::io("remove", temp, err))?;
        }
        Err(_) => fs::rename(temp, path).map_err(|err| Error::io("rename", temp, err))?,
    }
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| Error::io("sync directory", dir, err))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Directories cannot be opened for syncing here; the rename is as durable as the
    // platform makes it.
    Ok(())
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
