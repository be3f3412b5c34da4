//! The mark file: how many batches a flush has made durable, kept outside sled.
//!
//! sled can recover an older state than it flushed and say nothing (a damaged log is
//! read up to the damage). The store manifest inside sled holds the sequence number of
//! the last batch applied; after each flush this file records the last sequence number
//! made durable. On open, a store holding fewer batches than its mark has lost flushed
//! data, and opening fails.
//!
//! Format: two 24-byte slots, each `b"PSLDMARK"`, `u32be` version (1), `u64be` sequence
//! number, `u32be` crc32c of the 20 bytes before it. A write goes to the slot not holding
//! the newest value, so a torn write loses at most the value being written.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use persister_core::{Error, Result};

use crate::manifest::Reader;

/// The mark file's name in the store directory.
pub(crate) const MARK_FILE: &str = "persister-sled.mark";
const MAGIC: &[u8; 8] = b"PSLDMARK";
const VERSION: u32 = 1;
const SLOT: usize = 24;

/// What an existing store directory holds as its mark.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// No mark file, or an empty one (creation stopped before writing it).
    Missing,
    /// A mark file with no valid slot.
    Unreadable,
    /// The newest valid value, and the slot it is in.
    Seq { seq: u64, slot: usize },
}

pub(crate) fn read(dir: &Path) -> Result<Found> {
    let path = dir.join(MARK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut bytes = Vec::with_capacity(2 * SLOT);
    file.take(2 * SLOT as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", &path, e))?;
    if bytes.is_empty() {
        return Ok(Found::Missing);
    }
    let mut best = None;
    for (slot, chunk) in bytes.chunks(SLOT).enumerate() {
        if let Some(seq) = decode(chunk, &path)?
            && best.is_none_or(|(newest, _)| seq > newest)
        {
            best = Some((seq, slot));
        }
    }
    Ok(best.map_or(Found::Unreadable, |(seq, slot)| Found::Seq { seq, slot }))
}

/// The sequence number in a slot, `None` if the slot fails its check.
fn decode(slot: &[u8], path: &Path) -> Result<Option<u64>> {
    let Some((body, crc)) = slot.split_last_chunk::<4>() else {
        return Ok(None);
    };
    if slot.len() != SLOT || crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return Ok(None);
    }
    let mut r = Reader(body.get(MAGIC.len()..).unwrap_or_default());
    if !body.starts_with(MAGIC) {
        return Ok(None);
    }
    let (Some(version), Some(seq)) = (r.u32(), r.u64()) else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(Error::UnsupportedFormat {
            what: "persister-sled mark file",
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    Ok(Some(seq))
}

fn encode(seq: u64) -> [u8; SLOT] {
    let mut slot = [0; SLOT];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..12].copy_from_slice(&VERSION.to_be_bytes());
    slot[12..20].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&slot[..20]);
    slot[20..].copy_from_slice(&crc.to_be_bytes());
    slot
}

/// The open mark file of a store.
#[derive(Debug)]
pub(crate) struct Mark {
    file: File,
    path: PathBuf,
    seq: u64,
    slot: usize,
}

impl Mark {
    /// Writes a new mark file holding `seq` in both slots, and syncs it. The caller
    /// syncs the directory.
    pub(crate) fn create(dir: &Path, seq: u64) -> Result<Self> {
        let path = dir.join(MARK_FILE);
        let io = |action| {
            let path = path.clone();
            move |e| Error::io(action, path, e)
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io("create"))?;
        let mut both = encode(seq).to_vec();
        both.extend_from_slice(&encode(seq));
        file.write_all(&both).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        Ok(Self {
            file,
            path,
            seq,
            slot: 0,
        })
    }

    /// Opens the mark file that [`read`] found holding `seq` in `slot`.
    pub(crate) fn open(dir: &Path, seq: u64, slot: usize) -> Result<Self> {
        let path = dir.join(MARK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(Self {
            file,
            path,
            seq,
            slot,
        })
    }

    /// The sequence number of the last batch recorded durable.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Records that every batch up to `seq` is durable (nothing if the mark is already
    /// there), and syncs the file.
    pub(crate) fn advance(&mut self, seq: u64) -> Result<()> {
        if seq <= self.seq {
            return Ok(());
        }
        let slot = 1 - self.slot;
        let offset = (slot * SLOT) as u64;
        let path = &self.path;
        let io = |action: &'static str| move |e| Error::io(action, path, e);
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io("seek in"))?;
        self.file.write_all(&encode(seq)).map_err(io("write"))?;
        self.file.sync_data().map_err(io("sync"))?;
        self.seq = seq;
        self.slot = slot;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_is_skipped() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        assert_eq!(read(dir.path())?, Found::Missing);
        let mut mark = Mark::create(dir.path(), 0)?;
        mark.advance(5)?;
        mark.advance(3)?;
        mark.advance(9)?;
        assert_eq!(read(dir.path())?, Found::Seq { seq: 9, slot: 0 });
        drop(mark);

        // Tear the newest slot: the other one still holds 5.
        let path = dir.path().join(MARK_FILE);
        let mut bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        bytes[14] ^= 0xff;
        std::fs::write(&path, &bytes).map_err(|e| Error::io("write", &path, e))?;
        assert_eq!(read(dir.path())?, Found::Seq { seq: 5, slot: 1 });
        let mut mark = Mark::open(dir.path(), 5, 1)?;
        mark.advance(6)?;
        assert_eq!(read(dir.path())?, Found::Seq { seq: 6, slot: 0 });

        bytes[30] ^= 0xff;
        std::fs::write(&path, &bytes).map_err(|e| Error::io("write", &path, e))?;
        assert_eq!(read(dir.path())?, Found::Unreadable);
        Ok(())
    }

    #[test]
    fn unknown_version_is_refused_naming_both() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        let mut slot = encode(1);
        slot[8..12].copy_from_slice(&7u32.to_be_bytes());
        let crc = crc32c::crc32c(&slot[..20]);
        slot[20..].copy_from_slice(&crc.to_be_bytes());
        let path = dir.path().join(MARK_FILE);
        std::fs::write(&path, slot).map_err(|e| Error::io("write", &path, e))?;
        assert!(matches!(
            read(dir.path()),
            Err(Error::UnsupportedFormat {
                found: 7,
                supported: 1,
                ..
            })
        ));
        Ok(())
    }
}
