//! New destinations made whole or not at all: built under a temporary name beside the
//! destination, then renamed into place.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::CliError;
use crate::error::io_error;

/// The temporary paths being built now, for [`remove_partials`].
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Removes every temporary path a [`Staging`] of this process is building, for a
/// signal handler that ends the process.
pub fn remove_partials() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
    for temporary in live {
        remove(&temporary);
    }
}

fn remove(temporary: &Path) {
    // Best effort: the command already reports why it failed.
    let _ = if temporary.is_dir() {
        fs::remove_dir_all(temporary)
    } else {
        fs::remove_file(temporary)
    };
}

/// A destination being built at a temporary path beside it. Dropping it without
/// [`commit`](Staging::commit) removes the temporary path, so a failed or interrupted
/// (SIGINT, SIGTERM) command leaves the destination as it was. (A killed process
/// leaves the temporary path, `.NAME.partial-*`, which may be deleted.)
#[derive(Debug)]
pub struct Staging {
    destination: PathBuf,
    temporary: PathBuf,
    committed: bool,
}

impl Staging {
    /// Checks that `destination` can be made: it does not exist (or, for a directory,
    /// is an empty directory) and its parent directory exists.
    pub fn new(destination: &Path, is_directory: bool) -> Result<Staging, CliError> {
        // A database has no temporary name: the store is written in place, into a
        // schema that must be empty (checked when it is opened).
        if crate::backend::is_url(destination) {
            return Ok(Staging {
                destination: destination.to_path_buf(),
                temporary: destination.to_path_buf(),
                committed: true,
            });
        }
        if let Ok(meta) = fs::symlink_metadata(destination) {
            let empty_dir = meta.is_dir()
                && fs::read_dir(destination)
                    .map(|mut entries| entries.next().is_none())
                    .unwrap_or(false);
            if !(is_directory && empty_dir) {
                return Err(CliError::new(
                    format!("{} already exists", destination.display()),
                    "give a path that does not exist yet (the command never overwrites or merges into existing data)",
                ));
            }
        }
        let name = destination
            .file_name()
            .ok_or_else(|| {
                CliError::new(
                    format!(
                        "{} does not name a file or directory",
                        destination.display()
                    ),
                    "give the path of the new store or file, such as ./out.redb",
                )
            })?
            .to_string_lossy()
            .into_owned();
        let parent = parent_of(destination);
        if !parent.is_dir() {
            return Err(CliError::new(
                format!("the directory {} does not exist", parent.display()),
                "create it first, or choose another destination",
            ));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temporary = parent.join(format!(".{name}.partial-{}-{nanos}", std::process::id()));
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(temporary.clone());
        Ok(Staging {
            destination: destination.to_path_buf(),
            temporary,
            committed: false,
        })
    }

    /// Where to build.
    pub fn path(&self) -> &Path {
        &self.temporary
    }

    /// The final destination.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Moves what was built into place and makes the move durable. Everything built
    /// must be closed and synced first.
    pub fn commit(mut self) -> Result<(), CliError> {
        if self.committed {
            // Written in place (a database).
            return Ok(());
        }
        if fs::symlink_metadata(&self.destination).is_ok_and(|m| !m.is_dir()) {
            return Err(CliError::new(
                format!(
                    "{} appeared while it was being built",
                    self.destination.display()
                ),
                "another program wrote there; remove it or choose another destination",
            ));
        }
        fs::rename(&self.temporary, &self.destination)
            .map_err(|e| io_error("move the new data into", &self.destination, e))?;
        self.committed = true;
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.temporary);
        let parent = parent_of(&self.destination);
        fs::File::open(&parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error("sync", &parent, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.temporary);
        remove(&self.temporary);
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
