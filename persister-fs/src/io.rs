//! Every file operation the backend makes, behind a small trait.
//!
//! The store and its persisters touch the file system only through [`Fs`] and
//! [`FsFile`], so tests can run them on a simulated file system that loses what was
//! not synced, or that fails a sync on request.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
#[cfg(any(test, not(unix)))]
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A file system holding one store directory.
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its missing parents (mode 0700 on unix), durably: each new
    /// directory's parent is synced.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names in `dir`. None of ours is other than UTF-8: each name that is not
    /// UTF-8 is listed as [`FOREIGN_NAME`], so that it still counts as a file that is
    /// not the store's.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Calls `f` with every name in `dir` (as [`Fs::read_dir`] lists them) without
    /// holding them all: a directory of many documents is read as it is walked.
    fn for_each_name(
        &self,
        dir: &Path,
        f: &mut dyn FnMut(String) -> io::Result<()>,
    ) -> io::Result<()> {
        for name in self.read_dir(dir)? {
            f(name)?;
        }
        Ok(())
    }
    /// Up to `max` bytes from the start of the file at `path`.
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>>;
    /// Opens an existing file for reading and, when `write`, appending.
    fn open(&self, path: &Path, write: bool) -> io::Result<Box<dyn FsFile>>;
    /// Creates the file at `path` (mode 0600 on unix), emptying it if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the file at `path`, creating it; `None` when another
    /// holder has it. The lock lasts as long as the returned guard.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>>;
    /// Takes a shared lock on the existing file at `path`, opened read-only; `None`
    /// when another holder has an exclusive lock on it.
    fn try_lock_shared(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>>;
    /// Which directory `dir` is, however its path is spelled (relative or absolute,
    /// through a symlink): the same key for every path to it while it exists.
    fn dir_key(&self, dir: &Path) -> io::Result<FileKey>;
    /// The logs whose sync failed on this file system, as far as this process knows.
    ///
    /// After a failed `fsync`, Linux marks the file's dirty pages clean: reads keep
    /// showing bytes the disk may lack, and a later sync does not write them. So the
    /// store notes every log whose sync failed here, and rewrites such a log whole
    /// before anything is appended to it again (see [`SyncFailures`]). The pages
    /// belong to the kernel, not to a store: the notes must outlive the store (and
    /// every handle) that failed, and are the operating system's for the whole process
    /// by default. A simulated file system keeps its own, which its reboot clears.
    fn sync_failures(&self) -> &SyncFailures {
        &PROCESS_SYNC_FAILURES
    }
}

/// Identifies a file or directory independently of the path used to reach it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FileKey {
    /// Its device and inode number (unix).
    Inode {
        /// The device holding it.
        dev: u64,
        /// Its inode number on that device.
        ino: u64,
    },
    /// Its canonical path, where inodes are not to be had (and on the simulated disk).
    #[cfg(any(test, not(unix)))]
    Path(PathBuf),
}

/// The logs whose `fdatasync` failed, each by its store directory's key and its name:
/// the bytes read from such a log (the page cache) may not be what the disk holds, and
/// no later sync of that file makes them durable.
///
/// A store rewrites such a log whole, from what reading it gives, before it appends
/// to it again (under a temporary name, synced, renamed over it, the directory
/// synced), and then forgets it; it writes no clean-close record while one of its logs
/// is noted. A note outlives the store that made it, so that the next store opened on
/// the directory in this process finds it; it does not outlive the process, and a
/// note of a directory removed since may match a later one that reuses its inode,
/// which costs one needless rewrite.
#[derive(Debug, Default)]
pub(crate) struct SyncFailures(Mutex<BTreeSet<(FileKey, String)>>);

/// The operating system's [`SyncFailures`], for the whole process.
static PROCESS_SYNC_FAILURES: SyncFailures = SyncFailures::new();

impl SyncFailures {
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(BTreeSet::new()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<(FileKey, String)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that a sync of the log `name` in the directory `dir` failed.
    pub(crate) fn note(&self, dir: &FileKey, name: &str) {
        self.lock().insert((dir.clone(), name.to_owned()));
    }

    /// Whether a sync of the log `name` in `dir` failed and it was not rewritten since.
    pub(crate) fn contains(&self, dir: &FileKey, name: &str) -> bool {
        self.lock().contains(&(dir.clone(), name.to_owned()))
    }

    /// Whether any log of `dir` is noted.
    pub(crate) fn any_in(&self, dir: &FileKey) -> bool {
        self.lock()
            .range((dir.clone(), String::new())..)
            .next()
            .is_some_and(|(key, _)| key == dir)
    }

    /// Forgets the log `name` in `dir`: it was rewritten (or removed) since.
    pub(crate) fn forget(&self, dir: &FileKey, name: &str) {
        self.lock().remove(&(dir.clone(), name.to_owned()));
    }

    /// Forgets every log (the simulated machine rebooted).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// An independent copy.
    #[cfg(test)]
    pub(crate) fn copy(&self) -> Self {
        Self(Mutex::new(self.lock().clone()))
    }
}

/// The name [`Fs::read_dir`] lists for a name that is not UTF-8: no file of a store
/// has it (it is not a log, a temporary file, or any other name of the store).
pub(crate) const FOREIGN_NAME: &str = "\u{fffd}";

/// An open file, read whole and then appended to.
pub(crate) trait FsFile: Send + fmt::Debug {
    /// The whole file; afterwards appends go to its end.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Reads into `buf` from `offset`, without moving where appends go; returns the
    /// bytes read, 0 at the end of the file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes; appends then go there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Holds a store's lock until released or dropped.
pub(crate) trait FsLock: Send + Sync + fmt::Debug {
    /// Releases the lock.
    fn release(self: Box<Self>) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OsFs;

impl Fs for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        self.create_dir_all(parent)?;
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        // A new directory's entry is durable only once its parent is synced.
        self.sync_dir(parent)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name().into_string();
            names.push(name.unwrap_or_else(|_| FOREIGN_NAME.to_owned()));
        }
        Ok(names)
    }

    fn for_each_name(
        &self,
        dir: &Path,
        f: &mut dyn FnMut(String) -> io::Result<()>,
    ) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name().into_string();
            f(name.unwrap_or_else(|_| FOREIGN_NAME.to_owned()))?;
        }
        Ok(())
    }

    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(path)?.take(max as u64).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<Box<dyn FsFile>> {
        let file = OpenOptions::new().read(true).write(write).open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Only unix can open a directory to sync it; elsewhere renames are as durable
        // as the platform makes them.
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(OsLock { file }))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn try_lock_shared(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let file = File::open(path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Box::new(OsLock { file }))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn dir_key(&self, dir: &Path) -> io::Result<FileKey> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::metadata(dir)?;
            Ok(FileKey::Inode {
                dev: meta.dev(),
                ino: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            fs::canonicalize(dir).map(FileKey::Path)
        }
    }
}

/// Options that create files readable and writable by their owner only.
fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[derive(Debug)]
struct OsFile(File);

impl FsFile for OsFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.0.seek(SeekFrom::Start(0))?;
        // The length the file system reports bounds the allocation, not a stored count.
        let len = usize::try_from(self.0.metadata()?.len()).map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(len);
        self.0.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
        }
        #[cfg(not(unix))]
        {
            let pos = self.0.stream_position()?;
            self.0.seek(SeekFrom::Start(offset))?;
            let read = self.0.read(buf);
            self.0.seek(SeekFrom::Start(pos))?;
            read
        }
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// An `flock` on the lock file.
///
/// The lock belongs to the open file description, which a child process forked by
/// any thread shares until it calls `exec` (or exits): closing our descriptor alone
/// would leave the lock held by such a child for that moment. So the lock is released
/// explicitly (`LOCK_UN` acts on the shared description) before the file is closed,
/// and the store's drop returns only once it is released.
#[derive(Debug)]
struct OsLock {
    file: File,
}

impl FsLock for OsLock {
    fn release(self: Box<Self>) -> io::Result<()> {
        self.file.unlock()
    }
}

impl Drop for OsLock {
    fn drop(&mut self) {
        // Released already when `release` ran; unlocking twice is harmless.
        let _ = self.file.unlock();
    }
}
