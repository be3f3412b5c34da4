//! For backend crates: reopening a store this process has just closed.
//!
//! A store's lock can outlive the store by a moment. An `flock` is held by an open file
//! description, which a child process spawned by another thread shares from its `fork`
//! until its `exec`; sled releases the lock on its `db` file only when its last
//! background thread lets go of it, a moment after the database is dropped. A
//! backend calls [`note_closed`] when it drops a store and opens through
//! [`open_retrying`], which retries [`Error::Locked`] for a short while when this
//! process closed the store at that path less than [`RELOCK_WAIT`] ago. A store held by
//! another process, or still open in this one, fails with `Locked` at once.
//!
//! ```
//! use persister_core::{relock, Error};
//! use std::path::Path;
//!
//! let path = Path::new("some/store");
//! relock::note_closed(path);
//! let mut attempts = 0;
//! let opened = relock::open_retrying(path, || {
//!     attempts += 1;
//!     if attempts < 3 {
//!         Err(Error::Locked { path: path.to_path_buf() })
//!     } else {
//!         Ok("the store")
//!     }
//! });
//! assert_eq!(opened.ok(), Some("the store"));
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long after this process closed a store [`open_retrying`] retries its lock.
pub const RELOCK_WAIT: Duration = Duration::from_secs(3);

/// The stores this process has closed, and when.
static CLOSED: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);

fn key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn with_closed<T>(f: impl FnOnce(&mut HashMap<PathBuf, Instant>) -> T) -> T {
    let mut closed = CLOSED.lock().unwrap_or_else(PoisonError::into_inner);
    f(closed.get_or_insert_with(HashMap::new))
}

/// Records that this process closed (dropped) its store at `path`.
pub fn note_closed(path: &Path) {
    let key = key(path);
    with_closed(|closed| closed.insert(key, Instant::now()));
}

/// Calls `open` until it returns something other than [`Error::Locked`], for up to
/// [`RELOCK_WAIT`] after this process closed the store at `path`; when it did not,
/// returns what the first call returns.
///
/// # Errors
///
/// The last error of `open`.
pub fn open_retrying<T>(path: &Path, mut open: impl FnMut() -> Result<T>) -> Result<T> {
    let key = key(path);
    let closed_at = with_closed(|closed| closed.get(&key).copied());
    let mut pause = Duration::from_micros(200);
    loop {
        match open() {
            Ok(store) => {
                // Open now: a second open in this process must not wait.
                with_closed(|closed| closed.remove(&key));
                return Ok(store);
            }
            Err(Error::Locked { .. }) if closed_at.is_some_and(|at| at.elapsed() < RELOCK_WAIT) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(path: &Path) -> Error {
        Error::Locked {
            path: path.to_path_buf(),
        }
    }

    #[test]
    fn a_store_not_closed_here_fails_at_once() {
        let path = Path::new("relock-test/never-closed");
        let mut calls = 0;
        let result: Result<()> = open_retrying(path, || {
            calls += 1;
            Err(locked(path))
        });
        assert!(matches!(result, Err(Error::Locked { .. })));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_store_closed_here_is_retried_until_it_opens_and_then_not_again() {
        let path = Path::new("relock-test/closed");
        note_closed(path);
        let mut calls = 0;
        let result = open_retrying(path, || {
            calls += 1;
            if calls < 4 {
                Err(locked(path))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.ok(), Some(4));
        // Open again (as by a second open of the store): not retried.
        let mut calls = 0;
        let result: Result<()> = open_retrying(path, || {
            calls += 1;
            Err(locked(path))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let path = Path::new("relock-test/other");
        note_closed(path);
        let mut calls = 0;
        let result: Result<()> = open_retrying(path, || {
            calls += 1;
            Err(Error::NotFound {
                what: "store".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
