//! For backend crates: scratch directories that live while a store is open.
//!
//! Some opens must not touch the store itself but need a copy their engine may write
//! to: reading a sled store (sled writes to whatever it opens), or reading a redb file
//! that needs a repair read-only. A [`ScratchDir`] is a new directory under the
//! system's temporary directory (`$TMPDIR`), removed when dropped; [`remove_all`]
//! removes every one of this process at once and makes no more, for a program about
//! to end on a signal, which runs no destructor.
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

/// The scratch directories of this process that exist now, and whether
/// [`remove_all`] has run. A directory is made and recorded under this lock, so
/// `remove_all` sees every directory that exists.
static LIVE: Mutex<Live> = Mutex::new(Live {
    dirs: BTreeSet::new(),
    ended: false,
});

/// What [`LIVE`] guards.
struct Live {
    dirs: BTreeSet<PathBuf>,
    /// Set by [`remove_all`]: no directory is made after it.
    ended: bool,
}

/// How many times [`remove_all`] tries to remove a directory that another thread is
/// still writing into.
const REMOVE_ATTEMPTS: usize = 100;

/// Removes every scratch directory of this process, so that nothing is left behind by
/// a program that exits without dropping its stores (as on SIGINT), and makes
/// [`ScratchDir::new`] fail from then on, so that none is made between this call and
/// the end of the process. Stores reading from them fail from then on.
pub fn remove_all() {
    let live = {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.ended = true;
        std::mem::take(&mut live.dirs)
    };
    for dir in live {
        // A thread may still be writing into it (a file copied in while the directory
        // is emptied makes its removal fail): try again until it is gone. Once it is,
        // nothing can be made inside it (its path no longer exists) and, with `ended`
        // set, `ScratchDir::new` makes no other.
        for _ in 0..REMOVE_ATTEMPTS {
            match fs::remove_dir_all(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(_) => {}
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
    /// [`Error::Io`] if the directory cannot be made, or (of kind
    /// [`ErrorKind::Interrupted`]) after [`remove_all`].
    pub fn new(purpose: &str) -> Result<ScratchDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        // Held while the directory is made and recorded, so that a `remove_all` on
        // another thread (a signal handler's) either finds it or runs before it and
        // stops it from being made.
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if live.ended {
            return Err(Error::io(
                "create a scratch directory (the process is ending on a signal) in",
                base,
                std::io::Error::from(ErrorKind::Interrupted),
            ));
        }
        loop {
            let path = base.join(format!(
                "persister-{purpose}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => {
                    live.dirs.insert(path.clone());
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
            .dirs
            .remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of this binary that makes scratch directories: after `remove_all`
    // the process makes no more.
    #[test]
    fn remove_all_removes_every_live_scratch_directory_and_stops_new_ones() -> Result<()> {
        let dirs = [ScratchDir::new("test")?, ScratchDir::new("test")?];
        std::fs::write(dirs[0].path().join("file"), b"x")
            .map_err(|e| Error::io("write", dirs[0].path(), e))?;
        remove_all();
        for dir in &dirs {
            assert!(!dir.path().exists(), "{} survived", dir.path().display());
        }
        match ScratchDir::new("test") {
            Err(Error::Io { source, .. }) => assert_eq!(source.kind(), ErrorKind::Interrupted),
            other => panic!("a scratch directory after remove_all: {other:?}"),
        }
        Ok(())
    }
}
