//! Row 8, the sync-server workload: many documents in one store, many threads, each
//! inserting one small change into one of its documents and flushing it, for a fixed
//! time. A flush is an acknowledged durable write; the row counts them per second, as a
//! ratio to the raw `fdatasync` rate measured around it in the same run, and gives the
//! flush latency. A backend whose flushes each pay their own sync cannot pass 1x;
//! group commit (flushes of different documents sharing a sync) can.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use automerge_persistent::Persister as _;
use persister_core::{ActorId, DynPersister, Persister};
use serde::Serialize;

use crate::Result;
use crate::columns::{Column, Location};
use crate::limit;
use crate::results::Cell;

/// The sizes of row 8.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerConfig {
    /// Documents in the store.
    pub documents: usize,
    /// Writer threads; thread `t` writes the documents `d` with `d % threads == t`.
    pub threads: usize,
    /// How long the writers run, s.
    pub seconds: f64,
    /// Raw 100-byte appends + `fdatasync` timed for the ratio.
    pub raw_syncs: usize,
}

impl ServerConfig {
    /// The sizes, or small ones for the quick run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                documents: 100,
                threads: 16,
                seconds: 0.3,
                raw_syncs: 50,
            }
        } else {
            Self {
                documents: 1_000,
                threads: 16,
                seconds: 5.0,
                raw_syncs: 1_000,
            }
        }
    }
}

/// Row 8 for one column.
#[derive(Clone, Debug, Serialize)]
pub struct Server {
    /// Acknowledged flushes (each of one 100-byte change) per second, wall time.
    pub writes_per_s: f64,
    /// The raw 100-byte append + `fdatasync` rate: the mean of a measurement just
    /// before the column and one just after.
    pub raw_fdatasync_per_s: f64,
    /// The measurements before and after.
    pub raw_samples: [f64; 2],
    /// `writes_per_s / raw_fdatasync_per_s`.
    pub ratio_to_raw: f64,
    /// PostgreSQL only: the server's single-row commits per second, one connection,
    /// measured just before: the limit of a store that commits every flush alone.
    pub single_commits_per_s: Option<f64>,
    /// PostgreSQL only: `writes_per_s / single_commits_per_s`.
    pub ratio_to_single_commits: Option<f64>,
    /// Median flush latency, ms.
    pub flush_p50_ms: f64,
    /// 99th percentile flush latency, ms.
    pub flush_p99_ms: f64,
    /// Acknowledged flushes in all.
    pub writes: usize,
}

/// The bytes of every change: 100, as in row 2.
const CHANGE_LEN: usize = 100;

/// Runs row 8 for `column` in `dir` (a new directory); the raw rate is measured in
/// `base`, on the same file system.
pub fn run(config: &ServerConfig, column: Column, dir: &Path, base: &Path) -> Cell<Server> {
    if column == Column::Memory {
        return Cell::NotApplicable("no disk: a flush makes nothing durable".into());
    }
    Cell::from_result(measure(config, column, dir, base))
}

fn measure(config: &ServerConfig, column: Column, dir: &Path, base: &Path) -> Result<Server> {
    std::fs::create_dir_all(dir)?;
    let raw_before = limit::fdatasync_per_s(base, config.raw_syncs, CHANGE_LEN)?;
    let single_commits_per_s = if column == Column::Postgres {
        let mut commits = crate::pg::Commits::create(&format!("{}_limit", crate::pg::schema(dir)))?;
        let lap = commits.append_synced(config.raw_syncs)?;
        Some(config.raw_syncs as f64 / lap.wall.as_secs_f64())
    } else {
        None
    };
    let (writes, elapsed, mut latencies) = match column {
        Column::Peer => drive(config, peer_writers(config, dir)?)?,
        _ => {
            let store = column.open_store(&Location::Dir(dir.to_owned()))?;
            let mut writers: Vec<Vec<Box<dyn Writer>>> =
                (0..config.threads).map(|_| Vec::new()).collect();
            for d in 0..config.documents {
                let doc = store.open_document(&format!("doc-{d:05}").as_str().into())?;
                writers[d % config.threads].push(Box::new(CoreWriter::new(doc, d)));
            }
            let result = drive(config, writers)?;
            drop(store);
            result
        }
    };
    // The disk's rate drifts on a shared machine: the mean of a measurement just
    // before the column and one just after.
    let raw_after = limit::fdatasync_per_s(base, config.raw_syncs, CHANGE_LEN)?;
    let raw = (raw_before + raw_after) / 2.0;
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    let writes_per_s = writes as f64 / elapsed.as_secs_f64();
    Ok(Server {
        writes_per_s,
        raw_fdatasync_per_s: raw,
        raw_samples: [raw_before, raw_after],
        ratio_to_raw: writes_per_s / raw,
        single_commits_per_s,
        ratio_to_single_commits: single_commits_per_s.map(|limit| writes_per_s / limit),
        flush_p50_ms: percentile(0.5),
        flush_p99_ms: percentile(0.99),
        writes,
    })
}

/// One document as a writer thread drives it.
trait Writer: Send {
    /// Inserts the next change.
    fn insert(&mut self, value: &[u8]) -> Result<()>;
    /// Makes it durable.
    fn flush(&mut self) -> Result<()>;
    /// Flushes and releases the document.
    fn close(self: Box<Self>) -> Result<()>;
}

struct CoreWriter {
    doc: DynPersister,
    actor: ActorId,
    seq: u64,
}

impl CoreWriter {
    fn new(doc: DynPersister, index: usize) -> Self {
        let mut actor = [0u8; 16];
        actor[..8].copy_from_slice(&(index as u64).to_be_bytes());
        Self {
            doc,
            actor: ActorId::new(actor),
            seq: 0,
        }
    }
}

impl Writer for CoreWriter {
    fn insert(&mut self, value: &[u8]) -> Result<()> {
        self.seq += 1;
        Ok(self
            .doc
            .insert_changes(vec![(self.actor.clone(), self.seq, value.to_vec())])?)
    }

    fn flush(&mut self) -> Result<()> {
        self.doc.flush()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.doc.close()?)
    }
}

/// The peer keeps many documents in one sled database by giving each a key prefix, as
/// its documentation shows.
struct PeerWriter {
    persister: automerge_persistent_sled::SledPersister,
    actor: automerge04::ActorId,
    seq: u64,
}

impl Writer for PeerWriter {
    fn insert(&mut self, value: &[u8]) -> Result<()> {
        self.seq += 1;
        Ok(self
            .persister
            .insert_changes(vec![(self.actor.clone(), self.seq, value.to_vec())])?)
    }

    fn flush(&mut self) -> Result<()> {
        self.persister.flush()?;
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.flush()
    }
}

fn peer_writers(config: &ServerConfig, dir: &Path) -> Result<Vec<Vec<Box<dyn Writer>>>> {
    let db = sled::open(dir)?;
    let (changes, documents, sync_states) = (
        db.open_tree("changes")?,
        db.open_tree("documents")?,
        db.open_tree("sync-states")?,
    );
    let mut writers: Vec<Vec<Box<dyn Writer>>> = (0..config.threads).map(|_| Vec::new()).collect();
    for d in 0..config.documents {
        let persister = automerge_persistent_sled::SledPersister::new(
            changes.clone(),
            documents.clone(),
            sync_states.clone(),
            format!("{d:05}/"),
        )?;
        let mut actor = [0u8; 16];
        actor[..8].copy_from_slice(&(d as u64).to_be_bytes());
        writers[d % config.threads].push(Box::new(PeerWriter {
            persister,
            actor: automerge04::ActorId::from(&actor[..]),
            seq: 0,
        }));
    }
    Ok(writers)
}

/// Runs every thread's writers until the time is up: returns the acknowledged flushes,
/// the time they took, and each flush's latency.
fn drive(
    config: &ServerConfig,
    writers: Vec<Vec<Box<dyn Writer>>>,
) -> Result<(usize, Duration, Vec<Duration>)> {
    let value = vec![0x5a; CHANGE_LEN];
    let latencies = Mutex::new(Vec::new());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(config.seconds);
    let outcomes: Vec<Result<(usize, Instant)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = writers
            .into_iter()
            .map(|mut docs| {
                let (value, latencies) = (&value, &latencies);
                scope.spawn(move || -> Result<(usize, Instant)> {
                    let mut mine = Vec::new();
                    let mut next = 0;
                    while !docs.is_empty() && Instant::now() < deadline {
                        let count = docs.len();
                        let doc = &mut docs[next % count];
                        next += 1;
                        doc.insert(value)?;
                        let flushed = Instant::now();
                        doc.flush()?;
                        mine.push(flushed.elapsed());
                    }
                    let (writes, ended) = (mine.len(), Instant::now());
                    latencies
                        .lock()
                        .map_err(|_| "a writer thread panicked")?
                        .extend(mine);
                    for doc in docs {
                        doc.close()?;
                    }
                    Ok((writes, ended))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect()
    });
    // Until the last writer stopped, before the documents are closed.
    let mut writes = 0;
    let mut ended = started;
    for outcome in outcomes {
        let (count, end) = outcome?;
        writes += count;
        ended = ended.max(end);
    }
    let elapsed = ended - started;
    let latencies = latencies
        .into_inner()
        .map_err(|_| "a writer thread panicked")?;
    Ok((writes, elapsed, latencies))
}
