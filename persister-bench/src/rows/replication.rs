//! Row 2 for PostgreSQL with and without a synchronous standby: one change then a
//! flush, again and again, on a single node and on a primary whose commits wait for a
//! synchronous standby (`synchronous_standby_names = '*'`), both servers started by
//! this run with the server's defaults otherwise (fsync on). The two are interleaved
//! in slices, so that both see the same machine; each flush is timed for the p99.

use std::fmt::Write as _;
use std::time::Instant;

use persister_core::{ActorId, Batch, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_testkit::postgres::{Cluster, Pair, binaries};
use serde::Serialize;

use crate::Result;
use crate::report::{rate, thousands};
use crate::results::{Cell, Config};

/// How many slices each setup's flushes are cut into.
const ROUNDS: usize = 10;

/// The two rows.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicationRow {
    /// Flushes per setup.
    pub flushes: usize,
    /// One node.
    pub single: Setup,
    /// A primary with a synchronous standby.
    pub synchronous_standby: Setup,
}

/// One setup's flushes.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// Flushes per second, wall time.
    pub flushes_per_s: f64,
    /// The 99th percentile of one flush's wall time, ms.
    pub p99_flush_ms: f64,
    /// The median of one flush's wall time, ms.
    pub median_flush_ms: f64,
}

/// Measures both setups, or says why not.
pub fn run(config: &Config) -> Cell<ReplicationRow> {
    let Some(bin) = binaries().filter(|bin| bin.join("pg_basebackup").is_file()) else {
        return Cell::Skipped(
            "needs initdb, pg_ctl and pg_basebackup to start a primary and a standby".into(),
        );
    };
    Cell::from_result(measure(config, &bin))
}

/// One document's flushes on one server.
struct Flusher {
    doc: persister_postgres::PostgresPersister,
    actor: ActorId,
    seq: u64,
    latencies_ms: Vec<f64>,
    total_s: f64,
}

impl Flusher {
    fn open(url: &str) -> Result<(PostgresStore, Self)> {
        let store =
            PostgresStore::open_with(url, PostgresOptions::default().schema("bench_replication"))?;
        let doc = store.open_document(&"flushes".into())?;
        Ok((
            store,
            Self {
                doc,
                actor: ActorId::new([0x42; 16]),
                seq: 0,
                latencies_ms: Vec::new(),
                total_s: 0.0,
            },
        ))
    }

    fn flush_n(&mut self, n: usize) -> Result<()> {
        let value = vec![0x5a_u8; crate::rows::flush::RAW_APPEND];
        for _ in 0..n {
            self.seq += 1;
            let started = Instant::now();
            self.doc.apply(Batch::new().insert_change(
                self.actor.clone(),
                self.seq,
                value.clone(),
            ))?;
            self.doc.flush()?;
            let took = started.elapsed().as_secs_f64();
            self.total_s += took;
            self.latencies_ms.push(took * 1000.0);
        }
        Ok(())
    }

    fn setup(mut self) -> Setup {
        self.latencies_ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((self.latencies_ms.len() as f64 * q).ceil() as usize).saturating_sub(1);
            self.latencies_ms.get(i).copied().unwrap_or(0.0)
        };
        Setup {
            flushes_per_s: self.latencies_ms.len() as f64 / self.total_s.max(f64::MIN_POSITIVE),
            p99_flush_ms: at(0.99),
            median_flush_ms: at(0.5),
        }
    }
}

fn measure(config: &Config, bin: &std::path::Path) -> Result<ReplicationRow> {
    let single = Cluster::start(bin, &[])?;
    let pair = Pair::start(bin, &["synchronous_standby_names='*'"])?;
    let (_single_store, mut alone) = Flusher::open(&single.url())?;
    let (_pair_store, mut replicated) = Flusher::open(&pair.url())?;
    let slice = config.flushes.div_ceil(ROUNDS).max(1);
    let mut done = 0;
    while done < config.flushes {
        let n = slice.min(config.flushes - done);
        alone.flush_n(n)?;
        replicated.flush_n(n)?;
        done += n;
    }
    Ok(ReplicationRow {
        flushes: config.flushes,
        single: alone.setup(),
        synchronous_standby: replicated.setup(),
    })
}

/// The two rows, after the main table.
pub fn markdown(out: &mut String, row: &Cell<ReplicationRow>) {
    let row = match row {
        Cell::Value(row) => row,
        Cell::Skipped(why) | Cell::NotApplicable(why) => {
            let _ = writeln!(out, "\n2 (PostgreSQL replication). skipped: {why}");
            return;
        }
        Cell::Failed(why) => {
            let _ = writeln!(out, "\n2 (PostgreSQL replication). failed: {why}");
            return;
        }
    };
    let _ = writeln!(
        out,
        "\n2 (PostgreSQL replication). insert 1 change then flush, {} times, on servers \
         this run starts on this machine (fsync on), interleaved: wall time\n",
        thousands(row.flushes)
    );
    let _ = writeln!(out, "| postgres | flushes/s | p99 flush | median flush |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (name, setup) in [
        ("one node", &row.single),
        (
            "primary + synchronous standby (`synchronous_standby_names = '*'`)",
            &row.synchronous_standby,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} ms | {:.2} ms |",
            rate(setup.flushes_per_s),
            setup.p99_flush_ms,
            setup.median_flush_ms
        );
    }
}
