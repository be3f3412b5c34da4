//! One document: its state in memory, its log on disk, and the records not yet
//! written.

use std::io;
use std::path::PathBuf;

use persister_core::{Batch, DocumentId, DocumentState, Error, Result};

use crate::format::{self, MAX_RECORD_LEN, RECORD_HEADER_LEN, batch};
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
    /// Bytes in the log file: its header and valid records.
    log_len: u64,
    /// Records applied but not written yet, all of flush `next_flush`.
    pending: Vec<u8>,
    /// The start and payload checksum of the last pending record, which the next flush
    /// marks as its last.
    last_pending: Option<(usize, u32)>,
    next_flush: u32,
    recovery: Recovery,
    poisoned: Option<String>,
}

impl Doc {
    /// A document with no log yet.
    pub(crate) fn new(id: &DocumentId) -> Self {
        Self {
            id: id.clone(),
            header_len: format::log_header_len(id.as_bytes().len()) as u64,
            ..Self::default()
        }
    }

    /// Opens the log `name` of document `id`, replays it, and truncates a torn tail.
    ///
    /// The truncation is synced before anything else is written: otherwise a crash
    /// could bring the old tail back behind newer records, where it would look like
    /// damage.
    pub(crate) fn load(shared: &Shared, id: &DocumentId, name: String) -> Result<Self> {
        let path = shared.dir.join(&name);
        let mut file = shared.fs.open(&path).map_err(io_error("open", &path))?;
        let bytes = file.read_all().map_err(io_error("read", &path))?;
        let (stored_id, header_len) = format::decode_log_header(&bytes, &path)?;
        if stored_id != *id {
            let what = format!("the log header names document {stored_id}, not {id}");
            return Err(Error::corrupt(what, &path, Some(0)));
        }
        let replayed = replay::replay(&bytes, header_len, &path)?;
        let valid_len = replayed.valid_len as u64;
        let mut recovery = Recovery::default();
        if replayed.valid_len < bytes.len() {
            file.truncate(valid_len)
                .map_err(io_error("truncate", &path))?;
            file.sync_data().map_err(io_error("sync", &path))?;
            recovery = Recovery {
                dropped_bytes: (bytes.len() - replayed.valid_len) as u64,
                truncated_at: Some(valid_len),
            };
        }
        Ok(Self {
            id: id.clone(),
            name: Some(name),
            file: Some(file),
            live: replayed.live,
            header_len: header_len as u64,
            log_len: valid_len,
            pending: Vec::new(),
            last_pending: None,
            next_flush: replayed.next_flush,
            recovery,
            poisoned: None,
        })
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

    /// Whether dropping the handle would lose something this store must keep: writes
    /// not flushed yet, or the poison of a failed flush.
    pub(crate) fn needs_parking(&self) -> bool {
        !self.pending.is_empty() || self.poisoned.is_some()
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
        self.pending.reserve(RECORD_HEADER_LEN + len as usize);
        let start = format::begin_record(&mut self.pending);
        batch::encode(&mut self.pending, &batch);
        let crc = format::finish_record(&mut self.pending, start, self.next_flush);
        self.last_pending = Some((start, crc));
        for write in batch {
            self.live.apply_write(write);
        }
        Ok(())
    }

    /// Writes the pending records with one write and one `fdatasync`, or, for a new
    /// document or a log mostly dead, writes a new log. Poisons the document on error.
    pub(crate) fn flush(&mut self, shared: &Shared) -> Result<usize> {
        self.check_poisoned()?;
        let Some((start, crc)) = self.last_pending else {
            return Ok(0);
        };
        format::mark_ends_flush(&mut self.pending, start, crc);
        let result = if self.rewrite_due(&shared.options) {
            self.write_new_log(shared, true)
        } else {
            self.append_pending(shared)
        };
        match result {
            Ok(written) => {
                self.last_pending = None;
                if self.pending.capacity() > KEEP_CAPACITY {
                    self.pending = Vec::new();
                } else {
                    self.pending.clear();
                }
                self.next_flush = self.next_flush.wrapping_add(1);
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
        let total = self.log_len + self.pending.len() as u64;
        if total < options.rewrite_min_len {
            return false;
        }
        let dead = total.saturating_sub(self.header_len + self.live.live_len());
        dead as f64 >= options.rewrite_dead_share * total as f64
    }

    fn append_pending(&mut self, shared: &Shared) -> Result<usize> {
        let path = self.path(shared);
        let Some(file) = self.file.as_mut() else {
            return self.write_new_log(shared, false);
        };
        file.append(&self.pending)
            .map_err(io_error("write", &path))?;
        file.sync_data().map_err(io_error("sync", &path))?;
        self.log_len += self.pending.len() as u64;
        Ok(self.pending.len())
    }

    /// Writes a new log under a temporary name, syncs it, renames it into place and
    /// syncs the directory. Until the rename the old log (or none) stays whole; after
    /// it, the new one is. `compact` writes the live state (a rewrite); otherwise the
    /// pending records follow the header (a new document).
    fn write_new_log(&mut self, shared: &Shared, compact: bool) -> Result<usize> {
        let name = self
            .name
            .get_or_insert_with(|| shared.register(&self.id))
            .clone();
        let path = shared.dir.join(&name);
        let tmp = shared.dir.join(names::tmp_name(&name));
        let mut file = shared.fs.create(&tmp).map_err(io_error("create", &tmp))?;
        let header = format::encode_log_header(&self.id);
        file.append(&header).map_err(io_error("write", &tmp))?;
        let body = if compact {
            rewrite::write_state(file.as_mut(), self.live.state(), self.next_flush)
        } else {
            file.append(&self.pending).map(|()| self.pending.len())
        };
        let written = header.len() + body.map_err(io_error("write", &tmp))?;
        file.sync_data().map_err(io_error("sync", &tmp))?;
        // Closed first, for platforms that cannot replace an open file.
        drop(self.file.take());
        shared
            .fs
            .rename(&tmp, &path)
            .map_err(io_error("rename", &tmp))?;
        shared.mark_on_disk(&self.id);
        self.file = Some(file);
        self.header_len = header.len() as u64;
        self.log_len = written as u64;
        shared
            .fs
            .sync_dir(&shared.dir)
            .map_err(io_error("sync", &shared.dir))?;
        Ok(written)
    }

    fn path(&self, shared: &Shared) -> PathBuf {
        shared.dir.join(self.name.as_deref().unwrap_or_default())
    }
}

/// Wraps an I/O error with what was being done and where.
pub(crate) fn io_error<'a>(
    action: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::io(action, path, source)
}
