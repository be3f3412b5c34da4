//! Writing a document's live state as the records of a new log.

use std::io;

use persister_core::DocumentState;

use crate::format::{self, LogEnd, RecordFormat, RecordKind, batch};
use crate::io::FsFile;

/// A rewrite starts a new record once the current one holds this many bytes, so no
/// record nears [`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN) however large the
/// state: a record holds at most this plus one value.
const REWRITE_CHUNK: usize = 4 << 20;

/// Writes `state` as batch records of one flush in `format`, at most about
/// [`REWRITE_CHUNK`] bytes each, and the flush's commit, after the `start` bytes already
/// in `file`. Returns where the log then ends.
pub(crate) fn write_state(
    file: &mut dyn FsFile,
    state: &DocumentState,
    flush: u32,
    start: LogEnd,
    format: RecordFormat,
) -> io::Result<LogEnd> {
    let mut w = StateWriter {
        file,
        flush,
        format,
        buf: Vec::new(),
        start: 0,
        count: 0,
        end: start,
    };
    w.begin();
    if let Some(document) = state.document() {
        w.entry(|out| batch::put_set_document(out, document))?;
    }
    for (actor, seq, value) in state.changes() {
        w.entry(|out| batch::put_insert_change(out, actor, seq, value))?;
    }
    for (peer, sync_state) in state.sync_states() {
        w.entry(|out| batch::put_set_sync_state(out, peer, sync_state))?;
    }
    w.finish()?;
    w.write()?;
    format::push_commit(&mut w.buf, flush, w.end.len, w.end.crc, format);
    w.write()?;
    Ok(w.end)
}

struct StateWriter<'f> {
    file: &'f mut dyn FsFile,
    flush: u32,
    format: RecordFormat,
    buf: Vec<u8>,
    start: usize,
    count: u32,
    /// Where the bytes written so far end.
    end: LogEnd,
}

impl StateWriter<'_> {
    fn begin(&mut self) {
        self.start = format::begin_record(&mut self.buf, self.format);
        self.buf.extend_from_slice(&[0; 4]);
        self.count = 0;
    }

    fn entry(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.buf.len() - self.start >= REWRITE_CHUNK {
            self.finish()?;
            self.write()?;
            self.begin();
        }
        put(&mut self.buf);
        self.count += 1;
        Ok(())
    }

    /// Fills in the current record's write count and header.
    fn finish(&mut self) -> io::Result<()> {
        let count_at = self.start + self.format.header_len();
        self.buf[count_at..count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        format::finish_record(
            &mut self.buf,
            self.start,
            RecordKind::Batch,
            self.flush,
            self.format,
        );
        Ok(())
    }

    /// Writes the buffer to the file.
    fn write(&mut self) -> io::Result<()> {
        self.file.append(&self.buf)?;
        self.end = LogEnd {
            len: self.end.len + self.buf.len() as u64,
            crc: crc32c::crc32c_append(self.end.crc, &self.buf),
        };
        self.buf.clear();
        Ok(())
    }
}
