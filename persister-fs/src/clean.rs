//! The clean-close record a store was opened with, read without holding it in memory.
//!
//! A store of many documents has a record of as many entries; holding them all would
//! make the memory of opening the store grow with the number of documents. Instead the
//! record is checked whole when the store opens (its checksum, every entry, their
//! order), streamed in chunks, and then looked up on disk: the store keeps the file
//! open, and the name and offset of every [`SPARSE`]th entry, so finding one log's
//! entry reads at most [`SPARSE`] entries. The file stays readable through the open
//! handle after the first write removes it, so the logs no handle has touched keep
//! their exact ends until the store closes.
//!
//! Records list their logs sorted by name (this build writes them so). A record whose
//! entries are not sorted (written by an earlier build of the same format version) is
//! held in memory whole, as before.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use persister_core::Result;

use crate::doc::io_error;
use crate::format::{self, LogEnd};
use crate::io::{Fs, FsFile};

/// One entry in this many is kept in memory to find the others.
pub(crate) const SPARSE: usize = 64;

/// Bytes read from the record at a time while it is checked.
const CHUNK: usize = 64 * 1024;

/// The clean-close record as the store found it when it opened.
pub(crate) struct CleanRecord {
    path: PathBuf,
    file: Mutex<Box<dyn FsFile>>,
    /// The logs it names.
    count: usize,
    /// Where the entries end (the checksum follows).
    entries_end: u64,
    lookup: Lookup,
}

enum Lookup {
    /// Sorted entries: every [`SPARSE`]th entry's name and offset.
    Sparse(Vec<(String, u64)>),
    /// Entries out of order: all of them.
    Held(BTreeMap<String, LogEnd>),
}

/// Reads `len` bytes at `offset`, or fewer at the end of the file.
fn read_at(file: &mut dyn FsFile, offset: u64, len: usize, path: &Path) -> Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = file
            .read_at(offset + filled as u64, &mut buf[filled..])
            .map_err(io_error("read", path))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The record's entries, read in order from a file in chunks.
struct Entries<'a> {
    file: &'a mut dyn FsFile,
    path: &'a Path,
    /// Bytes read and not consumed yet, starting at `at`.
    buf: Vec<u8>,
    start: usize,
    at: u64,
    end: u64,
}

impl<'a> Entries<'a> {
    /// The entries of `file` (the record at `path`) from byte `at` up to `end`.
    fn new(file: &'a mut dyn FsFile, path: &'a Path, at: u64, end: u64) -> Self {
        Self {
            file,
            path,
            buf: Vec::new(),
            start: 0,
            at,
            end,
        }
    }

    /// The next `n` bytes, all of them before `end`, or `None` when fewer are left.
    fn take(&mut self, n: usize) -> Result<Option<&[u8]>> {
        if self.at + n as u64 > self.end {
            return Ok(None);
        }
        if self.buf.len() - self.start < n {
            self.buf.drain(..self.start);
            self.start = 0;
            let offset = self.at + self.buf.len() as u64;
            let want = (self.end - offset).min(CHUNK.max(n) as u64) as usize;
            let more = read_at(self.file, offset, want, self.path)?;
            self.buf.extend_from_slice(&more);
            if self.buf.len() < n {
                return Ok(None);
            }
        }
        let out = &self.buf[self.start..self.start + n];
        self.start += n;
        self.at += n as u64;
        Ok(Some(out))
    }

    /// The next entry and its offset, `Ok(None)` at `end`; an entry cut by `end` is an
    /// error.
    fn next(&mut self) -> Result<Option<(u64, String, LogEnd)>> {
        let at = self.at;
        if at == self.end {
            return Ok(None);
        }
        let path = self.path;
        let cut = || format::closed_corrupt("the clean-close record is cut short", path, at);
        let name_len = self.take(2)?.ok_or_else(cut)?;
        let name_len = usize::from(u16::from_le_bytes([name_len[0], name_len[1]]));
        let entry = self.take(name_len + 12)?.ok_or_else(cut)?;
        let (name, fields) = entry.split_at(name_len);
        let name = std::str::from_utf8(name).map_err(|_| {
            format::closed_corrupt(
                "the clean-close record names a log that is not UTF-8",
                path,
                at,
            )
        })?;
        let (len, crc) = fields.split_at(8);
        let end = LogEnd {
            len: u64::from_le_bytes(len.try_into().unwrap_or_default()),
            crc: u32::from_le_bytes(crc.try_into().unwrap_or_default()),
        };
        Ok(Some((at, name.to_owned(), end)))
    }
}

/// The offset of the first entry.
const ENTRIES_START: u64 = 16;

impl CleanRecord {
    /// Opens and checks the record at `path`; `None` when there is none.
    pub(crate) fn open(fs: &dyn Fs, path: &Path) -> Result<Option<CleanRecord>> {
        let mut file = match fs.open(path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", path)(e)),
        };
        // The header, then the checksum of everything before the last four bytes, as
        // `format::decode_closed` checks them.
        let header = read_at(file.as_mut(), 0, 16, path)?;
        format::check_closed_header(&header, path)?;
        let mut crc = 0;
        let mut len = 0u64;
        let mut tail = Vec::new();
        loop {
            let chunk = read_at(file.as_mut(), len, CHUNK, path)?;
            if chunk.is_empty() {
                break;
            }
            len += chunk.len() as u64;
            // Everything but the last four bytes read so far is body.
            tail.extend_from_slice(&chunk);
            let body = tail.len().saturating_sub(4);
            crc = crc32c::crc32c_append(crc, &tail[..body]);
            tail.drain(..body);
        }
        if len < 20 || tail.len() != 4 {
            return Err(format::closed_corrupt(
                "the clean-close record is cut short",
                path,
                len,
            ));
        }
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let entries_end = len - 4;
        if stored != format::mask_crc(crc) {
            return Err(format::closed_corrupt(
                "the clean-close record's checksum does not match",
                path,
                entries_end,
            ));
        }
        let count = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
        let mut entries = Entries::new(file.as_mut(), path, ENTRIES_START, entries_end);
        let mut sparse = Vec::new();
        let mut held: Option<BTreeMap<String, LogEnd>> = None;
        let mut last: Option<String> = None;
        for i in 0..count {
            let Some((at, name, _)) = entries.next()? else {
                return Err(format::closed_corrupt(
                    "the clean-close record is cut short",
                    path,
                    entries_end,
                ));
            };
            if held.is_none() && last.as_ref().is_some_and(|last| *last >= name) {
                // Not sorted: read again from the start and hold every entry.
                held = Some(BTreeMap::new());
            }
            if held.is_none() {
                if i % SPARSE == 0 {
                    sparse.push((name.clone(), at));
                }
                last = Some(name);
            }
        }
        if entries.at != entries_end {
            return Err(format::closed_corrupt(
                "the clean-close record has bytes after its last entry",
                path,
                entries.at,
            ));
        }
        let lookup = match held {
            None => Lookup::Sparse(sparse),
            Some(mut all) => {
                let mut entries = Entries::new(file.as_mut(), path, ENTRIES_START, entries_end);
                while let Some((_, name, end)) = entries.next()? {
                    all.insert(name, end);
                }
                Lookup::Held(all)
            }
        };
        Ok(Some(CleanRecord {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            count,
            entries_end,
            lookup,
        }))
    }

    /// How many logs the record names.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The end the record gives the log `name`, `None` if it does not name it.
    pub(crate) fn lookup(&self, name: &str) -> Result<Option<LogEnd>> {
        let sparse = match &self.lookup {
            Lookup::Held(all) => return Ok(all.get(name).copied()),
            Lookup::Sparse(sparse) => sparse,
        };
        let after = sparse.partition_point(|(first, _)| first.as_str() <= name);
        let Some(block) = after.checked_sub(1) else {
            return Ok(None);
        };
        let from = sparse[block].1;
        let to = sparse.get(after).map_or(self.entries_end, |next| next.1);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = Entries::new(file.as_mut(), &self.path, from, to);
        while let Some((_, found, end)) = entries.next()? {
            if found == name {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Calls `f` with every entry, in name order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, LogEnd) -> Result<()>) -> Result<()> {
        if let Lookup::Held(all) = &self.lookup {
            for (name, end) in all {
                f(name, *end)?;
            }
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = Entries::new(file.as_mut(), &self.path, ENTRIES_START, self.entries_end);
        while let Some((_, name, end)) = entries.next()? {
            f(&name, end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ClosedLog, STORE_VERSION, decode_closed, encode_closed};
    use crate::sim::SimFs;

    fn write(fs: &SimFs, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut file = fs.create(path).map_err(io_error("create", path))?;
        file.append(bytes).map_err(io_error("write", path))?;
        Ok(())
    }

    fn logs(n: usize) -> Vec<ClosedLog> {
        (0..n)
            .map(|i| ClosedLog {
                name: format!("d{:08x}.log", i * 2),
                end: LogEnd {
                    len: i as u64 * 7,
                    crc: i as u32 ^ 0x5a5a,
                },
            })
            .collect()
    }

    fn open(logs: &[ClosedLog]) -> Result<(SimFs, CleanRecord)> {
        let fs = SimFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).map_err(io_error("create", dir))?;
        let path = dir.join("CLOSED");
        write(&fs, &path, &encode_closed(STORE_VERSION, logs))?;
        let record = CleanRecord::open(&fs, &path)?.expect("the record exists");
        Ok((fs, record))
    }

    #[test]
    fn a_large_record_is_looked_up_on_disk_entry_by_entry() -> Result<()> {
        // Past several chunks and many sparse entries.
        let logs = logs(5_000);
        let (_fs, record) = open(&logs)?;
        assert_eq!(record.count(), logs.len());
        assert!(
            matches!(&record.lookup, Lookup::Sparse(s) if s.len() == logs.len().div_ceil(SPARSE))
        );
        for log in &logs {
            assert_eq!(record.lookup(&log.name)?, Some(log.end), "{}", log.name);
        }
        // Before the first, between two, after the last.
        for absent in [
            "d.log",
            "d00000001.log",
            "d00000101.log",
            "h0000000000000000-0.log",
        ] {
            assert_eq!(record.lookup(absent)?, None, "{absent}");
        }
        let mut seen = Vec::new();
        record.for_each(|name, end| {
            seen.push(ClosedLog {
                name: name.to_owned(),
                end,
            });
            Ok(())
        })?;
        assert_eq!(seen, logs);
        Ok(())
    }

    #[test]
    fn a_record_out_of_name_order_is_held_whole_and_read_the_same() -> Result<()> {
        let mut logs = logs(200);
        logs.swap(3, 150);
        let (_fs, record) = open(&logs)?;
        assert!(matches!(record.lookup, Lookup::Held(_)));
        for log in &logs {
            assert_eq!(record.lookup(&log.name)?, Some(log.end));
        }
        assert_eq!(record.lookup("d00000003.log")?, None);
        Ok(())
    }

    #[test]
    fn every_damage_is_an_error_as_when_read_whole() -> Result<()> {
        let fs = SimFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).map_err(io_error("create", dir))?;
        let path = dir.join("CLOSED");
        let bytes = encode_closed(STORE_VERSION, &logs(3));
        assert!(decode_closed(&bytes, &path).is_ok());
        let check = |bad: &[u8], what: String| -> Result<()> {
            write(&fs, &path, bad)?;
            let whole = decode_closed(bad, &path).map(drop);
            let streamed = CleanRecord::open(&fs, &path).map(drop);
            assert!(streamed.is_err(), "{what}");
            assert_eq!(
                whole.map_err(|e| e.to_string()),
                streamed.map_err(|e| e.to_string()),
                "{what}"
            );
            Ok(())
        };
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            check(&bad, format!("flip at {i}"))?;
        }
        for cut in 0..bytes.len() {
            check(&bytes[..cut], format!("cut at {cut}"))?;
        }
        Ok(())
    }
}
