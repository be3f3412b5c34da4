//! What opening a document dropped: the report of a torn tail.

use std::path::PathBuf;

use crate::DocumentId;

/// What opening a document or a store dropped or found as a torn tail: bytes written
/// after the last flush that a crash left incomplete (contract point 6).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// The document whose log had the tail, or `None` for a log of the whole store
    /// (redb's commit log), whose torn tail may have held writes of any document.
    pub document: Option<DocumentId>,
    /// The file (or store) holding it.
    pub path: PathBuf,
    /// Where the tail starts.
    pub offset: u64,
    /// How many bytes it held.
    pub bytes: u64,
    /// Whether the tail was cut off (false on a read-only open, which only reports it).
    pub truncated: bool,
}

impl Recovered {
    /// A report of a torn tail of `bytes` bytes at `offset` of `path`, the log of
    /// `document`; `truncated` says whether it was cut off.
    pub fn new(
        document: DocumentId,
        path: impl Into<PathBuf>,
        offset: u64,
        bytes: u64,
        truncated: bool,
    ) -> Self {
        Self {
            document: Some(document),
            path: path.into(),
            offset,
            bytes,
            truncated,
        }
    }

    /// A report of a torn tail of `bytes` bytes at `offset` of `path`, a log of the
    /// whole store; `truncated` says whether it was dropped.
    pub fn store_wide(path: impl Into<PathBuf>, offset: u64, bytes: u64, truncated: bool) -> Self {
        Self {
            document: None,
            path: path.into(),
            offset,
            bytes,
            truncated,
        }
    }
}
