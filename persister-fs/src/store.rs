//! The store: one directory of document logs, locked by one process.

use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persister_core::{DocumentId, Error, OpenDocuments, Result, Store};

use crate::doc::{Doc, io_error};
use crate::format::{self, MARKER_LEN, MAX_LOG_HEADER_LEN};
use crate::io::{Fs, FsLock, OsFs};
use crate::names::{self, LOCK, LogName, MARKER, MAX_HEX_ID_LEN, TMP_SUFFIX};
use crate::{FsOptions, FsPersister};

/// A store of documents in one directory, each document in its own append-only log.
///
/// See the [crate documentation](crate) for the directory layout, the format and what
/// survives a crash. The store holds an exclusive lock on the directory until it and
/// every handle opened from it are dropped.
pub struct FsStore {
    shared: Arc<Shared>,
}

/// What a store and its handles share.
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) options: FsOptions,
    open: OpenDocuments,
    index: Mutex<BTreeMap<DocumentId, Entry>>,
    _lock: Box<dyn FsLock>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        persister_core::relock::note_closed(&self.dir);
    }
}

/// A document of the store.
#[derive(Debug)]
struct Entry {
    /// Its log's file name.
    name: String,
    /// Whether its log exists (it may exist only in memory until its first flush).
    on_disk: bool,
    /// The document of a dropped handle that still had unflushed writes or a poison.
    parked: Option<Box<Doc>>,
}

impl FsStore {
    /// Opens the store in `dir` with default options, creating the directory (and its
    /// missing parents) and the store if needed.
    ///
    /// Opening reads the directory and the headers of logs named by hash, and removes
    /// leftover `.tmp` files; documents are replayed only when opened. It fails with
    /// [`Error::Locked`] if another process (or another open store in this one) holds
    /// the store, [`Error::NotAStore`] if `dir` holds other files but no store marker,
    /// [`Error::UnsupportedFormat`] if the marker has another version, and
    /// [`Error::Corrupt`] if the marker or a hash-named log header is damaged.
    pub fn open(dir: impl AsRef<Path>) -> Result<FsStore> {
        Self::open_with(dir, FsOptions::default())
    }

    /// Opens the store in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: FsOptions) -> Result<FsStore> {
        Self::open_on(Arc::new(OsFs), dir.as_ref(), options)
    }

    /// Opens the store on any [`Fs`].
    pub(crate) fn open_on(fs: Arc<dyn Fs>, dir: &Path, options: FsOptions) -> Result<FsStore> {
        options.validate()?;
        let dir = dir.to_path_buf();
        fs.create_dir_all(&dir).map_err(io_error("create", &dir))?;
        let marker = dir.join(MARKER);
        let entries = fs.read_dir(&dir).map_err(io_error("list", &dir))?;
        let has_marker = entries.iter().any(|name| name == MARKER);
        if has_marker {
            let bytes = fs
                .read_prefix(&marker, MARKER_LEN)
                .map_err(io_error("read", &marker))?;
            format::decode_marker(&bytes, &marker)?;
        } else if entries
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
        let lock = persister_core::relock::open_retrying(&dir, || {
            fs.try_lock(&lock_path)
                .map_err(io_error("lock", &lock_path))?
                .ok_or_else(|| Error::Locked { path: dir.clone() })
        })?;
        if !has_marker {
            write_marker(fs.as_ref(), &dir)?;
        }
        let index = scan(fs.as_ref(), &dir)?;
        Ok(FsStore {
            shared: Arc::new(Shared {
                fs,
                dir,
                options,
                open: OpenDocuments::new(),
                index: Mutex::new(index),
                _lock: lock,
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

    /// The path of the log of document `id`, if a flush has created it.
    pub fn log_path(&self, id: &DocumentId) -> Option<PathBuf> {
        let index = self.shared.lock_index();
        let entry = index.get(id).filter(|entry| entry.on_disk)?;
        Some(self.shared.dir.join(&entry.name))
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("path", &self.shared.dir)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Store for FsStore {
    type Persister = FsPersister;

    fn open_document(&self, id: &DocumentId) -> Result<FsPersister> {
        let claim = self.shared.open.claim(id)?;
        let doc = self.shared.take_or_load(id)?;
        Ok(FsPersister::new(Arc::clone(&self.shared), doc, claim))
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        Ok(self.shared.lock_index().keys().cloned().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let _claim = self.shared.open.claim(id)?;
        self.shared.remove(id)
    }
}

impl Shared {
    fn lock_index(&self) -> MutexGuard<'_, BTreeMap<DocumentId, Entry>> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The parked document `id`, or its log replayed, or a new document.
    fn take_or_load(&self, id: &DocumentId) -> Result<Doc> {
        let name = match self.lock_index().get_mut(id) {
            None => return Ok(Doc::new(id)),
            Some(entry) => match entry.parked.take() {
                Some(doc) => return Ok(*doc),
                None if !entry.on_disk => return Ok(Doc::new(id)),
                None => entry.name.clone(),
            },
        };
        Doc::load(self, id, name)
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
            parked: None,
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

    /// Keeps the document of a dropped handle for the next handle of this store.
    pub(crate) fn park(&self, doc: Doc) {
        if let Some(entry) = self.lock_index().get_mut(doc.id()) {
            entry.parked = Some(Box::new(doc));
        }
    }

    /// Removes `id`'s log, and syncs the directory so the removal is durable.
    fn remove(&self, id: &DocumentId) -> Result<()> {
        let (name, on_disk, parked) = match self.lock_index().get_mut(id) {
            None => return Ok(()),
            Some(entry) => (entry.name.clone(), entry.on_disk, entry.parked.take()),
        };
        if on_disk {
            // Closed first, for platforms that cannot remove an open file.
            drop(parked);
            let path = self.dir.join(&name);
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path, e)),
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
}

/// Writes the store marker under a temporary name, syncs it, renames it into place and
/// syncs the directory.
fn write_marker(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let tmp = dir.join(names::tmp_name(MARKER));
    let mut file = fs.create(&tmp).map_err(io_error("create", &tmp))?;
    file.append(&format::encode_marker())
        .map_err(io_error("write", &tmp))?;
    file.sync_data().map_err(io_error("sync", &tmp))?;
    fs.rename(&tmp, &dir.join(MARKER))
        .map_err(io_error("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_error("sync", dir))
}

/// Finds every document log in `dir`, and removes temporary files: a file still under
/// its temporary name was never renamed into place, so no flush returned with it.
fn scan(fs: &dyn Fs, dir: &Path) -> Result<BTreeMap<DocumentId, Entry>> {
    let mut index = BTreeMap::new();
    for name in fs.read_dir(dir).map_err(io_error("list", dir))? {
        let path = dir.join(&name);
        if name.ends_with(TMP_SUFFIX) {
            fs.remove_file(&path).map_err(io_error("remove", &path))?;
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
            parked: None,
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
            parked: None,
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
