//! The store: one directory of document logs, locked by one process.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persister_core::{
    DocumentId, Error, OpenDocuments, Recovered, Result, Store, flush_each, sum_flushed,
};

use crate::clean::CleanRecord;
use crate::doc::{Doc, Known, io_error};
use crate::format::{self, ClosedLog, LogEnd, MARKER_LEN, MAX_LOG_HEADER_LEN, STORE_VERSION};
use crate::io::{FileKey, Fs, FsFile, FsLock, OsFs};
use crate::names::{self, CLOSED, LOCK, LogName, MARKER, MAX_HEX_ID_LEN, TMP_SUFFIX};
use crate::{FsOptions, FsPersister};

/// A store of documents in one directory, each document in its own append-only log.
///
/// See the [crate documentation](crate) for the directory layout, the format and what
/// survives a crash. The store holds an exclusive lock on the directory until it and
/// every handle opened from it are dropped (or [closed](FsStore::close)); the drop
/// returns once the lock is released.
pub struct FsStore {
    shared: Arc<Shared>,
}

/// What a store and its handles share.
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    /// Which directory `dir` is, for the logs whose sync failed in this process (see
    /// [`Fs::sync_failures`]): found however the store is reached.
    dir_key: FileKey,
    pub(crate) options: FsOptions,
    /// Opened with [`FsStore::open_read_only`]: nothing is ever written.
    pub(crate) read_only: bool,
    /// The store's format version (its marker's): 3, whose new logs carry a key, or 2.
    /// Set to 3 by a migration once the new marker is durable.
    version: AtomicU32,
    open: OpenDocuments,
    /// The documents opened, created, written or checked since the store was opened.
    /// Others are found on disk when they are asked for, so that opening a store does
    /// not cost memory for each of its documents.
    index: Mutex<BTreeMap<DocumentId, Entry>>,
    /// The logs named by hash (long ids) in the directory when the store was opened,
    /// less those removed since: their ids are in their headers, read when opening.
    long: Mutex<BTreeMap<DocumentId, String>>,
    /// The clean-close record the store was opened with, checked whole then and read
    /// on disk since (see [`CleanRecord`]); it still gives the exact end of every log
    /// not written since, after the first write removed the file.
    record: Option<CleanRecord>,
    /// The logs removed since the store was opened.
    removed: Mutex<BTreeSet<String>>,
    /// Whether the clean-close record is on disk and still true: no log was written
    /// since the store was opened.
    closed_record: Mutex<bool>,
    /// The poisons of documents whose flush failed, kept until the store is reopened.
    poisons: Mutex<BTreeMap<DocumentId, String>>,
    recovered: Mutex<Vec<Recovered>>,
    lock: Mutex<Option<Box<dyn FsLock>>>,
    closed: AtomicBool,
    /// The error the next sync of a log fails with (see [`FsStore::fail_next_flush`]).
    #[cfg(feature = "fault-injection")]
    fail_next_sync: Mutex<Option<std::io::Error>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A drop cannot report an error: `FsStore::close` and `FsPersister::close` do.
        let _ = self.close();
    }
}

/// A document of the store.
#[derive(Debug)]
struct Entry {
    /// Its log's file name.
    name: String,
    /// Whether its log exists (it may exist only in memory until its first flush).
    on_disk: bool,
    /// The log's length and running checksum, when known: from the clean-close record,
    /// or since this store last wrote or checked the log.
    known_end: Option<LogEnd>,
}

impl FsStore {
    /// Opens the store in `dir` with default options, creating the directory (and its
    /// missing parents) and the store if needed.
    ///
    /// Opening reads the directory, checks the clean-close record and reads the
    /// headers of logs named by hash, and removes leftover `.tmp` files; documents are
    /// replayed only when opened. What it keeps in memory does not grow with the number
    /// of documents: the directory is read as it is walked, and the clean-close record
    /// is looked up on disk (see [`Store::list_documents`] for the other checks). It
    /// fails with [`Error::Locked`] if another process (or another open
    /// store in this one) holds the store, [`Error::NotAStore`] if `dir` holds other
    /// files but no store marker, [`Error::UnsupportedFormat`] if the marker is intact
    /// and of another version, and [`Error::Corrupt`] if the marker, the clean-close
    /// record or a hash-named log header is damaged (a clean-close record or log of a
    /// version this build does not read included: see
    /// [Versions](mod@crate::format#versions)), or the logs are not the ones the store
    /// was closed with.
    pub fn open(dir: impl AsRef<Path>) -> Result<FsStore> {
        Self::open_with(dir, FsOptions::default())
    }

    /// Opens the store in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: FsOptions) -> Result<FsStore> {
        Self::open_on(Arc::new(OsFs), dir.as_ref(), options)
    }

    /// Opens the existing store in `dir` for reading only.
    ///
    /// Nothing is created, written, truncated, repaired or removed, so it works on a
    /// read-only mount or directory: no directory, no lock file and no marker are
    /// created, leftover `.tmp` files stay, and a document whose log ends in a torn
    /// tail is read without the tail, which is reported by [`Store::recovered`] (with
    /// `truncated: false`) instead of cut off. Every write, flush of writes and
    /// removal through the store or its handles fails with [`Error::InvalidInput`].
    ///
    /// If the store's `LOCK` file exists, a shared lock is taken on it (opened
    /// read-only): a store open for writing makes this fail with [`Error::Locked`],
    /// and several read-only opens do not block each other. A directory without a
    /// store marker is refused with [`Error::NotAStore`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<FsStore> {
        Self::open_read_only_on(Arc::new(OsFs), dir.as_ref())
    }

    /// Opens the store on any [`Fs`].
    pub(crate) fn open_on(fs: Arc<dyn Fs>, dir: &Path, options: FsOptions) -> Result<FsStore> {
        options.validate()?;
        let dir = dir.to_path_buf();
        fs.create_dir_all(&dir).map_err(io_error("create", &dir))?;
        let (mut marker, mut others) = (false, false);
        each_name(fs.as_ref(), &dir, |name| {
            marker |= name == MARKER;
            others |= name != MARKER && name != LOCK && name != names::tmp_name(MARKER);
            Ok(())
        })?;
        let found = check_marker(fs.as_ref(), &dir, marker)?;
        let has_marker = found.is_some();
        if !has_marker && others {
            // Never turn a directory of other files into a store.
            return Err(Error::NotAStore {
                what: "an fs store (it holds other files and no STORE marker)",
                path: dir,
            });
        }
        let lock_path = dir.join(LOCK);
        let lock = fs
            .try_lock(&lock_path)
            .map_err(io_error("lock", &lock_path))?
            .ok_or_else(|| Error::Locked { path: dir.clone() })?;
        // Read again under the lock: a process of a later build may have migrated the
        // store since, or made it in a directory that was empty, and its logs are read
        // as the marker read now allows (see `format`, Versions).
        let found = if has_marker {
            Some(read_marker(fs.as_ref(), &dir)?)
        } else {
            let mut now = false;
            each_name(fs.as_ref(), &dir, |name| {
                now |= name == MARKER;
                Ok(())
            })?;
            check_marker(fs.as_ref(), &dir, now)?
        };
        if found.is_none() {
            write_marker(fs.as_ref(), &dir, STORE_VERSION)?;
            // The directory may exist without its own entry being durable (made by the
            // application, or by an open that crashed before syncing its parent).
            if let Some(parent) = dir.parent() {
                let parent = match parent.as_os_str().is_empty() {
                    true => Path::new("."),
                    false => parent,
                };
                fs.sync_dir(parent).map_err(io_error("sync", parent))?;
            }
        }
        // A store of an older version asked to migrate gets the new marker once it has
        // opened, and is of the new version, whose new logs carry a key, only once the
        // marker is durable.
        let version = found.unwrap_or(STORE_VERSION);
        let migrate = version < STORE_VERSION && options.migrate_format;
        let store = Self::finish_open(Arc::clone(&fs), dir, options, version, false, Some(lock))?;
        if migrate {
            write_marker(fs.as_ref(), &store.shared.dir, STORE_VERSION)?;
            store.shared.version.store(STORE_VERSION, Ordering::Release);
        }
        Ok(store)
    }

    /// Opens the store on any [`Fs`] for reading only.
    pub(crate) fn open_read_only_on(fs: Arc<dyn Fs>, dir: &Path) -> Result<FsStore> {
        let dir = dir.to_path_buf();
        let (mut marker, mut lock_file) = (false, false);
        each_name(fs.as_ref(), &dir, |name| {
            marker |= name == MARKER;
            lock_file |= name == LOCK;
            Ok(())
        })?;
        if !marker {
            return Err(Error::NotAStore {
                what: "an fs store (it has no STORE marker)",
                path: dir,
            });
        }
        // Checked before the lock, as `open_on` does, and read again once locked.
        read_marker(fs.as_ref(), &dir)?;
        let mut lock = None;
        if lock_file {
            let lock_path = dir.join(LOCK);
            match fs.try_lock_shared(&lock_path) {
                Ok(Some(shared)) => lock = Some(shared),
                Ok(None) => return Err(Error::Locked { path: dir }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("lock", &lock_path)(e)),
            }
        }
        let version = read_marker(fs.as_ref(), &dir)?;
        Self::finish_open(fs, dir, FsOptions::default(), version, true, lock)
    }

    fn finish_open(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        options: FsOptions,
        version: u32,
        read_only: bool,
        lock: Option<Box<dyn FsLock>>,
    ) -> Result<FsStore> {
        let found = scan(fs.as_ref(), &dir, !read_only)?;
        let record = check_closed_record(fs.as_ref(), &dir, &found)?;
        let dir_key = fs.dir_key(&dir).map_err(io_error("look up", &dir))?;
        Ok(FsStore {
            shared: Arc::new(Shared {
                fs,
                dir,
                dir_key,
                options,
                read_only,
                version: AtomicU32::new(version),
                open: OpenDocuments::new(),
                index: Mutex::default(),
                long: Mutex::new(found.long),
                closed_record: Mutex::new(record.is_some()),
                record,
                removed: Mutex::default(),
                poisons: Mutex::default(),
                recovered: Mutex::default(),
                lock: Mutex::new(lock),
                closed: AtomicBool::new(false),
                #[cfg(feature = "fault-injection")]
                fail_next_sync: Mutex::default(),
            }),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &FsOptions {
        &self.shared.options
    }

    /// Makes the next flush of any handle of this store fail, as a failed `fsync`
    /// would, so that tests can check what a program does then: the log's new records
    /// are written but not synced, and the handle is poisoned. The pages stay dirty, as
    /// a real failure may not leave them, so the log is not noted for a rewrite (see
    /// [After a failed sync](crate#after-a-failed-sync)).
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_flush(&self) {
        self.fail_next_flush_with(std::io::Error::other("injected fsync failure"));
    }

    /// Makes the next flush of any handle of this store fail with `error`, as the disk
    /// would report it: `ENOSPC` (`std::io::Error::from_raw_os_error(28)`) for a full
    /// disk, `EROFS` (30) for a file system remounted read-only.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_flush_with(&self, error: std::io::Error) {
        *lock(&self.shared.fail_next_sync) = Some(error);
    }

    /// Whether the store was opened with [`FsStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// The path of the log of document `id`, if a flush has created it.
    pub fn log_path(&self, id: &DocumentId) -> Option<PathBuf> {
        let shared = &self.shared;
        if let Some(entry) = shared.lock_index().get(id) {
            return entry.on_disk.then(|| shared.dir.join(&entry.name));
        }
        let path = shared.dir.join(shared.name_on_disk(id)?);
        shared.fs.read_prefix(&path, 0).ok().map(|_| path)
    }

    /// Closes the store and reports what dropping it cannot: writes the clean-close
    /// record (unless the store is read-only, a flush failed since it was opened, a
    /// log's sync failed in this process and it was not rewritten since (see
    /// [After a failed sync](crate#after-a-failed-sync)), or a torn tail is left for
    /// the next open: see below), then releases the lock. A
    /// flush that failed since the store was opened (a poisoned document) is reported
    /// as [`Error::Poisoned`] once the lock is released.
    ///
    /// Every handle must be closed or dropped first: with handles still open, nothing
    /// is done and [`Error::InvalidInput`] says so (the store then closes when the last
    /// handle is dropped). Unflushed writes of dropped handles are already discarded.
    /// After a crash, closing first checks every log no handle opened, so that the
    /// record it writes vouches only for whole logs: it fails with the error of a log
    /// that is damaged, and writes no record then. A log that ends in a torn tail is
    /// left as it is and no record is written, so that the next open cuts the tail and
    /// reports it through [`Store::recovered`], as after any crash.
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared.close(),
            Err(shared) => Err(Error::InvalidInput {
                what: "store close",
                reason: format!(
                    "{} document handles of the store at {} are still open: close or drop them first (the store closes when the last one is dropped)",
                    Arc::strong_count(&shared) - 1,
                    shared.dir.display()
                ),
            }),
        }
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("path", &self.shared.dir)
            .field("options", &self.shared.options)
            .field("read_only", &self.shared.read_only)
            .finish_non_exhaustive()
    }
}

/// The most threads [`FsStore`]'s `flush_documents` flushes from at once.
const FLUSH_THREADS: usize = 16;

impl Store for FsStore {
    type Persister = FsPersister;

    fn open_document(&self, id: &DocumentId) -> Result<FsPersister> {
        let claim = self.shared.open.claim(id)?;
        let doc = self.shared.load(id)?;
        Ok(FsPersister::new(Arc::clone(&self.shared), doc, claim))
    }

    /// Reads the directory, and the header of every log named by hash. When the store
    /// was opened with a clean-close record, every log not written since must be one
    /// it names, and every log it names must be there (or removed since): otherwise
    /// this fails with [`Error::Corrupt`] naming the log.
    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        self.shared.list()
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        self.shared.check_writable()?;
        let _claim = self.shared.open.claim(id)?;
        self.shared.remove(id)
    }

    fn recovered(&self) -> Vec<Recovered> {
        self.shared.recovered_list()
    }

    /// The store format version of the store's marker: 2 or 3 (see
    /// [`FsOptions::migrate_format`]).
    fn format_version(&self) -> Option<u32> {
        Some(self.shared.version.load(Ordering::Acquire))
    }

    /// Flushes the handles from up to 16 threads at once: each document
    /// has its own log and needs its own sync, and syncs of different files issued at
    /// the same time are merged by the file system's journal, so they cost far less
    /// together than one after another. Every handle is flushed even when one fails;
    /// the first error is returned.
    fn flush_documents(&self, handles: &mut [&mut FsPersister]) -> Result<usize> {
        if handles.len() < 2 {
            return flush_each(handles);
        }
        let per_thread = handles.len().div_ceil(FLUSH_THREADS);
        let results: Vec<Result<usize>> = std::thread::scope(|scope| {
            let mut running = Vec::new();
            let mut results = Vec::new();
            for chunk in handles.chunks_mut(per_thread) {
                let (tx, rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("persister-fs-flush".into())
                    .spawn_scoped(scope, move || {
                        let _ = tx.send(flush_each(chunk));
                    });
                match spawned {
                    Ok(_) => running.push(rx),
                    // No thread to be had: the chunk went with the closure, so report
                    // it; nothing of it was flushed.
                    Err(err) => results.push(Err(Error::io(
                        "start a flush thread for",
                        &self.shared.dir,
                        err,
                    ))),
                }
            }
            for rx in running {
                results.push(rx.recv().unwrap_or_else(|_| {
                    Err(Error::InvalidInput {
                        what: "flush_documents",
                        reason: "a flush thread panicked".into(),
                    })
                }));
            }
            results
        });
        sum_flushed(results)
    }

    fn close(self) -> Result<()> {
        self.shared.open.check_none_open()?;
        FsStore::close(self)
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        Store::close(*self)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Whether the store's new logs carry a key (log format version 3): a store of
    /// format version 3.
    pub(crate) fn keyed_logs(&self) -> bool {
        self.version.load(Ordering::Acquire) >= STORE_VERSION
    }

    fn lock_index(&self) -> MutexGuard<'_, BTreeMap<DocumentId, Entry>> {
        lock(&self.index)
    }

    /// The name of `id`'s log if it is on disk and not in the index: spelled out, or
    /// the hash name it had when the store was opened.
    fn name_on_disk(&self, id: &DocumentId) -> Option<String> {
        names::hex_name(id).or_else(|| lock(&self.long).get(id).cloned())
    }

    /// The end the clean-close record the store was opened with gives the log `name`:
    /// `None` without a record (or for a log removed since), `Some(None)` when the
    /// record does not name it.
    fn recorded_end(&self, name: &str) -> Result<Option<Option<LogEnd>>> {
        let Some(record) = &self.record else {
            return Ok(None);
        };
        if lock(&self.removed).contains(name) {
            // Removed since: the record no longer applies to this name.
            return Ok(None);
        }
        record.lookup(name).map(Some)
    }

    /// Document `id`: its log replayed, or a new document.
    fn load(&self, id: &DocumentId) -> Result<Doc> {
        let poison = lock(&self.poisons).get(id).cloned();
        let known = self
            .lock_index()
            .get(id)
            .map(|entry| (entry.name.clone(), entry.on_disk, entry.known_end));
        let (name, known_end) = match known {
            Some((name, true, known_end)) => (name, known_end),
            Some((_, false, _)) => return Ok(Doc::new(id, poison)),
            None => {
                // Not touched since the store was opened: looked for on disk.
                let Some(name) = self.name_on_disk(id) else {
                    return Ok(Doc::new(id, poison));
                };
                let recorded = self.recorded_end(&name)?;
                let path = self.dir.join(&name);
                let writable = !self.read_only && poison.is_none();
                let file = match self.fs.open(&path, writable) {
                    Ok(file) => file,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        if let Some(Some(_)) = recorded {
                            return Err(missing_log(&self.dir, &name));
                        }
                        return Ok(Doc::new(id, poison));
                    }
                    Err(e) => return Err(io_error("open", &path)(e)),
                };
                if let Some(None) = recorded {
                    return Err(unrecorded_log(&self.dir, &name));
                }
                let known_end = recorded.flatten();
                self.lock_index().entry(id.clone()).or_insert(Entry {
                    name: name.clone(),
                    on_disk: true,
                    known_end,
                });
                let known = Known {
                    end: known_end.filter(|_| poison.is_none()),
                    poison,
                };
                return Doc::load_file(self, id, name, file, known);
            }
        };
        let known = Known {
            end: known_end.filter(|_| poison.is_none()),
            poison,
        };
        Doc::load(self, id, name, known)
    }

    /// Every document: the logs in the directory, and the documents whose first flush
    /// is still to come; checked against the clean-close record the store was opened
    /// with, if any.
    fn list(&self) -> Result<Vec<DocumentId>> {
        let mut ids = Vec::new();
        let mut hashed = Vec::new();
        each_name(self.fs.as_ref(), &self.dir, |name| {
            match names::parse(&name) {
                None => {}
                Some(names::LogName::Hex(id)) => ids.push(id),
                Some(names::LogName::Hashed(hash)) => {
                    let id = hashed_log_id(self.fs.as_ref(), &self.dir.join(&name), hash)?;
                    ids.push(id.clone());
                    hashed.push((name, id));
                }
            }
            Ok(())
        })?;
        hashed.sort_by(|a, b| a.1.cmp(&b.1));
        if let Some(pair) = hashed.windows(2).find(|pair| pair[0].1 == pair[1].1) {
            return Err(Error::corrupt(
                format!("two logs hold document {}", pair[1].1),
                self.dir.join(&pair[1].0),
                None,
            ));
        }
        ids.sort_unstable();
        if let Some(record) = &self.record {
            // Taken after the walk: a log written or removed meanwhile is in them.
            let touched: BTreeSet<String> =
                self.lock_index().values().map(|e| e.name.clone()).collect();
            let removed = lock(&self.removed).clone();
            let untouched = |name: &String| !touched.contains(name) && !removed.contains(name);
            // Names sort as their ids for spelled-out names, and after all of them
            // for hash names.
            let mut hashed_names: Vec<String> = hashed.into_iter().map(|(name, _)| name).collect();
            hashed_names.sort_unstable();
            let mut on_disk = ids
                .iter()
                .filter_map(names::hex_name)
                .chain(hashed_names)
                .filter(untouched)
                .peekable();
            record.for_each(|name, _| {
                let name = name.to_owned();
                if !untouched(&name) {
                    return Ok(());
                }
                if let Some(found) = on_disk.next_if(|found| *found < name) {
                    return Err(unrecorded_log(&self.dir, &found));
                }
                match on_disk.next_if(|found| *found == name) {
                    Some(_) => Ok(()),
                    None => Err(missing_log(&self.dir, &name)),
                }
            })?;
            if let Some(found) = on_disk.next() {
                return Err(unrecorded_log(&self.dir, &found));
            }
        }
        let index = self.lock_index();
        ids.extend(
            index
                .iter()
                .filter(|(_, entry)| !entry.on_disk)
                .map(|(id, _)| id.clone()),
        );
        drop(index);
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Fails if the store was opened read-only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        match self.read_only {
            true => Err(Error::read_only(&self.dir, "FsStore::open")),
            false => Ok(()),
        }
    }

    /// Called before anything is written to a log: removes the clean-close record (and
    /// syncs the removal), since the logs will no longer be what it says.
    pub(crate) fn before_write(&self) -> Result<()> {
        self.check_writable()?;
        let mut on_disk = lock(&self.closed_record);
        if *on_disk {
            let path = self.dir.join(CLOSED);
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path)(e)),
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_error("sync", &self.dir))?;
            *on_disk = false;
        }
        Ok(())
    }

    /// Makes what was written to the log `file` at `path` durable (`fdatasync`). If
    /// that fails, the log (unless it is a new one still under its temporary name,
    /// which is never renamed into place then) is noted as failed to sync.
    pub(crate) fn sync_log(&self, file: &mut dyn FsFile, path: &Path) -> Result<()> {
        // An injected failure does not drop the pages, as a real one may: nothing to
        // note.
        #[cfg(feature = "fault-injection")]
        if let Some(err) = lock(&self.fail_next_sync).take() {
            return Err(Error::io("sync", path, err));
        }
        file.sync_data().map_err(|e| {
            let name = path.file_name().and_then(|name| name.to_str());
            if let Some(name) = name.filter(|name| !name.ends_with(TMP_SUFFIX)) {
                self.note_sync_failure(name);
            }
            io_error("sync", path)(e)
        })
    }

    /// Notes that a sync of the log `name` failed: until it is rewritten whole, what
    /// reading it gives may not be what the disk holds, even after this store is
    /// closed (see [`Fs::sync_failures`]).
    pub(crate) fn note_sync_failure(&self, name: &str) {
        self.fs.sync_failures().note(&self.dir_key, name);
    }

    /// Whether a sync of the log `name` failed in this process, and it was not
    /// rewritten since.
    pub(crate) fn sync_failed(&self, name: &str) -> bool {
        self.fs.sync_failures().contains(&self.dir_key, name)
    }

    /// Forgets a failed sync of the log `name`: it was rewritten whole, or removed.
    pub(crate) fn forget_sync_failure(&self, name: &str) {
        self.fs.sync_failures().forget(&self.dir_key, name);
    }

    /// Records where `id`'s log now ends, durably.
    pub(crate) fn set_known_end(&self, id: &DocumentId, end: LogEnd) {
        if let Some(entry) = self.lock_index().get_mut(id) {
            entry.known_end = Some(end);
        }
    }

    /// Records a torn tail found when opening a document. A tail left in place (on a
    /// read-only store, or a poisoned document) is found again by every later handle of
    /// the document: it is the same tail, reported once.
    pub(crate) fn note_recovered(&self, recovered: Recovered) {
        let mut list = lock(&self.recovered);
        if !list.contains(&recovered) {
            list.push(recovered);
        }
    }

    fn recovered_list(&self) -> Vec<Recovered> {
        lock(&self.recovered).clone()
    }

    /// Makes `id` a document of the store and returns its log's file name.
    pub(crate) fn register(&self, id: &DocumentId) -> String {
        let mut index = self.lock_index();
        if let Some(entry) = index.get(id) {
            return entry.name.clone();
        }
        let long = lock(&self.long);
        let name = names::hex_name(id)
            .or_else(|| long.get(id).cloned())
            .unwrap_or_else(|| {
                // Long ids: the first hash name no other document uses.
                (0..)
                    .map(|n| names::hashed_name(id, n))
                    .find(|name| {
                        index.values().all(|entry| entry.name != *name)
                            && long.values().all(|other| other != name)
                    })
                    .unwrap_or_default()
            });
        drop(long);
        let entry = Entry {
            name: name.clone(),
            on_disk: false,
            known_end: None,
        };
        index.insert(id.clone(), entry);
        name
    }

    /// Records that `id`'s log now exists.
    pub(crate) fn mark_on_disk(&self, id: &DocumentId) {
        if let Some(entry) = self.lock_index().get_mut(id) {
            entry.on_disk = true;
        }
    }

    /// Takes back the document of a dropped handle: its unflushed writes are discarded
    /// (the next handle replays the log), a document that has no log yet stops
    /// existing, and a poison stays with the document until the store is reopened.
    pub(crate) fn release(&self, doc: &Doc) {
        if let Some(poison) = doc.poison() {
            self.poison(doc.id(), poison);
        }
        let mut index = self.lock_index();
        if index.get(doc.id()).is_some_and(|entry| !entry.on_disk) {
            index.remove(doc.id());
        }
    }

    /// Poisons document `id` until the store is reopened, after a write or sync of its
    /// log failed (`reason`): its later handles refuse writes, and the store writes no
    /// clean-close record, since the log may not be on disk as it reads.
    pub(crate) fn poison(&self, id: &DocumentId, reason: &str) {
        let mut index = self.lock_index();
        lock(&self.poisons).insert(id.clone(), reason.to_owned());
        if let Some(entry) = index.get_mut(id) {
            // The failed write may have left bytes after the last commit.
            entry.known_end = None;
        }
    }

    /// Removes `id`'s log, and syncs the directory so the removal is durable.
    fn remove(&self, id: &DocumentId) -> Result<()> {
        let known = self
            .lock_index()
            .get(id)
            .map(|entry| (entry.name.clone(), entry.on_disk));
        let (name, on_disk) = match known {
            Some(known) => known,
            None => {
                let Some(name) = self.name_on_disk(id) else {
                    return Ok(());
                };
                match self.fs.read_prefix(&self.dir.join(&name), 0) {
                    Ok(_) => (name, true),
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(io_error("read", &self.dir.join(&name))(e)),
                }
            }
        };
        if on_disk {
            self.before_write()?;
            // Noted before the log goes, so that a listing never misses it unexplained.
            let noted = lock(&self.removed).insert(name.clone());
            let path = self.dir.join(&name);
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    // The log is still there: the clean-close record still vouches for it.
                    if noted {
                        lock(&self.removed).remove(&name);
                    }
                    return Err(io_error("remove", &path)(e));
                }
            }
        }
        self.lock_index().remove(id);
        lock(&self.long).remove(id);
        if on_disk {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_error("sync", &self.dir))?;
            // Gone for good: a new log of that name starts with nothing unsynced.
            self.forget_sync_failure(&name);
        }
        Ok(())
    }

    /// Closes the store once: writes the clean-close record where it applies, then
    /// releases the lock. Runs when no handle is left.
    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let written = if self.read_only {
            Ok(())
        } else {
            self.write_closed_record()
        };
        let released = match lock(&self.lock).take() {
            Some(held) => held
                .release()
                .map_err(io_error("unlock", &self.dir.join(LOCK))),
            None => Ok(()),
        };
        // A checked close must not call a store closed cleanly whose flush failed.
        let failed = match lock(&self.poisons).iter().next() {
            Some((id, reason)) => Err(Error::Poisoned {
                reason: format!(
                    "a flush of document {id} failed ({reason}), so the store at {} was closed without its clean-close record",
                    self.dir.display()
                ),
            }),
            None => Ok(()),
        };
        written.and(released).and(failed)
    }

    /// Writes the clean-close record naming every log with its end, unless the one
    /// on disk still holds, a flush failed (its log may end in a torn write, which
    /// the next open must be free to drop), a log's sync failed in this process and it
    /// was not rewritten since (the disk may lack bytes it reads), or a log no handle
    /// opened since a crash ends in a torn tail (which the next open cuts and reports).
    fn write_closed_record(&self) -> Result<()> {
        if *lock(&self.closed_record)
            || !lock(&self.poisons).is_empty()
            || self.fs.sync_failures().any_in(&self.dir_key)
        {
            return Ok(());
        }
        // Every log in the directory, with the end this store knows of it: from its
        // index, or from the record it was opened with for the logs not touched since.
        let mut on_disk: Vec<(String, Option<DocumentId>)> = Vec::new();
        each_name(self.fs.as_ref(), &self.dir, |name| {
            match names::parse(&name) {
                None => {}
                Some(names::LogName::Hex(id)) => on_disk.push((name, Some(id))),
                Some(names::LogName::Hashed(_)) => on_disk.push((name, None)),
            }
            Ok(())
        })?;
        on_disk.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let touched: BTreeMap<String, Option<LogEnd>> = self
            .lock_index()
            .values()
            .filter(|entry| entry.on_disk)
            .map(|entry| (entry.name.clone(), entry.known_end))
            .collect();
        let removed = lock(&self.removed).clone();
        let mut recorded: BTreeMap<String, LogEnd> = BTreeMap::new();
        if let Some(record) = &self.record {
            let on_disk_names: BTreeSet<&str> = on_disk.iter().map(|(n, _)| n.as_str()).collect();
            record.for_each(|name, end| {
                if touched.contains_key(name) || removed.contains(name) {
                    return Ok(());
                }
                if !on_disk_names.contains(name) {
                    return Err(missing_log(&self.dir, name));
                }
                recorded.insert(name.to_owned(), end);
                Ok(())
            })?;
        }
        let mut logs = Vec::with_capacity(on_disk.len());
        for (name, id) in on_disk {
            let end = match touched.get(&name) {
                Some(end) => *end,
                None if self.record.is_some() => match recorded.get(&name) {
                    Some(end) => Some(*end),
                    None => return Err(unrecorded_log(&self.dir, &name)),
                },
                None => None,
            };
            let end = match end {
                Some(end) => end,
                None => {
                    // Not checked by this store (after a crash): checked now, so that
                    // the record vouches only for whole logs. A torn tail is left for
                    // the next open to cut and report: cut here, it would be dropped
                    // unreported, and the record would hide that it ever was.
                    let path = self.dir.join(&name);
                    let id = match id {
                        Some(id) => id,
                        None => {
                            let hash = match names::parse(&name) {
                                Some(names::LogName::Hashed(hash)) => hash,
                                _ => 0,
                            };
                            hashed_log_id(self.fs.as_ref(), &path, hash)?
                        }
                    };
                    match Doc::whole_end(self, &id, &name)? {
                        Some(end) => end,
                        None => return Ok(()),
                    }
                }
            };
            logs.push(ClosedLog { name, end });
        }
        write_atomically(
            self.fs.as_ref(),
            &self.dir,
            CLOSED,
            &format::encode_closed(self.version.load(Ordering::Acquire), &logs),
        )?;
        *lock(&self.closed_record) = true;
        Ok(())
    }
}

/// Checks the store marker if the directory has one; gives the store's format version
/// if it does.
fn check_marker(fs: &dyn Fs, dir: &Path, has_marker: bool) -> Result<Option<u32>> {
    if !has_marker {
        return Ok(None);
    }
    read_marker(fs, dir).map(Some)
}

/// Reads and checks the store marker of `dir`; gives the store's format version.
fn read_marker(fs: &dyn Fs, dir: &Path) -> Result<u32> {
    let marker = dir.join(MARKER);
    let bytes = fs
        .read_prefix(&marker, MARKER_LEN + 1)
        .map_err(io_error("read", &marker))?;
    if bytes.len() > MARKER_LEN && format::has_marker_magic(&bytes) {
        return Err(Error::corrupt(
            "the store marker is longer than its 16 bytes",
            &marker,
            Some(MARKER_LEN as u64),
        ));
    }
    format::decode_marker(&bytes, &marker)
}

/// Writes the marker of a store of format `version` under a temporary name, syncs it,
/// renames it into place and syncs the directory: a crash leaves the old marker or the
/// new one.
pub(crate) fn write_marker(fs: &dyn Fs, dir: &Path, version: u32) -> Result<()> {
    write_atomically(fs, dir, MARKER, &format::encode_marker(version))
}

/// Writes `bytes` as the file `name` of `dir`: under a temporary name, synced, renamed
/// into place, the directory synced.
fn write_atomically(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(names::tmp_name(name));
    let mut file = fs.create(&tmp).map_err(io_error("create", &tmp))?;
    file.append(bytes).map_err(io_error("write", &tmp))?;
    file.sync_data().map_err(io_error("sync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &dir.join(name))
        .map_err(io_error("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_error("sync", dir))
}

/// Calls `f` with every name in `dir`, walking the directory without holding it.
fn each_name(fs: &dyn Fs, dir: &Path, mut f: impl FnMut(String) -> Result<()>) -> Result<()> {
    let mut failed = None;
    let walked = fs.for_each_name(dir, &mut |name| {
        f(name).map_err(|e| {
            failed = Some(e);
            io::Error::other("stopped")
        })
    });
    match failed {
        Some(e) => Err(e),
        None => walked.map_err(io_error("list", dir)),
    }
}

/// The error for a log the clean-close record does not name.
fn unrecorded_log(dir: &Path, name: &str) -> Error {
    format::closed_corrupt(
        &format!("the log {name} is not among the logs the store was closed cleanly with"),
        &dir.join(CLOSED),
        0,
    )
}

/// The error for a log the clean-close record names that is not there.
fn missing_log(dir: &Path, name: &str) -> Error {
    format::closed_corrupt(
        &format!("the store was closed cleanly with the log {name}, which is missing"),
        &dir.join(CLOSED),
        0,
    )
}

/// The id in the header of the log at `path`, named by `hash`, checked against it.
fn hashed_log_id(fs: &dyn Fs, path: &Path, hash: u64) -> Result<DocumentId> {
    let header = fs
        .read_prefix(path, MAX_LOG_HEADER_LEN)
        .map_err(io_error("read", path))?;
    let (id, _, _) = format::decode_log_header(&header, path)?;
    if id.as_bytes().len() <= MAX_HEX_ID_LEN || names::id_hash(&id) != hash {
        let what = format!("the log header names document {id}, whose log has another name");
        return Err(Error::corrupt(what, path, Some(0)));
    }
    Ok(id)
}

/// What opening finds in the directory.
struct Found {
    /// Document logs.
    logs: usize,
    /// The logs named by hash, by the id in their header.
    long: BTreeMap<DocumentId, String>,
}

/// Walks the directory: counts the document logs, reads the header of each log named
/// by hash, and, when `clean_up`, removes temporary files: a file still under its
/// temporary name was never renamed into place, so no flush returned with it.
fn scan(fs: &dyn Fs, dir: &Path, clean_up: bool) -> Result<Found> {
    let mut found = Found {
        logs: 0,
        long: BTreeMap::new(),
    };
    let mut temporary = Vec::new();
    each_name(fs, dir, |name| {
        if name.ends_with(TMP_SUFFIX) {
            temporary.push(name);
            return Ok(());
        }
        let hash = match names::parse(&name) {
            None => return Ok(()),
            Some(LogName::Hex(_)) => {
                found.logs += 1;
                return Ok(());
            }
            Some(LogName::Hashed(hash)) => hash,
        };
        let path = dir.join(&name);
        let id = hashed_log_id(fs, &path, hash)?;
        if found.long.contains_key(&id) {
            return Err(Error::corrupt(
                format!("two logs hold document {id}"),
                &path,
                None,
            ));
        }
        found.long.insert(id, name);
        found.logs += 1;
        Ok(())
    })?;
    if clean_up {
        for name in temporary {
            let path = dir.join(&name);
            fs.remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(found)
}

/// Opens and checks the clean-close record, if there is one: it must name as many
/// logs as the directory holds, the logs named by hash among them. Which log is
/// missing or extra otherwise is found when listing or opening documents.
fn check_closed_record(fs: &dyn Fs, dir: &Path, found: &Found) -> Result<Option<CleanRecord>> {
    let path = dir.join(CLOSED);
    let Some(record) = CleanRecord::open(fs, &path)? else {
        return Ok(None);
    };
    for name in found.long.values() {
        if record.lookup(name)?.is_none() {
            return Err(unrecorded_log(dir, name));
        }
    }
    if record.count() != found.logs {
        return Err(format::closed_corrupt(
            &format!(
                "the store was closed cleanly with {} logs, and the directory holds {}",
                record.count(),
                found.logs
            ),
            &path,
            0,
        ));
    }
    Ok(Some(record))
}

/// Whether `path` is the directory of an fs store (of any format version): whether it
/// holds a `STORE` marker file starting with the store magic.
pub fn is_fs_store(path: impl AsRef<Path>) -> bool {
    let marker = path.as_ref().join(MARKER);
    OsFs.read_prefix(&marker, MARKER_LEN)
        .is_ok_and(|bytes| format::has_marker_magic(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFs;

    #[test]
    fn long_ids_whose_hash_name_is_taken_get_the_next_counter() -> Result<()> {
        let store = FsStore::open_on(
            Arc::new(SimFs::new()),
            Path::new("/store"),
            FsOptions::default(),
        )?;
        let id = DocumentId::from(vec![1; 500]);
        // Another id holding the first name of `id`, as an id with the same hash would.
        let squatter = Entry {
            name: names::hashed_name(&id, 0),
            on_disk: true,
            known_end: None,
        };
        let other = DocumentId::from(vec![2; 500]);
        store.shared.lock_index().insert(other, squatter);
        assert_eq!(store.shared.register(&id), names::hashed_name(&id, 1));
        // Registering again gives the same name.
        assert_eq!(store.shared.register(&id), names::hashed_name(&id, 1));
        let short = DocumentId::from("short");
        assert_eq!(store.shared.register(&short), "d73686f7274.log");
        Ok(())
    }

    /// A store made in a directory that exists already (made by the application, or by
    /// an open that crashed before it synced the directory's parent) syncs the parent:
    /// until then the directory's own entry, and every log flushed in it, can vanish
    /// with a power loss.
    #[test]
    fn a_new_store_in_an_existing_directory_syncs_its_parent() -> Result<()> {
        let fs = SimFs::new();
        let dir = Path::new("/disk/store");
        fs.create_dir_all(dir).map_err(io_error("create", dir))?;
        FsStore::open_on(Arc::new(fs.clone()), dir, FsOptions::default())?.close()?;
        let synced = fs.synced_dirs();
        assert!(synced.iter().any(|d| d == Path::new("/disk")), "{synced:?}");
        Ok(())
    }
}
