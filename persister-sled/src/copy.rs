//! Copies of a store's directory, for sled's recovery to run on instead of the store.
//!
//! Opening a damaged sled store lets sled's recovery overwrite the log after the damage
//! before this crate can refuse the store. So a store is first opened as a copy (see
//! [`SledOptions::check_copy_first`](crate::SledOptions::check_copy_first)), and a
//! read-only store is read through one. A copy lives in a new directory under the
//! system's temporary directory (`$TMPDIR`), taken while holding sled's lock on the
//! original so that no writer changes it meanwhile, and is removed when it is no
//! longer used; [`persister_core::scratch::remove_all`] removes every copy left, for a
//! program that is about to exit on a signal.

use std::fs::{self, File, TryLockError};
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
}

/// Copies the store in `src` into a new temporary directory. Fails with
/// [`Error::Locked`] if a process has the store open.
pub(crate) fn copy_store(src: &Path) -> Result<CopyDir> {
    let db = src.join("db");
    let lock = File::open(&db).map_err(|e| Error::io("open", &db, e))?;
    match lock.try_lock() {
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
    copy_dir(src, &copy.store())?;
    lock.unlock().map_err(|e| Error::io("unlock", &db, e))?;
    Ok(copy)
}

/// Copies a directory tree of plain files and directories.
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir(dst).map_err(|e| Error::io("create", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| Error::io("list", src, e))? {
        let entry = entry.map_err(|e| Error::io("list", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("inspect", &from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(|e| Error::io("copy", &from, e))?;
        } else {
            return Err(Error::NotAStore {
                what: "a persister-sled store directory (it holds something that is neither a file nor a directory)",
                path: src.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// `error`, met in the copy `copy` of the store `original`, as naming the original.
pub(crate) fn at_original(error: Error, copy: &Path, original: &Path) -> Error {
    let moved = |path: PathBuf| match path.strip_prefix(copy) {
        Ok(rest) if rest.as_os_str().is_empty() => original.to_path_buf(),
        Ok(rest) => original.join(rest),
        Err(_) => path,
    };
    match error {
        Error::Io {
            action,
            path,
            source,
        } => Error::Io {
            action,
            path: moved(path),
            source,
        },
        Error::Corrupt { what, path, offset } => Error::Corrupt {
            what,
            path: moved(path),
            offset,
        },
        Error::UnsupportedFormat {
            what,
            path,
            found,
            supported,
        } => Error::UnsupportedFormat {
            what,
            path: moved(path),
            found,
            supported,
        },
        Error::NotAStore { what, path } => Error::NotAStore {
            what,
            path: moved(path),
        },
        Error::Locked { path } => Error::Locked { path: moved(path) },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_a_copy_name_the_original() {
        let copy = Path::new("/tmp/persister-sled-copy-1-0/store");
        let original = Path::new("/data/docs");
        let e = at_original(Error::corrupt("bad", copy, Some(3)), copy, original);
        assert!(
            matches!(&e, Error::Corrupt { path, .. } if path == original),
            "{e:?}"
        );
        let e = Error::io("sync", copy.join("db"), std::io::Error::other("x"));
        let e = at_original(e, copy, original);
        assert!(
            matches!(&e, Error::Io { path, .. } if path == &original.join("db")),
            "{e:?}"
        );
    }
}
