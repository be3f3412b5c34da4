//! For backend crates: making files and directory entries durable.
//!
//! ```
//! # let dir = persister_core::scratch::ScratchDir::new("files-example")?;
//! let path = dir.path().join("marker");
//! std::fs::write(&path, b"1").map_err(|e| persister_core::Error::io("write", &path, e))?;
//! persister_core::files::sync_file(&path)?; // its data and length
//! persister_core::files::sync_dir(dir.path())?; // its name in the directory
//! # Ok::<(), persister_core::Error>(())
//! ```

use std::fs::File;
use std::path::Path;

use crate::{Error, Result};

/// Makes the file at `path` durable (`fsync`): its data, its length and its metadata.
///
/// # Errors
///
/// [`Error::Io`] naming `path` if the file cannot be opened or synced.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|err| Error::io("sync", path, err))
}

/// Makes the entries of directory `dir` durable, so that the files created, renamed or
/// removed in it stay so after a crash.
///
/// Only unix can open a directory to sync it; elsewhere this does nothing, and the
/// entries are as durable as the platform's file system makes them.
///
/// # Errors
///
/// [`Error::Io`] naming `dir` if it cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    sync_file(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
