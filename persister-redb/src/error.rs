//! redb's errors as the workspace's [`Error`].

use std::path::Path;

use persister_core::Error;

use crate::layout::REDB_FILE_FORMAT;

/// Converts a redb error met while doing `action` (a verb phrase: "open", "read from",
/// "commit to") on the store at `path`.
pub(crate) fn from_redb(err: impl Into<redb::Error>, action: &'static str, path: &Path) -> Error {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Error::Locked {
            path: path.to_path_buf(),
        },
        redb::Error::Corrupted(what) => Error::corrupt(what, path, None),
        // redb reads within the length its own header gives the file: a file that
        // ends sooner was cut short.
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::corrupt(
                format!("the file ends before its data does ({source})"),
                path,
                None,
            )
        }
        redb::Error::Io(source) => Error::io(action, path, source),
        redb::Error::PreviousIo => Error::Poisoned {
            reason: format!(
                "an earlier write to {} failed, and redb refuses further work on it",
                path.display()
            ),
        },
        redb::Error::UpgradeRequired(found) => Error::UnsupportedFormat {
            what: "redb file",
            path: path.to_path_buf(),
            found: found.into(),
            supported: REDB_FILE_FORMAT,
        },
        redb::Error::ValueTooLarge(len) => Error::TooLarge {
            what: "value",
            len: len as u64,
            max: persister_core::MAX_VALUE_LEN as u64,
        },
        redb::Error::RepairAborted => Error::InvalidInput {
            what: "read-only open",
            reason: format!(
                "{} was not closed cleanly and needs a repair, which a read-only open does not make: open it for writing once, then read it",
                path.display()
            ),
        },
        // Holds a read transaction, which is not `Sync`; its message says it all.
        redb::Error::ReadTransactionStillInUse(_) => {
            Error::backend("redb", "a read transaction is still in use".to_string())
        }
        other => Error::backend("redb", other),
    }
}

/// Shorthand for `map_err(|e| from_redb(e, action, path))`.
pub(crate) trait RedbResultExt<T> {
    fn or_store(self, action: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T, E: Into<redb::Error>> RedbResultExt<T> for Result<T, E> {
    fn or_store(self, action: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|err| from_redb(err, action, path))
    }
}

/// A damaged entry: what is wrong with it, in a store.
pub(crate) fn corrupt(what: impl Into<String>, path: &Path) -> Error {
    Error::corrupt(what, path, None)
}
