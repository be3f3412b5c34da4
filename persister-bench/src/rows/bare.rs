//! Row 8 without a store: the same writers, documents and slices, calling the system
//! directly. What the disk gives this workload under two simple designs, against
//! which a store's own figures are read:
//!
//! - **one file per document**: a flush appends the document's pending change to its
//!   own file and `fdatasync`s that file (fs's design, without its format or any
//!   bookkeeping). Concurrent syncs of different files share what the file system
//!   lets them share (on ext4, the journal's commit), and nothing else. This is the
//!   ceiling of that design.
//! - **one shared log**: every document's changes go to one file that grows with every
//!   write, as the raw rate's file does, and a flush that arrives while another is
//!   syncing waits, then shares the next write and `fdatasync` with every flush that
//!   arrived meanwhile: group commit at its simplest. This is not a ceiling of a
//!   store-wide log: one filled with zeroes ahead of its records (redb's) syncs no
//!   metadata and does better.
//!
//! Neither keeps anything a store needs (which document a change belongs to, a
//! checksum, a way back after a crash).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::Result;
use crate::results::Cell;
use crate::rows::server::{
    CHANGE_LEN, Server, ServerConfig, Writer, Writers, run_writers, stored_writers,
};

/// Row 8 under both designs.
#[derive(Clone, Debug, Serialize)]
pub struct Bare {
    /// One file per document, each flush its own `fdatasync`.
    pub file_per_document: Cell<Server>,
    /// One shared log, flushes that arrive together sharing one write and one
    /// `fdatasync`.
    pub shared_log: Cell<Server>,
}

/// Runs both in `dir` (a new directory); the raw rate is measured in `base`.
pub fn run(config: &ServerConfig, dir: &Path, base: &Path) -> Bare {
    let file_per_document = run_writers(config, base, || file_writers(config, &dir.join("files")));
    let shared_log = run_writers(config, base, || log_writers(config, &dir.join("log")));
    Bare {
        file_per_document,
        shared_log,
    }
}

impl Bare {
    /// Whether either design's run failed.
    pub fn any_failed(&self) -> bool {
        self.file_per_document.failed() || self.shared_log.failed()
    }
}

/// One document: its pending change, and where a flush makes it durable.
struct BareWriter {
    pending: Vec<u8>,
    to: Durable,
}

/// Where a document's changes go.
enum Durable {
    /// A file of its own: one `write` and one `fdatasync` per flush.
    File(File),
    /// The shared log.
    Log(Arc<Log>),
}

impl BareWriter {
    /// A writer with nothing pending, boxed for the row.
    fn boxed(to: Durable) -> Box<dyn Writer> {
        Box::new(Self {
            pending: Vec::with_capacity(CHANGE_LEN),
            to,
        })
    }
}

impl Writer for BareWriter {
    fn insert(&mut self, value: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(value);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        match &mut self.to {
            Durable::File(file) => {
                file.write_all(&self.pending)?;
                file.sync_data()?;
            }
            Durable::Log(log) => log.commit(&self.pending)?,
        }
        self.pending.clear();
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.flush()
    }
}

/// The writers of one file per document, each file new in `dir`.
fn file_writers(config: &ServerConfig, dir: &Path) -> Result<Writers> {
    std::fs::create_dir_all(dir)?;
    stored_writers(config, |d| {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(dir.join(format!("doc-{d:05}")))?;
        Ok(BareWriter::boxed(Durable::File(file)))
    })
}

/// The shared log: flushes take a ticket, and the first one to find no sync running
/// writes everything queued and syncs it for every ticket up to the last queued.
struct Log {
    state: Mutex<LogState>,
    synced: Condvar,
}

/// What the flushes of the shared log share, under its lock.
struct LogState {
    /// The log; `None` while a flush writes and syncs it.
    file: Option<File>,
    /// What flushes queued since the last write took them.
    queued: Vec<u8>,
    /// The last ticket given out.
    last_ticket: u64,
    /// Every ticket up to this one is durable.
    durable_ticket: u64,
    /// A failed write or sync: every flush after it fails.
    failed: Option<String>,
}

impl Log {
    /// A log that appends to `file`, nothing queued.
    fn new(file: File) -> Self {
        Self {
            state: Mutex::new(LogState {
                file: Some(file),
                queued: Vec::new(),
                last_ticket: 0,
                durable_ticket: 0,
                failed: None,
            }),
            synced: Condvar::new(),
        }
    }

    /// Appends `bytes` and returns once they are durable, or with the error of the
    /// write or sync that carried them (or of any before: the log's end is then
    /// unknown).
    fn commit(&self, bytes: &[u8]) -> Result<()> {
        let mut state = self.lock();
        state.queued.extend_from_slice(bytes);
        state.last_ticket += 1;
        let ticket = state.last_ticket;
        loop {
            if state.durable_ticket >= ticket {
                return Ok(());
            }
            if let Some(e) = &state.failed {
                return Err(e.clone().into());
            }
            let Some(mut file) = state.file.take() else {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let group = std::mem::take(&mut state.queued);
            let upto = state.last_ticket;
            drop(state);
            let outcome = file.write_all(&group).and_then(|()| file.sync_data());
            state = self.lock();
            state.file = Some(file);
            match outcome {
                Ok(()) => state.durable_ticket = upto,
                Err(e) => state.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// The state, also after a writer panicked holding it: the state stays whole, as
    /// nothing panics between its changes.
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writers of documents whose changes all go to one new log in `dir`.
fn log_writers(config: &ServerConfig, dir: &Path) -> Result<Writers> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join("log"))?;
    let log = Arc::new(Log::new(file));
    stored_writers(config, |_| {
        Ok(BareWriter::boxed(Durable::Log(Arc::clone(&log))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::server::CHANGE;

    fn config(documents: usize, threads: usize) -> ServerConfig {
        ServerConfig {
            documents,
            threads,
            ..ServerConfig::new(true)
        }
    }

    /// Every flush of the shared log returns with its bytes in the file, whichever
    /// flush wrote them, and nothing is written twice.
    #[test]
    fn the_shared_log_holds_every_flush_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (threads, flushes) = (8, 50);
        let writers = log_writers(&config(2 * threads, threads), dir.path())?;
        let path = dir.path().join("log");
        // Thread `t`'s records in the log: 100 bytes of `t + 1`.
        let records_of = |t: usize| -> Result<usize> {
            let log = std::fs::read(&path)?;
            Ok(log
                .chunks(CHANGE_LEN)
                .filter(|r| r.iter().all(|&b| b == t as u8 + 1))
                .count())
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = writers
                .into_iter()
                .enumerate()
                .map(|(t, mut docs)| {
                    scope.spawn(move || -> Result<()> {
                        for i in 0..flushes {
                            let doc = &mut docs[i % 2];
                            doc.insert(&[t as u8 + 1; CHANGE_LEN])?;
                            doc.flush()?;
                            // Returned: written, whoever wrote it, and only once.
                            assert_eq!(records_of(t)?, i + 1, "thread {t}, flush {i}");
                        }
                        for doc in docs {
                            doc.close()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| "a writer panicked")?)
        })?;
        // Each document's first change, stored as it was made, and every flush's.
        let records = 2 * threads + threads * flushes;
        assert_eq!(
            std::fs::metadata(&path)?.len() as usize,
            records * CHANGE_LEN
        );
        Ok(())
    }

    /// A failed write fails the flush that carried it and every one after.
    #[test]
    fn a_failed_write_fails_every_flush_of_the_shared_log() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        std::fs::write(&path, b"")?;
        // Opened for reading only: every write fails.
        let log = Log::new(File::open(&path)?);
        assert!(log.commit(&[1; CHANGE_LEN]).is_err());
        assert!(log.commit(&[2; CHANGE_LEN]).is_err());
        assert!(std::fs::read(&path)?.is_empty());
        Ok(())
    }

    /// A document's file holds its flushes in order.
    #[test]
    fn a_file_per_document_holds_its_flushes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut writers = file_writers(&config(4, 2), dir.path())?;
        for (i, doc) in writers[1].iter_mut().enumerate() {
            doc.insert(&[i as u8 + 1; CHANGE_LEN])?;
            doc.flush()?;
            doc.insert(&[i as u8 + 10; CHANGE_LEN])?;
        }
        for doc in writers.into_iter().flatten() {
            doc.close()?;
        }
        // Thread 1 writes documents 1 and 3.
        // Each document was stored once as it was made.
        let first = CHANGE;
        let file = std::fs::read(dir.path().join("doc-00003"))?;
        assert_eq!(file, [first, [2; CHANGE_LEN], [11; CHANGE_LEN]].concat());
        assert_eq!(std::fs::read(dir.path().join("doc-00000"))?, first);
        Ok(())
    }
}
