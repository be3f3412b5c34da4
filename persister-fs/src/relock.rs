//! Reopening a store this process has just closed.
//!
//! The store's lock is an `flock` on its `LOCK` file, held by an open file
//! description. A child process spawned by another thread shares that description from
//! its `fork` until its `exec`, so a store dropped at that moment stays locked for a
//! few microseconds to milliseconds. A store this process closed less than
//! [`RELOCK_WAIT`] ago is therefore retried briefly; a store held by another process,
//! or still open in this one, fails with `Locked` at once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long after this process closed a store its reopening waits for the lock.
const RELOCK_WAIT: Duration = Duration::from_secs(2);

/// The stores this process has closed, and when.
static CLOSED: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);

fn key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Records that this process closed its store in `dir`.
pub(crate) fn note_closed(dir: &Path) {
    let mut closed = CLOSED.lock().unwrap_or_else(PoisonError::into_inner);
    closed
        .get_or_insert_with(HashMap::new)
        .insert(key(dir), Instant::now());
}

/// Calls `try_lock` until it gets the lock, or at once returns what it returns when the
/// store in `dir` was not closed by this process in the last [`RELOCK_WAIT`].
pub(crate) fn acquire<L>(
    dir: &Path,
    try_lock: impl Fn() -> io::Result<Option<L>>,
) -> io::Result<Option<L>> {
    let closed_at = {
        let closed = CLOSED.lock().unwrap_or_else(PoisonError::into_inner);
        closed.as_ref().and_then(|c| c.get(&key(dir)).copied())
    };
    let mut pause = Duration::from_micros(200);
    loop {
        match try_lock()? {
            Some(lock) => {
                // Open now: a second open in this process must not wait.
                let mut closed = CLOSED.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(closed) = closed.as_mut() {
                    closed.remove(&key(dir));
                }
                return Ok(Some(lock));
            }
            None if closed_at.is_some_and(|at| at.elapsed() < RELOCK_WAIT) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            None => return Ok(None),
        }
    }
}
