//! The file: recognising it, creating it crash-safely, and checking our metadata.

use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use persister_core::{Error, Result};
use redb::backends::FileBackend;
use redb::{
    BackendError, Builder, Database, DatabaseError, ReadOnlyTable, ReadTransaction,
    ReadableDatabase, ReadableTable, StorageBackend, TableDefinition, TableError, TransactionError,
};

use crate::RedbOptions;
use crate::error::{RedbResultExt, corrupt, from_redb};
use crate::layout::{
    self, CHANGES, COMPACTED, DOCUMENTS, FIRST_DOCUMENT, FIRST_WITH_LOG, FORMAT_NAME,
    FORMAT_VERSION, LogEntry, META, META_FORMAT, META_LOG, META_NEXT_DOCUMENT, META_VERSION,
    SYNC_STATES,
};
use crate::log::{KEY_LEN, Keying};
use crate::overlay::Overlay;

/// The first bytes of every redb file (redb's magic number).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1a, 0x0a, 0xa9, 0x0d, 0x0a];

/// Whether `path` is a file that starts with redb's magic number.
///
/// It says nothing of the file's health nor of whether it holds our tables; opening it
/// checks both. Tools use it to pick the backend of a path.
pub fn is_redb_file(path: impl AsRef<Path>) -> bool {
    matches!(has_redb_magic(path.as_ref()), Ok(true))
}

/// Fails unless `path` starts with redb's magic number.
pub(crate) fn check_magic(path: &Path) -> Result<()> {
    match has_redb_magic(path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_a_store(path)),
        Err(err) => Err(Error::io("open", path, err)),
    }
}

fn has_redb_magic(path: &Path) -> io::Result<bool> {
    let mut magic = [0; REDB_MAGIC.len()];
    match File::open(path)?.read_exact(&mut magic) {
        Ok(()) => Ok(magic == REDB_MAGIC),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(err) => Err(err),
    }
}

pub(crate) fn builder(options: &RedbOptions) -> Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(options.cache_size)
        .set_check_integrity_on_open(options.verify_on_open);
    builder
}

/// The page cache a file larger than this is verified through when it is opened with
/// [`RedbOptions::verify_on_open`].
///
/// Verifying reads every page through redb's page cache; in the store's own cache (1 GiB
/// by default) it would keep them all, and the memory of opening would grow with the
/// file (170 MiB for 100,000 small documents). So a larger file is verified through a
/// cache of this size, closed, and opened again with the store's cache without
/// verifying (it was closed cleanly, so that open reads only redb's allocator state). A
/// smaller file is verified in the store's cache, which then holds no more than it.
pub(crate) const VERIFY_CACHE_SIZE: usize = 4 * 1024 * 1024;

/// Opens the database at `path` with `open`, verifying it first through a cache of at
/// most [`VERIFY_CACHE_SIZE`] when `options` ask for verification and the file is larger
/// than that.
pub(crate) fn open_verified<T>(
    options: &RedbOptions,
    path: &Path,
    open: impl Fn(&Builder) -> std::result::Result<T, DatabaseError>,
) -> std::result::Result<T, DatabaseError> {
    // A file whose size cannot be read is taken as a large one; opening it says why.
    let small = fs::metadata(path).is_ok_and(|meta| meta.len() <= VERIFY_CACHE_SIZE as u64);
    if !options.verify_on_open || options.cache_size <= VERIFY_CACHE_SIZE || small {
        return open(&builder(options));
    }
    let mut verify = builder(options);
    verify.set_cache_size(VERIFY_CACHE_SIZE);
    drop(open(&verify)?);
    let mut builder = builder(options);
    builder.set_check_integrity_on_open(false);
    open(&builder)
}

/// Opens the database at `path` for writing, checked as `options` ask.
///
/// A file redb closed cleanly is checked through an [`Overlay`], so that the check's
/// writes (it ends with a commit, and redb marks the file consistent, then writable,
/// each with its syncs) stay in memory, and then opened without the check, which loads
/// the allocator state the check has just verified and makes one sync. Its tables are
/// checked there too ([`check_layout`]), so that a file that is no store (another
/// program's redb file) or a store of a newer layout is refused before a byte of it is
/// written. Any other file (a crash left it, or its last commit was not redb's
/// two-phase one, or it is opened without the check) is checked in place, and the
/// check's repair made durable.
///
/// Between the two opens the file is not locked. So the second open compares the
/// file's first page, as redb reads it under its own lock, with the page the check
/// read: a file another process changed in between is checked again, in place.
pub(crate) fn open_writable(options: &RedbOptions, path: &Path) -> Result<Database> {
    if !options.verify_on_open || !closed_cleanly(path) {
        return open_verified(options, path, |builder| builder.open(path)).or_store("open", path);
    }
    let overlay = Overlay::open(path)?;
    let first_page = overlay
        .original(0, FIRST_PAGE)
        .map_err(|err| Error::io("read", path, err))?;
    let mut verify = builder(options);
    verify.set_cache_size(options.cache_size.min(VERIFY_CACHE_SIZE));
    let checked = verify.create_with_backend(overlay).or_store("open", path)?;
    // A file that is no store, or a store of a layout this build does not know, is
    // refused here, before the open below writes to it.
    check_before_writing(Db::ReadOnly(checked), path)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| Error::io("open", path, err))?;
    let file = FileBackend::new(file);
    let changed = Arc::new(AtomicBool::new(false));
    let backend = Unchanged {
        file,
        first_page,
        changed: Arc::clone(&changed),
        written: AtomicBool::new(false),
    };
    let mut builder = builder(options);
    builder.set_check_integrity_on_open(false);
    match builder.create_with_backend(backend) {
        Ok(db) => Ok(db),
        Err(_) if changed.load(Ordering::Acquire) => {
            open_verified(options, path, |builder| builder.open(path)).or_store("open", path)
        }
        Err(err) => Err(from_redb(err, "open", path)),
    }
}

/// How much of the file's start [`open_writable`] compares: redb's first page, which
/// holds its header (the roots of the last commits and the flags of a clean close).
const FIRST_PAGE: usize = 4096;

/// The file, through redb's file backend, whose reads of the first page fail until redb
/// first writes unless they give the bytes [`open_writable`]'s check read.
#[derive(Debug)]
struct Unchanged {
    file: FileBackend,
    first_page: Vec<u8>,
    /// A read found the first page changed.
    changed: Arc<AtomicBool>,
    /// redb has written: what it reads since may be its own.
    written: AtomicBool,
}

impl StorageBackend for Unchanged {
    fn len(&self) -> std::result::Result<u64, BackendError> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), BackendError> {
        self.file.read(offset, out)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if self.written.load(Ordering::Acquire) || start >= self.first_page.len() {
            return Ok(());
        }
        let end = (start + out.len()).min(self.first_page.len());
        if out[..end - start] != self.first_page[start..end] {
            self.changed.store(true, Ordering::Release);
            return Err(io::Error::other("the file changed between its check and its open").into());
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::result::Result<(), BackendError> {
        self.written.store(true, Ordering::Release);
        self.file.set_len(len)
    }

    fn sync_data(&self) -> std::result::Result<(), BackendError> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), BackendError> {
        self.written.store(true, Ordering::Release);
        self.file.write(offset, data)
    }

    fn close(&self) -> std::result::Result<(), BackendError> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// Whether redb's header says the file was closed cleanly after a two-phase commit: no
/// recovery required, and the allocator state the last commit recorded is one a plain
/// open loads. Its god byte, at offset 9 after the magic number, holds both flags
/// (redb's file format, `docs/design.md`). Any doubt (the file unreadable, short) is
/// "no": the file is then checked in place.
fn closed_cleanly(path: &Path) -> bool {
    const GOD_BYTE: usize = REDB_MAGIC.len();
    const RECOVERY_REQUIRED: u8 = 2;
    const TWO_PHASE_COMMIT: u8 = 4;
    let mut header = [0; GOD_BYTE + 1];
    let read = File::open(path).and_then(|mut file| file.read_exact(&mut header));
    read.is_ok()
        && header[..GOD_BYTE] == REDB_MAGIC
        && header[GOD_BYTE] & RECOVERY_REQUIRED == 0
        && header[GOD_BYTE] & TWO_PHASE_COMMIT != 0
}

pub(crate) fn not_a_store(path: &Path) -> Error {
    Error::NotAStore {
        what: "a persister-redb store",
        path: path.to_path_buf(),
    }
}

/// What [`check_layout`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// The layout version: 1, 2 or 3.
    pub version: u32,
    /// The commit log's entry: `None` in layout 1, which has no log.
    pub log: Option<LogEntry>,
}

/// Checks our metadata: the format name and a version this build reads. An empty
/// database (just created) gets our tables.
pub(crate) fn check_layout(db: &Db, path: &Path) -> Result<Layout> {
    let txn = db.begin_read().or_store("read from", path)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let empty = is_empty(&txn, path)?;
            drop(txn);
            return match db {
                Db::ReadWrite(db) if empty => initialize(db, path).map(|()| Layout {
                    version: FORMAT_VERSION,
                    log: Some(NO_LOG),
                }),
                _ => Err(not_a_store(path)),
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
    if !(1..=FORMAT_VERSION).contains(&found) {
        return Err(Error::UnsupportedFormat {
            what: "persister-redb table layout",
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    for table in [DOCUMENTS, CHANGES, COMPACTED, SYNC_STATES] {
        read_table(&txn, table, path)?;
    }
    if found < FIRST_WITH_LOG {
        return Ok(Layout {
            version: found,
            log: None,
        });
    }
    let log = get(META_LOG)?
        .and_then(|bytes| LogEntry::decode(&bytes, found))
        .ok_or_else(|| corrupt("the commit log's entry is missing or malformed", path))?;
    Ok(Layout {
        version: found,
        log: Some(log),
    })
}

/// Whether the database holds no table at all: a new one, which gets our tables.
fn is_empty(txn: &ReadTransaction, path: &Path) -> Result<bool> {
    Ok(txn
        .list_tables()
        .or_store("read from", path)?
        .next()
        .is_none()
        && txn
            .list_multimap_tables()
            .or_store("read from", path)?
            .next()
            .is_none())
}

/// Refuses what [`check_layout`] refuses, and a store whose commit log's name the file
/// system refuses, on a database whose writes stay in memory (an [`Overlay`]), so that
/// the file is left as it was; an empty database passes, for the writable open to
/// initialize.
fn check_before_writing(db: Db, path: &Path) -> Result<()> {
    match check_layout(&db, path) {
        Err(err @ Error::NotAStore { .. }) => {
            let txn = db.begin_read().or_store("read from", path)?;
            match is_empty(&txn, path)? {
                true => Ok(()),
                false => Err(err),
            }
        }
        Ok(layout) if layout.log.is_some() => crate::log::check_name(path),
        other => other.map(|_| ()),
    }
}

/// Makes a store of layout 2 whose log is closed (`entry`) layout 3, in one durable
/// commit: the version, and the log entry in layout 3's encoding. Nothing else differs
/// between them; the next commit creates a log of format version 2.
pub(crate) fn upgrade_to_keyed(db: &Database, path: &Path, entry: LogEntry) -> Result<()> {
    debug_assert!(!entry.open);
    let txn = db.begin_write().or_store("write to", path)?;
    {
        let mut meta = txn.open_table(META).or_store("write to", path)?;
        meta.insert(META_VERSION, FORMAT_VERSION.to_be_bytes().as_slice())
            .or_store("write to", path)?;
    }
    let entry = LogEntry {
        keying: NO_LOG.keying,
        ..entry
    };
    layout::set_log_state(&txn, entry, path)?;
    txn.commit().or_store("commit to", path)
}

/// The log entry of a new store: epoch 0, closed, no key yet.
const NO_LOG: LogEntry = LogEntry {
    epoch: 0,
    open: false,
    applied: 0,
    keying: Keying::Keyed([0; KEY_LEN]),
};

/// Opens one of our tables in a read transaction; a missing table is damage.
pub(crate) fn read_table(
    txn: &ReadTransaction,
    table: TableDefinition<'static, &'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<ReadOnlyTable<&'static [u8], &'static [u8]>> {
    txn.open_table(table).map_err(|err| match err {
        TableError::TableDoesNotExist(name) => corrupt(format!("table {name} is missing"), path),
        other => from_redb(other, "read from", path),
    })
}

/// The open database: read-write, or read-only: opened on an
/// [`Overlay`](crate::overlay::Overlay), where redb's own writes (its check, a repair, the
/// log's replay) stay in memory and the store refuses every other.
pub(crate) enum Db {
    ReadWrite(Database),
    ReadOnly(Database),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Db::ReadWrite(db) => f.debug_tuple("ReadWrite").field(db).finish(),
            Db::ReadOnly(db) => f.debug_tuple("ReadOnly").field(db).finish(),
        }
    }
}

impl Db {
    pub(crate) fn begin_read(&self) -> std::result::Result<ReadTransaction, TransactionError> {
        self.database().begin_read()
    }

    /// The database, which redb may write to either way.
    pub(crate) fn database(&self) -> &Database {
        match self {
            Db::ReadWrite(db) | Db::ReadOnly(db) => db,
        }
    }
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
            (META_LOG, NO_LOG.encode().to_vec()),
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
pub(crate) fn create(path: &Path, options: &RedbOptions) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| Error::InvalidInput {
        what: "store path",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // A missing directory would otherwise be reported as the temporary file's.
    if !dir.is_dir() {
        return Err(Error::io(
            "create the store in",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "the directory does not exist; create it first",
            ),
        ));
    }
    // The name is cut short, so that a long one (the file system takes up to 255 bytes)
    // does not make the temporary name longer than the file system allows.
    let name = name.to_string_lossy();
    let mut keep = name.len().min(TEMP_NAME_KEEPS);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let temp = dir.join(format!(
        ".{}.{}.{}.creating",
        &name[..keep],
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let created = create_at(&temp, options).and_then(|()| move_into_place(&temp, path, dir));
    if created.is_err() {
        let _ = fs::remove_file(&temp);
    }
    created
}

/// How many bytes of the store's name its temporary name while it is created keeps.
const TEMP_NAME_KEEPS: usize = 100;

fn create_at(temp: &Path, options: &RedbOptions) -> Result<()> {
    let db = builder(options).create(temp).or_store("create", temp)?;
    initialize(&db, temp)?;
    db.close().or_store("close", temp)?;
    persister_core::files::sync_file(temp)
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
    persister_core::files::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use persister_core::{ActorId, Persister, Store};

    use crate::RedbStore;

    /// A store with one flushed change, closed (or, with `crashed`, copied while open,
    /// as a crash leaves it); the path of the file.
    fn store(dir: &Path, crashed: bool) -> std::path::PathBuf {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        let mut doc = store.open_document(&"doc".into()).unwrap();
        doc.insert_changes(vec![(ActorId::new([1]), 1, b"one".to_vec())])
            .unwrap();
        doc.flush().unwrap();
        if crashed {
            let copy = dir.join("crashed.redb");
            fs::copy(&path, &copy).unwrap();
            fs::copy(crate::log::log_path(&path), crate::log::log_path(&copy)).unwrap();
            return copy;
        }
        drop(doc);
        store.close().unwrap();
        path
    }

    #[test]
    fn a_closed_store_is_closed_cleanly_and_a_crashed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(closed_cleanly(&store(&dir.path().join("a"), false)));
        assert!(!closed_cleanly(&store(&dir.path().join("b"), true)));
        assert!(!closed_cleanly(&dir.path().join("missing")));
    }

    /// The open after the check refuses a file whose first page changed since the check
    /// read it, and takes one that did not.
    #[test]
    fn the_open_after_the_check_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path(), false);
        let first_page = Overlay::open(&path)
            .unwrap()
            .original(0, FIRST_PAGE)
            .unwrap();
        let unchanged = |first_page: Vec<u8>, changed: &Arc<AtomicBool>| {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            Unchanged {
                file: FileBackend::new(file),
                first_page,
                changed: Arc::clone(changed),
                written: AtomicBool::new(false),
            }
        };
        let changed = Arc::new(AtomicBool::new(false));
        let db = Database::builder()
            .create_with_backend(unchanged(first_page.clone(), &changed))
            .unwrap();
        assert!(!changed.load(Ordering::Acquire));
        // A commit (another process's, say) rewrites the header.
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap();
        txn.commit().unwrap();
        drop(db);
        let opened = Database::builder().create_with_backend(unchanged(first_page, &changed));
        assert!(opened.is_err());
        assert!(changed.load(Ordering::Acquire));
        // The store itself opens, its first page read afresh.
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store
                .open_document(&"doc".into())
                .unwrap()
                .get_changes()
                .unwrap()
                .len(),
            1
        );
    }
}
