//! The store: one redb file holding every document.

use std::path::{Path, PathBuf};

use persister_core::{EngineStore, Error, Recovered, Result};
use redb::StorageBackend;

use crate::engine::LogState;
use crate::error::RedbResultExt;
use crate::file::{self, Db};
use crate::layout::{self, LogEntry};
use crate::log::Keying;
use crate::overlay::Overlay;
use crate::{RedbEngine, RedbOptions, RedbPersister, log, redo};

/// Every document of one redb file.
///
/// Opening takes redb's lock on the file: a second open of the same file, from this
/// process or another, fails at once with [`Error::Locked`](persister_core::Error::Locked). The store is `Send + Sync`;
/// share it (by reference or in an `Arc`) to serve different documents from different
/// threads. Its handles ([`RedbPersister`]) keep the file open until the last one is
/// dropped.
///
/// Dropping the store and its handles closes the file and releases its lock before the
/// last drop returns; [`close`](persister_core::Store::close) does the same and reports a store that is
/// still in use, a failed checkpoint of the commit log, a store that a failed commit
/// (a failed sync) poisoned, which is to be reopened, and a failure of redb's own close
/// (after which the next open repairs the file). A handle's unflushed writes never
/// reach the file (see
/// [`RedbPersister`]).
///
/// Clones share the open file, like an `Arc`.
#[derive(Clone, Debug)]
pub struct RedbStore {
    pub(crate) inner: EngineStore<RedbEngine>,
}

impl RedbStore {
    /// Opens the store at `path` with the default [`RedbOptions`], creating it if the
    /// file does not exist.
    ///
    /// Fails with [`Error::Locked`](persister_core::Error::Locked) when the file is open elsewhere,
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) when it is not a store, [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat) when it is
    /// a store of another layout version, and [`Error::Corrupt`](persister_core::Error::Corrupt) when verifying it finds
    /// damage.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens the store at `path`, creating it if the file does not exist.
    ///
    /// A new store is created crash-safely: under a temporary name in the same directory,
    /// synced, then moved into place and the directory synced, so a crash never leaves a
    /// half-made file at `path`. A crash can leave the temporary file
    /// (`.<name>.<pid>.<n>.creating`, the name cut to its first 100 bytes) behind; it
    /// may be deleted.
    ///
    /// The store's [commit log](crate#the-commit-log) is `<name>.log` beside it: a name
    /// the file system takes but whose log's name it refuses (one of 252 to 255 bytes
    /// on most) fails with [`Error::InvalidInput`](persister_core::Error::InvalidInput):
    /// for a new store before anything is created, for an existing one before the store
    /// writes to it (redb's own open writes its header first when the file was not
    /// closed cleanly, or is opened without [`RedbOptions::verify_on_open`]).
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbStore> {
        let path = path.as_ref();
        if !path.exists() {
            // A new store has a commit log.
            log::check_name(path)?;
            file::create(path, &options)?;
        }
        file::check_magic(path)?;
        // redb releases its lock explicitly when the database is dropped, so a store this
        // process closed can be opened again at once, even while a child process forked
        // by another thread still holds a copy of the file's descriptor.
        let db = file::open_writable(&options, path)?;
        let db = Db::ReadWrite(db);
        let layout = file::check_layout(&db, path)?;
        if layout.log.is_some() {
            log::check_name(path)?;
        }
        let mut version = layout.version;
        let (mut log, recovered) = match layout.log {
            None => (LogState::Absent, Vec::new()),
            Some(entry) => recover(&db, path, entry)?,
        };
        if let (Some(entry), LogState::Closed { epoch, keyed }) = (layout.log, &mut log)
            && !*keyed
            && options.migrate_format
        {
            // Replayed and closed: the store becomes layout 3, whose logs are keyed.
            let entry = LogEntry {
                epoch: *epoch,
                open: false,
                applied: 0,
                ..entry
            };
            file::upgrade_to_keyed(db.database(), path, entry)?;
            *keyed = true;
            version = layout::FORMAT_VERSION;
        }
        let mut engine = RedbEngine::new(db, path.to_path_buf(), options, log, version);
        engine.recovered = recovered;
        Ok(RedbStore {
            inner: EngineStore::new(engine),
        })
    }

    /// Opens the existing store at `path` for reading only, with the default
    /// [`RedbOptions`].
    ///
    /// Nothing is written: the file is opened read-only (so this works on a read-only
    /// file or mount), nothing is created. The file is checked as
    /// [`RedbOptions::verify_on_open`] checks it, so that a damaged page is
    /// [`Error::Corrupt`] (redb's unchecked reads panic on one, or read wrong data); a
    /// file that was not closed cleanly is repaired, and a commit log the store names
    /// open is replayed. What that writes stays in memory over the file (a few pages
    /// for the check or a repair, about 1.5 times the log's length for a replay). Other
    /// read-only opens may share the file; a process that has it open for writing
    /// makes this fail with [`Error::Locked`], and a writer's open fails while this
    /// store is open. Every write through the store or its handles fails with
    /// [`Error::InvalidInput`]; flushing with nothing written returns 0.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref();
        file::check_magic(path)?;
        let options = RedbOptions::default();
        let overlay = Overlay::open(path)?;
        let db = file::open_verified(&options, path, |builder| {
            builder.create_with_backend(overlay.clone())
        })
        .or_store("open", path)?;
        let db = Db::ReadOnly(db);
        let layout = file::check_layout(&db, path)?;
        let mut recovered = Vec::new();
        if let Some(entry) = layout.log.filter(|entry| entry.open) {
            // The log holds commits the file may not: they are replayed into the overlay.
            let contents = read_open_log(path, entry)?;
            replay(&db, path, &contents.commits, entry)?;
            recovered.extend(torn_report(path, &contents, entry, false));
        }
        let mut engine = RedbEngine::new(
            db,
            path.to_path_buf(),
            options,
            LogState::Absent,
            layout.version,
        );
        engine.recovered = recovered;
        Ok(RedbStore {
            inner: EngineStore::new(engine),
        })
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
        let db = file::builder(&options)
            .create_with_backend(backend)
            .or_store("open", &path)?;
        let db = Db::ReadWrite(db);
        let layout = file::check_layout(&db, &path)?;
        if layout.log.is_some_and(|entry| entry.open) {
            return Err(Error::InvalidInput {
                what: "store",
                reason: format!(
                    "{} names its commit log open, and a store on a backend has no log to replay: open it once with RedbStore::open",
                    path.display()
                ),
            });
        }
        let engine = RedbEngine::new(db, path, options, LogState::Absent, layout.version);
        Ok(RedbStore {
            inner: EngineStore::new(engine),
        })
    }

    /// The path of the file (or, with [`RedbStore::open_on_backend`], the path given for
    /// messages).
    pub fn path(&self) -> &Path {
        self.inner.path()
    }
}

/// Brings the file up to date with its commit log after a crash: a log the store names
/// open is replayed (see [`replay`]), and its torn tail reported unless the file holds
/// that commit already. Gives where the next commit goes.
fn recover(db: &Db, path: &Path, entry: LogEntry) -> Result<(LogState, Vec<Recovered>)> {
    let keyed = matches!(entry.keying, Keying::Keyed(_));
    if !entry.open {
        let state = LogState::Closed {
            epoch: entry.epoch,
            keyed,
        };
        return Ok((state, Vec::new()));
    }
    let contents = read_open_log(path, entry)?;
    replay(db, path, &contents.commits, entry)?;
    // Replayed and closed: what the log holds is in the file now.
    let _ = std::fs::remove_file(log::log_path(path));
    let recovered = torn_report(path, &contents, entry, true)
        .into_iter()
        .collect();
    Ok((
        LogState::Closed {
            epoch: entry.epoch + 1,
            keyed,
        },
        recovered,
    ))
}

/// Applies the `commits` the file does not hold yet (those after the first
/// `entry.applied`), in order, in durable commits of about [`REPLAY_CHUNK`] bytes each,
/// each recording how far it got; the last names the log closed at the next epoch. A
/// crash in between leaves the log named open, and the next open goes on from there
/// (see [`redo`](crate::redo): replay lands on any state the file reached).
fn replay(db: &Db, path: &Path, commits: &[Vec<u8>], entry: LogEntry) -> Result<()> {
    let db = db.database();
    let all = commits;
    let mut applied = entry.applied;
    let mut commits = all
        .iter()
        .skip(usize::try_from(entry.applied).unwrap_or(usize::MAX))
        .peekable();
    loop {
        let chunk_start = applied;
        let chunk = (|| {
            let txn = db.begin_write().or_store("write to", path)?;
            let mut bytes = 0;
            while bytes < REPLAY_CHUNK {
                let Some(commit) = commits.next() else { break };
                redo::apply(&txn, commit, path)?;
                bytes += commit.len();
                applied += 1;
            }
            let last = commits.peek().is_none();
            let state = match last {
                true => LogEntry {
                    epoch: entry.epoch + 1,
                    open: false,
                    applied: 0,
                    ..entry
                },
                false => LogEntry { applied, ..entry },
            };
            layout::set_log_state(&txn, state, path)?;
            txn.commit().or_store("commit to", path)?;
            Ok(last)
        })();
        match chunk {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                // What is left to replay, this chunk included.
                let left = all
                    .iter()
                    .skip(usize::try_from(chunk_start).unwrap_or(usize::MAX))
                    .map(Vec::len)
                    .sum();
                return Err(with_room_needed(e, left));
            }
        }
    }
}

/// A full disk met while replaying, told how much room the rest of the replay needs:
/// `left` bytes of logged commits, with redb's pages around them about 1.5 times that
/// (a replay of 8 MiB of small commits needed more than 10 MiB and at most 11). Other
/// errors as they are.
fn with_room_needed(error: Error, left: usize) -> Error {
    match error {
        Error::Io {
            action,
            path,
            source,
        } if source.kind() == std::io::ErrorKind::StorageFull => {
            let mib = (left as u64 * 3 / 2).div_ceil(1 << 20).max(1);
            let source = std::io::Error::new(
                source.kind(),
                format!(
                    "{source}, while replaying the commit log into the file: {left} bytes of commits are left to replay, and about {mib} MiB must be free for them"
                ),
            );
            Error::Io {
                action,
                path,
                source,
            }
        }
        other => other,
    }
}

/// About how many bytes of logged commits one durable commit of a replay applies.
/// Copy-on-write needs room for a commit's new pages before the old ones are freed, so
/// smaller commits let a store replay its log on a nearly full disk.
const REPLAY_CHUNK: usize = 1024 * 1024;

/// Reads the commit log of the store at `path`, which the store names open (`entry`):
/// it must be there.
fn read_open_log(path: &Path, entry: LogEntry) -> Result<log::Contents> {
    let log_path = log::log_path(path);
    if std::fs::symlink_metadata(&log_path).is_err() {
        return Err(Error::corrupt(
            format!(
                "the store was not closed cleanly and its commit log {} is missing: flushed commits may be in it; put it back beside the store",
                log_path.display()
            ),
            path,
            None,
        ));
    }
    log::read(&log_path, entry.epoch, entry.keying)
}

/// The report of the log's torn tail, if it has one that the file does not hold: a
/// commit whose record did not reach the log whole (its sync failed) but whose redb
/// commit the file kept (redb makes it durable on a clean close) is counted in
/// `entry.applied`, and nothing of it was dropped. Writable and read-only opens report
/// the same.
fn torn_report(
    path: &Path,
    contents: &log::Contents,
    entry: LogEntry,
    truncated: bool,
) -> Option<Recovered> {
    let (offset, bytes) = contents.torn?;
    if entry.applied > contents.commits.len() as u64 {
        return None;
    }
    Some(Recovered::store_wide(
        log::log_path(path),
        offset,
        bytes,
        truncated,
    ))
}

persister_core::forward_store!(RedbStore, inner, RedbPersister);
