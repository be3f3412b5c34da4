//! Row 8, the sync-server workload: many documents in one store, many threads, each
//! inserting one small change into one of its documents and flushing it, for a fixed
//! time. A flush is an acknowledged durable write; the row counts them per second, as a
//! ratio to the raw `fdatasync` rate of the same disk, and gives the flush latency. A
//! backend whose flushes each pay their own sync cannot pass 1x; group commit (flushes
//! of different documents sharing a sync) can. The documents are stored (one change
//! each, flushed) before the first slice, as a server's documents are: the row measures
//! writes to documents that exist, not their creation. A store's documents are stored
//! from the writer threads at once, and that is timed apart: documents stored per
//! second, as a server whose clients create documents together gets them.
//!
//! The disk's raw rate swings by more than 10x within a minute on a shared machine, so
//! the writers run in slices that alternate with slices of raw appends + `fdatasync` in
//! the same directory (as row 2 does): both see the disk at the same moments, and the
//! ratio is the writers' rate over all their slices against the raw rate over all the
//! raw slices. For PostgreSQL the limit is the server's own, single-row commits on one
//! connection, and it moves as much: each raw slice is followed by a slice of single
//! commits as long, and the ratio is to the rate over all of those.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use automerge_persistent::Persister as _;
use persister_core::{ActorId, BoxedStore, DynPersister, DynStore, GroupCommits, Persister, Store};
use serde::Serialize;

use crate::Result;
use crate::columns::{Column, Location};
use crate::limit::RawLog;
use crate::results::Cell;

/// The sizes of row 8.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerConfig {
    /// Documents in the store.
    pub documents: usize,
    /// Writer threads; thread `t` writes the documents `d` with `d % threads == t`.
    pub threads: usize,
    /// How long the writers run in all, s.
    pub seconds: f64,
    /// The slices the writers' time is cut into, each followed by a raw slice.
    pub rounds: usize,
    /// How long the raw appends + `fdatasync` run in all, s (in as many slices).
    pub raw_seconds: f64,
}

impl ServerConfig {
    /// The sizes, or small ones for the quick run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                documents: 100,
                threads: 16,
                seconds: 0.3,
                rounds: 3,
                raw_seconds: 0.15,
            }
        } else {
            Self {
                documents: 1_000,
                threads: 16,
                seconds: 10.0,
                rounds: 40,
                raw_seconds: 5.0,
            }
        }
    }
}

/// Row 8 for one column.
#[derive(Clone, Debug, Serialize)]
pub struct Server {
    /// Acknowledged flushes (each of one 100-byte change) per second, over the wall
    /// time of the writers' slices.
    pub writes_per_s: f64,
    /// The raw 100-byte append + `fdatasync` rate over the raw slices, which alternate
    /// with the writers' slices.
    pub raw_fdatasync_per_s: f64,
    /// The slowest and fastest raw slice, per second: how much the disk moved.
    pub raw_range: [f64; 2],
    /// Each round: the writers' rate in their slice and the raw rate in the raw slice
    /// after it.
    pub slices: Vec<[f64; 2]>,
    /// `writes_per_s / raw_fdatasync_per_s`.
    pub ratio_to_raw: f64,
    /// PostgreSQL only: the server's single-row commits per second, one connection, in
    /// slices that follow each raw slice, so at the same moments as the writers' slices:
    /// the limit of a store that commits every flush alone.
    pub single_commits_per_s: Option<f64>,
    /// PostgreSQL only: the slowest and fastest single-commit slice, per second.
    pub single_commits_range: Option<[f64; 2]>,
    /// PostgreSQL only: `writes_per_s / single_commits_per_s`.
    pub ratio_to_single_commits: Option<f64>,
    /// Median flush latency (the nearest-rank 50th percentile), ms.
    pub flush_p50_ms: f64,
    /// 99th percentile flush latency (nearest rank), ms.
    pub flush_p99_ms: f64,
    /// Acknowledged flushes in all.
    pub writes: usize,
    /// redb and PostgreSQL: how many handles' flushes their commits carried.
    pub groups: Option<Groups>,
    /// A store's columns: its documents stored before the slices (each opened, given
    /// one change and flushed), from the writer threads at once, per second.
    pub stored_per_s: Option<f64>,
}

/// redb's or PostgreSQL's group commits during the writers' slices.
#[derive(Clone, Debug, Serialize)]
pub struct Groups {
    /// Commits (one transaction and one sync each).
    pub commits: u64,
    /// Handles per commit, on average.
    pub mean_handles: f64,
    /// The most handles one commit carried since the store opened: in the slices, or
    /// while the documents were stored from the threads at once before them.
    pub largest: u64,
    /// The mean time of one commit, transaction and sync, ms.
    pub mean_commit_ms: f64,
    /// The commits' time in all over the writers' wall time: the share of it during
    /// which a commit was running, or above 1 where commits run side by side.
    pub busy: f64,
}

/// The bytes of every change: 100, as in row 2.
pub(crate) const CHANGE_LEN: usize = 100;

/// The change every writer inserts.
pub(crate) const CHANGE: [u8; CHANGE_LEN] = [0x5a; CHANGE_LEN];

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
    let mut commits = if column == Column::Postgres {
        let schema = format!("{}_limit", crate::pg::schema(dir));
        Some(crate::pg::Commits::create(&schema)?)
    } else {
        None
    };
    with_limits(base, commits.as_mut(), |limits| match column {
        Column::Peer => drive(config, peer_writers(config, dir)?, limits).map(|d| (d, None)),
        _ => drive_store(config, column, dir, limits),
    })
}

/// Row 8 with the writers `writers` makes, which are not a store's (see
/// [`bare`](crate::rows::bare)); the raw rate is measured in `base`.
pub(crate) fn run_writers(
    config: &ServerConfig,
    base: &Path,
    writers: impl FnOnce() -> Result<Writers>,
) -> Cell<Server> {
    Cell::from_result(with_limits(base, None, |limits| {
        drive(config, writers()?, limits).map(|d| (d, None))
    }))
}

/// Runs `run` with the raw appends' log in `base` (removed afterwards) and, for
/// PostgreSQL, its single commits, and sums up what it drove.
fn with_limits(
    base: &Path,
    commits: Option<&mut crate::pg::Commits>,
    run: impl FnOnce(&mut Limits<'_>) -> Result<(Driven, Option<Groups>)>,
) -> Result<Server> {
    let mut raw = RawLog::create(base, "server-raw", CHANGE_LEN)?;
    let outcome = run(&mut Limits {
        raw: &mut raw,
        commits,
    });
    raw.remove()?;
    let (driven, groups) = outcome?;
    summarize(driven, groups)
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank: the smallest sample that at
/// least `p` of the samples are at or below; `None` when there is none.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The row's figures from what the writers and the limits' slices did.
///
/// # Errors
///
/// When no flush was acknowledged: the row would otherwise show a rate of 0 and
/// latencies of 0 ms measured on nothing.
fn summarize(driven: Driven, groups: Option<Groups>) -> Result<Server> {
    let Driven {
        writes,
        time,
        raw,
        mut latencies,
        slices,
        single_commits,
        stored_per_s,
    } = driven;
    latencies.sort_unstable();
    let ms = |p: f64| {
        percentile(&latencies, p)
            .map(|d| d.as_secs_f64() * 1e3)
            .ok_or("no flush was acknowledged in the writers' slices")
    };
    let (flush_p50_ms, flush_p99_ms) = (ms(0.5)?, ms(0.99)?);
    let writes_per_s = writes as f64 / time.as_secs_f64();
    let raw_per_s = raw.per_s();
    let single_commits_per_s = single_commits.as_ref().map(LimitSlices::per_s);
    Ok(Server {
        writes_per_s,
        raw_fdatasync_per_s: raw_per_s,
        raw_range: raw.range(),
        slices,
        ratio_to_raw: writes_per_s / raw_per_s,
        single_commits_per_s,
        single_commits_range: single_commits.as_ref().map(LimitSlices::range),
        ratio_to_single_commits: single_commits_per_s.map(|limit| writes_per_s / limit),
        flush_p50_ms,
        flush_p99_ms,
        writes,
        groups,
        stored_per_s,
    })
}

/// Each thread's writers.
pub(crate) type Writers = Vec<Vec<Box<dyn Writer>>>;

/// One document as a writer thread drives it.
pub(crate) trait Writer: Send {
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

fn peer_writers(config: &ServerConfig, dir: &Path) -> Result<Writers> {
    let db = sled::open(dir)?;
    let (changes, documents, sync_states) = (
        db.open_tree("changes")?,
        db.open_tree("documents")?,
        db.open_tree("sync-states")?,
    );
    stored_writers(config, |d| {
        let persister = automerge_persistent_sled::SledPersister::new(
            changes.clone(),
            documents.clone(),
            sync_states.clone(),
            format!("{d:05}/"),
        )?;
        let mut actor = [0u8; 16];
        actor[..8].copy_from_slice(&(d as u64).to_be_bytes());
        Ok(Box::new(PeerWriter {
            persister,
            actor: automerge04::ActorId::from(&actor[..]),
            seq: 0,
        }))
    })
}

/// The writers of every document `d` (made by `writer(d)`), each document stored once
/// (one change, flushed, untimed and not counted) as it is made, before any slice, so
/// that the row measures a server whose documents exist, not their creation; spread
/// over the threads: thread `t` gets the documents with `d % threads == t`.
pub(crate) fn stored_writers(
    config: &ServerConfig,
    mut writer: impl FnMut(usize) -> Result<Box<dyn Writer>>,
) -> Result<Writers> {
    let mut writers: Writers = (0..config.threads).map(|_| Vec::new()).collect();
    for d in 0..config.documents {
        let mut doc = writer(d)?;
        doc.insert(&CHANGE)?;
        doc.flush()?;
        writers[d % config.threads].push(doc);
    }
    Ok(writers)
}

/// The writers of every document of `store`, each document stored once as
/// [`stored_writers`] stores it, but from the row's threads at once (thread `t` its
/// documents, in order): a server whose clients create documents together. Returns the
/// documents stored per second with them.
fn stored_at_once(config: &ServerConfig, store: &DynStore) -> Result<(Writers, f64)> {
    type Stored = std::result::Result<Vec<Box<dyn Writer>>, String>;
    let started = Instant::now();
    let stored: Vec<Stored> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..config.threads)
            .map(|t| {
                scope.spawn(move || -> Stored {
                    let mut mine: Vec<Box<dyn Writer>> = Vec::new();
                    for d in (t..config.documents).step_by(config.threads) {
                        let id = format!("doc-{d:05}");
                        let doc = store
                            .open_document(&id.as_str().into())
                            .map_err(|e| e.to_string())?;
                        let mut writer = Box::new(CoreWriter::new(doc, d));
                        writer.insert(&CHANGE).map_err(|e| e.to_string())?;
                        writer.flush().map_err(|e| e.to_string())?;
                        mine.push(writer);
                    }
                    Ok(mine)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a thread storing documents panicked".into()))
            })
            .collect()
    });
    let time = started.elapsed();
    let writers = stored.into_iter().collect::<std::result::Result<_, _>>()?;
    Ok((writers, config.documents as f64 / time.as_secs_f64()))
}

/// Runs the writers on a store of `column`; for redb and PostgreSQL, with the counts of
/// their group commits meanwhile.
fn drive_store(
    config: &ServerConfig,
    column: Column,
    dir: &Path,
    limits: &mut Limits<'_>,
) -> Result<(Driven, Option<Groups>)> {
    // redb and PostgreSQL as their own types, to count their group commits.
    let (store, counters) = match column {
        Column::Redb => counted(
            persister_redb::RedbStore::open(column.store_path(dir)?)?,
            persister_redb::RedbStore::group_commits,
        ),
        Column::Postgres => {
            let url = column.store_path(dir)?;
            let url = url.to_str().ok_or("the server's URL is not UTF-8")?;
            counted(
                persister_postgres::PostgresStore::open(url)?,
                persister_postgres::PostgresStore::group_commits,
            )
        }
        _ => (column.open_store(&Location::Dir(dir.to_owned()))?, None),
    };
    let (writers, stored_per_s) = stored_at_once(config, &store)?;
    let before = counters.as_ref().map(|counters| counters());
    let mut driven = drive(config, writers, limits)?;
    driven.stored_per_s = Some(stored_per_s);
    let groups = counters.zip(before).map(|(counters, before)| {
        let after = counters();
        let commits = after.commits - before.commits;
        let nanos = (after.commit_nanos - before.commit_nanos) as f64;
        Groups {
            commits,
            mean_handles: (after.handles - before.handles) as f64 / commits.max(1) as f64,
            largest: after.largest,
            mean_commit_ms: nanos / 1e6 / commits.max(1) as f64,
            busy: nanos / 1e9 / driven.time.as_secs_f64(),
        }
    });
    Ok((driven, groups))
}

/// How a store's group commits are read during the run.
type Counters = Box<dyn Fn() -> GroupCommits>;

/// `store` boxed for the writers, with `counts` reading its group commits from a clone.
fn counted<S: Store + Clone + 'static>(
    store: S,
    counts: fn(&S) -> GroupCommits,
) -> (DynStore, Option<Counters>) {
    let counted = store.clone();
    (
        Box::new(BoxedStore(store)),
        Some(Box::new(move || counts(&counted))),
    )
}

/// What the writers and the raw slices did.
struct Driven {
    /// Acknowledged flushes.
    writes: usize,
    /// The wall time of the writers' slices, in all.
    time: Duration,
    /// Raw appends + `fdatasync`.
    raw: LimitSlices,
    /// Every flush's latency.
    latencies: Vec<Duration>,
    /// Each round's writers' rate and raw rate, per second.
    slices: Vec<[f64; 2]>,
    /// PostgreSQL: the server's single-row commits.
    single_commits: Option<LimitSlices>,
    /// A store's documents stored before the slices, per second.
    stored_per_s: Option<f64>,
}

/// The slices of one limit between the writers' slices: raw appends + `fdatasync`, or
/// single-row commits.
#[derive(Default)]
struct LimitSlices {
    /// Appends or commits, in all.
    count: usize,
    /// Their wall time, in all.
    time: Duration,
    /// Each slice's rate, per second.
    rates: Vec<f64>,
}

impl LimitSlices {
    /// Adds one slice, as [`repeat_for`](crate::clock::repeat_for) returned it, and
    /// returns its rate. A failed slice adds nothing (rate 0) and keeps the first
    /// failure of the run in `failed`.
    fn add(
        &mut self,
        slice: Result<(usize, Duration)>,
        failed: &mut Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> f64 {
        let (count, took) = slice.unwrap_or_else(|e| {
            failed.get_or_insert(e);
            (0, Duration::ZERO)
        });
        self.count += count;
        self.time += took;
        let rate = count as f64 / took.as_secs_f64().max(1e-9);
        self.rates.push(rate);
        rate
    }

    /// The rate over all slices, per second.
    fn per_s(&self) -> f64 {
        self.count as f64 / self.time.as_secs_f64()
    }

    /// The slowest and fastest slice, per second.
    fn range(&self) -> [f64; 2] {
        self.rates
            .iter()
            .fold([f64::INFINITY, 0.0], |[low, high], &r| {
                [low.min(r), high.max(r)]
            })
    }
}

/// What runs in the slices between the writers': raw appends + `fdatasync`, then, for
/// PostgreSQL, single-row commits for as long.
struct Limits<'a> {
    raw: &'a mut RawLog,
    commits: Option<&'a mut crate::pg::Commits>,
}

/// Runs every thread's writers in `config.rounds` slices, each followed by a slice of
/// raw appends + `fdatasync` on `limits.raw` (and, for PostgreSQL, one of single-row
/// commits) while the writers wait: returns the acknowledged flushes, the time they
/// took, and each flush's latency, with the raw syncs (and single commits) and their
/// time. A writer's slice ends with the flush running when its time is up; the slice's
/// time runs until the last writer stopped.
fn drive(config: &ServerConfig, writers: Writers, limits: &mut Limits<'_>) -> Result<Driven> {
    let rounds = config.rounds.max(1);
    let slice = Duration::from_secs_f64(config.seconds / rounds as f64);
    let raw_slice = Duration::from_secs_f64(config.raw_seconds / rounds as f64);
    // Every writer and this thread meet before and after each slice.
    let barrier = Barrier::new(writers.len() + 1);
    let latencies = Mutex::new(Vec::new());
    let counts = Mutex::new(vec![0usize; rounds]);
    let mut driven = Driven {
        writes: 0,
        time: Duration::ZERO,
        raw: LimitSlices::default(),
        latencies: Vec::new(),
        slices: Vec::with_capacity(rounds),
        single_commits: limits.commits.as_ref().map(|_| LimitSlices::default()),
        stored_per_s: None,
    };
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let threads: Vec<_> = writers
            .into_iter()
            .map(|mut docs| {
                let (latencies, counts, barrier) = (&latencies, &counts, &barrier);
                scope.spawn(move || -> Result<()> {
                    let mut mine = Vec::new();
                    let mut failed = None;
                    let mut next = 0;
                    for round in 0..rounds {
                        barrier.wait();
                        let deadline = Instant::now() + slice;
                        let mut written = 0;
                        // At least one flush a slice, however late the thread starts it.
                        let mut first = true;
                        while failed.is_none()
                            && !docs.is_empty()
                            && (std::mem::take(&mut first) || Instant::now() < deadline)
                        {
                            let count = docs.len();
                            let doc = &mut docs[next % count];
                            next += 1;
                            // A panic is an error here, so that this thread still
                            // meets the others at the barriers: unwinding past them
                            // would leave everyone waiting for it forever.
                            let flushed = catch_unwind(AssertUnwindSafe(|| {
                                doc.insert(&CHANGE).and_then(|()| {
                                    let flushed = Instant::now();
                                    doc.flush().map(|()| flushed.elapsed())
                                })
                            }))
                            .unwrap_or_else(|_| {
                                Err("a writer panicked in its insert or flush".into())
                            });
                            match flushed {
                                Ok(latency) => {
                                    mine.push(latency);
                                    written += 1;
                                }
                                // Keeps meeting the others, so that nobody waits forever.
                                Err(e) => failed = Some(e),
                            }
                        }
                        if let Ok(mut counts) = counts.lock() {
                            counts[round] += written;
                        }
                        barrier.wait();
                    }
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    latencies
                        .lock()
                        .map_err(|_| "a writer thread panicked")?
                        .extend(mine);
                    for doc in docs {
                        doc.close()?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut limit_failed = None;
        for round in 0..rounds {
            barrier.wait();
            let started = Instant::now();
            barrier.wait();
            let took = started.elapsed();
            driven.time += took;
            let written = counts.lock().map_or(0, |counts| counts[round]);
            // The raw slice, while the writers wait at the next barrier.
            let raw_rate = driven
                .raw
                .add(limits.raw.append_synced_for(raw_slice), &mut limit_failed);
            if let (Some(commits), Some(single)) = (
                limits.commits.as_deref_mut(),
                driven.single_commits.as_mut(),
            ) {
                single.add(commits.append_synced_for(raw_slice), &mut limit_failed);
            }
            driven
                .slices
                .push([written as f64 / took.as_secs_f64(), raw_rate]);
        }
        let mut outcomes: Vec<Result<()>> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect();
        if let Some(e) = limit_failed {
            outcomes.push(Err(e));
        }
        outcomes
    });
    for outcome in outcomes {
        outcome?;
    }
    driven.latencies = latencies
        .into_inner()
        .map_err(|_| "a writer thread panicked")?;
    driven.writes = driven.latencies.len();
    Ok(driven)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Small sizes: two slices of 20 ms, raw slices of 5 ms.
    fn config(documents: usize, threads: usize) -> ServerConfig {
        ServerConfig {
            documents,
            threads,
            seconds: 0.04,
            rounds: 2,
            raw_seconds: 0.01,
        }
    }

    /// A document that counts its flushes and panics at the `panic_at`th one.
    struct Panicking {
        flushes: usize,
        panic_at: usize,
    }

    impl Writer for Panicking {
        fn insert(&mut self, _value: &[u8]) -> Result<()> {
            Ok(())
        }

        fn flush(&mut self) -> Result<()> {
            self.flushes += 1;
            assert!(self.flushes < self.panic_at, "a flush that panics");
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_and_none_of_nothing() {
        let ms = |n: u64| Duration::from_millis(n);
        let hundred: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&hundred, 0.5), Some(ms(50)));
        assert_eq!(percentile(&hundred, 0.99), Some(ms(99)));
        assert_eq!(percentile(&hundred, 1.0), Some(ms(100)));
        assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
        assert_eq!(percentile(&[ms(7)], 0.0), Some(ms(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    /// A run in which no flush was acknowledged fails, rather than reporting 0 writes/s
    /// with latencies of 0 ms measured on nothing.
    #[test]
    fn a_run_without_acknowledged_writes_fails() -> Result<()> {
        let base = tempfile::tempdir()?;
        let cell = run_writers(&config(0, 2), base.path(), || {
            Ok(vec![Vec::new(), Vec::new()])
        });
        match cell {
            Cell::Failed(reason) => assert!(reason.contains("no flush"), "{reason}"),
            other => panic!("a run of no writes gave {other:?}"),
        }
        Ok(())
    }

    /// A writer that panics fails the row; the other threads, and the one running the
    /// raw slices, are not left waiting for it at a barrier.
    #[test]
    fn a_writer_that_panics_fails_the_row_without_a_hang() -> Result<()> {
        let base = tempfile::tempdir()?;
        let (done, outcome) = mpsc::channel();
        let path = base.path().to_path_buf();
        std::thread::spawn(move || {
            let writers = || -> Result<Writers> {
                Ok((0..2)
                    .map(|t| {
                        let doc: Box<dyn Writer> = Box::new(Panicking {
                            flushes: 0,
                            // Every thread flushes at least once in each of the 2 slices.
                            panic_at: if t == 0 { 2 } else { usize::MAX },
                        });
                        vec![doc]
                    })
                    .collect())
            };
            let _ = done.send(run_writers(&config(2, 2), &path, writers));
        });
        // The row takes about 50 ms; a hang is a thread that never answers.
        match outcome.recv_timeout(Duration::from_secs(60)) {
            Ok(Cell::Failed(reason)) => assert!(reason.contains("panicked"), "{reason}"),
            Ok(other) => panic!("a panicking writer gave {other:?}"),
            Err(_) => panic!("the row hung after a writer panicked"),
        }
        Ok(())
    }

    /// Every acknowledged flush is counted once: the row's writes are the flushes the
    /// documents returned `Ok` from.
    #[test]
    fn every_acknowledged_flush_is_counted_once() -> Result<()> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// Counts the flushes it acknowledges.
        struct Counting {
            ok: Arc<AtomicUsize>,
        }
        impl Writer for Counting {
            fn insert(&mut self, _value: &[u8]) -> Result<()> {
                Ok(())
            }
            fn flush(&mut self) -> Result<()> {
                self.ok.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            fn close(self: Box<Self>) -> Result<()> {
                Ok(())
            }
        }
        let base = tempfile::tempdir()?;
        let ok = Arc::new(AtomicUsize::new(0));
        let writers = || -> Result<Writers> {
            Ok((0..3)
                .map(|_| {
                    let doc: Box<dyn Writer> = Box::new(Counting {
                        ok: Arc::clone(&ok),
                    });
                    vec![doc]
                })
                .collect())
        };
        let server = match run_writers(&config(3, 3), base.path(), writers) {
            Cell::Value(server) => server,
            other => panic!("{other:?}"),
        };
        assert_eq!(server.writes, ok.load(Ordering::SeqCst));
        let per_slice: f64 = server.slices.iter().map(|[w, _]| w).sum();
        assert!(per_slice > 0.0 && server.writes_per_s > 0.0);
        assert!(server.flush_p50_ms <= server.flush_p99_ms);
        assert_eq!(server.slices.len(), 2);
        assert!(server.raw_fdatasync_per_s > 0.0);
        Ok(())
    }

    /// A flush that fails fails the row with the store's error: it is not counted, nor
    /// skipped.
    #[test]
    fn a_failed_flush_fails_the_row() -> Result<()> {
        struct Failing(usize);
        impl Writer for Failing {
            fn insert(&mut self, _value: &[u8]) -> Result<()> {
                Ok(())
            }
            fn flush(&mut self) -> Result<()> {
                self.0 += 1;
                // Every thread flushes at least once in each of the 2 slices.
                match self.0 {
                    2 => Err("the disk said no".into()),
                    _ => Ok(()),
                }
            }
            fn close(self: Box<Self>) -> Result<()> {
                Ok(())
            }
        }
        let base = tempfile::tempdir()?;
        let writers =
            || -> Result<Writers> { Ok(vec![vec![Box::new(Failing(0)) as Box<dyn Writer>]]) };
        match run_writers(&config(1, 1), base.path(), writers) {
            Cell::Failed(reason) => assert_eq!(reason, "the disk said no"),
            other => panic!("a failed flush gave {other:?}"),
        }
        Ok(())
    }
}
