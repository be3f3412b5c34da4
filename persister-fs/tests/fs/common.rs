//! Helpers shared by the tests.

use std::path::{Path, PathBuf};

use persister_core::{ActorId, DocumentId, Persister, Result, Store};
use persister_fs::FsStore;

pub type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn actor(n: u8) -> ActorId {
    ActorId::new([n; 16])
}

/// A store in `dir` with document `id` holding `flushes` changes, one flush each;
/// returns the path of its log.
pub fn flushed_log(dir: &Path, id: &DocumentId, flushes: u64) -> Result<PathBuf> {
    let store = FsStore::open(dir)?;
    let mut p = store.open_document(id)?;
    for seq in 1..=flushes {
        p.insert_changes(vec![(actor(1), seq, vec![seq as u8; 100])])?;
        p.flush()?;
    }
    Ok(store.log_path(id).expect("a flushed document has a log"))
}

/// The length of a record header: log format version 3's, with the log's key.
pub const RECORD_HEADER_LEN: usize = 29;

/// The start and end of every record after a header of `header_len` bytes, read with
/// the documented framing (29-byte header, length at bytes 1..5).
pub fn records(bytes: &[u8], header_len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = header_len;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((at, at + RECORD_HEADER_LEN + len));
        at += RECORD_HEADER_LEN + len;
    }
    out
}

/// The header length of the log of a short id: 34 bytes (with the log's key) and the
/// id.
pub fn header_len(id: &DocumentId) -> usize {
    34 + id.as_bytes().len()
}
