//! Copies of a store's directory, for sled's recovery to run on instead of the store.
//!
//! Opening a damaged sled store lets sled's recovery overwrite the log after the damage
//! before this crate can refuse the store. So a store is first opened as a copy (see
//! [`SledOptions::check_copy_first`](crate::SledOptions::check_copy_first)), and a
//! read-only store is read through one. A copy lives in a new directory under the
//! system's temporary directory (`$TMPDIR`), taken while holding sled's lock on the
//! original (shared for a read-only open, so that readers copy side by side) so that no
//! writer changes it meanwhile, and is removed when it is no
//! longer used; [`persister_core::scratch::remove_all`] removes every copy left, for a
//! program that is about to exit on a signal.
//!
//! sled opens its files for writing, so the copy is made writable by this process
//! whatever the store's modes: a store of read-only files reads like any other.

use std::fs::{self, File, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use persister_core::scratch::ScratchDir;
use persister_core::{Error, Result};

/// A copy of a store: a scratch directory, removed when dropped.
#[derive(Debug)]
pub(crate) struct CopyDir {
    scratch: ScratchDir,
}

impl CopyDir {
    /// The copy of the store's directory.
    pub(crate) fn store(&self) -> PathBuf {
        self.scratch.path().join("store")
    }

    /// `error`, met opening this copy of the store in `store`, as the caller should see
    /// it: what the copy's data caused names the store, which holds the same data, but
    /// the copy's own I/O failures (its disk full or read-only, its files not writable)
    /// name the copy, as the store is not at fault.
    pub(crate) fn blame(&self, error: Error, store: &Path) -> Error {
        match error {
            Error::Io { path, source, .. } if is_copy_failure(source.kind()) => Error::Io {
                action: "open the store's temporary copy (set TMPDIR to put it elsewhere), at",
                path,
                source,
            },
            other => other.relocated(&self.store(), store),
        }
    }

    /// `error`, met copying the store in `store` into this copy: a file the copy has no
    /// room for (its disk full, its files too large) or cannot be written on (a
    /// read-only file system) is the copy's failure, and names the copy's file rather
    /// than the store's, which was only read.
    fn blame_copying(&self, error: Error, store: &Path) -> Error {
        match error {
            Error::Io { path, source, .. } if is_write_failure(source.kind()) => Error::Io {
                action: "write the store's temporary copy (set TMPDIR to put it elsewhere), at",
                path,
                source,
            }
            .relocated(store, &self.store()),
            other => other,
        }
    }
}

/// Whether an I/O error of this kind, met copying a file, comes from writing it: reading
/// the store gives none of these.
fn is_write_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ReadOnlyFilesystem
            | ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::FileTooLarge
    )
}

/// Whether an I/O error of this kind comes from where the copy is, not from the data
/// copied into it.
fn is_copy_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::PermissionDenied
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::FileTooLarge
    )
}

/// How [`copy_store`] holds sled's lock on the store while it copies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Shared, as a read-only open does: other readers copy beside it, writers wait.
    Shared,
    /// Exclusive, as an open for writing does: nobody else opens the store meanwhile.
    Exclusive,
}

/// Copies the store in `src` into a new temporary directory, holding sled's lock on
/// its `db` file as `holding` says until the copy is made. Fails with
/// [`Error::Locked`] if a process has the store open (for writing, or, with
/// [`Holding::Exclusive`], copying it to read).
pub(crate) fn copy_store(src: &Path, holding: Holding) -> Result<CopyDir> {
    let db = src.join("db");
    let lock = File::open(&db).map_err(|e| Error::io("open", &db, e))?;
    let locked = match holding {
        Holding::Shared => lock.try_lock_shared(),
        Holding::Exclusive => lock.try_lock(),
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: src.to_path_buf(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("lock", &db, e)),
    }
    let copy = CopyDir {
        scratch: ScratchDir::new("sled-copy")?,
    };
    let what = "a persister-sled store directory (it holds something that is neither a file nor a directory)";
    persister_core::scratch::copy_dir(src, &copy.store(), what)
        .map_err(|e| copy.blame_copying(e, src))?;
    lock.unlock().map_err(|e| Error::io("unlock", &db, e))?;
    make_writable(&copy.store())?;
    Ok(copy)
}

/// Lets the owner read and write every file (0600) and directory (0700) from `dir` down:
/// copying keeps the modes of the store's files, and sled opens them for writing.
fn make_writable(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("inspect", &path, e))?;
        if kind.is_dir() {
            make_writable(&path)?;
        } else {
            set_writable(&path, false)?;
        }
    }
    set_writable(dir, true)
}

/// Sets the mode of `path`, a directory when `dir`, to 0700 or 0600.
#[cfg(unix)]
fn set_writable(path: &Path, dir: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir { 0o700 } else { 0o600 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("make writable", path, e))
}

/// Clears the read-only attribute of `path`.
#[cfg(not(unix))]
fn set_writable(path: &Path, _dir: bool) -> Result<()> {
    let mut permissions = fs::metadata(path)
        .map_err(|e| Error::io("inspect", path, e))?
        .permissions();
    permissions.set_readonly(false);
    fs::set_permissions(path, permissions).map_err(|e| Error::io("make writable", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure of the copy itself names the copy; damage found in it names the store.
    #[test]
    fn errors_blame_the_copy_only_for_its_own_failures() -> Result<()> {
        let copy = CopyDir {
            scratch: ScratchDir::new("test")?,
        };
        let (in_copy, store) = (copy.store().join("db"), Path::new("/data/store"));
        let denied = Error::io("open", &in_copy, ErrorKind::PermissionDenied.into());
        let blamed = copy.blame(denied, store);
        assert!(
            matches!(&blamed, Error::Io { path, .. } if *path == in_copy),
            "{blamed:?}"
        );
        assert!(blamed.to_string().contains("temporary copy"), "{blamed}");
        let damaged = Error::corrupt("bad page", &in_copy, None);
        let blamed = copy.blame(damaged, store);
        assert!(
            matches!(&blamed, Error::Corrupt { path, .. } if path == &store.join("db")),
            "{blamed:?}"
        );
        Ok(())
    }
}
