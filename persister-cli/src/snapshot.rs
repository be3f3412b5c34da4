//! Copies of sled stores, for reading them without harm.
//!
//! Opening a damaged sled store lets sled's recovery overwrite the log after the damage
//! before `persister-sled` can refuse it. So every command that only reads a sled store
//! opens a copy of its directory in a temporary directory (under `$TMPDIR`), taken
//! while holding sled's lock on the original so that no writer changes it meanwhile.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::CliError;
use crate::error::io_error;

/// Copies the sled store `src` into a new temporary directory, and returns the
/// directory (removed when dropped) and the copy's path in it. Fails with
/// [`persister_core::Error::Locked`]'s message if a process has the store open.
pub(crate) fn copy_sled_store(src: &Path) -> Result<(TempDir, PathBuf), CliError> {
    let db = src.join("db");
    let lock = File::open(&db).map_err(|e| io_error("open", &db, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(persister_core::Error::Locked {
                path: src.to_path_buf(),
            }
            .into());
        }
        Err(TryLockError::Error(e)) => return Err(io_error("lock", &db, e)),
    }
    let dir = tempfile::Builder::new()
        .prefix("persister-sled-copy-")
        .tempdir()
        .map_err(|e| io_error("create a temporary directory in", &std::env::temp_dir(), e))?;
    let copy = dir.path().join("store");
    let copying = crate::output::spinner("copying the sled store");
    copy_dir(src, &copy).map_err(|e| {
        e.context("copying the sled store (read-only commands read a copy; set TMPDIR to put it elsewhere)")
    })?;
    copying.finish_and_clear();
    drop(lock);
    Ok((dir, copy))
}

/// Copies a directory tree of plain files and directories.
pub(crate) fn copy_dir(src: &Path, dst: &Path) -> Result<(), CliError> {
    fs::create_dir(dst).map_err(|e| io_error("create", dst, e))?;
    let entries = fs::read_dir(src).map_err(|e| io_error("list", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| io_error("inspect", &from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(|e| io_error("copy", &from, e))?;
        } else {
            return Err(CliError::new(
                format!("{} is neither a file nor a directory", from.display()),
                "a store holds only files and directories: remove what does not belong to it",
            ));
        }
    }
    Ok(())
}
