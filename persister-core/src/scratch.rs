//! For backend crates: scratch directories that live while a store is open.
//!
//! Some opens must not touch the store itself but need a copy their engine may write
//! to: reading a sled store (sled writes to whatever it opens), or reading a redb file
//! that needs a repair read-only. A [`ScratchDir`] is a new directory under the
//! system's temporary directory (`$TMPDIR`), removed when dropped; [`remove_all`]
//! removes every one of this process at once, for a program about to end on a signal,
//! which runs no destructor.
//!
//! ```
//! let scratch = persister_core::scratch::ScratchDir::new("example")?;
//! let path = scratch.path().to_path_buf();
//! assert!(path.is_dir());
//! drop(scratch);
//! assert!(!path.exists());
//! # Ok::<(), persister_core::Error>(())
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::{Error, Result};

/// The scratch directories of this process that exist now.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Removes every scratch directory of this process, so that nothing is left behind by
/// a program that exits without dropping its stores (as on SIGINT). Stores reading
/// from them fail from then on.
pub fn remove_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
    for dir in live {
        // A thread may still be writing into it: try again while it reappears.
        for _ in 0..3 {
            if matches!(fs::remove_dir_all(&dir), Err(e) if e.kind() == ErrorKind::NotFound) {
                break;
            }
        }
    }
}

/// Copies the directory tree `src` (plain files and directories) to `dst`, which must
/// not exist: a copy for an engine to open instead of the store.
///
/// # Errors
///
/// [`Error::NotAStore`] with `what` if `src` holds something that is neither a file
/// nor a directory; [`Error::Io`] if a file cannot be read or written.
pub fn copy_dir(src: &Path, dst: &Path, what: &'static str) -> Result<()> {
    fs::create_dir(dst).map_err(|e| Error::io("create", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| Error::io("list", src, e))? {
        let entry = entry.map_err(|e| Error::io("list", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("inspect", &from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to, what)?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(|e| Error::io("copy", &from, e))?;
        } else {
            return Err(Error::NotAStore {
                what,
                path: src.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// A new directory under `$TMPDIR`, removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Makes a new directory named `persister-PURPOSE-PID-N` under `$TMPDIR`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be made.
    pub fn new(purpose: &str) -> Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let path = base.join(format!(
                "persister-{purpose}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => {
                    LIVE.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(path.clone());
                    return Ok(ScratchDir { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        "create a scratch directory (set TMPDIR to put it elsewhere) in",
                        base,
                        e,
                    ));
                }
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_all_removes_every_live_scratch_directory() -> Result<()> {
        let dirs = [ScratchDir::new("test")?, ScratchDir::new("test")?];
        std::fs::write(dirs[0].path().join("file"), b"x")
            .map_err(|e| Error::io("write", dirs[0].path(), e))?;
        remove_all();
        for dir in &dirs {
            assert!(!dir.path().exists(), "{} survived", dir.path().display());
        }
        Ok(())
    }
}
