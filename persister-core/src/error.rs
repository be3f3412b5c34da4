//! The one error type of the workspace.

use std::io;
use std::path::{Path, PathBuf};

use crate::DocumentId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a persister or a store.
///
/// Each variant says what happened and, where it applies, where; its message ends with
/// what the user can do about it. Backends keep their engine's own error as the
/// `source` of [`Error::Backend`] or [`Error::Io`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("I/O error while trying to {action} {path}: {source}; {advice}", path = path.display(), advice = io_advice(source))]
    Io {
        /// What was being done, as a verb phrase ("read", "sync", "create").
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Stored data failed a check: a bad checksum, an impossible length, a missing or
    /// extra entry. Nothing of the damaged part was returned.
    #[error("corrupt data in {path}{at}: {what}; do not write to the store: read out what still reads (open it read-only) or restore a backup", path = path.display(), at = offset.map(|o| format!(" at byte {o}")).unwrap_or_default())]
    Corrupt {
        /// What is wrong.
        what: String,
        /// The file or store holding the damage.
        path: PathBuf,
        /// Where in the file, when known.
        offset: Option<u64>,
    },

    /// A file's format version is not one this build reads.
    #[error("{path} is {what} format version {found}, but this build reads only version {supported}; use a version of this library that reads format version {found}", path = path.display())]
    UnsupportedFormat {
        /// Which format ("fs log", "export file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// A store of an older format version, which this build migrates in place only when
    /// asked to.
    #[error("{path} is {what} format version {found}; this build reads version {supported}, and migrates version {found} in place only when asked: {how}", path = path.display())]
    MigrationNeeded {
        /// Which format.
        what: &'static str,
        /// The store.
        path: PathBuf,
        /// The version found in the store.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
        /// How to migrate, and what to do first.
        how: &'static str,
    },

    /// A file is not of the expected kind at all (its magic bytes do not match).
    #[error("{path} is not {what}; check the path, or open it with the backend that made it", path = path.display())]
    NotAStore {
        /// The kind of file expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },

    /// Another process (or another open store in this one) holds the store.
    #[error("the store at {path} is locked by another process or handle; close it there first, or wait for it to exit", path = path.display())]
    Locked {
        /// The store.
        path: PathBuf,
    },

    /// A handle of a networked store lost its lease on the document: the lease expired
    /// while the handle was idle, another holder took the document over, or the server
    /// lost writes this handle had made (a standby promoted without them). The handle
    /// can write nothing more, and nothing of its writes since its last flush was
    /// written; reopen the document to go on from what the server holds.
    #[error("{reason}")]
    LeaseLost {
        /// What happened to the lease, naming the document.
        reason: String,
    },

    /// A flush (or another write to disk) failed earlier, so the handle refuses all
    /// further writes and flushes until the store is reopened.
    #[error(
        "this handle is poisoned because an earlier write to disk failed ({reason}); writes since the last successful flush may be lost: drop every handle of the store and reopen it"
    )]
    Poisoned {
        /// What the failed write or flush reported.
        reason: String,
    },

    /// A value, id or batch is larger than the documented maximum. Nothing of the batch
    /// holding it was applied.
    #[error(
        "{what} is {len} bytes, more than the maximum of {max}; nothing was written: split the data or store it elsewhere"
    )]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The documented maximum.
        max: u64,
    },

    /// An argument is not valid. Nothing was written.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// A document already has an open handle in this store.
    #[error(
        "document {document} is already open in this store; use the open handle, or drop it first"
    )]
    DocumentInUse {
        /// The document.
        document: DocumentId,
    },

    /// Something asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },

    /// The storage engine reported an error not covered above.
    #[error("{backend} error: {source}")]
    Backend {
        /// The backend's name ("redb", "sled").
        backend: &'static str,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What to do about an I/O error, by its kind.
fn io_advice(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the disk is full: free some space, then reopen the store (everything flushed before is kept)"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the file system is read-only: remount it read-write, or open the store read-only to read it"
        }
        io::ErrorKind::PermissionDenied => {
            "check the permissions of the path, or open the store read-only to read it"
        }
        io::ErrorKind::NotFound => "check that the path exists",
        _ => "check that the path exists, is writable and the disk is not full",
    }
}

impl Error {
    /// Wraps an I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A corruption error at `path`, optionally at a byte offset.
    pub fn corrupt(what: impl Into<String>, path: impl Into<PathBuf>, offset: Option<u64>) -> Self {
        Self::Corrupt {
            what: what.into(),
            path: path.into(),
            offset,
        }
    }

    /// Wraps an engine's error.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// The refusal of a write (or removal) through a store opened read-only at `path`;
    /// `open_to_write` names how to open it for writing (`"RedbStore::open"`).
    pub fn read_only(path: &Path, open_to_write: &str) -> Self {
        Self::InvalidInput {
            what: "write",
            reason: format!(
                "the store at {} was opened read-only, so nothing can be written or removed through it; open it with {open_to_write} to write",
                path.display()
            ),
        }
    }

    /// Whether this error reports damaged data.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }

    /// This error with every path under `from` moved under `to`: for a backend that
    /// works on a copy of a store (a read-only open, a check before opening), so that
    /// errors met in the copy name the store the application gave.
    ///
    /// ```
    /// use std::path::Path;
    /// use persister_core::Error;
    ///
    /// let copy = Path::new("/tmp/copy/store");
    /// let err = Error::corrupt("bad page", copy.join("db"), None);
    /// let err = err.relocated(copy, Path::new("/data/docs"));
    /// assert!(matches!(&err, Error::Corrupt { path, .. } if path == Path::new("/data/docs/db")));
    /// ```
    pub fn relocated(self, from: &Path, to: &Path) -> Self {
        let moved = |path: PathBuf| match path.strip_prefix(from) {
            Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
            Ok(rest) => to.join(rest),
            Err(_) => path,
        };
        match self {
            Self::Io {
                action,
                path,
                source,
            } => Self::Io {
                action,
                path: moved(path),
                source,
            },
            Self::Corrupt { what, path, offset } => Self::Corrupt {
                what,
                path: moved(path),
                offset,
            },
            Self::UnsupportedFormat {
                what,
                path,
                found,
                supported,
            } => Self::UnsupportedFormat {
                what,
                path: moved(path),
                found,
                supported,
            },
            Self::MigrationNeeded {
                what,
                path,
                found,
                supported,
                how,
            } => Self::MigrationNeeded {
                what,
                path: moved(path),
                found,
                supported,
                how,
            },
            Self::NotAStore { what, path } => Self::NotAStore {
                what,
                path: moved(path),
            },
            Self::Locked { path } => Self::Locked { path: moved(path) },
            other => other,
        }
    }
}
