//! The commit log: a file beside the store where a durable commit is appended and
//! synced, so that a group commit costs one small sequential write and one `fdatasync`
//! instead of redb's copy-on-write pages (see the [crate docs](crate#the-commit-log)).
//!
//! The file is never shortened while the store is open: it is filled with zeroes ahead
//! of the records (in steps from 64 KiB to 1 MiB), and a checkpoint starts the next
//! epoch by rewriting the header over the old records. So an append neither allocates
//! blocks nor changes the file's length, and its `fdatasync` writes the appended bytes
//! alone.
//!
//! Layout (integers big-endian), log format version 2 ([`LOG_VERSION`]):
//!
//! | bytes | header (48 bytes) |
//! |---|---|
//! | 0..8 | magic `PRDB-LOG` |
//! | 8..12 | log format version (u32) |
//! | 12..16 | zero |
//! | 16..24 | epoch (u64): the checkpoint this log continues, as the store's `"log"` entry names it |
//! | 24..40 | the log's key: 16 random bytes drawn when the log was created, kept in the store's `"log"` entry |
//! | 40..44 | CRC-32C of bytes 0..40 |
//! | 44..48 | zero |
//!
//! Then one record per commit, in commit order, each followed by the end mark (44
//! zero bytes, which the next record overwrites):
//!
//! | bytes | record |
//! |---|---|
//! | 0..4 | `REC2`, so that no record starts with a zero byte |
//! | 4..12 | the record's number in this epoch (u64), from 0 |
//! | 12..20 | the epoch |
//! | 20..36 | the log's key, as in the header |
//! | 36..40 | payload length (u32) |
//! | 40..44 | CRC-32C of bytes 0..40 and the payload |
//! | 44.. | payload: the commit's operations ([`redo`](crate::redo)) |
//!
//! Reading stops at the first place that does not hold the next record of the epoch:
//! the end mark or a record of an older epoch there is the end; anything else is a torn
//! tail, unless a valid record of the epoch comes after it, which is damage.
//!
//! **The key** is what tells a record from bytes an application stored. Payloads hold
//! change values, which are the application's (and a peer's) bytes: a value can hold
//! bytes laid out as a record, with a valid checksum. Where the log stops, the reader
//! searches the rest of the file for a record (the records of an older epoch the file
//! was reused over are there, and a torn record's own payload), and a value crafted to
//! look like a record of the epoch would make a crash read as damage, and the store
//! refuse to open. The key is drawn from the operating system's random source and never
//! leaves the store's two files, so a value cannot carry it but by a 2^-128 chance. The
//! key in the header also tells this store's log from another store's (or another
//! log of this store's): a log whose key is not the one the store names is damage.
//!
//! Log format version 1, which stores of layout 2 read and write ([`Keying::Unkeyed`]),
//! has no key: its header is 32 bytes (the above without the key, the checksum at
//! 24..28), its records' headers 28 bytes (`REC1`, number, epoch, length, checksum over
//! bytes 0..24 and the payload), its end mark 28 zero bytes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use persister_core::{Error, Result};

use crate::error::corrupt;

/// The magic number that starts a commit log.
const MAGIC: [u8; 8] = *b"PRDB-LOG";

/// The commit log format this build writes, and reads for stores of layout 3.
pub(crate) const LOG_VERSION: u32 = 2;

/// The commit log format of stores of layout 2, read to replay them.
pub(crate) const UNKEYED_LOG_VERSION: u32 = 1;

/// The length of a log's header without the key: all of it in version 1.
pub(crate) const HEADER_LEN: usize = 32;

/// The length of a log's key.
pub(crate) const KEY_LEN: usize = 16;

/// The key a log's records carry (see the [module docs](self)).
pub(crate) type LogKey = [u8; KEY_LEN];

/// The bytes before a record's payload, and the length of the end mark.
pub(crate) const RECORD_HEADER_LEN: usize = 44;

/// The end mark: written after every record, the end of the log.
const END_MARK: [u8; RECORD_HEADER_LEN] = [0; RECORD_HEADER_LEN];

/// The file is filled ahead by at least this much...
const MIN_FILL: u64 = 64 * 1024;
/// ...and at most this much at a time.
const MAX_FILL: u64 = 1024 * 1024;

/// The path of the commit log of the store at `store`: its file name with `.log`
/// appended.
pub(crate) fn log_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// Fails, before anything is written, when the file system refuses the name of the
/// commit log of the store at `store` (its name with `.log` appended is longer than the
/// file system allows, though the store's own name is not): every commit would
/// otherwise fail to create the log, and poison the store.
pub(crate) fn check_name(store: &Path) -> Result<()> {
    let too_long = |path: &Path| {
        matches!(fs::symlink_metadata(path),
            Err(err) if err.kind() == io::ErrorKind::InvalidFilename)
    };
    if too_long(store) {
        return Err(Error::InvalidInput {
            what: "store path",
            reason: format!(
                "{} is a name or path longer than the file system allows: give the store a \
                 shorter one",
                store.display()
            ),
        });
    }
    let log = log_path(store);
    match too_long(&log) {
        true => Err(Error::InvalidInput {
            what: "store path",
            reason: format!(
                "the store's commit log would be {}, a name longer than the file system \
                 allows: give the store a name at least 4 bytes shorter, so that its name \
                 with `.log` appended fits",
                log.display()
            ),
        }),
        false => Ok(()),
    }
}

/// A new key for a log, from the operating system's random source.
fn new_key(path: &Path) -> Result<LogKey> {
    let mut key = [0; KEY_LEN];
    getrandom::fill(&mut key).map_err(|err| {
        Error::io(
            "draw a random key for",
            path,
            io::Error::other(err.to_string()),
        )
    })?;
    Ok(key)
}

/// Which format a log's records have, and for version 2 the key they must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keying {
    /// Log format version 1 (stores of layout 2): records without a key.
    Unkeyed,
    /// Log format version 2: every record carries this key.
    Keyed(LogKey),
}

impl Keying {
    /// The log format version of the header.
    fn version(&self) -> u32 {
        match self {
            Keying::Unkeyed => UNKEYED_LOG_VERSION,
            Keying::Keyed(_) => LOG_VERSION,
        }
    }

    /// The length of the log's header: 32 bytes, and the key.
    pub(crate) fn header_len(&self) -> usize {
        HEADER_LEN + self.key().len()
    }

    /// The first bytes of every record.
    fn tag(&self) -> &'static [u8; 4] {
        match self {
            Keying::Unkeyed => b"REC1",
            Keying::Keyed(_) => b"REC2",
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Keying::Unkeyed => &[],
            Keying::Keyed(key) => key,
        }
    }

    /// Where a record's length starts: after the tag, number, epoch and key, the bytes
    /// that name the record.
    fn len_at(&self) -> usize {
        20 + self.key().len()
    }

    /// The bytes before a record's payload, and the length of the end mark.
    fn head_len(&self) -> usize {
        self.len_at() + 8
    }

    /// The bytes that start record `seq` of `epoch`, up to its length.
    fn name(&self, seq: u64, epoch: u64) -> Vec<u8> {
        [
            &self.tag()[..],
            &seq.to_be_bytes(),
            &epoch.to_be_bytes(),
            self.key(),
        ]
        .concat()
    }

    /// The record header at the start of `head` (at least [`head_len`](Self::head_len)
    /// bytes), if it has this format's tag and key: its number, epoch, payload length
    /// and checksum.
    fn parse(&self, head: &[u8]) -> Option<Head> {
        let len_at = self.len_at();
        if head.get(..4)? != self.tag() || head.get(20..len_at)? != self.key() {
            return None;
        }
        Some(Head {
            seq: u64::from_be_bytes(array(&head[4..12])),
            epoch: u64::from_be_bytes(array(&head[12..20])),
            len: u32::from_be_bytes(array(&head[len_at..])) as usize,
            crc: u32::from_be_bytes(array(&head[len_at + 4..])),
        })
    }
}

/// The fields of a record header.
struct Head {
    seq: u64,
    epoch: u64,
    len: usize,
    crc: u32,
}

/// The header of a log of `epoch` whose records have `keying`'s format.
fn header(epoch: u64, keying: Keying) -> Vec<u8> {
    let mut header = Vec::with_capacity(keying.header_len());
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&keying.version().to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&epoch.to_be_bytes());
    header.extend_from_slice(keying.key());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    header
}

fn record_crc(head: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head), payload)
}

/// What a commit log holds for the store's current epoch.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The payload of every whole record, in order.
    pub commits: Vec<Vec<u8>>,
    /// A torn tail after them: its offset and length.
    pub torn: Option<(u64, u64)>,
}

/// Reads the log at `path` for the store's epoch `epoch`, which names it open, its
/// records in the format `keying` names (the store's `"log"` entry holds the key).
///
/// Records of `epoch` are read from the header on, in order, while they follow each
/// other. Where they stop, the rest of the file is searched for any valid record of
/// `epoch` numbered from there on: finding one is damage ([`Error::Corrupt`]), since no
/// record is written past the end of the log. Otherwise, the end mark or a record of an
/// older epoch there is the end, and anything else is a torn tail. A header of an older
/// epoch is one a checkpoint had not rewritten yet, and a header that fails its
/// checksum one whose rewrite a crash tore: either holds no record of `epoch` (the
/// search checks it).
///
/// A file shorter than a header, one without the magic (damaged, or another file at
/// the log's path), one of the other known format version or, in version 2, with
/// another key than the store's (another store's log, or damage), or a header of a newer
/// epoch than the store's, is damage; a version this build does not know is
/// [`Error::UnsupportedFormat`] when the header passes its checksum (which covers the
/// version), and damage when it does not. The magic, the version and the key are the
/// same in every header of a log, so a crash while a checkpoint rewrites it cannot tear
/// them.
pub(crate) fn read(path: &Path, epoch: u64, keying: Keying) -> Result<Contents> {
    let bytes = fs::read(path).map_err(|err| Error::io("read", path, err))?;
    let header_len = keying.header_len();
    if bytes.len() < header_len {
        return Err(corrupt(
            format!(
                "the commit log is {} bytes, shorter than its header",
                bytes.len()
            ),
            path,
        ));
    }
    let head = &bytes[..header_len];
    if head[..8] != MAGIC {
        return Err(corrupt(
            "the file at the commit log's path does not start as a commit log does: it is damaged, or another file took the log's place",
            path,
        ));
    }
    let crc_at = header_len - 8;
    let crc = u32::from_be_bytes(array(&head[crc_at..]));
    let header_valid = crc == crc32c::crc32c(&head[..crc_at]);
    let version = u32::from_be_bytes(array(&head[8..12]));
    if version != keying.version() {
        if version != LOG_VERSION && version != UNKEYED_LOG_VERSION {
            // The checksum covers the version: one that fails it is a damaged field, not
            // a format some other build writes.
            if !header_valid {
                return Err(corrupt(
                    format!(
                        "the commit log's header names format version {version}, which this build does not know, and fails its checksum: the header is damaged"
                    ),
                    path,
                ));
            }
            return Err(Error::UnsupportedFormat {
                what: "persister-redb commit log",
                path: path.to_path_buf(),
                found: version,
                supported: keying.version(),
            });
        }
        return Err(corrupt(
            format!(
                "the commit log is of log format version {version}, but the store writes version {}: it is another store's log, or damaged",
                keying.version()
            ),
            path,
        ));
    }
    if head[24..24 + keying.key().len()] != *keying.key() {
        return Err(corrupt(
            "the commit log's key is not the one the store names: it is another store's log, or damaged",
            path,
        ));
    }
    let mut current = false;
    if header_valid {
        let found = u64::from_be_bytes(array(&head[16..24]));
        if found > epoch {
            return Err(corrupt(
                format!(
                    "the commit log continues checkpoint {found}, but the store is at checkpoint {epoch}"
                ),
                path,
            ));
        }
        current = found == epoch;
    }
    let mut contents = Contents::default();
    let mut at = header_len;
    if current {
        loop {
            let next = contents.commits.len() as u64;
            match Record::at(&bytes, at, keying).filter(|r| r.epoch == epoch && r.seq == next) {
                Some(record) => {
                    at += keying.head_len() + record.payload.len();
                    contents.commits.push(record.payload.to_vec());
                }
                None => break,
            }
        }
    }
    let next = contents.commits.len() as u64;
    if let Some(later) = later_record(&bytes, at, epoch, next, keying) {
        let what = match current {
            true => format!(
                "commit {next} of the commit log is damaged or missing, and a valid commit follows at byte {later}"
            ),
            false => format!(
                "the commit log's header is damaged or of an older checkpoint, and a commit of the current one is at byte {later}"
            ),
        };
        return Err(Error::corrupt(what, path, Some(at as u64)));
    }
    if !current {
        return Ok(contents);
    }
    let head_len = keying.head_len();
    let rest = &bytes[at.min(bytes.len())..];
    let end_mark = rest.iter().take(head_len).all(|&b| b == 0);
    if end_mark || Record::at(&bytes, at, keying).is_some_and(|r| r.epoch < epoch) {
        return Ok(contents);
    }
    // The record being written when the crash came: as long as its header says, if
    // that much of the header is there, else the header.
    let claimed = rest
        .get(..head_len)
        .filter(|head| head[..keying.len_at()] == keying.name(next, epoch)[..])
        .and_then(|head| keying.parse(head))
        .map(|head| head_len + head.len);
    let torn = claimed.unwrap_or(head_len).min(rest.len());
    contents.torn = Some((at as u64, torn as u64));
    Ok(contents)
}

/// The offset of the first valid record of `epoch` numbered `next` or more at or after
/// `from`. Every byte is a candidate; a candidate's checksum over its claimed payload is
/// computed in constant time from checksums of the file's prefixes
/// ([`RangeCrc`](persister_core::checksum::RangeCrc)), so
/// that bytes that look like record headers (in the payload of a torn record, or of the
/// records of an older epoch the log was reused over) cost no more than other bytes,
/// whatever lengths they claim.
fn later_record(bytes: &[u8], from: usize, epoch: u64, next: u64, keying: Keying) -> Option<usize> {
    let crcs = persister_core::checksum::RangeCrc::new(bytes, from);
    let head_len = keying.head_len();
    (from..bytes.len()).find(|&at| {
        let Some(head) = at
            .checked_add(head_len)
            .and_then(|end| bytes.get(at..end))
            .and_then(|head| keying.parse(head))
        else {
            return false;
        };
        if head.epoch != epoch || head.seq < next {
            return false;
        }
        let start = at + head_len;
        let Some(end) = start
            .checked_add(head.len)
            .filter(|&end| end <= bytes.len())
        else {
            return false;
        };
        // crc(head ‖ payload) = crc(payload) ^ Z(crc(head), len(payload)).
        let named = crc32c::crc32c(&bytes[at..at + keying.len_at() + 4]);
        let whole = crcs.crc(start, end) ^ crcs.shift(named, head.len);
        whole == head.crc
    })
}

/// Refuses to empty the file at `path` unless it is a commit log: it starts with the
/// magic, or holds a part of it (what a crash while creating a log leaves). Any other
/// file there (another store, an application's own log) is not this store's.
fn refuse_foreign(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut first = Vec::with_capacity(MAGIC.len());
    File::open(path)
        .and_then(|file| file.take(MAGIC.len() as u64).read_to_end(&mut first))
        .map_err(|err| Error::io("read", path, err))?;
    if MAGIC.starts_with(&first) {
        return Ok(());
    }
    Err(Error::InvalidInput {
        what: "commit log",
        reason: format!(
            "{} is where this store keeps its commit log, but it holds another file; move it away",
            path.display()
        ),
    })
}

/// The first `N` bytes of `bytes`, which holds at least that many.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// A record that reads whole and passes its checksum, of any epoch.
#[derive(Clone, Copy)]
struct Record<'a> {
    seq: u64,
    epoch: u64,
    payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record at `at`, in the format (and with the key) `keying` names.
    fn at(bytes: &'a [u8], at: usize, keying: Keying) -> Option<Record<'a>> {
        let raw = bytes.get(at..at.checked_add(keying.head_len())?)?;
        let head = keying.parse(raw)?;
        let start = at + keying.head_len();
        let payload = bytes.get(start..start.checked_add(head.len)?)?;
        if record_crc(&raw[..keying.len_at() + 4], payload) != head.crc {
            return None;
        }
        Some(Record {
            seq: head.seq,
            epoch: head.epoch,
            payload,
        })
    }
}

/// The open commit log of a store, appended to by its commits.
#[derive(Debug)]
pub(crate) struct CommitLog {
    file: File,
    path: PathBuf,
    epoch: u64,
    /// The format of its records, with the key they carry, drawn when the log was
    /// created (unkeyed in a store of layout 2).
    keying: Keying,
    /// The number of the next record.
    next: u64,
    /// Where the next record goes.
    len: u64,
    /// The file's length: zeroes from the end mark on.
    filled: u64,
    /// The thread [`sync_during`](CommitLog::sync_during) syncs on; `None` if it could
    /// not be started, and syncs then run on the caller's thread.
    syncer: Option<Syncer>,
}

impl CommitLog {
    /// Creates the log at `path` for `epoch`, durably: once this returns, the file
    /// holds the header and the end mark, and its name is synced. `keyed`, its records
    /// carry a new [key](Self::keying) (log format version 2); otherwise they have
    /// version 1's format, as a store of layout 2 writes them. A file already there (a
    /// log the store named closed, or one of another store) is emptied first, so that
    /// none of its records can be read as this log's.
    pub fn create(path: &Path, epoch: u64, keyed: bool) -> Result<CommitLog> {
        let existed = path.exists();
        if existed {
            refuse_foreign(path)?;
        }
        let keying = match keyed {
            true => Keying::Keyed(new_key(path)?),
            false => Keying::Unkeyed,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|err| Error::io("open", path, err))?;
        let filled = 0;
        let mut log = CommitLog {
            file,
            path: path.to_path_buf(),
            epoch,
            keying,
            next: 0,
            len: 0,
            filled,
            syncer: None,
        };
        log.clear(epoch)?;
        log.syncer = Syncer::start(&log.file);
        if !existed {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            persister_core::files::sync_dir(dir)?;
        }
        Ok(log)
    }

    /// Starts `epoch` with no records: the header and the end mark, written in one
    /// write and synced. The old records after them belong to an older epoch, which
    /// reads as the end; a crash before the sync leaves the old header, an older epoch
    /// than the store names, which reads as nothing.
    pub fn clear(&mut self, epoch: u64) -> Result<()> {
        let mut start = header(epoch, self.keying);
        start.extend_from_slice(&END_MARK[..self.keying.head_len()]);
        self.file
            .write_all_at(&start, 0)
            .map_err(|err| Error::io("write to", &self.path, err))?;
        self.filled = self.filled.max(start.len() as u64);
        self.sync()?;
        self.epoch = epoch;
        self.next = 0;
        self.len = self.keying.header_len() as u64;
        Ok(())
    }

    /// Appends `record`: [`RECORD_HEADER_LEN`] bytes this fills in (the last 28 of them
    /// in a log of version 1, whose record headers are shorter), then the payload; the
    /// end mark follows it. Not synced.
    pub fn append(&mut self, record: &mut Vec<u8>) -> Result<()> {
        let payload_len = record.len() - RECORD_HEADER_LEN;
        let len = u32::try_from(payload_len).map_err(|_| Error::TooLarge {
            what: "commit",
            len: payload_len as u64,
            max: u32::MAX.into(),
        })?;
        let keying = self.keying;
        let skip = RECORD_HEADER_LEN - keying.head_len();
        let len_at = skip + keying.len_at();
        record[skip..len_at].copy_from_slice(&keying.name(self.next, self.epoch));
        record[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        let crc = record_crc(&record[skip..len_at + 4], &record[RECORD_HEADER_LEN..]);
        record[len_at + 4..RECORD_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
        let written = record.len();
        record.extend_from_slice(&END_MARK[..keying.head_len()]);
        let bytes = &record[skip..];
        let result = self.fill(self.len + bytes.len() as u64).and_then(|()| {
            self.file
                .write_all_at(bytes, self.len)
                .map_err(|err| Error::io("write to", &self.path, err))
        });
        record.truncate(written);
        result?;
        self.next += 1;
        self.len += (written - skip) as u64;
        Ok(())
    }

    /// Fills the file with zeroes up to at least `end`, ahead by as much as it holds
    /// (from [`MIN_FILL`] to [`MAX_FILL`]).
    fn fill(&mut self, end: u64) -> Result<()> {
        if end <= self.filled {
            return Ok(());
        }
        let step = self.filled.clamp(MIN_FILL, MAX_FILL);
        let target = end.next_multiple_of(step);
        let zeroes = [0u8; 64 * 1024];
        let mut at = self.filled;
        while at < target {
            let n = (target - at).min(zeroes.len() as u64) as usize;
            self.file
                .write_all_at(&zeroes[..n], at)
                .map_err(|err| Error::io("write to", &self.path, err))?;
            at += n as u64;
        }
        self.filled = target;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&self) -> Result<()> {
        #[cfg(test)]
        if let Some(error) = self
            .syncer
            .as_ref()
            .and_then(|s| s.shared.lock().fail_next.take())
        {
            return Err(Error::io("sync", &self.path, error));
        }
        self.file
            .sync_data()
            .map_err(|err| Error::io("sync", &self.path, err))
    }

    /// Makes the next sync (on the log's thread or this one) fail with `error`, as a
    /// failed `fdatasync` would.
    #[cfg(test)]
    pub fn fail_next_sync(&self, error: io::Error) {
        if let Some(syncer) = &self.syncer {
            syncer.shared.lock().fail_next = Some(error);
        }
    }

    /// Makes every appended record durable, as [`sync`](Self::sync) does, while `work`
    /// runs on this thread: the sync runs on the log's own thread, and this returns once
    /// both are done, with both outcomes. A logged commit commits redb this way,
    /// so that the disk's wait and the processor's work overlap. Without that thread
    /// (it could not be started), the sync runs first, then `work`.
    pub fn sync_during<R>(&self, work: impl FnOnce() -> R) -> (Result<()>, R) {
        let Some(syncer) = &self.syncer else {
            return (self.sync(), work());
        };
        syncer.request();
        // Should `work` panic, the sync still finishes on its thread and its outcome is
        // dropped by the next request; the engine is poisoned by then, and commits
        // nothing more.
        let done = work();
        let synced = syncer
            .wait()
            .map_err(|err| Error::io("sync", &self.path, err));
        (synced, done)
    }

    /// The number the next record gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The format of its records, with the key they carry, which the store's `"log"`
    /// entry keeps.
    pub fn keying(&self) -> Keying {
        self.keying
    }

    /// The epoch its records continue.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The bytes its records take.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A thread that syncs the log when asked, one sync at a time, and keeps the outcome
/// for the thread that asked. Dropping it lets a sync in progress finish, then joins
/// the thread.
#[derive(Debug)]
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct SyncShared {
    state: Mutex<SyncState>,
    /// Signalled when a sync is asked for, finishes, or the thread is told to stop.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// A sync is asked for and has not finished.
    asked: bool,
    /// The next sync fails with this instead of syncing (tests of a failed sync).
    #[cfg(test)]
    fail_next: Option<io::Error>,
    /// The outcome of the last sync, until [`Syncer::wait`] takes it.
    outcome: Option<io::Result<()>>,
    /// The syncer is dropped: end once nothing is asked.
    stop: bool,
}

impl SyncShared {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, SyncState>) -> MutexGuard<'a, SyncState> {
        self.changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Syncer {
    /// Starts the thread, on its own descriptor of `file`; `None` if either fails.
    fn start(file: &File) -> Option<Syncer> {
        let file = file.try_clone().ok()?;
        let shared = Arc::new(SyncShared::default());
        let on_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("persister-redb log sync".into())
            .spawn(move || Syncer::run(&file, &on_thread))
            .ok()?;
        Some(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn run(file: &File, shared: &SyncShared) {
        let mut state = shared.lock();
        loop {
            while !state.asked && !state.stop {
                state = shared.wait(state);
            }
            if !state.asked {
                return;
            }
            #[cfg(test)]
            let injected = state.fail_next.take();
            #[cfg(not(test))]
            let injected: Option<io::Error> = None;
            drop(state);
            let outcome = match injected {
                Some(error) => Err(error),
                None => file.sync_data(),
            };
            state = shared.lock();
            state.asked = false;
            state.outcome = Some(outcome);
            shared.changed.notify_all();
        }
    }

    /// Asks for a sync of everything written to the file before this call.
    fn request(&self) {
        let mut state = self.shared.lock();
        // A sync still running (its asker panicked) finishes first; its outcome is
        // dropped, and the sync asked for now runs after it.
        while state.asked {
            state = self.shared.wait(state);
        }
        state.outcome = None;
        state.asked = true;
        self.shared.changed.notify_all();
    }

    /// Waits for the sync asked for and gives its outcome.
    fn wait(&self) -> io::Result<()> {
        let mut state = self.shared.lock();
        loop {
            if let Some(outcome) = state.outcome.take() {
                return outcome;
            }
            if !state.asked {
                return Err(io::Error::other("no sync of the commit log was asked for"));
            }
            state = self.shared.wait(state);
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut record = vec![0; RECORD_HEADER_LEN];
        record.extend_from_slice(payload);
        record
    }

    /// Record `seq` of `epoch` holding `payload`, in the format `keying` names, as a log
    /// holds it.
    fn record_bytes(keying: Keying, seq: u64, epoch: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = keying.name(seq, epoch);
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        let crc = record_crc(&bytes, payload);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// The log `written` made, open again for appending after its records (`ends`).
    fn reopened(path: &Path, keying: Keying, ends: &[u64]) -> CommitLog {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let filled = file.metadata().unwrap().len();
        CommitLog {
            file,
            path: path.to_path_buf(),
            epoch: u64::from_be_bytes(array(&fs::read(path).unwrap()[16..24])),
            keying,
            next: ends.len() as u64 - 1,
            len: *ends.last().unwrap(),
            filled,
            syncer: None,
        }
    }

    /// A log of `epoch` holding `payloads`: its directory, path, the offsets where its
    /// records end (the header's end first), and its records' keying.
    fn written(epoch: u64, payloads: &[&[u8]]) -> (tempfile::TempDir, PathBuf, Vec<u64>, Keying) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut log = CommitLog::create(&path, epoch, true).unwrap();
        let mut ends = vec![log.len()];
        for payload in payloads {
            log.append(&mut record(payload)).unwrap();
            ends.push(log.len());
        }
        log.sync().unwrap();
        (dir, path, ends, log.keying())
    }

    /// The search for a later record finds, from every offset, what parsing a record
    /// at every byte finds: in a log whose second record's payload holds a whole record
    /// of the same epoch, and whose first record is damaged.
    #[test]
    fn the_search_for_a_later_record_matches_reading_every_byte() {
        let (_dir, path, mut ends, keying) = written(3, &[b"first"]);
        let mut log = reopened(&path, keying, &ends);
        let inner = record_bytes(keying, 1, 3, b"inner");
        for payload in [&inner[..], &[0x5a; 300]] {
            log.append(&mut record(payload)).unwrap();
            ends.push(log.len());
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(ends[3] as usize);
        bytes[ends[0] as usize + RECORD_HEADER_LEN] ^= 1;
        for next in 0..4 {
            for from in 0..bytes.len() {
                let naive = (from..bytes.len()).find(|&p| {
                    Record::at(&bytes, p, keying).is_some_and(|r| r.epoch == 3 && r.seq >= next)
                });
                assert_eq!(
                    later_record(&bytes, from, 3, next, keying),
                    naive,
                    "{from} {next}"
                );
            }
        }
    }

    #[test]
    fn records_read_back_in_order() {
        let payloads: [&[u8]; 3] = [b"one", b"", &[7; 1000]];
        let (_dir, path, _, keying) = written(5, &payloads);
        let contents = read(&path, 5, keying).unwrap();
        assert_eq!(contents.commits, payloads.map(<[u8]>::to_vec));
        assert_eq!(contents.torn, None);
    }

    #[test]
    fn an_older_epoch_holds_nothing_and_a_newer_one_or_a_short_file_is_damage() {
        let (_dir, path, _, keying) = written(5, &[b"one"]);
        let contents = read(&path, 6, keying).unwrap();
        assert!(contents.commits.is_empty() && contents.torn.is_none());
        assert!(matches!(read(&path, 4, keying), Err(Error::Corrupt { .. })));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..HEADER_LEN - 1]).unwrap();
        assert!(matches!(read(&path, 5, keying), Err(Error::Corrupt { .. })));
    }

    /// Zeroes over a whole record (a lost block) or a record missing are damage when
    /// records follow, never a shorter log.
    #[test]
    fn a_lost_record_before_others_is_damage() {
        let payloads: [&[u8]; 3] = [b"first", &[1; 40], b"third"];
        let (_dir, path, ends, keying) = written(1, &payloads);
        let bytes = fs::read(&path).unwrap();
        let (start, end) = (ends[1] as usize, ends[2] as usize);
        let mut zeroed = bytes.clone();
        zeroed[start..end].fill(0);
        fs::write(&path, &zeroed).unwrap();
        assert!(matches!(read(&path, 1, keying), Err(Error::Corrupt { .. })));
        let mut removed = bytes[..start].to_vec();
        removed.extend_from_slice(&bytes[end..]);
        fs::write(&path, &removed).unwrap();
        assert!(matches!(read(&path, 1, keying), Err(Error::Corrupt { .. })));
    }

    /// A header a crash tore while a checkpoint rewrote it: nothing of the new epoch
    /// follows, so the log holds nothing; with a record of the epoch after it, damage.
    #[test]
    fn a_torn_header_without_records_of_the_epoch_holds_nothing() {
        let (_dir, path, _, keying) = written(1, &[b"old", b"older"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let contents = read(&path, 2, keying).unwrap();
        assert!(contents.commits.is_empty() && contents.torn.is_none());
        assert!(matches!(read(&path, 1, keying), Err(Error::Corrupt { .. })));
    }

    /// Creating a log over a file already there empties it: none of its records, of
    /// whatever epoch, reads as the new log's.
    #[test]
    fn creating_over_an_old_log_empties_it() {
        let (_dir, path, _, _) = written(3, &[b"one", b"two"]);
        let log = CommitLog::create(&path, 3, true).unwrap();
        let keying = log.keying();
        drop(log);
        let contents = read(&path, 3, keying).unwrap();
        assert!(contents.commits.is_empty() && contents.torn.is_none());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            (keying.header_len() + RECORD_HEADER_LEN) as u64
        );
    }

    /// A log cut at every byte reads as the records wholly before the cut, and the rest
    /// as a torn tail.
    #[test]
    fn a_cut_anywhere_leaves_the_whole_records_before_it() {
        let payloads: [&[u8]; 3] = [b"first", &[1; 40], b"third"];
        let (_dir, path, ends, keying) = written(1, &payloads);
        let bytes = fs::read(&path).unwrap();
        for cut in keying.header_len()..=ends[3] as usize {
            fs::write(&path, &bytes[..cut]).unwrap();
            let contents = read(&path, 1, keying).unwrap();
            let whole = ends.iter().filter(|&&end| end <= cut as u64).count() - 1;
            assert_eq!(contents.commits.len(), whole, "cut at {cut}");
            let last_end = ends[whole];
            let torn = (cut as u64 > last_end).then(|| (last_end, cut as u64 - last_end));
            assert_eq!(contents.torn, torn, "cut at {cut}");
        }
    }

    /// A damaged byte in the last record is a torn tail; in an earlier one, with a valid
    /// record after it, it is damage. Zeroes from inside a record on are a torn tail;
    /// from a record's start, the end.
    #[test]
    fn damage_before_a_valid_record_is_an_error() {
        let payloads: [&[u8]; 3] = [b"first", &[1; 40], b"third"];
        let (_dir, path, ends, keying) = written(1, &payloads);
        let bytes = fs::read(&path).unwrap();
        for at in keying.header_len()..ends[3] as usize {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            fs::write(&path, &damaged).unwrap();
            let result = read(&path, 1, keying);
            if at as u64 >= ends[2] {
                let contents = result.unwrap();
                assert_eq!(contents.commits.len(), 2, "flip at {at}");
                assert_eq!(contents.torn.map(|(offset, _)| offset), Some(ends[2]));
            } else {
                assert!(matches!(result, Err(Error::Corrupt { .. })), "flip at {at}");
            }
            let mut zeroed = bytes.clone();
            zeroed[at..].fill(0);
            fs::write(&path, &zeroed).unwrap();
            let contents = read(&path, 1, keying).unwrap();
            let whole = ends.iter().filter(|&&end| end <= at as u64).count() - 1;
            assert_eq!(contents.commits.len(), whole, "zeroes from {at}");
            assert_eq!(
                contents.torn.is_some(),
                !ends.contains(&(at as u64)),
                "zeroes from {at}"
            );
        }
    }

    /// A checkpoint rewrites the header over the old records, which then read as the
    /// end, whatever the new records overwrite of them.
    #[test]
    fn a_cleared_log_reads_only_the_new_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut log = CommitLog::create(&path, 1, true).unwrap();
        let keying = log.keying();
        for n in 0..20u8 {
            log.append(&mut record(&[n; 100])).unwrap();
        }
        log.clear(2).unwrap();
        let contents = read(&path, 2, keying).unwrap();
        assert!(contents.commits.is_empty() && contents.torn.is_none());
        for n in 0..3u8 {
            log.append(&mut record(&[n; 30])).unwrap();
        }
        log.sync().unwrap();
        let contents = read(&path, 2, keying).unwrap();
        assert_eq!(
            contents.commits,
            vec![vec![0; 30], vec![1; 30], vec![2; 30]]
        );
        assert_eq!(contents.torn, None);
        assert!(read(&path, 3, keying).unwrap().commits.is_empty());
        // Appends fill the file ahead: its length does not move with every append.
        let len = fs::metadata(&path).unwrap().len();
        assert_eq!(len % MIN_FILL, 0);
        log.append(&mut record(&[9; 30])).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
    }

    /// A version field damaged into one no build writes, the header's checksum failing,
    /// is damage: not a newer format, which would send the user looking for a build that
    /// does not exist instead of to a backup. Only a header that passes its checksum
    /// names a format version this build does not know.
    #[test]
    fn a_damaged_version_field_is_damage_not_an_unknown_format() {
        let (_dir, path, _, keying) = written(1, &[b"x"]);
        let bytes = fs::read(&path).unwrap();
        for at in 8..12 {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                fs::write(&path, &damaged).unwrap();
                let result = read(&path, 1, keying);
                assert!(
                    matches!(result, Err(Error::Corrupt { .. })),
                    "bit {bit} of byte {at}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_header_or_another_version_is_refused() {
        let (_dir, path, _, keying) = written(1, &[b"x"]);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(keying.header_len(), 48);
        for at in 0..48 {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            fs::write(&path, &damaged).unwrap();
            // Bytes 12..16 and 44..48 are not covered: zero, and ignored. A record of
            // the epoch follows, so a header that fails is damage.
            if (12..16).contains(&at) || (44..48).contains(&at) {
                continue;
            }
            assert!(read(&path, 1, keying).is_err(), "flip at {at}");
        }
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&3u32.to_be_bytes());
        let crc = crc32c::crc32c(&other[..40]);
        other[40..44].copy_from_slice(&crc.to_be_bytes());
        fs::write(&path, &other).unwrap();
        assert!(matches!(
            read(&path, 1, keying),
            Err(Error::UnsupportedFormat {
                found: 3,
                supported: 2,
                ..
            })
        ));
        // A log of format version 2 read as a layout-2 store's: not the store's log.
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read(&path, 1, Keying::Unkeyed),
            Err(Error::Corrupt { .. })
        ));
        // Another log's key, the header otherwise sound: not the store's log.
        assert!(matches!(
            read(&path, 1, Keying::Keyed([0x11; KEY_LEN])),
            Err(Error::Corrupt { .. })
        ));
    }

    /// A store of layout 2 writes logs of format version 1: 32-byte header, records
    /// with 28-byte headers and no key; they read back, across a checkpoint too.
    #[test]
    fn an_unkeyed_log_is_written_in_format_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut log = CommitLog::create(&path, 7, false).unwrap();
        assert_eq!(log.keying(), Keying::Unkeyed);
        assert_eq!(log.len(), 32);
        for n in 0..3u8 {
            log.append(&mut record(&[n; 10])).unwrap();
        }
        assert_eq!(log.len(), 32 + 3 * (28 + 10));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes[8..12], UNKEYED_LOG_VERSION.to_be_bytes());
        assert_eq!(&bytes[32..36], b"REC1");
        assert_eq!(&bytes[32 + 38..32 + 42], b"REC1");
        let contents = read(&path, 7, Keying::Unkeyed).unwrap();
        assert_eq!(
            contents.commits,
            vec![vec![0; 10], vec![1; 10], vec![2; 10]]
        );
        assert_eq!(contents.torn, None);
        log.clear(8).unwrap();
        log.append(&mut record(b"after")).unwrap();
        log.sync().unwrap();
        let contents = read(&path, 8, Keying::Unkeyed).unwrap();
        assert_eq!(contents.commits, vec![b"after".to_vec()]);
        assert_eq!(contents.torn, None);
    }

    /// A log of format version 1, as a store of layout 2 left it: its records (28-byte
    /// headers, no key) read back, a torn tail after them is found, and damage before a
    /// valid record is refused.
    #[test]
    fn a_log_of_format_version_1_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let payloads: [&[u8]; 3] = [b"one", b"", &[7; 1000]];
        let mut bytes = header(4, Keying::Unkeyed);
        assert_eq!(bytes.len(), 32);
        let mut ends = vec![bytes.len()];
        for (seq, payload) in payloads.iter().enumerate() {
            bytes.extend_from_slice(&record_bytes(Keying::Unkeyed, seq as u64, 4, payload));
            ends.push(bytes.len());
        }
        let end = bytes.len();
        bytes.extend_from_slice(&[0; 28]);
        fs::write(&path, &bytes).unwrap();
        let contents = read(&path, 4, Keying::Unkeyed).unwrap();
        assert_eq!(contents.commits, payloads.map(<[u8]>::to_vec));
        assert_eq!(contents.torn, None);
        let key = Keying::Keyed([1; KEY_LEN]);
        assert!(matches!(read(&path, 4, key), Err(Error::Corrupt { .. })));
        fs::write(&path, &bytes[..end - 10]).unwrap();
        let contents = read(&path, 4, Keying::Unkeyed).unwrap();
        assert_eq!(contents.commits.len(), 2);
        assert_eq!(
            contents.torn,
            Some((ends[2] as u64, (end - 10 - ends[2]) as u64))
        );
        let mut damaged = bytes.clone();
        damaged[ends[0] + 30] ^= 1;
        fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            read(&path, 4, Keying::Unkeyed),
            Err(Error::Corrupt { .. })
        ));
    }

    /// Bytes laid out as a record of the epoch, with a valid checksum, but without the
    /// log's key (a value an application stored, which cannot know it) are not a record:
    /// in a torn record's payload they leave a torn tail, not damage; in a payload
    /// after the end they are not found. The same bytes with the log's key are found.
    #[test]
    fn bytes_laid_out_as_a_record_without_the_log_s_key_are_no_record() {
        let (_dir, path, ends, keying) = written(2, &[b"first"]);
        let stranger = Keying::Keyed([0xab; KEY_LEN]);
        for (forger, found) in [(stranger, false), (keying, true)] {
            let forged: Vec<u8> = (1..6)
                .flat_map(|seq| record_bytes(forger, seq, 2, b"x"))
                .collect();
            let mut log = reopened(&path, keying, &ends);
            let mut payload = forged.clone();
            payload.extend_from_slice(&[0x5a; 500]);
            log.append(&mut record(&payload)).unwrap();
            let end = log.len() as usize;
            drop(log);
            // The last record torn after the forged bytes.
            let bytes = fs::read(&path).unwrap();
            fs::write(&path, &bytes[..end - 100]).unwrap();
            let result = read(&path, 2, keying);
            match found {
                false => {
                    let contents = result.unwrap();
                    assert_eq!(contents.commits, [b"first".to_vec()]);
                    assert_eq!(contents.torn.map(|(at, _)| at), Some(ends[1]));
                }
                true => assert!(matches!(result, Err(Error::Corrupt { .. }))),
            }
            fs::write(&path, &bytes).unwrap();
        }
    }

    #[test]
    fn a_huge_length_reads_as_a_torn_tail_without_allocating_it() {
        let (_dir, path, ends, keying) = written(1, &[b"x"]);
        let mut bytes = fs::read(&path).unwrap();
        let at = ends[1] as usize;
        let name = keying.name(1, 1);
        bytes[at..at + name.len()].copy_from_slice(&name);
        bytes[at + name.len()..at + name.len() + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        fs::write(&path, &bytes).unwrap();
        let contents = read(&path, 1, keying).unwrap();
        assert_eq!(contents.commits.len(), 1);
        assert_eq!(contents.torn, Some((ends[1], (bytes.len() - at) as u64)));
    }

    #[test]
    fn sync_during_gives_both_outcomes_and_the_records_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut log = CommitLog::create(&path, 2, true).unwrap();
        let keying = log.keying();
        assert!(log.syncer.is_some(), "the sync thread should start");
        for i in 0..100u32 {
            log.append(&mut record(&i.to_be_bytes())).unwrap();
            let (synced, done) = log.sync_during(|| i * 2);
            synced.unwrap();
            assert_eq!(done, i * 2);
        }
        drop(log);
        let contents = read(&path, 2, keying).unwrap();
        assert_eq!(contents.commits.len(), 100);
        assert_eq!(contents.commits[99], 99u32.to_be_bytes());
        assert_eq!(contents.torn, None);
    }

    #[test]
    fn a_panic_during_a_sync_leaves_the_log_syncing_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut log = CommitLog::create(&path, 1, true).unwrap();
        let keying = log.keying();
        log.append(&mut record(b"one")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            log.sync_during(|| panic!("the work failed"))
        }));
        assert!(panicked.is_err());
        log.append(&mut record(b"two")).unwrap();
        let (synced, ()) = log.sync_during(|| ());
        synced.unwrap();
        drop(log);
        assert_eq!(
            read(&path, 1, keying).unwrap().commits,
            [b"one".to_vec(), b"two".to_vec()]
        );
    }

    #[test]
    fn a_failed_sync_on_the_thread_is_reported_to_the_thread_that_asked() {
        // `fdatasync` of a character device fails with EINVAL, every time.
        let file = File::options().write(true).open("/dev/null").unwrap();
        let syncer = Syncer::start(&file).unwrap();
        for _ in 0..3 {
            syncer.request();
            let error = syncer.wait().unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        }
        assert!(syncer.wait().is_err(), "no outcome without a request");
    }
}
