//! One document: its state in memory, its log on disk, and the records not yet
//! written.

use std::io;
use std::path::{Path, PathBuf};

use persister_core::{Batch, DocumentId, DocumentState, Error, Recovered, Result};

use crate::format::{
    self, LogEnd, MAX_RECORD_LEN, RECORD_HEADER_LEN, RecordFormat, RecordKind, batch,
};
use crate::io::FsFile;
use crate::live::LiveState;
use crate::store::Shared;
use crate::{FsOptions, Recovery, names, replay, rewrite};

/// Pending buffers larger than this are freed after a flush instead of kept for reuse.
const KEEP_CAPACITY: usize = 16 << 20;

/// A document and its log.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    id: DocumentId,
    /// The log's file name, chosen when the document is first written.
    name: Option<String>,
    /// The log, once a flush created it.
    file: Option<Box<dyn FsFile>>,
    live: LiveState,
    header_len: u64,
    /// The framing of the log's records (and of the pending ones): its header's, or for
    /// a document without a log, a new key's once a record is pending.
    format: Option<RecordFormat>,
    /// The log file's length (its header and committed flushes) and running checksum.
    end: LogEnd,
    /// Batch records applied but not written yet, all of flush `next_flush`.
    pending: Vec<u8>,
    next_flush: u32,
    recovery: Recovery,
    /// A torn tail that the next new log written replaces, reported once that log is
    /// renamed into place (the rewrite on opening of a log whose sync failed).
    dropped_by_rewrite: Option<Recovered>,
    poisoned: Option<String>,
}

/// What the store knows about a log before it is replayed.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// The log's exact end, when the store was closed cleanly or this store wrote or
    /// checked the log since it was opened: then no tail and no other length is valid.
    pub end: Option<LogEnd>,
    /// The poison of an earlier handle whose flush failed.
    pub poison: Option<String>,
}

impl Doc {
    /// A document with no log yet.
    pub(crate) fn new(id: &DocumentId, poison: Option<String>) -> Self {
        Self {
            id: id.clone(),
            header_len: format::log_header_len(id.as_bytes().len()) as u64,
            poisoned: poison,
            ..Self::default()
        }
    }

    /// Opens the log `name` of document `id`, replays it, and truncates a torn tail
    /// (only reports it on a read-only store or a poisoned document).
    ///
    /// The truncation is synced before anything else is written: otherwise a crash
    /// could bring the old tail back behind newer records, where it would look like
    /// damage. If the truncation or its sync fails, the document is poisoned as by a
    /// failed flush (see [`Shared::poison`]).
    ///
    /// A log whose sync failed in this process (see [`Shared::sync_failed`]) is not
    /// appended to as it is, when opened for writing: the disk may lack bytes that
    /// reading it gives, and appends synced after them would be acknowledged behind a
    /// hole. It is first rewritten whole from what replaying it gave (which drops a torn
    /// tail too); if that fails, so does the open, and the log stays noted.
    pub(crate) fn load(
        shared: &Shared,
        id: &DocumentId,
        name: String,
        known: Known,
    ) -> Result<Self> {
        let path = shared.dir.join(&name);
        let writable = !shared.read_only && known.poison.is_none();
        let file = shared
            .fs
            .open(&path, writable)
            .map_err(io_error("open", &path))?;
        Self::load_file(shared, id, name, file, known)
    }

    /// [`Doc::load`] of the log `file`, opened for writing unless the store is
    /// read-only or `known` has a poison.
    pub(crate) fn load_file(
        shared: &Shared,
        id: &DocumentId,
        name: String,
        mut file: Box<dyn FsFile>,
        known: Known,
    ) -> Result<Self> {
        let path = shared.dir.join(&name);
        let writable = !shared.read_only && known.poison.is_none();
        let (replayed, header_len, format, total) = read_log(file.as_mut(), id, &path)?;
        if let Some(expected) = known.end {
            check_clean(&replayed, total, expected, &path)?;
        }
        let valid = replayed.valid;
        // The rewrite drops a torn tail too: no cut then.
        let rewrite = writable && shared.sync_failed(&name);
        let recovered = (valid.len < total)
            .then(|| Recovered::new(id.clone(), &path, valid.len, total - valid.len, writable));
        // A tail left in place is reported now; one the rewrite below drops, as soon as
        // the rewritten log is renamed into place: the rewrite can fail after that (the
        // directory's sync), and the next open would find no tail to report. A retry
        // that finds the tail again reports it once.
        if let Some(recovered) = recovered.clone().filter(|_| !writable) {
            shared.note_recovered(recovered);
        }
        let dropped_by_rewrite = recovered.clone().filter(|_| rewrite);
        if let Some(recovered) = recovered.filter(|_| writable && !rewrite) {
            shared.before_write()?;
            let cut = file
                .truncate(valid.len)
                .map_err(io_error("truncate", &path));
            if cut.is_ok() {
                // Reported once cut, before the cut's sync, which can fail with the tail
                // gone from what the next open reads.
                shared.note_recovered(recovered);
            }
            let cut = cut.and_then(|()| file.sync_data().map_err(io_error("sync", &path)));
            if let Err(e) = cut {
                // The cut may be lost as a failed flush's pages may be: nothing may
                // follow it, and no clean-close record may vouch for it. The next
                // store to write it rewrites it whole first.
                shared.note_sync_failure(&name);
                shared.poison(id, &e.to_string());
                return Err(e);
            }
        }
        let mut doc = Self {
            id: id.clone(),
            name: Some(name),
            file: Some(file),
            live: replayed.live,
            header_len: header_len as u64,
            format: Some(format),
            end: valid,
            pending: Vec::new(),
            next_flush: replayed.next_flush,
            recovery: Recovery::default(),
            dropped_by_rewrite,
            poisoned: known.poison,
        };
        if rewrite {
            doc.rewrite_after_failed_sync(shared, &path)?;
        }
        if valid.len < total {
            doc.recovery = Recovery {
                dropped_bytes: total - valid.len,
                // A rewritten log has no cut: it ends where its rewrite ended.
                truncated_at: writable.then_some(doc.end.len),
            };
        }
        if writable || valid.len == total {
            shared.set_known_end(id, doc.end);
        }
        Ok(doc)
    }

    /// Rewrites the log at `path`, whose sync failed in this process, whole from the
    /// state replayed from it, as a rewrite on flush does: then the disk holds what
    /// reading it gives, and the failure is forgotten.
    fn rewrite_after_failed_sync(&mut self, shared: &Shared, path: &Path) -> Result<()> {
        let written = shared
            .before_write()
            .and_then(|()| self.write_new_log(shared, true));
        if let Err(e) = written {
            // What failed, where, and any advice on it, under why it was done.
            let source = match e {
                Error::Io {
                    action,
                    path,
                    source,
                } => io::Error::new(
                    source.kind(),
                    format!("could not {action} {}: {source}", path.display()),
                ),
                other => io::Error::other(other.to_string()),
            };
            return Err(Error::io(
                "rewrite (a sync of it failed earlier in this process, so the disk may lack bytes it reads, and it must be rewritten whole before it is written to) the log",
                path,
                source,
            ));
        }
        // The new log's one flush took the number the next flush would have had.
        self.next_flush = self.next_flush.wrapping_add(1);
        Ok(())
    }

    /// Replays the log `name` of document `id` and changes nothing: its end when it
    /// ends with a complete flush, `None` when it ends in a torn tail. For the
    /// clean-close record, which may vouch only for whole logs: a torn tail is cut only
    /// by opening the document, which reports it.
    pub(crate) fn whole_end(
        shared: &Shared,
        id: &DocumentId,
        name: &str,
    ) -> Result<Option<LogEnd>> {
        let path = shared.dir.join(name);
        let mut file = shared
            .fs
            .open(&path, false)
            .map_err(io_error("open", &path))?;
        let (replayed, _, _, total) = read_log(file.as_mut(), id, &path)?;
        Ok((replayed.valid.len == total).then_some(replayed.valid))
    }

    pub(crate) fn id(&self) -> &DocumentId {
        &self.id
    }

    pub(crate) fn state(&self) -> &DocumentState {
        self.live.state()
    }

    pub(crate) fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// The poison of a failed flush, if any.
    pub(crate) fn poison(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Validates `batch`, encodes it as one pending record and applies it in memory.
    pub(crate) fn apply(&mut self, shared: &Shared, batch: Batch) -> Result<()> {
        shared.check_writable()?;
        self.check_poisoned()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let len = batch::encoded_len(&batch);
        if len > MAX_RECORD_LEN as u64 {
            return Err(Error::TooLarge {
                what: "encoded batch",
                len,
                max: MAX_RECORD_LEN as u64,
            });
        }
        if self.name.is_none() {
            self.name = Some(shared.register(&self.id));
        }
        let format = match self.format {
            Some(format) => format,
            None => *self.format.insert(new_format(shared, &self.path(shared))?),
        };
        self.pending.reserve(RECORD_HEADER_LEN + len as usize);
        let start = format::begin_record(&mut self.pending, format);
        batch::encode(&mut self.pending, &batch);
        format::finish_record(
            &mut self.pending,
            start,
            RecordKind::Batch,
            self.next_flush,
            format,
        );
        for write in batch {
            self.live.apply_write(write);
        }
        Ok(())
    }

    /// Writes the pending records and their commit with one write and one
    /// `fdatasync`, or, for a new document or a log mostly dead, writes a new log.
    /// Poisons the document on error.
    pub(crate) fn flush(&mut self, shared: &Shared) -> Result<usize> {
        self.check_poisoned()?;
        if self.pending.is_empty() {
            return Ok(0);
        }
        let result = shared.before_write().and_then(|()| {
            if self.file.is_some() && self.rewrite_due(&shared.options) {
                self.write_new_log(shared, true)
            } else {
                self.append_pending(shared)
            }
        });
        match result {
            Ok(written) => {
                if self.pending.capacity() > KEEP_CAPACITY {
                    self.pending = Vec::new();
                } else {
                    self.pending.clear();
                }
                self.next_flush = self.next_flush.wrapping_add(1);
                shared.set_known_end(&self.id, self.end);
                Ok(written)
            }
            Err(e) => {
                self.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Whether the dead bytes of the log, pending records included, have reached the
    /// configured share.
    fn rewrite_due(&self, options: &FsOptions) -> bool {
        let total = self.end.len + self.pending.len() as u64;
        if total < options.rewrite_min_len {
            return false;
        }
        let dead = total.saturating_sub(self.header_len + self.live.live_len());
        dead as f64 >= options.rewrite_dead_share * total as f64
    }

    /// Appends the commit of the pending records to them, in their `format`, for a log
    /// ending at `end`; returns where the log then ends.
    fn commit_pending(&mut self, end: LogEnd, format: RecordFormat) -> LogEnd {
        let crc = crc32c::crc32c_append(end.crc, &self.pending);
        let len = end.len + self.pending.len() as u64;
        let commit_at = self.pending.len();
        format::push_commit(&mut self.pending, self.next_flush, len, crc, format);
        LogEnd {
            len: end.len + self.pending.len() as u64,
            crc: crc32c::crc32c_append(crc, &self.pending[commit_at..]),
        }
    }

    fn append_pending(&mut self, shared: &Shared) -> Result<usize> {
        if self.file.is_none() {
            return self.write_new_log(shared, false);
        }
        let path = self.path(shared);
        let end = self.commit_pending(self.end, self.pending_format(&path)?);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::io("write", &path, io::Error::other("the log is not open")))?;
        file.append(&self.pending)
            .map_err(io_error("write", &path))?;
        shared.sync_log(file.as_mut(), &path)?;
        self.end = end;
        Ok(self.pending.len())
    }

    /// Writes a new log under a temporary name, syncs it, renames it into place and
    /// syncs the directory. Until the rename the old log (or none) stays whole; after
    /// it, the new one is. `compact` writes the live state (a rewrite); otherwise the
    /// pending records follow the header (a new document). Either way one commit ends
    /// the new log.
    fn write_new_log(&mut self, shared: &Shared, compact: bool) -> Result<usize> {
        let name = self
            .name
            .get_or_insert_with(|| shared.register(&self.id))
            .clone();
        let path = shared.dir.join(&name);
        let tmp = shared.dir.join(names::tmp_name(&name));
        // A rewrite gets the store's format for new logs (and a new key); the pending
        // records of a new document were framed in it already, and follow the header as
        // they are.
        let format = match compact {
            true => new_format(shared, &tmp)?,
            false => self.pending_format(&tmp)?,
        };
        let mut file = shared.fs.create(&tmp).map_err(io_error("create", &tmp))?;
        let header = format::encode_log_header(&self.id, format);
        file.append(&header).map_err(io_error("write", &tmp))?;
        let start = LogEnd {
            len: header.len() as u64,
            crc: crc32c::crc32c(&header),
        };
        let end = if compact {
            rewrite::write_state(
                file.as_mut(),
                self.live.state(),
                self.next_flush,
                start,
                format,
            )
        } else {
            let end = self.commit_pending(start, format);
            file.append(&self.pending).map(|()| end)
        };
        let end = end.map_err(io_error("write", &tmp))?;
        shared.sync_log(file.as_mut(), &tmp)?;
        // Closed first, for platforms that cannot replace an open file.
        drop(self.file.take());
        shared
            .fs
            .rename(&tmp, &path)
            .map_err(io_error("rename", &tmp))?;
        shared.mark_on_disk(&self.id);
        if let Some(recovered) = self.dropped_by_rewrite.take() {
            // The tail is gone from the log at that name.
            shared.note_recovered(recovered);
        }
        self.file = Some(file);
        self.header_len = header.len() as u64;
        self.format = Some(format);
        self.end = end;
        if let Err(e) = shared.fs.sync_dir(&shared.dir) {
            // The rename may not be durable: after a power loss the old log may be back,
            // without what is appended to the new one from now on. Noted, the log is
            // rewritten (and renamed, and the directory synced) again before the next
            // store writes it.
            shared.note_sync_failure(&name);
            return Err(io_error("sync", &shared.dir)(e));
        }
        // Every byte of the log at that name is durable now.
        shared.forget_sync_failure(&name);
        Ok(end.len as usize)
    }

    /// The framing of the pending records, which are there only once it is known.
    fn pending_format(&self, path: &Path) -> Result<RecordFormat> {
        self.format.ok_or_else(|| {
            Error::io(
                "write",
                path,
                io::Error::other("records are pending without a record format"),
            )
        })
    }

    fn path(&self, shared: &Shared) -> PathBuf {
        shared.dir.join(self.name.as_deref().unwrap_or_default())
    }
}

/// Reads the log `file` of document `id` (at `path`) whole, checks its header and
/// replays it: gives what replaying found, the header's length and record format, and
/// the file's length.
fn read_log(
    file: &mut dyn FsFile,
    id: &DocumentId,
    path: &Path,
) -> Result<(replay::Replayed, usize, RecordFormat, u64)> {
    let bytes = file.read_all().map_err(io_error("read", path))?;
    let (stored_id, header_len, format) = format::decode_log_header(&bytes, path)?;
    if stored_id != *id {
        let what = format!("the log header names document {stored_id}, not {id}");
        return Err(Error::corrupt(what, path, Some(0)));
    }
    let replayed = replay::replay(&bytes, header_len, format, path)?;
    Ok((replayed, header_len, format, bytes.len() as u64))
}

/// The framing of a new log of the store (`path` for errors): with a new key in a store
/// of format version 3, without one in a store of version 2.
fn new_format(shared: &Shared, path: &Path) -> Result<RecordFormat> {
    match shared.keyed_logs() {
        true => Ok(RecordFormat::Keyed(format::new_key(path)?)),
        false => Ok(RecordFormat::Unkeyed),
    }
}

/// Checks a log against the end the store knows for it (from the clean-close record,
/// or from this store's own writes): no tail, the same length, the same checksum.
fn check_clean(
    replayed: &replay::Replayed,
    total: u64,
    expected: LogEnd,
    path: &Path,
) -> Result<()> {
    let corrupt = |what: String, at: u64| Err(Error::corrupt(what, path, Some(at)));
    if let Some(at) = replayed.first_invalid {
        return corrupt(
            format!(
                "the log does not end with a complete flush, but it was {} bytes long and whole when the store was closed cleanly: it was damaged or cut after the close",
                expected.len
            ),
            at as u64,
        );
    }
    if total != expected.len {
        return corrupt(
            format!(
                "the log is {total} bytes long, but it was {} bytes long when the store was closed cleanly: it was cut short or extended after the close",
                expected.len
            ),
            total.min(expected.len),
        );
    }
    if replayed.valid.crc != expected.crc {
        return corrupt(
            "the log's running checksum differs from the one recorded when the store was closed cleanly".into(),
            0,
        );
    }
    Ok(())
}

/// Wraps an I/O error with what was being done and where; a full disk and a read-only
/// file system say what to do about them.
pub(crate) fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::io(action, path, explain(source))
}

/// Adds what to do to the errors of a full disk and a read-only file system.
pub(crate) fn explain(source: io::Error) -> io::Error {
    let advice = match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the file system holding the store is full (or over quota): free space on it, then reopen the store; everything flushed before is kept"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the file system holding the store is read-only: remount it read-write (or open the store with FsStore::open_read_only to read it), then reopen the store; everything flushed before is kept"
        }
        _ => return source,
    };
    io::Error::new(source.kind(), format!("{source}: {advice}"))
}
