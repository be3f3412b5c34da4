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
//! | 8 | 4 | the store's format version: [`STORE_VERSION`], or [`UNKEYED_STORE_VERSION`] for a store not migrated |
//! | 12 | 4 | masked CRC32C of bytes 0..12 |
//!
//! Every store format version keeps this layout, so the checksum is checked before the
//! version: a marker whose checksum does not match is [`Error::Corrupt`] whatever its
//! version field holds, and only an intact marker of a version this build does not
//! read is [`Error::UnsupportedFormat`], naming both versions.
//!
//! # Log header: the start of every document log (34 + n bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`LOG_MAGIC`] (`"PFSLOG\0\0"`) |
//! | 8 | 4 | log format version, [`LOG_VERSION`] (3) |
//! | 12 | 2 | n, the document id's length, at most [`MAX_DOCUMENT_ID_LEN`] |
//! | 14 | n | the document id's bytes |
//! | 14 + n | 16 | the log's key: random bytes drawn when the log was written |
//! | 30 + n | 4 | masked CRC32C of bytes 0..30 + n |
//!
//! The version is checked before anything after it, as it decides the header's layout.
//! A version other than 2 and 3 is damage, [`Error::Corrupt`] naming the version found
//! (see [Versions](#versions)).
//!
//! # Record (29-byte header, then the payload)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type: 1 = batch, 3 = commit; 0 and others (2 was version 1's "batch that ends a flush") are invalid |
//! | 1 | 4 | payload length, 1 to [`MAX_RECORD_LEN`] (exactly 12 for a commit) |
//! | 5 | 4 | flush number: the same for every record written by one flush, one more for the next flush |
//! | 9 | 16 | the log's key, as its header holds it |
//! | 25 | 4 | masked CRC32C of the payload followed by bytes 0..25 of this header |
//! | 29 | length | payload |
//!
//! **The key** tells the log's records from bytes an application stored. A payload
//! holds the application's (and its peers') bytes, which can be laid out as a record
//! with a valid checksum. Telling a torn tail from damage looks for valid records after
//! the first invalid one (see `replay`), and a torn flush's own payload is such a
//! place: there, a value crafted as a record of another flush made a crash read as
//! damage, and the document refuse to open. A record is valid only with its log's key,
//! which is drawn from the operating system's random source and never leaves the log,
//! so no stored value carries it but by a 2^-128 chance.
//!
//! **Log format version 2** is the same without the key: an 18 + n byte header, and
//! 13-byte record headers whose checksum covers bytes 0..9. Logs of version 2 are read
//! and appended to as they are (their records keep version 2's framing, and the
//! weakness above) until the document's log is written anew (a rewrite, see
//! [`FsOptions::rewrite_dead_share`](crate::FsOptions::rewrite_dead_share)), which
//! writes version 3 in a store of version 3. A store of version 2
//! ([`UNKEYED_STORE_VERSION`]) writes all its logs, new and rewritten, in version 2,
//! so that the builds that wrote it still open it, until it is opened with
//! [`FsOptions::migrate_format`](crate::FsOptions::migrate_format).
//!
//! A **batch** record's payload is one encoded batch (see [`crate::format::batch`]).
//! Every flush writes its batches and then one **commit** record, whose 12-byte
//! payload is:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | the log's length before the commit record |
//! | 8 | 4 | the CRC32C (unmasked) of all those bytes, header included: the running checksum |
//!
//! A flush's batches count only once its commit record is read: a flush is all or
//! nothing. A commit record whose length or running checksum does not match the bytes
//! before it is corruption (a record lost, added, moved or spliced from another log).
//!
//! A zero type and a zero length are invalid, so a zero-filled tail (what a crash can
//! leave after a file was extended) never reads as records. The checksum covers the
//! header fields too, so a damaged type, length or flush number is detected like a
//! damaged payload.
//!
//! # Clean-close record: the file `CLOSED`
//!
//! Written (under a temporary name, synced, renamed, directory synced) when a store
//! opened for writing is closed cleanly, and removed (and the removal synced) before
//! the first write to any log after the store is opened again. While it exists it
//! names every log of the store with its exact length and running checksum, so any
//! change to a log, a cut exactly between records included, is an error.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`CLOSED_MAGIC`] (`"PFSCLOSE"`) |
//! | 8 | 4 | the store's format version when the record was written (2 or 3; a store migrated since keeps a record of version 2 until it is written again, and only the marker's version counts) |
//! | 12 | 4 | n, the number of logs |
//! | 16 | ... | n entries: name length (u16, at most 255), the log's file name, its length (u64), its running CRC32C (u32) |
//! | end - 4 | 4 | masked CRC32C of every byte before it |
//!
//! Entries are written in the byte order of their names, so that a store of many
//! documents can look one up on disk instead of holding the record in memory; a record
//! whose entries are in another order (as earlier builds of this version could write
//! them when long ids were present) is read all the same, held in memory whole.
//!
//! A version other than 2 and 3 is damage, [`Error::Corrupt`] naming the version found
//! (see [Versions](#versions)).
//!
//! # Versions
//!
//! A rule of the format: no log and no clean-close record is of a later format than
//! its store's marker allows. A later log or clean-close record format comes only with
//! a later store format version, and is written only into stores whose marker says
//! that version or a later one (the one exception, keyed logs of version 3 that some
//! earlier builds wrote into stores of version 2, this build reads). A store is opened
//! by reading and checking its marker first, before any log or its clean-close record.
//! So a build that reads the marker reads every log and clean-close record version the
//! store may hold, and one of a version it does not read is damage,
//! [`Error::Corrupt`], not a later format:
//!
//! | store (marker) version | log versions | clean-close record versions |
//! |---|---|---|
//! | 2 ([`UNKEYED_STORE_VERSION`]) | 2, and 3 written by some earlier builds (see the [crate docs](crate)) | 2 |
//! | 3 ([`STORE_VERSION`]) | 3, and 2 until rewritten | 3, and 2 until written again |
//!
//! Stores of version 1 (whose logs were of version 1) and stores of versions after 3
//! are refused by their marker, with [`Error::UnsupportedFormat`], before any of their
//! logs is read.

use std::path::Path;

use persister_core::{DocumentId, Error, MAX_DOCUMENT_ID_LEN, Result};

pub mod batch;
mod record;

pub use record::RecordFormat;
pub(crate) use record::{
    RecordKind, begin_record, finish_record, parse_commit, parse_record, parse_record_with,
    push_commit,
};

/// The first 8 bytes of the store marker file.
pub const STORE_MAGIC: [u8; 8] = *b"PFSTORE\0";
/// The store format version of new stores: their new logs are of log format version
/// 3 ([`LOG_VERSION`]). Stores of version 2 ([`UNKEYED_STORE_VERSION`]) are read and
/// written too, with logs of version 2; version 1 (no commit records, no clean-close
/// record) is refused with [`Error::UnsupportedFormat`].
pub const STORE_VERSION: u32 = 3;
/// The store format version whose new logs are of log format version 2, without the key.
pub const UNKEYED_STORE_VERSION: u32 = 2;
/// The length of the store marker file.
pub const MARKER_LEN: usize = 16;
/// The first 8 bytes of every document log.
pub const LOG_MAGIC: [u8; 8] = *b"PFSLOG\0\0";
/// The log format version of the new and rewritten logs of a store of version 3
/// ([`STORE_VERSION`]): records carry the log's key. Logs of version 2
/// ([`UNKEYED_LOG_VERSION`]) are read and appended to, and a store of version 2 writes
/// its new logs in it; a log of any other version is damage (see
/// [Versions](self#versions)).
pub const LOG_VERSION: u32 = 3;
/// The log format version before records carried a key.
pub const UNKEYED_LOG_VERSION: u32 = 2;
/// The length of a log's key.
pub const KEY_LEN: usize = 16;
/// The longest log header: the fixed 34 bytes and the longest document id.
pub const MAX_LOG_HEADER_LEN: usize = 34 + MAX_DOCUMENT_ID_LEN;
/// The first 8 bytes of the clean-close record.
pub const CLOSED_MAGIC: [u8; 8] = *b"PFSCLOSE";
/// The length of a commit record's payload.
pub const COMMIT_LEN: usize = 12;
/// The length of a record header (in a log of version 3; 13 in one of version 2).
pub const RECORD_HEADER_LEN: usize = 29;
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

/// The bytes of the marker of a store of format `version`.
pub(crate) fn encode_marker(version: u32) -> [u8; MARKER_LEN] {
    let mut out = [0; MARKER_LEN];
    out[..8].copy_from_slice(&STORE_MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = mask_crc(crc32c::crc32c(&out[..12]));
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the store marker read from `path`; gives the store's format version.
///
/// The checksum is checked before the version, which every version keeps in the same
/// place: a damaged version field is [`Error::Corrupt`], and only an intact marker of
/// another version is [`Error::UnsupportedFormat`].
pub(crate) fn decode_marker(bytes: &[u8], path: &Path) -> Result<u32> {
    if !bytes.starts_with(&STORE_MAGIC) {
        return Err(not_a("an fs store marker", path));
    }
    let Some((body, stored)) = bytes
        .first_chunk::<MARKER_LEN>()
        .map(|marker| marker.split_at(12))
    else {
        return Err(Error::corrupt(
            "the store marker is cut short",
            path,
            Some(bytes.len() as u64),
        ));
    };
    let version = le_u32([body[8], body[9], body[10], body[11]]);
    let stored = le_u32([stored[0], stored[1], stored[2], stored[3]]);
    if stored != mask_crc(crc32c::crc32c(body)) {
        return Err(Error::corrupt(
            format!(
                "the store marker's checksum does not match: its version field (which reads \
                 {version}) or its checksum is damaged"
            ),
            path,
            Some(12),
        ));
    }
    if !(UNKEYED_STORE_VERSION..=STORE_VERSION).contains(&version) {
        return Err(Error::UnsupportedFormat {
            what: "fs store",
            path: path.to_path_buf(),
            found: version,
            supported: STORE_VERSION,
        });
    }
    Ok(version)
}

/// Whether `bytes` start like a store marker of any version.
pub(crate) fn has_marker_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(&STORE_MAGIC)
}

/// A new key for a log, from the operating system's random source.
pub(crate) fn new_key(path: &Path) -> Result<[u8; KEY_LEN]> {
    let mut key = [0; KEY_LEN];
    getrandom::fill(&mut key).map_err(|err| {
        Error::io(
            "draw a random key for",
            path,
            std::io::Error::other(err.to_string()),
        )
    })?;
    Ok(key)
}

/// The header of a log of document `id` whose records have `format`: log format
/// version 3 with its key, or version 2.
pub(crate) fn encode_log_header(id: &DocumentId, format: RecordFormat) -> Vec<u8> {
    let id = id.as_bytes();
    let version = match format {
        RecordFormat::Keyed(_) => LOG_VERSION,
        RecordFormat::Unkeyed => UNKEYED_LOG_VERSION,
    };
    let mut out = Vec::with_capacity(log_header_len(id.len()));
    out.extend_from_slice(&LOG_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    // Ids are at most MAX_DOCUMENT_ID_LEN (1024) bytes: `OpenDocuments::claim` checks it.
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(format.key());
    let crc = mask_crc(crc32c::crc32c(&out));
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The length of the log header (format version 3) of an id of `id_len` bytes.
pub(crate) fn log_header_len(id_len: usize) -> usize {
    34 + id_len
}

/// Reads the log header at the start of `bytes`: the document id, the header's
/// length, and the framing of the log's records.
///
/// The log must be of a store whose marker was checked ([`decode_marker`]): a version
/// other than 2 and 3 is then damage, [`Error::Corrupt`] (see [Versions](self#versions)).
pub(crate) fn decode_log_header(
    bytes: &[u8],
    path: &Path,
) -> Result<(DocumentId, usize, RecordFormat)> {
    let cut = || Error::corrupt("the log header is cut short", path, Some(0));
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(cut());
    };
    if *magic != LOG_MAGIC {
        // The file has a log's name in a store's directory: a damaged log, not a
        // file of another kind.
        return Err(Error::corrupt(
            "the log header has no valid magic",
            path,
            Some(0),
        ));
    }
    let (version, rest) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
    let version = le_u32(*version);
    if version != LOG_VERSION && version != UNKEYED_LOG_VERSION {
        // Only a store whose marker this build refuses holds logs of other versions.
        return Err(Error::corrupt(
            format!(
                "the log header says log format version {version}, which no store this \
                 build reads holds (its logs are of version {UNKEYED_LOG_VERSION} or {LOG_VERSION})"
            ),
            path,
            Some(8),
        ));
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
    let key_len = match version {
        LOG_VERSION => KEY_LEN,
        _ => 0,
    };
    let key = rest.get(id_len..id_len + key_len).ok_or_else(cut)?;
    let stored = rest[id_len + key_len..]
        .first_chunk::<4>()
        .ok_or_else(cut)?;
    let end = 14 + id_len + key_len;
    if le_u32(*stored) != mask_crc(crc32c::crc32c(&bytes[..end])) {
        return Err(Error::corrupt(
            "the log header's checksum does not match",
            path,
            Some(end as u64),
        ));
    }
    let format = match <[u8; KEY_LEN]>::try_from(key) {
        Ok(key) => RecordFormat::Keyed(key),
        Err(_) => RecordFormat::Unkeyed,
    };
    Ok((DocumentId::from(id), end + 4, format))
}

/// One log named by the clean-close record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClosedLog {
    /// The log's file name.
    pub name: String,
    /// Its length and running CRC32C.
    pub end: LogEnd,
}

/// The length of a log and the running CRC32C of all its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogEnd {
    /// The length.
    pub len: u64,
    /// The CRC32C (unmasked) of all its bytes.
    pub crc: u32,
}

/// The bytes of the clean-close record naming `logs`.
pub(crate) fn encode_closed(version: u32, logs: &[ClosedLog]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&CLOSED_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(logs.len() as u32).to_le_bytes());
    for log in logs {
        // Log names are at most 213 bytes (see `names`).
        out.extend_from_slice(&(log.name.len() as u16).to_le_bytes());
        out.extend_from_slice(log.name.as_bytes());
        out.extend_from_slice(&log.end.len.to_le_bytes());
        out.extend_from_slice(&log.end.crc.to_le_bytes());
    }
    let crc = mask_crc(crc32c::crc32c(&out));
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The error for a damaged clean-close record at `path`, at offset `at`.
pub(crate) fn closed_corrupt(what: &str, path: &Path, at: u64) -> Error {
    Error::corrupt(
        format!(
            "{what}; the store was closed cleanly, so its logs can no longer be checked \
             against it (if the logs are intact, removing this file opens the store as after a crash)"
        ),
        path,
        Some(at),
    )
}

/// Checks the clean-close record's magic and version, given its first bytes (16, or
/// all of a shorter record).
///
/// The record must be of a store whose marker was checked ([`decode_marker`]): a
/// version other than 2 and 3 is then damage, [`Error::Corrupt`] (see
/// [Versions](self#versions)).
pub(crate) fn check_closed_header(bytes: &[u8], path: &Path) -> Result<()> {
    if !bytes.starts_with(&CLOSED_MAGIC) {
        return Err(closed_corrupt(
            "the clean-close record has no valid magic",
            path,
            0,
        ));
    }
    let version = bytes.get(8..12).and_then(|b| b.first_chunk::<4>());
    let Some(version) = version.map(|v| le_u32(*v)) else {
        return Err(closed_corrupt(
            "the clean-close record is cut short",
            path,
            bytes.len() as u64,
        ));
    };
    if !(UNKEYED_STORE_VERSION..=STORE_VERSION).contains(&version) {
        // Only a store whose marker this build refuses holds records of other versions.
        return Err(closed_corrupt(
            &format!(
                "the clean-close record says format version {version}, which no store this \
                 build reads holds (its record is of version {UNKEYED_STORE_VERSION} or {STORE_VERSION})"
            ),
            path,
            8,
        ));
    }
    Ok(())
}

/// Reads the clean-close record read from `path`, whole: the reference the store's
/// streaming reader (`clean`) is tested against.
#[cfg(test)]
pub(crate) fn decode_closed(bytes: &[u8], path: &Path) -> Result<Vec<ClosedLog>> {
    let corrupt = |what: &str, at: usize| closed_corrupt(what, path, at as u64);
    check_closed_header(bytes, path)?;
    let Some((body, stored)) = bytes.split_last_chunk::<4>().filter(|(b, _)| b.len() >= 16) else {
        return Err(corrupt("the clean-close record is cut short", bytes.len()));
    };
    if le_u32(*stored) != mask_crc(crc32c::crc32c(body)) {
        return Err(corrupt(
            "the clean-close record's checksum does not match",
            body.len(),
        ));
    }
    let count = le_u32([body[12], body[13], body[14], body[15]]) as usize;
    let mut logs = Vec::new();
    let mut at = 16;
    for _ in 0..count {
        let cut = || corrupt("the clean-close record is cut short", at);
        let name_len = body.get(at..at + 2).ok_or_else(cut)?;
        let name_len = usize::from(u16::from_le_bytes([name_len[0], name_len[1]]));
        let name = body.get(at + 2..at + 2 + name_len).ok_or_else(cut)?;
        let fields = body
            .get(at + 2 + name_len..at + 14 + name_len)
            .ok_or_else(cut)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| corrupt("the clean-close record names a log that is not UTF-8", at))?;
        let (len, crc) = fields.split_at(8);
        logs.push(ClosedLog {
            name: name.to_owned(),
            end: LogEnd {
                len: u64::from_le_bytes(len.try_into().unwrap_or_default()),
                crc: le_u32(crc.try_into().unwrap_or_default()),
            },
        });
        at += 14 + name_len;
    }
    if at != body.len() {
        return Err(corrupt(
            "the clean-close record has bytes after its last entry",
            at,
        ));
    }
    Ok(logs)
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

    /// An intact marker of a version this build does not read is another format.
    #[test]
    fn marker_round_trips_and_refuses_other_versions() -> Result<()> {
        let path = Path::new("STORE");
        for version in [UNKEYED_STORE_VERSION, STORE_VERSION] {
            let marker = encode_marker(version);
            assert_eq!(decode_marker(&marker, path)?, version);
            assert!(has_marker_magic(&marker));
        }
        for version in [0, 1, 4, 9, 16_711_683, u32::MAX] {
            let err = decode_marker(&encode_marker(version), path);
            assert!(
                matches!(
                    err,
                    Err(Error::UnsupportedFormat {
                        what: "fs store",
                        found,
                        supported: STORE_VERSION,
                        ..
                    }) if found == version
                ),
                "version {version}: {err:?}"
            );
        }
        let mut marker = encode_marker(STORE_VERSION);
        marker[13] ^= 1;
        assert!(matches!(
            decode_marker(&marker, path),
            Err(Error::Corrupt {
                offset: Some(12),
                ..
            })
        ));
        assert!(matches!(
            decode_marker(b"PFS", path),
            Err(Error::NotAStore { .. })
        ));
        Ok(())
    }

    /// The user's report: byte 10 of a marker flipped read as store format version
    /// 16711683. The checksum covers the version, so any flip in it is damage.
    #[test]
    fn a_flipped_bit_in_the_marker_version_is_damage_not_another_version() {
        let path = Path::new("STORE");
        for version in [UNKEYED_STORE_VERSION, STORE_VERSION] {
            let marker = encode_marker(version);
            for bit in 0..32 {
                let mut damaged = marker;
                damaged[8 + bit / 8] ^= 1 << (bit % 8);
                let err = decode_marker(&damaged, path);
                assert!(
                    matches!(
                        &err,
                        Err(Error::Corrupt { what, offset: Some(12), .. }) if what.contains("version field")
                    ),
                    "version {version}, bit {bit}: {err:?}"
                );
            }
        }
        let mut marker = encode_marker(STORE_VERSION);
        marker[10] ^= 0xff;
        let err = decode_marker(&marker, path);
        assert!(
            matches!(&err, Err(Error::Corrupt { what, .. }) if what.contains("reads 16711683")),
            "{err:?}"
        );
    }

    #[test]
    fn a_marker_cut_short_is_damage() {
        let marker = encode_marker(STORE_VERSION);
        for len in STORE_MAGIC.len()..MARKER_LEN {
            let err = decode_marker(&marker[..len], Path::new("STORE"));
            assert!(
                matches!(err, Err(Error::Corrupt { offset: Some(at), .. }) if at == len as u64),
                "length {len}: {err:?}"
            );
        }
    }

    #[test]
    fn log_header_round_trips_every_id_length() -> Result<()> {
        let path = Path::new("log");
        let key = [0x3c; KEY_LEN];
        for id in [vec![], vec![0], vec![0xff; MAX_DOCUMENT_ID_LEN]] {
            let id = DocumentId::from(id);
            let mut bytes = encode_log_header(&id, RecordFormat::Keyed(key));
            let len = bytes.len();
            assert_eq!(len, log_header_len(id.as_bytes().len()));
            assert!(len <= MAX_LOG_HEADER_LEN);
            bytes.extend_from_slice(b"records follow");
            assert_eq!(
                decode_log_header(&bytes, path)?,
                (id, len, RecordFormat::Keyed(key))
            );
            for cut in 0..len {
                assert!(decode_log_header(&bytes[..cut], path).is_err());
            }
            for i in 0..len {
                let mut bad = bytes.clone();
                bad[i] ^= 0x08;
                assert!(decode_log_header(&bad, path).is_err(), "flip at {i}");
            }
        }
        Ok(())
    }

    /// A log header of format version 2, as builds before the key wrote it: no key,
    /// records of version 2's framing. A header of version 1 or 4, intact but for the
    /// version, is damage naming the version: no store this build reads holds one.
    #[test]
    fn a_log_header_of_version_2_reads_as_unkeyed() -> Result<()> {
        let path = Path::new("log");
        let bytes = unkeyed_log_header(UNKEYED_LOG_VERSION);
        assert_eq!(
            decode_log_header(&bytes, path)?,
            (DocumentId::from("doc"), 21, RecordFormat::Unkeyed)
        );
        for version in [1u32, 4] {
            let err = decode_log_header(&unkeyed_log_header(version), path);
            assert!(
                matches!(
                    &err,
                    Err(Error::Corrupt { what, offset: Some(8), .. })
                        if what.contains(&format!("version {version},"))
                ),
                "version {version}: {err:?}"
            );
        }
        Ok(())
    }

    /// The header of a log of document "doc" as version 2 lays it out (no key), with
    /// `version` in its version field and a checksum that matches.
    fn unkeyed_log_header(version: u32) -> Vec<u8> {
        let mut bytes = LOG_MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&3u16.to_le_bytes());
        bytes.extend_from_slice(b"doc");
        let crc = mask_crc(crc32c::crc32c(&bytes));
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// A flip that leaves a version this build reads (3 and 2 differ in one bit) fails
    /// the checksum; every other flip names the version found.
    #[test]
    fn a_flipped_bit_in_the_log_version_is_damage_not_another_version() {
        let path = Path::new("log");
        for header in [
            encode_log_header(&DocumentId::from("doc"), RecordFormat::Keyed([7; KEY_LEN])),
            unkeyed_log_header(UNKEYED_LOG_VERSION),
        ] {
            for bit in 0..32 {
                let mut damaged = header.clone();
                damaged[8 + bit / 8] ^= 1 << (bit % 8);
                let version = le_u32([damaged[8], damaged[9], damaged[10], damaged[11]]);
                let err = decode_log_header(&damaged, path);
                let names_version = |what: &str| {
                    version == LOG_VERSION
                        || version == UNKEYED_LOG_VERSION
                        || what.contains(&format!("version {version},"))
                };
                assert!(
                    matches!(&err, Err(Error::Corrupt { what, .. }) if names_version(what)),
                    "bit {bit}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn clean_close_record_round_trips_and_every_damage_is_an_error() -> Result<()> {
        let path = Path::new("CLOSED");
        let logs = vec![
            ClosedLog {
                name: "d61.log".into(),
                end: LogEnd { len: 100, crc: 7 },
            },
            ClosedLog {
                name: "h0123456789abcdef-0.log".into(),
                end: LogEnd {
                    len: u64::MAX,
                    crc: u32::MAX,
                },
            },
        ];
        let bytes = encode_closed(STORE_VERSION, &logs);
        assert_eq!(decode_closed(&bytes, path)?, logs);
        assert_eq!(
            decode_closed(&encode_closed(UNKEYED_STORE_VERSION, &[]), path)?,
            vec![]
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(decode_closed(&bad, path).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_closed(&bytes[..cut], path).is_err(), "cut at {cut}");
        }
        Ok(())
    }

    /// The clean-close record is checked by its first 16 bytes before its checksum at
    /// its end is read: a version this build does not read is damage there already,
    /// with the advice about removing the record.
    #[test]
    fn a_clean_close_record_of_an_unknown_version_is_damage() {
        let path = Path::new("CLOSED");
        let record = encode_closed(STORE_VERSION, &[]);
        let mut damaged = Vec::new();
        for bit in 0..32 {
            let mut bytes = record.clone();
            bytes[8 + bit / 8] ^= 1 << (bit % 8);
            damaged.push(bytes);
        }
        // Intact but for the version: its checksum matches.
        damaged.extend([1, 4, 9, u32::MAX].map(|version| encode_closed(version, &[])));
        for bytes in damaged {
            let version = le_u32([bytes[8], bytes[9], bytes[10], bytes[11]]);
            let header = check_closed_header(&bytes[..16], path);
            if version == UNKEYED_STORE_VERSION {
                assert!(header.is_ok(), "{header:?}");
            } else {
                assert!(
                    matches!(
                        &header,
                        Err(Error::Corrupt { what, offset: Some(8), .. })
                            if what.contains(&format!("version {version},"))
                                && what.contains("removing this file")
                    ),
                    "version {version}: {header:?}"
                );
            }
            let whole = decode_closed(&bytes, path);
            assert!(
                matches!(whole, Err(Error::Corrupt { .. })),
                "version {version}: {whole:?}"
            );
        }
    }

    #[test]
    fn hostile_header_id_length_is_corrupt() {
        let mut bytes =
            encode_log_header(&DocumentId::from("doc"), RecordFormat::Keyed([1; KEY_LEN]));
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
