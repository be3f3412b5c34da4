//! The store: one directory of document logs, locked by one process.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persister_core::{DocumentId, Error, OpenDocuments, Recovered, Result, Store, flush_each};

use crate::doc::{Doc, Known, io_error};
use crate::format::{self, ClosedLog, LogEnd, MARKER_LEN, MAX_LOG_HEADER_LEN};
use crate::io::{Fs, FsLock, OsFs};
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
    pub(crate) options: FsOptions,
    /// Opened with [`FsStore::open_read_only`]: nothing is ever written.
    pub(crate) read_only: bool,
    open: OpenDocuments,
    index: Mutex<BTreeMap<DocumentId, Entry>>,
    /// Whether the clean-close record is on disk and still true: no log was written
    /// since the store was opened.
    closed_record: Mutex<bool>,
    /// The poisons of documents whose flush failed, kept until the store is reopened.
    poisons: Mutex<BTreeMap<DocumentId, String>>,
    recovered: Mutex<Vec<Recovered>>,
    lock: Mutex<Option<Box<dyn FsLock>>>,
    closed: AtomicBool,
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
    /// Opening reads the directory, the clean-close record and the headers of logs
    /// named by hash, and removes leftover `.tmp` files; documents are replayed only
    /// when opened. It fails with [`Error::Locked`] if another process (or another open
    /// store in this one) holds the store, [`Error::NotAStore`] if `dir` holds other
    /// files but no store marker, [`Error::UnsupportedFormat`] if the marker has
    /// another version, and [`Error::Corrupt`] if the marker, the clean-close record or
    /// a hash-named log header is damaged, or the logs are not the ones the store was
    /// closed with.
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
        let entries = fs.read_dir(&dir).map_err(io_error("list", &dir))?;
        let has_marker = check_marker(fs.as_ref(), &dir, &entries)?;
        if !has_marker
            && entries
                .iter()
                .any(|name| name != LOCK && *name != names::tmp_name(MARKER))
        {
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
        if !has_marker {
            write_marker(fs.as_ref(), &dir)?;
        }
        Self::finish_open(fs, dir, options, false, Some(lock))
    }

    /// Opens the store on any [`Fs`] for reading only.
    pub(crate) fn open_read_only_on(fs: Arc<dyn Fs>, dir: &Path) -> Result<FsStore> {
        let dir = dir.to_path_buf();
        let entries = fs.read_dir(&dir).map_err(io_error("list", &dir))?;
        if !check_marker(fs.as_ref(), &dir, &entries)? {
            return Err(Error::NotAStore {
                what: "an fs store (it has no STORE marker)",
                path: dir,
            });
        }
        let mut lock = None;
        if entries.iter().any(|name| name == LOCK) {
            let lock_path = dir.join(LOCK);
            match fs.try_lock_shared(&lock_path) {
                Ok(Some(shared)) => lock = Some(shared),
                Ok(None) => return Err(Error::Locked { path: dir }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("lock", &lock_path)(e)),
            }
        }
        Self::finish_open(fs, dir, FsOptions::default(), true, lock)
    }

    fn finish_open(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        options: FsOptions,
        read_only: bool,
        lock: Option<Box<dyn FsLock>>,
    ) -> Result<FsStore> {
        let mut index = scan(fs.as_ref(), &dir, !read_only)?;
        let closed_record = read_closed_record(fs.as_ref(), &dir, &mut index)?;
        Ok(FsStore {
            shared: Arc::new(Shared {
                fs,
                dir,
                options,
                read_only,
                open: OpenDocuments::new(),
                index: Mutex::new(index),
                closed_record: Mutex::new(closed_record),
                poisons: Mutex::default(),
                recovered: Mutex::default(),
                lock: Mutex::new(lock),
                closed: AtomicBool::new(false),
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

    /// Whether the store was opened with [`FsStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// The path of the log of document `id`, if a flush has created it.
    pub fn log_path(&self, id: &DocumentId) -> Option<PathBuf> {
        let index = self.shared.lock_index();
        let entry = index.get(id).filter(|entry| entry.on_disk)?;
        Some(self.shared.dir.join(&entry.name))
    }

    /// Closes the store and reports what dropping it cannot: writes the clean-close
    /// record (unless the store is read-only, or a flush failed since it was opened),
    /// then releases the lock.
    ///
    /// Every handle must be closed or dropped first: with handles still open, nothing
    /// is done and [`Error::InvalidInput`] says so (the store then closes when the last
    /// handle is dropped). Unflushed writes of dropped handles are already discarded.
    /// After a crash, closing first checks every log no handle opened, so that the
    /// record it writes vouches only for whole logs: it fails with the error of a log
    /// that is damaged, and writes no record then.
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

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        Ok(self.shared.lock_index().keys().cloned().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        self.shared.check_writable()?;
        let _claim = self.shared.open.claim(id)?;
        self.shared.remove(id)
    }

    fn recovered(&self) -> Vec<Recovered> {
        self.shared.recovered_list()
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
        let mut written = 0usize;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(bytes) => written = written.saturating_add(bytes),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(written), Err)
    }

    fn close(self) -> Result<()> {
        self.shared.open.check_none_open()?;
        FsStore::close(self)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn lock_index(&self) -> MutexGuard<'_, BTreeMap<DocumentId, Entry>> {
        lock(&self.index)
    }

    /// Document `id`: its log replayed, or a new document.
    fn load(&self, id: &DocumentId) -> Result<Doc> {
        let poison = lock(&self.poisons).get(id).cloned();
        let (name, known_end) = match self.lock_index().get(id) {
            Some(entry) if entry.on_disk => (entry.name.clone(), entry.known_end),
            _ => return Ok(Doc::new(id, poison)),
        };
        let known = Known {
            end: known_end.filter(|_| poison.is_none()),
            poison,
        };
        Doc::load(self, id, name, known)
    }

    /// Fails if the store was opened read-only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidInput {
                what: "write",
                reason: format!(
                    "the store at {} was opened read-only (FsStore::open_read_only), so nothing can be written or removed through it; open it with FsStore::open to write",
                    self.dir.display()
                ),
            });
        }
        Ok(())
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

    /// Records where `id`'s log now ends, durably.
    pub(crate) fn set_known_end(&self, id: &DocumentId, end: LogEnd) {
        if let Some(entry) = self.lock_index().get_mut(id) {
            entry.known_end = Some(end);
        }
    }

    /// Records a torn tail found when opening a document.
    pub(crate) fn note_recovered(&self, recovered: Recovered) {
        lock(&self.recovered).push(recovered);
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
        let name = names::hex_name(id).unwrap_or_else(|| {
            // Long ids: the first hash name no other document uses.
            (0..)
                .map(|n| names::hashed_name(id, n))
                .find(|name| index.values().all(|entry| entry.name != *name))
                .unwrap_or_default()
        });
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
        let mut index = self.lock_index();
        if let Some(poison) = doc.poison() {
            lock(&self.poisons).insert(doc.id().clone(), poison.to_owned());
            if let Some(entry) = index.get_mut(doc.id()) {
                // The failed write may have left bytes after the last commit.
                entry.known_end = None;
            }
        }
        if index.get(doc.id()).is_some_and(|entry| !entry.on_disk) {
            index.remove(doc.id());
        }
    }

    /// Removes `id`'s log, and syncs the directory so the removal is durable.
    fn remove(&self, id: &DocumentId) -> Result<()> {
        let (name, on_disk) = match self.lock_index().get(id) {
            None => return Ok(()),
            Some(entry) => (entry.name.clone(), entry.on_disk),
        };
        if on_disk {
            self.before_write()?;
            let path = self.dir.join(&name);
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path)(e)),
            }
        }
        self.lock_index().remove(id);
        if on_disk {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_error("sync", &self.dir))?;
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
        written.and(released)
    }

    /// Writes the clean-close record naming every log with its end, unless the one
    /// on disk still holds, or a flush failed (its log may end in a torn write, which
    /// the next open must be free to drop).
    fn write_closed_record(&self) -> Result<()> {
        if *lock(&self.closed_record) || !lock(&self.poisons).is_empty() {
            return Ok(());
        }
        // Logs this store has not checked (after a crash) are checked now, their torn
        // tails cut, so that the record vouches only for whole logs.
        let unchecked: Vec<(DocumentId, String)> = self
            .lock_index()
            .iter()
            .filter(|(_, entry)| entry.on_disk && entry.known_end.is_none())
            .map(|(id, entry)| (id.clone(), entry.name.clone()))
            .collect();
        for (id, name) in unchecked {
            Doc::load(self, &id, name, Known::default())?;
        }
        let mut logs = Vec::new();
        for entry in self.lock_index().values().filter(|entry| entry.on_disk) {
            let Some(end) = entry.known_end else {
                return Err(Error::corrupt(
                    "a log was not checked before the store was closed",
                    self.dir.join(&entry.name),
                    None,
                ));
            };
            logs.push(ClosedLog {
                name: entry.name.clone(),
                end,
            });
        }
        write_atomically(
            self.fs.as_ref(),
            &self.dir,
            CLOSED,
            &format::encode_closed(&logs),
        )?;
        *lock(&self.closed_record) = true;
        Ok(())
    }
}

/// Checks the store marker if `entries` has one; returns whether it does.
fn check_marker(fs: &dyn Fs, dir: &Path, entries: &[String]) -> Result<bool> {
    if !entries.iter().any(|name| name == MARKER) {
        return Ok(false);
    }
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
    format::decode_marker(&bytes, &marker)?;
    Ok(true)
}

/// Writes the store marker under a temporary name, syncs it, renames it into place and
/// syncs the directory.
fn write_marker(fs: &dyn Fs, dir: &Path) -> Result<()> {
    write_atomically(fs, dir, MARKER, &format::encode_marker())
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

/// Reads the clean-close record, if there is one, and sets the end of every log from
/// it; fails if the logs are not exactly the ones it names. Returns whether there is
/// one.
fn read_closed_record(
    fs: &dyn Fs,
    dir: &Path,
    index: &mut BTreeMap<DocumentId, Entry>,
) -> Result<bool> {
    let path = dir.join(CLOSED);
    let bytes = match fs.read_prefix(&path, usize::MAX) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let logs = format::decode_closed(&bytes, &path)?;
    let mut by_name: BTreeMap<&str, LogEnd> = BTreeMap::new();
    for log in &logs {
        by_name.insert(&log.name, log.end);
    }
    let mut seen = BTreeSet::new();
    for entry in index.values_mut() {
        let Some(end) = by_name.get(entry.name.as_str()) else {
            return Err(Error::corrupt(
                format!(
                    "the log {} is not among the logs the store was closed cleanly with",
                    entry.name
                ),
                &path,
                None,
            ));
        };
        entry.known_end = Some(*end);
        seen.insert(entry.name.as_str());
    }
    if let Some(missing) = by_name.keys().find(|name| !seen.contains(*name)) {
        return Err(Error::corrupt(
            format!("the store was closed cleanly with the log {missing}, which is missing"),
            &path,
            None,
        ));
    }
    Ok(true)
}

/// Finds every document log in `dir`, and, when `clean_up`, removes temporary files: a
/// file still under its temporary name was never renamed into place, so no flush
/// returned with it.
fn scan(fs: &dyn Fs, dir: &Path, clean_up: bool) -> Result<BTreeMap<DocumentId, Entry>> {
    let mut index = BTreeMap::new();
    for name in fs.read_dir(dir).map_err(io_error("list", dir))? {
        let path = dir.join(&name);
        if name.ends_with(TMP_SUFFIX) {
            if clean_up {
                fs.remove_file(&path).map_err(io_error("remove", &path))?;
            }
            continue;
        }
        let id = match names::parse(&name) {
            None => continue,
            Some(LogName::Hex(id)) => id,
            Some(LogName::Hashed(hash)) => {
                let header = fs
                    .read_prefix(&path, MAX_LOG_HEADER_LEN)
                    .map_err(io_error("read", &path))?;
                let (id, _) = format::decode_log_header(&header, &path)?;
                if id.as_bytes().len() <= MAX_HEX_ID_LEN || names::id_hash(&id) != hash {
                    let what =
                        format!("the log header names document {id}, whose log has another name");
                    return Err(Error::corrupt(what, &path, Some(0)));
                }
                id
            }
        };
        if index.contains_key(&id) {
            return Err(Error::corrupt(
                format!("two logs hold document {id}"),
                &path,
                None,
            ));
        }
        let entry = Entry {
            name,
            on_disk: true,
            known_end: None,
        };
        index.insert(id, entry);
    }
    Ok(index)
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
}
