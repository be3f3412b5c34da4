//! Calling sled: its errors mapped to [`Error`], its panics caught.

use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use persister_core::{Error, Result};

/// Opens sled's database with `config`. A store held by another process, or still open
/// in this one, fails with [`Error::Locked`] at once.
pub(crate) fn open(path: &Path, config: &sled::Config) -> Result<sled::Db> {
    call(path, "open", || config.open())
}

/// How long [`close`] waits for sled to let go of its lock before it reports the store
/// as still locked. sled's threads let go within milliseconds; a lock still held after
/// this is another process's, which opened the store meanwhile.
const RELEASE_LIMIT: Duration = Duration::from_secs(2);

/// Closes `db`, the database of the store in `dir`, and returns once its lock is
/// released, so that the next open, in this process or another, never waits.
///
/// sled 0.34 holds its `flock` on `db` through the file's descriptor, which its pool
/// threads keep for a moment after the `Db` is dropped, and which a child process forked
/// by another thread shares until its `exec`. Neither can be joined or unlocked from
/// here, so this polls for the lock: it takes it on a descriptor of its own, which
/// succeeds exactly when every holder has let go, and releases it at once.
pub(crate) fn close(db: sled::Db, dir: &Path) -> Result<()> {
    drop(db);
    let path = dir.join("db");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let started = Instant::now();
    let mut pause = Duration::from_micros(20);
    loop {
        match file.try_lock() {
            Ok(()) => return file.unlock().map_err(|e| Error::io("unlock", &path, e)),
            Err(TryLockError::WouldBlock) if started.elapsed() < RELEASE_LIMIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    }
}

/// Runs one sled operation. sled's errors become [`Error`]s; a panic inside sled (which
/// sled 0.34 does on some damaged files) becomes [`Error::Corrupt`] instead of
/// unwinding through the caller. `action` is a verb phrase ("read", "open").
pub(crate) fn call<T>(
    path: &Path,
    action: &'static str,
    f: impl FnOnce() -> sled::Result<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| map_error(path, action, e)),
        Err(panic) => Err(Error::corrupt(
            format!(
                "sled panicked while trying to {action} ({}), as it does on some damaged files",
                persister_core::panic_message(&*panic)
            ),
            path,
            None,
        )),
    }
}

/// Whether a panic in a sled call turned into this error.
pub(crate) fn is_caught_panic(error: &Error) -> bool {
    matches!(error, Error::Corrupt { what, .. } if what.starts_with("sled panicked"))
}

fn map_error(path: &Path, action: &'static str, error: sled::Error) -> Error {
    match error {
        sled::Error::Io(e) if is_lock_error(&e) => Error::Locked {
            path: path.to_path_buf(),
        },
        sled::Error::Io(e) => Error::io(action, path, e),
        sled::Error::Corruption { at, .. } => Error::corrupt(
            match at {
                Some(at) => format!("sled found damaged data (at {at:?}) while trying to {action}"),
                None => format!("sled found damaged data while trying to {action}"),
            },
            path,
            None,
        ),
        other => Error::backend("sled", other),
    }
}

/// sled 0.34.7 reports a held lock on its `db` file as
/// `Io(Other, "could not acquire lock on \"…/db\": …")`.
fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Other && e.to_string().starts_with("could not acquire lock on")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_store_reopens_at_once() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        for round in 0..100 {
            let config = sled::Config::new().path(dir.path()).flush_every_ms(None);
            let db = open(dir.path(), &config)?;
            db.insert(b"round", &[round as u8][..])
                .map_err(|e| map_error(dir.path(), "write", e))?;
            close(db, dir.path())?;
        }
        Ok(())
    }

    #[test]
    fn a_store_open_in_this_process_is_locked() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        let config = sled::Config::new().path(dir.path()).flush_every_ms(None);
        let _db = open(dir.path(), &config)?;
        let second = sled::Config::new().path(dir.path()).flush_every_ms(None);
        assert!(matches!(
            open(dir.path(), &second),
            Err(Error::Locked { .. })
        ));
        Ok(())
    }

    #[test]
    fn panics_become_corruption_errors() {
        let path = Path::new("/store");
        let result: Result<()> = call(path, "read", || panic!("bad page"));
        let err = result.unwrap_err();
        assert!(is_caught_panic(&err), "{err}");
        assert!(err.to_string().contains("bad page"));
    }

    #[test]
    fn sled_errors_keep_their_meaning() {
        let path = Path::new("/store");
        let lock = std::io::Error::other("could not acquire lock on \"/store/db\": busy");
        assert!(matches!(
            map_error(path, "open", sled::Error::Io(lock)),
            Error::Locked { .. }
        ));
        let io = std::io::Error::from(ErrorKind::PermissionDenied);
        assert!(matches!(
            map_error(path, "open", sled::Error::Io(io)),
            Error::Io { action: "open", .. }
        ));
        let corrupt = sled::Error::Corruption { at: None, bt: () };
        let corrupt = map_error(path, "read", corrupt);
        assert!(corrupt.is_corrupt());
        assert!(!corrupt.to_string().contains("None"), "{corrupt}");
    }
}
