//! The export file: a portable dump of every document of a store, which `persister
//! export` writes and `persister import` reads, whatever the backends.
//!
//! # Layout (version 1)
//!
//! Integers in the header and in record frames are big-endian. Record bodies are
//! [postcard](https://docs.rs/postcard): an enum is its variant index as a varint, then
//! its fields in order; a `u64`/`u32` is a LEB128 varint; a byte string is its length
//! as a varint, then the bytes.
//!
//! ```text
//! file    = header record* end
//! header  = magic "PSTEXPRT" (8 bytes) | version u32 (= 1) | crc32c of the previous 12 bytes, u32
//!           (the same 16 bytes start every version, so a damaged version is told from
//!           another version by the checksum)
//! record  = len u32 | crc u32 | body (len bytes)
//!           crc = crc32c(len as 4 big-endian bytes ‖ body); len ≤ MAX_RECORD_LEN
//! body    = 0 Begin     { id: bytes }                           a document starts
//!         | 1 Compacted { document: bytes }                     its compacted form
//!         | 2 Change    { actor: bytes, seq: u64, value: bytes } one change
//!         | 3 SyncState { peer: bytes, state: bytes }           one peer's sync state
//!         | 4 End       { documents: u64, digest: u32 }         the last record
//! ```
//!
//! The records of one document are `Begin`, at most one `Compacted`, its `Change`s, then
//! its `SyncState`s. Documents are in increasing order of their id bytes, changes in
//! increasing `(actor bytes, seq)`, sync states in increasing peer id: no key appears
//! twice. `End` holds the number of documents and the crc32c of every byte of the file
//! before it, so a record lost whole (which its own checksum cannot see) is caught;
//! nothing may follow it.
//!
//! # Checks on reading
//!
//! The [`Decoder`] refuses, with an [`Error`] giving the byte offset: another magic, a
//! header that fails its checksum, a version other than [`VERSION`] (naming both), a
//! bad checksum, a record length over
//! [`MAX_RECORD_LEN`], a file that ends before its `End` record, a body postcard cannot
//! read or with bytes left over, ids, actors, peers or values over the limits of
//! `persister-core`, keys out of order, and bytes after `End`. Every length is bounded
//! by the bytes present: a record body is read with [`Read::take`], so a length field
//! never makes it allocate more than the file holds, and postcard borrows byte strings
//! from the body.
//!
//! ```
//! use persister_cli::export::{decode, encode};
//! use persister_cli::DocumentDump;
//!
//! let doc = DocumentDump { id: "notes".into(), document: Some(b"doc".to_vec()), ..Default::default() };
//! let bytes = encode(std::slice::from_ref(&doc))?;
//! assert_eq!(decode(&bytes)?, vec![doc]);
//! # Ok::<(), persister_cli::export::Error>(())
//! ```
//!
//! [`Read::take`]: std::io::Read::take

mod decoder;
mod encoder;
mod record;
#[cfg(test)]
mod tests;

use std::io;

pub use decoder::Decoder;
pub use encoder::Encoder;

use crate::DocumentDump;

/// The first 8 bytes of every export file.
pub const MAGIC: [u8; 8] = *b"PSTEXPRT";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// The bytes of the header.
pub const HEADER_LEN: usize = 16;
/// The most bytes a record body may have: the largest value
/// ([`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN)) plus room for its keys.
pub const MAX_RECORD_LEN: u32 = persister_core::MAX_VALUE_LEN as u32 + 64 * 1024;

/// Whether the file at `path` starts with [`MAGIC`]: an export file (of any version,
/// sound or not), which commands that take a store can name as such.
pub fn is_export_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0; MAGIC.len()];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == MAGIC)
}

/// What can go wrong writing or reading an export file. Offsets are from the start of
/// the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file does not start with [`MAGIC`].
    #[error("it is not a persister export file (it does not start with \"PSTEXPRT\")")]
    NotAnExport,
    /// The file is of another format version.
    #[error("it is export format version {found}, but this build reads only version {supported}")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file ends too early.
    #[error("the file ends at byte {offset}, inside {what}")]
    Truncated {
        /// Where it ends.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// A checksum does not match.
    #[error("the checksum of the {what} at byte {offset} does not match: the file is damaged")]
    Checksum {
        /// Where the damaged part starts.
        offset: u64,
        /// What is damaged.
        what: &'static str,
    },
    /// A length is over its maximum.
    #[error("the {what} at byte {offset} is {len} bytes, more than the maximum of {max}")]
    TooLong {
        /// Where the length was read.
        offset: u64,
        /// What is too long.
        what: &'static str,
        /// The length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// A record is well framed but its content is wrong.
    #[error("the record at byte {offset} is malformed: {reason}")]
    Malformed {
        /// Where the record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The documents given to the [`Encoder`] break the format's rules.
    #[error("cannot export document {document}: {reason}")]
    Invalid {
        /// The document, as `DocumentId` displays it.
        document: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("cannot {action} the export file: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Encodes `documents` (in increasing id order) as a whole export file.
pub fn encode(documents: &[DocumentDump]) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder::new(Vec::new())?;
    for document in documents {
        encoder.write_document(document)?;
    }
    encoder.finish()
}

/// Decodes a whole export file; fails on the first problem, returning nothing of it.
pub fn decode(bytes: &[u8]) -> Result<Vec<DocumentDump>, Error> {
    Decoder::new(bytes)?.collect()
}
