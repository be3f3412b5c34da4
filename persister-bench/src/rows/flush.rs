//! Row 2: one change then a flush, again and again, against the disk's own rate of
//! appends followed by `fdatasync`.

use std::path::Path;

use crate::Result;
use crate::clock::{Lap, Stopwatch};
use crate::columns::Column;
use crate::data::Workload;
use crate::limit::RawLog;
use crate::results::{Cell, Config, Flush};

/// Bytes of each raw append: the size of one change's value.
pub const RAW_APPEND: usize = 100;

/// How many slices the flushes are cut into, alternating with as many raw appends.
const ROUNDS: usize = 20;

/// Runs row 2 for one column in a new store in `dir`.
///
/// The column's flushes and the raw appends + `fdatasync` on the same file system are
/// interleaved in slices, so both see the same disk: on a shared machine the disk's
/// rate drifts within seconds, and measuring one after the other would skew the ratio.
/// Returns the raw rate too, for the limit row.
///
/// For the postgres column the raw rate is the server's own: single-row commits with
/// `synchronous_commit` on, on the same server, interleaved the same way; it is not
/// returned as the disk's.
pub fn run(config: &Config, column: Column, dir: &Path) -> (Cell<Flush>, Option<f64>) {
    match measure(config, column, dir) {
        Ok((flush, _)) if column == Column::Postgres => (Cell::Value(flush), None),
        Ok((flush, raw)) => (Cell::Value(flush), Some(raw)),
        Err(e) => (Cell::Failed(e.to_string()), None),
    }
}

fn measure(config: &Config, column: Column, dir: &Path) -> Result<(Flush, f64)> {
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
    let mut raw = match column {
        Column::Postgres => Raw::Server(Box::new(crate::pg::Commits::create(&crate::pg::schema(
            &dir.join("raw"),
        ))?)),
        _ => Raw::Disk(RawLog::create(dir, "raw", RAW_APPEND)?),
    };
    let (mut subject, _location) = column.create(&store)?;
    let changes = Workload {
        seed: 0x5eed_0002,
        ..Workload::new(config.flushes)
    }
    .generate();
    let batches: Vec<_> = changes
        .chunks(1)
        .map(|change| column.prepare(change))
        .collect();
    let mut batches = batches.into_iter();

    let slice = config.flushes.div_ceil(ROUNDS).max(1);
    let (mut raw_time, mut raw_count) = (Lap::default(), 0);
    let (mut time, mut count) = (Lap::default(), 0);
    while count < config.flushes {
        let n = slice.min(config.flushes - count);
        raw_time += raw.append_synced(n)?;
        raw_count += n;
        let watch = Stopwatch::start();
        for batch in batches.by_ref().take(n) {
            subject.insert(batch)?;
            subject.flush()?;
        }
        time += watch.lap();
        count += n;
    }
    drop(subject);
    if let Raw::Disk(raw) = raw {
        raw.remove()?;
    }
    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    let (own, raw_own) = (rate(count, time.own), rate(raw_count, raw_time.own));
    let (wall, raw_wall) = (rate(count, time.wall), rate(raw_count, raw_time.wall));
    Ok((
        Flush {
            flushes_per_s: wall,
            raw_fdatasync_per_s: raw_wall,
            ratio_to_raw: wall / raw_wall,
            own_ratio_to_raw: own / raw_own,
        },
        raw_wall,
    ))
}

/// What a column's flushes are compared with.
enum Raw {
    /// Appends + `fdatasync` on the store's file system.
    Disk(RawLog),
    /// Single-row commits on the store's server.
    Server(Box<crate::pg::Commits>),
}

impl Raw {
    fn append_synced(&mut self, count: usize) -> Result<Lap> {
        match self {
            Raw::Disk(log) => log.append_synced(count),
            Raw::Server(commits) => commits.append_synced(count),
        }
    }
}
