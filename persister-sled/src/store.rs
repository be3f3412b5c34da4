//! The store: one sled database holding any number of documents.

use std::path::{Path, PathBuf};

use persister_core::{EngineStore, Error, Result};

use crate::copy::{self, Holding};
use crate::durable::Durable;
use crate::layout::{self, FORMAT_KEY, STORE_KEY};
use crate::manifest::StoreManifest;
use crate::mark::{self, Found, MARK_FILE, Mark};
use crate::{SledEngine, SledOptions, SledPersister};
use persister_core::files::{sync_dir, sync_file};

/// The magic at the start of the format value.
const MAGIC: &[u8; 8] = b"PSLEDFMT";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A sled database holding any number of documents: the [`Store`](persister_core::Store) of this backend.
///
/// Open it with [`SledStore::open`]; open documents with
/// [`open_document`](persister_core::Store::open_document). The store is `Send + Sync`, and cheap to
/// share by reference across threads. Handles keep the database open: it closes when
/// the store and every handle are dropped. See the [crate docs](crate) for the format
/// and for what [`flush`](persister_core::Persister::flush) guarantees.
#[derive(Debug)]
pub struct SledStore {
    inner: EngineStore<SledEngine>,
}

impl SledStore {
    /// Opens the store in directory `dir` with the default [`SledOptions`], creating it
    /// if `dir` does not exist or is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if the store is open elsewhere (in this or another process);
    /// [`Error::NotAStore`] if `dir` is a file, a directory holding other files, or a
    /// sled database this crate did not create; [`Error::UnsupportedFormat`] for a store
    /// of another format version; [`Error::Corrupt`] if the store lost batches that a
    /// flush had made durable, or sled reports (or panics on) damaged files.
    pub fn open(dir: impl AsRef<Path>) -> Result<SledStore> {
        Self::open_with(dir, SledOptions::default())
    }

    /// Opens the store in directory `dir` with `options`; otherwise as [`SledStore::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: SledOptions) -> Result<SledStore> {
        let path = dir.as_ref();
        if options.check_copy_first && path.join("db").is_file() {
            // sled's recovery of a damaged store erases what follows the damage before
            // the checks below can refuse it: let it run on a copy first.
            let copy = copy::copy_store(path, Holding::Exclusive)?;
            let checked = open_at(&copy.store(), &options)
                .and_then(|mut engine| engine.release())
                .map_err(|e| copy.blame(e, path));
            drop(copy);
            checked?;
        }
        Ok(SledStore {
            inner: EngineStore::new(open_at(path, &options)?),
        })
    }

    /// Opens the existing store in directory `dir` for reading only.
    ///
    /// sled cannot open a database without writing to it, and its recovery can erase
    /// data of a damaged store, so this reads a copy of the directory, made under the
    /// system's temporary directory (`$TMPDIR`) and removed when the store and its
    /// handles are dropped (or by [`persister_core::scratch::remove_all`]). The store
    /// itself is never written: this works on a read-only directory or mount, and on
    /// read-only files.
    ///
    /// While it copies, it holds sled's lock on the store shared: other read-only opens
    /// copy beside it, and an open for writing (here or in another process) fails with
    /// [`Error::Locked`]. Once the copy is made the lock is released, so a writer may
    /// open the store while this one is open; this store keeps reading the copy, the
    /// store as it was when opened.
    ///
    /// Errors about the store's data name `dir`, not the copy; an I/O
    /// failure of the copy itself (`$TMPDIR` full or not writable) names the copy.
    /// Every write through the store or its handles fails with [`Error::InvalidInput`].
    ///
    /// # Errors
    ///
    /// As [`SledStore::open`], and [`Error::NotAStore`] if `dir` holds no sled database.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<SledStore> {
        let path = dir.as_ref();
        if !path.join("db").is_file() {
            return Err(Error::NotAStore {
                what: "a persister-sled store directory",
                path: path.to_path_buf(),
            });
        }
        let copy = copy::copy_store(path, Holding::Shared)?;
        let options = SledOptions::default();
        let mut engine = open_at(&copy.store(), &options).map_err(|e| copy.blame(e, path))?;
        engine.path = path.to_path_buf();
        engine.read_only = true;
        engine.copy = Some(copy);
        Ok(SledStore {
            inner: EngineStore::new(engine),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The directory of the copy a read-only store reads (see
    /// [`SledStore::open_read_only`]); `None` for a store opened for writing.
    pub fn copy_path(&self) -> Option<PathBuf> {
        self.inner.engine().copy.as_ref().map(|copy| copy.store())
    }
}

/// Opens sled in `path` and checks the store it holds, creating it if `path` does not
/// exist or is empty.
fn open_at(path: &Path, options: &SledOptions) -> Result<SledEngine> {
    let config = options.config(path)?;
    check_dir(path)?;
    // Before sled creates what is missing of the path.
    let entries = entry_dirs(path);
    let db = crate::calls::open(path, &config)?;
    let opened = read_format(&db, path).and_then(|existing| match existing {
        true => open_existing(&db, path),
        false => create(&db, path, &entries),
    });
    match opened {
        Ok((manifest, durable)) => Ok(SledEngine::new(
            db,
            path.to_path_buf(),
            manifest,
            durable,
            options.max_pending_bytes,
        )),
        Err(e) => {
            // Released before the error returns, so that the next open need not wait.
            let _ = crate::calls::close(db, path);
            Err(e)
        }
    }
}

persister_core::forward_store!(SledStore, inner, SledPersister);

/// Refuses paths that hold something other than a sled store (a file, or a directory
/// with files sled and this crate do not make), before sled would write into them.
fn check_dir(path: &Path) -> Result<()> {
    let not_a_store = || Error::NotAStore {
        what: "a persister-sled store directory",
        path: path.to_path_buf(),
    };
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) if path.is_file() => return Err(not_a_store()),
        Err(e) => return Err(Error::io("list", path, e)),
    };
    for entry in entries {
        let name = entry.map_err(|e| Error::io("list", path, e))?.file_name();
        let name = name.to_string_lossy();
        let known = ["conf", "db", "blobs", MARK_FILE].contains(&&*name);
        if !known && !name.starts_with("snap.") {
            return Err(not_a_store());
        }
    }
    Ok(())
}

/// Whether the database holds a store of this crate (`true`), or is empty (`false`).
fn read_format(db: &sled::Db, path: &Path) -> Result<bool> {
    let value = crate::calls::call(path, "read", || db.get(FORMAT_KEY))?;
    let Some(value) = value else {
        let empty = crate::calls::call(path, "read", || Ok(db.first()?.is_none()))?;
        if empty && db.tree_names().len() <= 1 {
            return Ok(false);
        }
        return Err(Error::NotAStore {
            what: "a persister-sled store (this sled database has no persister-sled format key: \
                   it was written by another program, such as automerge-persistent-sled, whose \
                   layout this crate does not read; load its documents with that program and \
                   write them into a new store)",
            path: path.to_path_buf(),
        });
    };
    let corrupt = |what: &str| Error::corrupt(format!("the format value {what}"), path, None);
    let (magic, rest) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("is too short"))?;
    if magic != MAGIC {
        return Err(corrupt("has the wrong magic"));
    }
    let (version, _) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("is too short"))?;
    let version = u32::from_be_bytes(*version);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "persister-sled store",
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if value.as_ref() != format_value().as_slice() {
        return Err(corrupt("fails its checksum"));
    }
    Ok(true)
}

/// `MAGIC ++ u32be(version) ++ u32be(crc32c of the 12 bytes before)`.
fn format_value() -> Vec<u8> {
    let mut value = MAGIC.to_vec();
    value.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let crc = crc32c::crc32c(&value);
    value.extend_from_slice(&crc.to_be_bytes());
    value
}

/// The directories holding the entry of `path` and of each of its ancestors that does
/// not exist yet (sled creates them), deepest first: what a new store syncs so that its
/// directory cannot vanish in a power loss with everything flushed into it. The parent
/// of `path` is always among them, since a directory that exists need not have a
/// durable entry (made by the application, or by an open that crashed).
fn entry_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (depth, dir) in path.ancestors().enumerate() {
        if depth > 0 && dir.exists() {
            break;
        }
        match dir.parent() {
            Some(parent) if parent.as_os_str().is_empty() => dirs.push(PathBuf::from(".")),
            Some(parent) => dirs.push(parent.to_path_buf()),
            None => break,
        }
    }
    dirs
}

/// The directories holding the entry of the existing `path` and of each of its
/// ancestors, deepest first, up to the root of its file system: what a store reopened
/// before its first batch syncs, since the open that created it may have stopped
/// before syncing the directories it made. Directories sled made are on the file
/// system of the directory it made them in, so the walk stops where the file system
/// changes (a mount point's own entry, and those above it, are another file system's,
/// possibly mounted read-only).
fn all_entry_dirs(path: &Path) -> Vec<PathBuf> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let device = |dir: &Path| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir).ok().map(|meta| meta.dev())
        }
        #[cfg(not(unix))]
        {
            std::fs::metadata(dir).ok().map(|_| 0)
        }
    };
    let own = device(&path);
    let mut dirs = Vec::new();
    for parent in path.ancestors().filter_map(Path::parent) {
        let parent = match parent.as_os_str().is_empty() {
            true => PathBuf::from("."),
            false => parent.to_path_buf(),
        };
        if dirs.is_empty() || (own.is_some() && device(&parent) == own) {
            dirs.push(parent);
        } else {
            break;
        }
    }
    dirs
}

/// Syncs each of `dirs` (see [`entry_dirs`]).
fn sync_entries(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        #[cfg(test)]
        {
            let fail = tests::FAIL.with(|fail| fail.borrow().clone());
            if let Some((at, kind)) = fail.filter(|(at, _)| at == dir) {
                return Err(Error::io("open", &at, std::io::Error::from(kind)));
            }
            tests::SYNCED.with(|synced| synced.borrow_mut().push(dir.clone()));
        }
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes the format value and an empty store manifest into an empty database, and
/// syncs the directories in `entries`.
fn create(db: &sled::Db, path: &Path, entries: &[PathBuf]) -> Result<(StoreManifest, Durable)> {
    match mark::read(path)? {
        Found::Missing | Found::Seq { seq: 0, .. } => {}
        _ => {
            return Err(Error::corrupt(
                "the sled database is empty, but the mark file says batches were flushed to it",
                path,
                None,
            ));
        }
    }
    let manifest = StoreManifest::default();
    let mut batch = sled::Batch::default();
    batch.insert(FORMAT_KEY, format_value());
    batch.insert(STORE_KEY, layout::frame(STORE_KEY, &manifest.encode()));
    crate::calls::call(path, "write", || db.apply_batch(batch))?;
    crate::calls::call(path, "flush", || db.flush())?;
    sync_file(&path.join("conf"))?;
    let mark = Mark::create(path, 0)?;
    let mut durable = Durable::new(path, mark)?;
    durable.sync(path)?;
    sync_entries(entries)?;
    Ok((manifest, durable))
}

/// Reads the store manifest and checks it against the mark file; syncs the directories
/// holding the entries of the store and its ancestors while no batch was applied
/// (creation may have stopped before it did).
fn open_existing(db: &sled::Db, path: &Path) -> Result<(StoreManifest, Durable)> {
    let value = crate::calls::call(path, "read", || db.get(STORE_KEY))?;
    let manifest = value
        .as_deref()
        .and_then(|v| layout::unframe(STORE_KEY, v))
        .and_then(|(_, m)| StoreManifest::decode(m))
        .ok_or_else(|| Error::corrupt("the store manifest is missing or damaged", path, None))?;
    let mark = match mark::read(path)? {
        Found::Seq { seq, slot } if seq <= manifest.seq => Mark::open(path, seq, slot)?,
        Found::Seq { seq, .. } => {
            return Err(Error::corrupt(
                format!(
                    "sled recovered {} batches, but {seq} had been flushed: sled lost flushed data",
                    manifest.seq
                ),
                path,
                None,
            ));
        }
        // Creation stopped before the mark was written: nothing was ever applied.
        Found::Missing | Found::Unreadable if manifest.seq == 0 => {
            let mark = Mark::create(path, 0)?;
            sync_dir(path)?;
            mark
        }
        Found::Missing | Found::Unreadable => {
            return Err(Error::corrupt(
                format!(
                    "the mark file {MARK_FILE} is missing or damaged, so it cannot be checked that no flushed batch was lost"
                ),
                path,
                None,
            ));
        }
    };
    if manifest.seq == 0 {
        // The open that created the store may have stopped before its syncs, after
        // making directories that exist now: every ancestor's entry is synced again.
        // The parent's must be; those above it only where the process may (a directory
        // it cannot open, such as a `0711` home, is not one its own open made).
        let dirs = all_entry_dirs(path);
        let (parent, above) = dirs.split_at(dirs.len().min(1));
        sync_entries(parent)?;
        for dir in above {
            match sync_entries(std::slice::from_ref(dir)) {
                Ok(()) => {}
                // One the process may not open was not made by its own open, nor was
                // any above it (directories are made from the top down).
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let durable = Durable::new(path, mark)?;
    Ok((manifest, durable))
}

#[cfg(test)]
mod tests {

    use persister_core::{ActorId, Persister, Store};

    use super::*;

    fn tempdir() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))
    }

    thread_local! {
        /// The directories [`sync_entries`] synced on this thread.
        pub(super) static SYNCED: std::cell::RefCell<Vec<PathBuf>> =
            const { std::cell::RefCell::new(Vec::new()) };
        /// A directory whose sync [`sync_entries`] fails on this thread, and how.
        pub(super) static FAIL: std::cell::RefCell<Option<(PathBuf, std::io::ErrorKind)>> =
            const { std::cell::RefCell::new(None) };
    }

    /// On a reopen before the first batch, the parent's entry must be synced, and so
    /// must every ancestor's the process may open: an ancestor it may not open ends the
    /// walk (its own open made none of them), any other failure fails the open.
    #[test]
    fn a_reopen_before_the_first_batch_skips_only_ancestors_it_may_not_open() -> Result<()> {
        use std::io::ErrorKind;
        let dir = tempdir()?;
        let path = dir.path().join("a").join("store");
        drop(SledStore::open(&path)?);
        let dirs = all_entry_dirs(&path);
        assert!(dirs.len() >= 2, "{dirs:?}");
        let reopen_failing = |at: &Path, kind: ErrorKind| {
            FAIL.with(|fail| *fail.borrow_mut() = Some((at.to_path_buf(), kind)));
            SYNCED.with(|synced| synced.borrow_mut().clear());
            let opened = SledStore::open(&path).map(drop);
            FAIL.with(|fail| *fail.borrow_mut() = None);
            (opened, SYNCED.with(|synced| synced.take()))
        };
        // Above the parent, not to be opened: the walk ends there, the open succeeds.
        let (opened, synced) = reopen_failing(&dirs[1], ErrorKind::PermissionDenied);
        opened?;
        assert!(synced.ends_with(&dirs[..1]), "{synced:?}");
        // Above the parent, a failed sync: the open fails.
        let (opened, _) = reopen_failing(&dirs[1], ErrorKind::Other);
        assert!(matches!(opened, Err(Error::Io { .. })), "{opened:?}");
        // The parent, even one not to be opened: the open fails.
        let (opened, _) = reopen_failing(&dirs[0], ErrorKind::PermissionDenied);
        assert!(matches!(opened, Err(Error::Io { .. })), "{opened:?}");
        Ok(())
    }

    /// A new store syncs the directory holding its own entry, and those holding the
    /// entries of the directories sled made for it; until then a power loss can take
    /// the store, with everything flushed into it, away.
    #[test]
    fn a_new_store_syncs_the_entries_of_its_directories() -> Result<()> {
        let dir = tempdir()?;
        let path = dir.path().join("a").join("b").join("store");
        SYNCED.with(|synced| synced.borrow_mut().clear());
        drop(SledStore::open(&path)?);
        let synced = SYNCED.with(|synced| synced.take());
        let expected = [
            dir.path().join("a/b"),
            dir.path().join("a"),
            dir.path().into(),
        ];
        assert_eq!(synced, expected);

        // An existing empty directory: its parent holds its entry.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).map_err(|e| Error::io("create", &empty, e))?;
        drop(SledStore::open(&empty)?);
        assert_eq!(SYNCED.with(|synced| synced.take()), [dir.path()]);

        // Reopened before any batch (creation may have stopped before its syncs, after
        // making the directories), the store syncs every ancestor's entry again; once a
        // batch was applied, it does not.
        drop(SledStore::open(&path)?);
        let synced = SYNCED.with(|synced| synced.take());
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let expected_canonical: Vec<PathBuf> = expected.iter().map(|p| canonical(p)).collect();
        // The store's own ancestors, up to the root of its file system (the open's
        // check of a copy of the store, in a temporary directory, syncs its own first).
        let own = all_entry_dirs(&path);
        assert!(own.starts_with(&expected_canonical), "{own:?}");
        assert!(synced.ends_with(&own), "{synced:?}");
        let store = SledStore::open(&path)?;
        let mut doc = store.open_document(&"doc".into())?;
        doc.set_document(vec![1])?;
        doc.flush()?;
        drop((doc, store));
        SYNCED.with(|synced| synced.take());
        drop(SledStore::open(&path)?);
        assert_eq!(SYNCED.with(|synced| synced.take()), Vec::<PathBuf>::new());
        assert_eq!(entry_dirs(Path::new("store")), [PathBuf::from(".")]);
        Ok(())
    }

    /// A batch that carries no payload byte (an empty document, the empty peer's state
    /// removed) still changes the document, so the flush after it must sync.
    #[test]
    fn a_batch_without_payload_bytes_is_flushed() -> Result<()> {
        let dir = tempdir()?;
        let store = SledStore::open(dir.path())?;
        let mut p = store.open_document(&"doc".into())?;
        p.set_sync_state(Vec::new(), b"state".to_vec())?;
        p.flush()?;
        let before = mark::read(dir.path())?;
        p.remove_sync_states(&[b""])?;
        assert!(
            p.flush()? > 0,
            "a flush after a payload-free batch did nothing"
        );
        assert_ne!(mark::read(dir.path())?, before, "the mark did not advance");
        p.set_document(Vec::new())?;
        assert!(p.flush()? > 0);
        assert_eq!(p.flush()?, 0);
        Ok(())
    }

    /// A durable flush that fails poisons the engine at once: a flush that was already
    /// past core's poison check when it failed (a removal's, or a commit racing one)
    /// must not sync again, succeed, and advance the mark over batches whose pages the
    /// failed sync may have dropped.
    #[test]
    fn a_failed_durable_flush_fails_every_later_flush() -> Result<()> {
        let dir = tempdir()?;
        let store = SledStore::open(dir.path())?;
        let engine = store.inner.engine();
        engine.apply_batch(sled::Batch::default(), |_| Ok(()))?;
        // The blob directory replaced by a file: listing it, to sync new blobs, fails.
        let blobs = dir.path().join("blobs");
        let io = |action| move |e| Error::io(action, "blobs", e);
        if blobs.is_dir() {
            std::fs::remove_dir_all(&blobs).map_err(io("remove"))?;
        }
        std::fs::write(&blobs, b"").map_err(io("write"))?;
        let failed = engine.flush_durable();
        assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
        std::fs::remove_file(&blobs).map_err(io("remove"))?;
        std::fs::create_dir(&blobs).map_err(io("create"))?;

        let again = engine.flush_durable();
        assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
        assert_eq!(mark::read(dir.path())?, Found::Seq { seq: 0, slot: 0 });
        let write = engine.apply_batch(sled::Batch::default(), |_| Ok(()));
        assert!(matches!(write, Err(Error::Poisoned { .. })), "{write:?}");
        // Nor does a checked shutdown report Ok.
        let closed = persister_core::Store::close(store);
        assert!(matches!(closed, Err(Error::Poisoned { .. })), "{closed:?}");
        Ok(())
    }

    /// The mark advances with every flush, to the last sled batch: the writes a handle
    /// held since its last flush go to sled as one batch.
    #[test]
    fn flush_advances_the_mark_to_the_last_batch() -> Result<()> {
        let dir = tempdir()?;
        let store = SledStore::open(dir.path())?;
        let mut p = store.open_document(&"doc".into())?;
        for seq in 1..=3 {
            p.insert_changes(vec![(ActorId::new([1]), seq, vec![1])])?;
        }
        assert_eq!(mark::read(dir.path())?, Found::Seq { seq: 0, slot: 0 });
        assert_eq!(
            store.inner.engine().lock_writer().seq,
            0,
            "held writes reached sled"
        );
        p.flush()?;
        assert!(matches!(mark::read(dir.path())?, Found::Seq { seq: 1, .. }));
        p.set_document(vec![2])?;
        p.flush()?;
        assert!(matches!(mark::read(dir.path())?, Found::Seq { seq: 2, .. }));
        Ok(())
    }
}
