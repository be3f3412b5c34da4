//! The on-disk format: the store marker, the log header and the record framing.
//!
//! All integers are little-endian. Checksums are CRC32C (Castagnoli), masked as
//! LevelDB and RocksDB mask them ([`mask_crc`]), so that a checksum stored inside
//! checksummed data does not checksum to a fixed pattern.
//!
//! # Store marker: the file `STORE` (16 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`STORE_MAGIC`] (`"PFSTORE\0"`) |
//! | 8 | 4 | store format version, [`STORE_VERSION`] |
//! | 12 | 4 | masked CRC32C of bytes 0..12 |
//!
//! # Log header: the start of every document log (18 + n bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`LOG_MAGIC`] (`"PFSLOG\0\0"`) |
//! | 8 | 4 | log format version, [`LOG_VERSION`] |
//! | 12 | 2 | n, the document id's length, at most [`MAX_DOCUMENT_ID_LEN`] |
//! | 14 | n | the document id's bytes |
//! | 14 + n | 4 | masked CRC32C of bytes 0..14 + n |
//!
//! The version is checked before anything after it, so that a later version may change
//! the rest of the header and still be refused with
//! [`Error::UnsupportedFormat`] naming both versions.
//!
//! # Record: one applied batch (13-byte header, then the payload)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type: 1 = batch, 2 = batch that ends a flush; 0 and others are invalid |
//! | 1 | 4 | payload length, 1 to [`MAX_RECORD_LEN`] |
//! | 5 | 4 | flush number: the same for every record written by one flush, one more for the next flush |
//! | 9 | 4 | masked CRC32C of the payload followed by bytes 0..9 of this header |
//! | 13 | length | payload: one encoded batch (see [`crate::format::batch`]) |
//!
//! A zero type and a zero length are invalid, so a zero-filled tail (what a crash can
//! leave after a file was extended) never reads as records. The checksum covers the
//! header fields too, so a damaged type, length or flush number is detected like a
//! damaged payload. The payload is checksummed first so that a flush can mark its last
//! record (type 2) without hashing the payload again.

use std::path::Path;

use persister_core::{DocumentId, Error, MAX_DOCUMENT_ID_LEN, Result};

pub mod batch;
mod record;

pub(crate) use record::{begin_record, finish_record, mark_ends_flush, parse_record};

/// The first 8 bytes of the store marker file.
pub const STORE_MAGIC: [u8; 8] = *b"PFSTORE\0";
/// The store format version this build reads and writes.
pub const STORE_VERSION: u32 = 1;
/// The length of the store marker file.
pub const MARKER_LEN: usize = 16;
/// The first 8 bytes of every document log.
pub const LOG_MAGIC: [u8; 8] = *b"PFSLOG\0\0";
/// The log format version this build reads and writes.
pub const LOG_VERSION: u32 = 1;
/// The longest log header: the fixed 18 bytes and the longest document id.
pub const MAX_LOG_HEADER_LEN: usize = 18 + MAX_DOCUMENT_ID_LEN;
/// The length of a record header.
pub const RECORD_HEADER_LEN: usize = 13;
/// The largest record payload (2 GiB). A batch whose encoding is larger is refused with
/// [`Error::TooLarge`]; a length field above it is invalid on disk.
pub const MAX_RECORD_LEN: usize = 1 << 31;

const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC32C as LevelDB and RocksDB do: rotate right by 15 bits, add a constant.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Undoes [`mask_crc`].
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

fn le_u32(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// The store marker's bytes.
pub(crate) fn encode_marker() -> [u8; MARKER_LEN] {
    let mut out = [0; MARKER_LEN];
    out[..8].copy_from_slice(&STORE_MAGIC);
    out[8..12].copy_from_slice(&STORE_VERSION.to_le_bytes());
    let crc = mask_crc(crc32c::crc32c(&out[..12]));
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the store marker read from `path`.
pub(crate) fn decode_marker(bytes: &[u8], path: &Path) -> Result<()> {
    const WHAT: &str = "an fs store marker";
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(not_a(WHAT, path));
    };
    if *magic != STORE_MAGIC {
        return Err(not_a(WHAT, path));
    }
    let Some((version, rest)) = rest.split_first_chunk::<4>() else {
        return Err(Error::corrupt(
            "the store marker is cut short",
            path,
            Some(8),
        ));
    };
    let version = le_u32(*version);
    if version != STORE_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "fs store",
            path: path.to_path_buf(),
            found: version,
            supported: STORE_VERSION,
        });
    }
    let stored = rest.first_chunk::<4>().map(|c| le_u32(*c));
    if stored != Some(mask_crc(crc32c::crc32c(&bytes[..12]))) {
        return Err(Error::corrupt(
            "the store marker's checksum does not match",
            path,
            Some(12),
        ));
    }
    Ok(())
}

/// Whether `bytes` start like a store marker of any version.
pub(crate) fn has_marker_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(&STORE_MAGIC)
}

/// The header of the log of document `id`.
pub(crate) fn encode_log_header(id: &DocumentId) -> Vec<u8> {
    let id = id.as_bytes();
    let mut out = Vec::with_capacity(log_header_len(id.len()));
    out.extend_from_slice(&LOG_MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_le_bytes());
    // Ids are at most MAX_DOCUMENT_ID_LEN (1024) bytes: `OpenDocuments::claim` checks it.
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    let crc = mask_crc(crc32c::crc32c(&out));
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The length of the log header of an id of `id_len` bytes.
pub(crate) fn log_header_len(id_len: usize) -> usize {
    18 + id_len
}

/// Reads the log header at the start of `bytes`: the document id and the header's
/// length.
pub(crate) fn decode_log_header(bytes: &[u8], path: &Path) -> Result<(DocumentId, usize)> {
    let cut = || Error::corrupt("the log header is cut short", path, Some(0));
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(cut());
    };
    if *magic != LOG_MAGIC {
        return Err(not_a("an fs document log", path));
    }
    let (version, rest) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
    let version = le_u32(*version);
    if version != LOG_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "fs log",
            path: path.to_path_buf(),
            found: version,
            supported: LOG_VERSION,
        });
    }
    let (id_len, rest) = rest.split_first_chunk::<2>().ok_or_else(cut)?;
    let id_len = usize::from(u16::from_le_bytes(*id_len));
    if id_len > MAX_DOCUMENT_ID_LEN {
        return Err(Error::corrupt(
            format!(
                "the log header's document id length {id_len} is over the maximum of {MAX_DOCUMENT_ID_LEN}"
            ),
            path,
            Some(12),
        ));
    }
    let id = rest.get(..id_len).ok_or_else(cut)?;
    let stored = rest[id_len..].first_chunk::<4>().ok_or_else(cut)?;
    let end = 14 + id_len;
    if le_u32(*stored) != mask_crc(crc32c::crc32c(&bytes[..end])) {
        return Err(Error::corrupt(
            "the log header's checksum does not match",
            path,
            Some(end as u64),
        ));
    }
    Ok((DocumentId::from(id), end + 4))
}

fn not_a(what: &'static str, path: &Path) -> Error {
    Error::NotAStore {
        what,
        path: path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_round_trips_and_changes_the_value() {
        for crc in [0, 1, 0xdead_beef, u32::MAX, crc32c::crc32c(b"foo")] {
            assert_eq!(unmask_crc(mask_crc(crc)), crc);
            assert_ne!(mask_crc(crc), crc);
        }
        // The constant and rotation of LevelDB's crc32c::Mask.
        assert_eq!(mask_crc(0), 0xa282_ead8);
        assert_eq!(mask_crc(1 << 15), 0xa282_ead9);
    }

    #[test]
    fn marker_round_trips_and_refuses_other_versions() -> Result<()> {
        let path = Path::new("STORE");
        let mut marker = encode_marker();
        decode_marker(&marker, path)?;
        assert!(has_marker_magic(&marker));
        marker[8] = 9;
        let err = decode_marker(&marker, path);
        assert!(matches!(
            err,
            Err(Error::UnsupportedFormat {
                found: 9,
                supported: 1,
                ..
            })
        ));
        let mut marker = encode_marker();
        marker[13] ^= 1;
        assert!(matches!(
            decode_marker(&marker, path),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode_marker(b"PFS", path),
            Err(Error::NotAStore { .. })
        ));
        Ok(())
    }

    #[test]
    fn log_header_round_trips_every_id_length() -> Result<()> {
        let path = Path::new("log");
        for id in [vec![], vec![0], vec![0xff; MAX_DOCUMENT_ID_LEN]] {
            let id = DocumentId::from(id);
            let mut bytes = encode_log_header(&id);
            let len = bytes.len();
            assert_eq!(len, log_header_len(id.as_bytes().len()));
            bytes.extend_from_slice(b"records follow");
            assert_eq!(decode_log_header(&bytes, path)?, (id, len));
            for cut in 0..len {
                assert!(decode_log_header(&bytes[..cut], path).is_err());
            }
        }
        Ok(())
    }

    #[test]
    fn hostile_header_id_length_is_corrupt() {
        let mut bytes = encode_log_header(&DocumentId::from("doc"));
        bytes[12..14].copy_from_slice(&u16::MAX.to_le_bytes());
        bytes.resize(70_000, 0);
        assert!(matches!(
            decode_log_header(&bytes, Path::new("log")),
            Err(Error::Corrupt {
                offset: Some(12),
                ..
            })
        ));
    }
}
