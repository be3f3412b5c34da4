//! Writing a document's live state as the records of a new log.

use std::io;

use persister_core::DocumentState;

use crate::format::{self, RECORD_HEADER_LEN, batch};
use crate::io::FsFile;

/// A rewrite starts a new record once the current one holds this many bytes, so no
/// record nears [`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN) however large the
/// state: a record holds at most this plus one value.
const REWRITE_CHUNK: usize = 4 << 20;

/// Writes `state` as batch records of one flush, at most about [`REWRITE_CHUNK`] bytes
/// each, the last marked as ending the flush. Returns the bytes written.
pub(crate) fn write_state(
    file: &mut dyn FsFile,
    state: &DocumentState,
    flush: u32,
) -> io::Result<usize> {
    let mut w = StateWriter {
        file,
        flush,
        buf: Vec::new(),
        start: 0,
        count: 0,
        written: 0,
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
    w.finish(true)?;
    Ok(w.written)
}

struct StateWriter<'f> {
    file: &'f mut dyn FsFile,
    flush: u32,
    buf: Vec<u8>,
    start: usize,
    count: u32,
    written: usize,
}

impl StateWriter<'_> {
    fn begin(&mut self) {
        self.start = format::begin_record(&mut self.buf);
        self.buf.extend_from_slice(&[0; 4]);
        self.count = 0;
    }

    fn entry(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.buf.len() - self.start >= REWRITE_CHUNK {
            self.finish(false)?;
            self.begin();
        }
        put(&mut self.buf);
        self.count += 1;
        Ok(())
    }

    fn finish(&mut self, ends_flush: bool) -> io::Result<()> {
        let count_at = self.start + RECORD_HEADER_LEN;
        self.buf[count_at..count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        let crc = format::finish_record(&mut self.buf, self.start, self.flush);
        if ends_flush {
            format::mark_ends_flush(&mut self.buf, self.start, crc);
        }
        self.file.append(&self.buf)?;
        self.written += self.buf.len();
        self.buf.clear();
        Ok(())
    }
}
