//! Failover: a primary and a standby made with `pg_basebackup -R`, the primary killed
//! (`pg_ctl stop -m immediate`) at random moments of a workload, the standby promoted
//! (`pg_ctl promote`), and the old primary rebuilt as the new standby, again and again
//! in one run. The workload keeps its store, whose two-host URL
//! (`target_session_attrs=read-write`) finds the new primary.
//!
//! With a synchronous standby no acknowledged flush may be lost; with an asynchronous
//! one the test counts the acknowledged batches the failovers lost, which the crate
//! docs warn of. Either way every document is at a prefix of its batches.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use persister_core::{DocumentId, DocumentState, Error, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresPersister, PostgresStore};
use persister_reliability::{Contents, Rng, env_count};
use persister_testkit::postgres::Pair;

use crate::child::writer_batch;
use crate::cluster::{binaries, fresh_schema, skip, wait_for};

const DOCS: usize = 4;

/// The pair's settings: commits are asynchronous by default, so the test fails if a
/// flush does not turn `synchronous_commit` on; with `sync`, every standby is a
/// synchronous one.
fn settings(sync: bool) -> Vec<&'static str> {
    let mut settings = vec!["fsync=off", "synchronous_commit=off", "max_connections=100"];
    if sync {
        settings.push("synchronous_standby_names='*'");
    }
    settings
}

/// A primary and its standby, or `None` (after printing why) when the tests use
/// `PERSISTER_POSTGRES_URL` and cannot start servers of their own.
pub fn start_pair(sync: bool) -> Result<Option<Pair>, String> {
    let bin = binaries().filter(|bin| bin.join("pg_basebackup").is_file());
    let Some(bin) = bin else {
        let why =
            "the failover tests need initdb, pg_ctl and pg_basebackup to run servers they can kill";
        if std::env::var_os("PERSISTER_POSTGRES_URL").is_some()
            && std::env::var("PERSISTER_REQUIRE_POSTGRES").as_deref() != Ok("1")
        {
            println!("skipped: {why}");
            return Ok(None);
        }
        skip(why);
    };
    Pair::start(&bin, &settings(sync)).map(Some)
}

/// The state of a document after its batches 1 to `n`.
fn model(n: u64) -> DocumentState {
    let mut state = DocumentState::new();
    for k in 1..=n {
        state.apply(writer_batch(k));
    }
    state
}

#[derive(Default, Debug)]
struct Counts {
    flushes: u64,
    /// Flushes that failed at a kill (the handle poisoned; mostly an unknown outcome).
    unknown: u64,
    /// Of those, the ones the reopened document showed committed.
    unknown_committed: u64,
    /// Handles refused by their lease after a failover (expired while the workload
    /// waited, or older than their last write).
    lease_refused: u64,
    /// Acknowledged batches missing after a failover.
    lost: u64,
    /// Documents opened again and checked.
    checked: u64,
}

/// The workload: `DOCS` documents, each written batch after batch with a flush after
/// each batch, on one store for the whole run.
struct Workload {
    sync: bool,
    store: PostgresStore,
    ids: Vec<DocumentId>,
    handles: Vec<Option<PostgresPersister>>,
    /// The batch each document writes next, and the last acknowledged.
    next: Vec<u64>,
    acked: Vec<u64>,
    counts: Counts,
}

impl Workload {
    fn new(url: &str, sync: bool) -> Result<Self, String> {
        let options = PostgresOptions::default()
            .schema(fresh_schema())
            .lease_duration(Duration::from_secs(1));
        let store = PostgresStore::open_with(url, options).map_err(|e| e.to_string())?;
        Ok(Self {
            sync,
            store,
            ids: (0..DOCS)
                .map(|d| DocumentId::from(format!("doc {d}")))
                .collect(),
            handles: (0..DOCS).map(|_| None).collect(),
            next: vec![1; DOCS],
            acked: vec![0; DOCS],
            counts: Counts::default(),
        })
    }

    /// Waits until the store reaches a primary again.
    fn wait_for_primary(&self) -> Result<(), String> {
        wait_for("a primary", || Ok(self.store.list_documents().is_ok()))
    }

    /// Opens document `d` again (waiting for a primary, and for the lease of a handle
    /// that could not release it to expire) and checks it: every acknowledged batch
    /// is there (or, asynchronously, counted as lost), and it is at a prefix of its
    /// batches.
    fn reopen(&mut self, d: usize) -> Result<(), String> {
        self.handles[d] = None;
        let id = &self.ids[d];
        let mut opened = None;
        wait_for("the document to open on the new primary", || {
            match self.store.open_document(id) {
                Ok(p) => opened = Some(p),
                Err(Error::Locked { .. } | Error::Backend { .. }) => {}
                Err(e) => return Err(format!("opening {id}: {e}")),
            }
            Ok(opened.is_some())
        })?;
        let p = opened.ok_or("no handle")?;
        let last = match p.get_sync_state(b"last").map_err(|e| e.to_string())? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .parse::<u64>()
                .map_err(|e| e.to_string())?,
            None => 0,
        };
        let contents = Contents::read(&p).map_err(|e| format!("{id}: {e}"))?;
        assert!(
            last == 0 || contents == Contents::of(Some(&model(last))),
            "{id} is not at a prefix of its batches (its last batch is {last})"
        );
        assert_eq!(p.sizes(), model(last).sizes(), "{id}");
        // At most the batch whose flush had an unknown outcome is beyond the last
        // acknowledged one.
        assert!(
            last < self.next[d],
            "{id} is at batch {last}, never written"
        );
        if last < self.acked[d] {
            assert!(
                !self.sync,
                "{id} is at batch {last}, but batch {} was acknowledged under synchronous replication",
                self.acked[d]
            );
            self.counts.lost += self.acked[d] - last;
        }
        self.acked[d] = last;
        self.next[d] = last + 1;
        self.counts.checked += 1;
        self.handles[d] = Some(p);
        Ok(())
    }

    /// Writes and flushes the next batch of document `d`; true when acknowledged.
    fn step(&mut self, d: usize) -> Result<bool, String> {
        if self.handles[d].is_none() {
            self.reopen(d)?;
        }
        let k = self.next[d];
        let Some(p) = self.handles[d].as_mut() else {
            return Err("no handle".into());
        };
        // An apply reads (a lease renewal, a lookup) only before it holds anything: a
        // server error leaves the handle usable, and the batch is applied again.
        match p.apply(writer_batch(k)) {
            Ok(()) => {}
            Err(Error::LeaseLost { reason }) if reason.contains("lease") => {
                self.counts.lease_refused += 1;
                self.reopen(d)?;
                return Ok(false);
            }
            Err(Error::Backend { .. }) => {
                self.wait_for_primary()?;
                return Ok(false);
            }
            Err(other) => return Err(format!("{}: apply: {other}", self.ids[d])),
        }
        match p.flush() {
            Ok(_) => {
                self.acked[d] = k;
                self.next[d] = k + 1;
                self.counts.flushes += 1;
                Ok(true)
            }
            Err(Error::LeaseLost { reason }) if reason.contains("lease") => {
                self.counts.lease_refused += 1;
                self.reopen(d)?;
                Ok(false)
            }
            Err(Error::Backend { .. }) => {
                let again = p.flush();
                assert!(
                    matches!(again, Err(Error::Poisoned { .. })),
                    "a failed flush must poison its handle, but the next flush gave {again:?}"
                );
                self.counts.unknown += 1;
                // Batch k may be there or not, whole.
                self.next[d] = k + 1;
                self.wait_for_primary()?;
                let before = self.acked[d];
                self.reopen(d)?;
                if self.acked[d] > before {
                    self.counts.unknown_committed += 1;
                }
                Ok(false)
            }
            Err(other) => Err(format!("{}: flush: {other}", self.ids[d])),
        }
    }

    /// Closes every handle, then opens and checks every document.
    fn check_all(&mut self) -> Result<(), String> {
        for d in 0..DOCS {
            if let Some(p) = self.handles[d].take() {
                p.close()
                    .map_err(|e| format!("closing {}: {e}", self.ids[d]))?;
            }
            self.reopen(d)?;
        }
        Ok(())
    }
}

/// Time spent killing the primary and promoting the standby, and rebuilding the new
/// standby, over all rounds.
#[derive(Default, Debug)]
struct Timings {
    failing_over: Duration,
    rebuilding: Duration,
}

impl Timings {
    fn describe(&self, failovers: u64) -> String {
        let avg = |d: Duration| d.as_secs_f64() * 1000.0 / failovers.max(1) as f64;
        format!(
            "on average {:.0} ms to kill and promote, {:.0} ms to rebuild the standby",
            avg(self.failing_over),
            avg(self.rebuilding)
        )
    }
}

/// One round: the workload writes; after `target` acknowledged flushes the primary is
/// killed while it goes on, the standby promoted and the old primary rebuilt as the new
/// standby; every document then goes on for two more passes on the new primary.
fn round(
    w: &mut Workload,
    pair: &mut Pair,
    target: u64,
    timings: &mut Timings,
) -> Result<(), String> {
    let (failing_over, rebuilding) = std::thread::scope(|scope| {
        let (kill, killed) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel::<()>();
        let killer = scope.spawn(move || -> Result<(Duration, Duration), String> {
            if killed.recv().is_err() {
                return Ok((Duration::ZERO, Duration::ZERO));
            }
            let started = Instant::now();
            pair.fail_over()?;
            let failed_over = started.elapsed();
            pair.rebuild_standby()?;
            let _ = done.send(());
            Ok((failed_over, started.elapsed() - failed_over))
        });
        let mut acked = 0;
        let mut passes_after = None;
        while passes_after.is_none_or(|n| n < 2) {
            for d in 0..DOCS {
                if w.step(d)? {
                    acked += 1;
                    if acked == target {
                        let _ = kill.send(());
                    }
                }
            }
            if finished.try_recv().is_ok() {
                passes_after = Some(0);
            } else if let Some(n) = passes_after.as_mut() {
                *n += 1;
            }
        }
        drop(kill);
        killer
            .join()
            .map_err(|_| "the killer panicked".to_string())?
    })?;
    timings.failing_over += failing_over;
    timings.rebuilding += rebuilding;
    Ok(())
}

/// Runs `failovers` rounds, checking every document after each.
fn run_failovers(
    sync: bool,
    failovers: u64,
    seed: u64,
) -> Result<Option<(Counts, Timings)>, String> {
    let Some(mut pair) = start_pair(sync)? else {
        return Ok(None);
    };
    let mut rng = Rng::new(seed);
    let mut w = Workload::new(&pair.url(), sync)?;
    let mut timings = Timings::default();
    for n in 0..failovers {
        let target = 1 + rng.below(3 * DOCS as u64);
        round(&mut w, &mut pair, target, &mut timings).map_err(|e| format!("failover {n}: {e}"))?;
        w.check_all()
            .map_err(|e| format!("after failover {n}: {e}"))?;
    }
    Ok(Some((w.counts, timings)))
}

#[test]
fn synchronous_standby_failovers_lose_no_acknowledged_flush() -> Result<(), String> {
    let failovers = env_count("PERSISTER_PG_FAILOVERS", 20);
    let started = Instant::now();
    let seed = env_count("PERSISTER_PG_SEED", 0xfa11_0001);
    let Some((counts, timings)) = run_failovers(true, failovers, seed)? else {
        return Ok(());
    };
    assert_eq!(counts.lost, 0);
    println!(
        "failover test, synchronous standby: {failovers} failovers in {:.1} s ({}), {} flushes acknowledged, 0 lost; {} flushes failed at a kill ({} of them found committed), {} handles refused by their lease, {} documents checked",
        started.elapsed().as_secs_f64(),
        timings.describe(failovers),
        counts.flushes,
        counts.unknown,
        counts.unknown_committed,
        counts.lease_refused,
        counts.checked
    );
    Ok(())
}

/// Asynchronous replication: the same run, documenting rather than asserting how many
/// acknowledged batches the failovers lost (the crate docs' warning). Every document
/// is still at a prefix of its batches, and no handle writes on top of a lost flush.
#[test]
fn asynchronous_standby_failovers_show_what_they_lose() -> Result<(), String> {
    let failovers = env_count("PERSISTER_PG_ASYNC_FAILOVERS", 5);
    let started = Instant::now();
    let seed = env_count("PERSISTER_PG_SEED", 0xfa11_0002);
    let Some((counts, timings)) = run_failovers(false, failovers, seed)? else {
        return Ok(());
    };
    println!(
        "failover test, asynchronous standby: {failovers} failovers in {:.1} s ({}), {} flushes acknowledged, {} acknowledged batches lost by the failovers, {} flushes failed at a kill, {} handles refused by their lease, {} documents checked",
        started.elapsed().as_secs_f64(),
        timings.describe(failovers),
        counts.flushes,
        counts.lost,
        counts.unknown,
        counts.lease_refused,
        counts.checked
    );
    Ok(())
}

/// Leases replicate with the data: after a promotion a lease in force still locks the
/// document on the new primary and its holder goes on writing; a handle whose lease
/// expired cannot write, and a new holder takes the document with a larger token.
#[test]
fn leases_and_fencing_survive_a_failover() -> Result<(), String> {
    let Some(mut pair) = start_pair(true)? else {
        return Ok(());
    };
    let url = pair.url();
    let schema = fresh_schema();
    let e = |e: Error| e.to_string();
    let long = PostgresOptions::default().schema(schema.clone());
    let short = long.clone().lease_duration(Duration::from_millis(500));
    let holding = PostgresStore::open_with(&url, long.clone()).map_err(e)?;
    let expiring = PostgresStore::open_with(&url, short.clone()).map_err(e)?;
    let mut kept = holding.open_document(&"kept".into()).map_err(e)?;
    kept.apply(writer_batch(1)).map_err(e)?;
    kept.flush().map_err(e)?;
    let mut stale = expiring.open_document(&"expiring".into()).map_err(e)?;
    stale.apply(writer_batch(1)).map_err(e)?;
    stale.flush().map_err(e)?;
    stale.apply(writer_batch(2)).map_err(e)?;

    pair.fail_over()?;
    pair.rebuild_standby()?;

    let other = PostgresStore::open_with(&url, long).map_err(e)?;
    match other.open_document(&"kept".into()) {
        Err(Error::Locked { path }) => {
            let path = path.display().to_string();
            assert!(
                path.contains(&format!("pid {}", std::process::id())),
                "{path}"
            );
        }
        found => return Err(format!("expected Locked on the new primary, got {found:?}")),
    }
    kept.apply(writer_batch(2)).map_err(e)?;
    assert!(kept.flush().map_err(e)? > 0);

    let newcomer_store = PostgresStore::open_with(&url, short).map_err(e)?;
    let mut newcomer = None;
    wait_for("the expired lease to be taken", || {
        match newcomer_store.open_document(&"expiring".into()) {
            Ok(p) => newcomer = Some(p),
            Err(Error::Locked { .. }) => {}
            Err(err) => return Err(err.to_string()),
        }
        Ok(newcomer.is_some())
    })?;
    let newcomer = newcomer.ok_or("no handle")?;
    assert!(newcomer.lease_token() > stale.lease_token());
    let refused = stale.flush();
    assert!(
        matches!(&refused, Err(Error::LeaseLost { reason }) if reason.contains("lease")),
        "{refused:?}"
    );
    assert_eq!(
        Contents::read(&newcomer).map_err(e)?,
        Contents::of(Some(&model(1)))
    );
    drop(kept);
    let kept = other.open_document(&"kept".into()).map_err(e)?;
    assert_eq!(
        Contents::read(&kept).map_err(e)?,
        Contents::of(Some(&model(2)))
    );
    Ok(())
}

/// A session whose `synchronous_commit` is `remote_apply` keeps it for its flushes (the
/// backend only ever raises the setting): with replay paused on the standby a flush
/// waits, and returns once the standby has applied it.
#[test]
fn remote_apply_is_kept_so_flushes_wait_for_the_standby_to_apply() -> Result<(), String> {
    let Some(pair) = start_pair(true)? else {
        return Ok(());
    };
    let url = format!(
        "{} options='-c synchronous_commit=remote_apply'",
        pair.url()
    );
    let schema = fresh_schema();
    let e = |e: Error| e.to_string();
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))
        .map_err(e)?;
    let mut p = store.open_document(&"applied".into()).map_err(e)?;
    let on_standby = format!(
        "SELECT convert_from(state, 'UTF8') FROM \"{schema}\".sync_states WHERE document = 'applied'::bytea AND peer = 'last'::bytea"
    );
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    for k in 1..=env_count("PERSISTER_PG_APPLY_FLUSHES", 3) {
        pair.standby().query("SELECT pg_wal_replay_pause()")?;
        std::thread::scope(|scope| -> Result<(), String> {
            let (tx, rx) = mpsc::channel();
            let p = &mut p;
            scope.spawn(move || {
                let _ = tx.send(p.apply(writer_batch(k)).and_then(|()| p.flush()));
            });
            wait_for("the flush to wait for the standby", || {
                Ok(pair.primary().query(waiting)? != "0")
            })?;
            assert!(
                rx.try_recv().is_err(),
                "flush {k} returned before the standby applied it"
            );
            pair.standby().query("SELECT pg_wal_replay_resume()")?;
            let flushed = rx.recv().map_err(|e| e.to_string())?;
            assert!(flushed.map_err(e)? > 0);
            Ok(())
        })?;
        assert_eq!(pair.standby().query(&on_standby)?, k.to_string());
    }
    Ok(())
}
