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

use std::fs::{File, TryLockError};
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
    let what = "a persister-sled store directory (it holds something that is neither a file nor a directory)";
    persister_core::scratch::copy_dir(src, &copy.store(), what)?;
    lock.unlock().map_err(|e| Error::io("unlock", &db, e))?;
    Ok(copy)
}
