//! The ways a file is damaged, and the cases of a sweep.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Rng;

/// Bytes in the blocks zeroed by [`Mutation::ZeroBlock`].
pub const BLOCK: u64 = 4096;

/// One way of damaging one file (an index into [`store_files`](super::store_files)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flip bit `bit` (counted from the file's first byte's lowest bit).
    FlipBit {
        /// The file.
        file: usize,
        /// The bit.
        bit: u64,
    },
    /// Cut the file to `len` bytes.
    Truncate {
        /// The file.
        file: usize,
        /// The new length.
        len: u64,
    },
    /// Zero the 4 KiB block starting at `offset` (cut at the end of the file).
    ZeroBlock {
        /// The file.
        file: usize,
        /// The block's first byte.
        offset: u64,
    },
    /// Zero every byte from `from` to the end.
    ZeroTail {
        /// The file.
        file: usize,
        /// The first byte zeroed.
        from: u64,
    },
    /// Overwrite the 4 bytes at `offset` with `0xFFFF_FFFF`, as a length field
    /// claiming 2^32-1 bytes would read.
    MaxLength {
        /// The file.
        file: usize,
        /// The first byte overwritten.
        offset: u64,
    },
}

impl Mutation {
    /// The file it damages.
    pub fn file(&self) -> usize {
        match *self {
            Mutation::FlipBit { file, .. }
            | Mutation::Truncate { file, .. }
            | Mutation::ZeroBlock { file, .. }
            | Mutation::ZeroTail { file, .. }
            | Mutation::MaxLength { file, .. } => file,
        }
    }

    /// Whether a backend may answer it by dropping a tail: it removes or zeroes the
    /// end of the file (a zeroed block that reaches the end is a zero-filled tail:
    /// nothing in the bytes tells it from a torn write), or damages nothing before
    /// `tail_start` (see [`tail_start`]) of a file of `file_len` bytes.
    pub fn touches_only_tail(&self, tail_start: u64, file_len: u64) -> bool {
        match *self {
            Mutation::Truncate { .. } | Mutation::ZeroTail { .. } => true,
            Mutation::FlipBit { bit, .. } => bit / 8 >= tail_start,
            Mutation::ZeroBlock { offset, .. } => {
                offset >= tail_start || offset.saturating_add(BLOCK) >= file_len
            }
            Mutation::MaxLength { offset, .. } => offset >= tail_start,
        }
    }

    /// Applies the damage to `path`.
    pub fn apply(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = fs::read(path)?;
        let len = bytes.len();
        let at = |offset: u64| usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        match *self {
            Mutation::FlipBit { bit, .. } => {
                if let Some(byte) = bytes.get_mut(at(bit / 8)) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate { len, .. } => bytes.truncate(at(len)),
            Mutation::ZeroBlock { offset, .. } => {
                let end = at(offset.saturating_add(BLOCK));
                bytes[at(offset)..end].fill(0);
            }
            Mutation::ZeroTail { from, .. } => bytes[at(from)..].fill(0),
            Mutation::MaxLength { offset, .. } => {
                let end = at(offset.saturating_add(4));
                bytes[at(offset)..end].fill(0xff);
            }
        }
        fs::write(path, bytes)
    }
}

/// Where the part of a file that one torn write could have damaged begins: for an fs
/// log, the 512-byte sector holding the start of its last flush, the second last
/// record (every batch of the sweep's store is a flush of its own, a batch record and
/// a commit record, and a torn write can garble the whole sector it began in); for
/// other files, their last 4 KiB.
pub fn tail_start(bytes: &[u8]) -> u64 {
    const SECTOR: u64 = 512;
    match fs_length_fields(bytes).iter().rev().nth(1) {
        Some(&length_field) if length_field > 12 => (length_field - 1) / SECTOR * SECTOR,
        _ => (bytes.len() as u64).saturating_sub(BLOCK),
    }
}

/// The offsets of the length fields of an fs document log, read from the format
/// that `persister_fs::format` documents: the id length at byte 12 of the header, then
/// each record's payload length at byte 1 of its header (29 bytes in log format
/// version 3, with the log's key after the id in the header; 13 in version 2). Empty
/// for a file that is not an fs log.
pub fn fs_length_fields(bytes: &[u8]) -> Vec<u64> {
    const LOG_MAGIC: &[u8] = b"PFSLOG\0\0";
    if !bytes.starts_with(LOG_MAGIC) {
        return Vec::new();
    }
    let mut fields = vec![12];
    let Some(id_len) = bytes
        .get(12..14)
        .map(|b| u64::from(b[0]) | u64::from(b[1]) << 8)
    else {
        return fields;
    };
    let key_len = match bytes.get(8..12) {
        Some([2, 0, 0, 0]) => 0,
        _ => 16,
    };
    const RECORD_HEADER_WITHOUT_KEY: u64 = 13;
    let record_header = RECORD_HEADER_WITHOUT_KEY + key_len;
    let mut record = 18 + key_len + id_len;
    let len = bytes.len() as u64;
    while record + record_header <= len {
        fields.push(record + 1);
        let at = |i: u64| u64::from(bytes[(record + i) as usize]);
        let payload = at(1) | at(2) << 8 | at(3) << 16 | at(4) << 24;
        record += record_header + payload;
    }
    fields
}

/// The cases of a sweep over `files` (paths relative to `root`, which holds them):
/// every truncation length, and a 2^32-1 length at every offset, of files of at most
/// `exhaustive` bytes; a 2^32-1 length in every length field of every fs log; then
/// `random` cases drawn from `seed` over all files (bit flips, truncations, zeroed
/// blocks, zeroed tails, 2^32-1 lengths), a quarter in each file's first 4 KiB, a
/// quarter in its last 4 KiB, and half on bytes that are not zero, where the data is.
pub fn mutations(
    root: &Path,
    files: &[(PathBuf, u64)],
    seed: u64,
    random: u64,
    exhaustive: u64,
) -> Vec<Mutation> {
    let mut cases = Vec::new();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|(path, _)| fs::read(root.join(path)).unwrap_or_default())
        .collect();
    for (file, bytes) in contents.iter().enumerate() {
        let len = bytes.len() as u64;
        if len <= exhaustive {
            cases.extend((0..len).map(|len| Mutation::Truncate { file, len }));
            cases.extend(
                (0..len.saturating_sub(3)).map(|offset| Mutation::MaxLength { file, offset }),
            );
        }
        cases.extend(
            fs_length_fields(bytes)
                .into_iter()
                .map(|offset| Mutation::MaxLength { file, offset }),
        );
    }
    let nonempty: Vec<usize> = (0..contents.len())
        .filter(|&i| !contents[i].is_empty())
        .collect();
    let mut rng = Rng::new(seed);
    for _ in 0..random {
        if nonempty.is_empty() {
            break;
        }
        let file = nonempty[rng.index(nonempty.len())];
        let bytes = &contents[file];
        let len = bytes.len() as u64;
        let offset = match rng.below(4) {
            0 => rng.below(len.min(BLOCK)),
            1 => len - 1 - rng.below(len.min(BLOCK)),
            _ => {
                let mut offset = rng.below(len);
                for _ in 0..64 {
                    if bytes[offset as usize] != 0 {
                        break;
                    }
                    offset = rng.below(len);
                }
                offset
            }
        };
        cases.push(match rng.below(10) {
            0..=4 => Mutation::FlipBit {
                file,
                bit: offset * 8 + rng.below(8),
            },
            5 => Mutation::Truncate { file, len: offset },
            6 => Mutation::ZeroBlock {
                file,
                offset: offset / BLOCK * BLOCK,
            },
            7 => Mutation::ZeroTail { file, from: offset },
            _ => Mutation::MaxLength { file, offset },
        });
    }
    cases
}
