//! Rows 1, 4 and 5: a bulk insert, then disk usage and `sizes()` on the store it
//! leaves (which rows 3 and 6 load).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::Result;
use crate::clock::Stopwatch;
use crate::columns::{Column, Location};
use crate::data::{RawChange, Workload, expected_digest};
use crate::results::{Cell, Config, Disk, Insert, Sizes};
use crate::rows::load::Expected;
use crate::rows::{disk_usage, median};

/// What rows 1, 4 and 5 measured for one column, and where its large store is.
pub struct Ingested {
    /// Row 1.
    pub insert: Cell<Insert>,
    /// Row 4.
    pub disk: Cell<Disk>,
    /// Row 5.
    pub sizes: Cell<Sizes>,
    /// The store holding every change, for rows 3 and 6.
    pub large: Option<Location>,
}

/// The workload of the large store, and what reading it back must give.
struct Stores {
    changes: Vec<RawChange>,
    digest: u64,
    payload: u64,
    values: u64,
}

/// Runs rows 1, 4 and 5 for `columns`, each repeat of row 1 interleaved across columns
/// so that drift of the machine hits every column alike. Also returns what loading the
/// large store must give.
pub fn run(
    config: &Config,
    columns: &[Column],
    base: &Path,
) -> (BTreeMap<Column, Ingested>, Expected) {
    let changes = Workload::new(config.changes).generate();
    let stores = Stores {
        digest: expected_digest(&changes),
        payload: changes.iter().map(RawChange::payload_len).sum(),
        values: changes.iter().map(|c| c.value.len() as u64).sum(),
        changes,
    };
    let mut out: BTreeMap<Column, Ingested> = columns
        .iter()
        .map(|&c| {
            let ingested = Ingested {
                insert: not_reached(),
                disk: not_reached(),
                sizes: not_reached(),
                large: None,
            };
            (c, ingested)
        })
        .collect();

    // Row 1 (and row 4 on the last repeat's store).
    let mut rates: BTreeMap<Column, Vec<Insert>> = BTreeMap::new();
    for repeat in 0..config.repeats {
        let last = repeat + 1 == config.repeats;
        for &column in columns {
            let Some(entry) = out.get_mut(&column) else {
                continue;
            };
            if entry.insert.failed() {
                continue;
            }
            let dir = base.join(format!("ingest-{column}-{repeat}"));
            match insert_once(config, column, &dir, &stores) {
                Ok((insert, disk, location)) => {
                    rates.entry(column).or_default().push(insert);
                    if last {
                        entry.disk = disk;
                        entry.large = Some(location);
                    } else {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
                Err(e) => entry.insert = Cell::Failed(e.to_string()),
            }
        }
    }
    for (column, samples) in rates {
        if let Some(entry) = out.get_mut(&column)
            && !entry.insert.failed()
        {
            let all: Vec<f64> = samples.iter().map(|s| s.changes_per_s).collect();
            let wall: Vec<f64> = samples.iter().map(|s| s.wall_changes_per_s).collect();
            if let Some(best) = samples
                .into_iter()
                .max_by(|a, b| a.changes_per_s.total_cmp(&b.changes_per_s))
            {
                entry.insert = Cell::Value(Insert {
                    samples: all,
                    wall_samples: wall,
                    ..best
                });
            }
        }
    }

    // Row 5.
    for (&column, entry) in out.iter_mut() {
        let Some(large) = entry.large.clone() else {
            continue;
        };
        let dir = base.join(format!("small-{column}"));
        entry.sizes = Cell::from_result(sizes_row(config, column, &dir, &large, &stores));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let expected = Expected {
        changes: stores.changes.len(),
        digest: stores.digest,
    };
    (out, expected)
}

/// How many times row 5 opens each store.
const SIZES_OPENS: usize = 11;

/// Row 5's slack: a first call's time varies by hundreds of ns from open to open,
/// while a `sizes()` that walked the changes would take at least a microsecond per
/// thousand of them, so "flat" is at most twice the small store's time plus 1 µs.
const FLAT_SLACK_NS: f64 = 1_000.0;

/// A cell for a row that an earlier failure kept from running.
fn not_reached<T>() -> Cell<T> {
    Cell::Skipped("not reached".into())
}

/// One timed bulk insert into a new store: the rate, then row 4 on the flushed store.
fn insert_once(
    config: &Config,
    column: Column,
    dir: &Path,
    stores: &Stores,
) -> Result<(Insert, Cell<Disk>, Location)> {
    std::fs::create_dir_all(dir)?;
    let (mut subject, location) = column.create(dir)?;
    let batches: Vec<_> = stores
        .changes
        .chunks(config.batch.max(1))
        .map(|chunk| column.prepare(chunk))
        .collect();
    let watch = Stopwatch::start();
    for batch in batches {
        subject.insert(batch)?;
    }
    let inserted = watch.lap();
    subject.flush()?;
    let end = watch.lap();
    let count = stores.changes.len() as f64;
    let insert = Insert {
        changes_per_s: count / end.own.as_secs_f64(),
        wall_changes_per_s: count / end.wall.as_secs_f64(),
        insert_s: inserted.own.as_secs_f64(),
        flush_s: (end - inserted).own.as_secs_f64(),
        samples: Vec::new(),
        wall_samples: Vec::new(),
    };
    let disk = if column.on_disk() {
        let (allocated, apparent) = disk_usage(dir)?;
        Cell::Value(Disk {
            allocated_bytes: allocated,
            apparent_bytes: apparent,
            payload_bytes: stores.payload,
            ratio: allocated as f64 / stores.payload as f64,
            ratio_to_values: allocated as f64 / stores.values as f64,
        })
    } else {
        Cell::NotApplicable("no disk".into())
    };
    drop(subject);
    Ok((insert, disk, location))
}

/// Row 5: `sizes()` right after opening a store of a tenth of the changes and the
/// large one.
fn sizes_row(
    config: &Config,
    column: Column,
    dir: &Path,
    large: &Location,
    stores: &Stores,
) -> Result<Sizes> {
    let small_changes = &stores.changes[..config.small_changes.min(stores.changes.len())];
    std::fs::create_dir_all(dir)?;
    let (mut subject, small) = column.create(dir)?;
    for chunk in small_changes.chunks(config.batch.max(1)) {
        subject.insert(column.prepare(chunk))?;
    }
    subject.flush()?;
    drop(subject);

    let expect = |changes: &[RawChange]| {
        (
            changes.iter().map(|c| c.value.len() as u64).sum::<u64>(),
            changes.len() as u64,
        )
    };
    let mut exact = true;
    let mut samples = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    // One `sizes()` call takes well under a microsecond and a first call after opening
    // is cache-cold, so the median of eleven first calls is what is reported.
    for _ in 0..SIZES_OPENS {
        for (i, (location, changes)) in [(&small, small_changes), (large, &stores.changes[..])]
            .into_iter()
            .enumerate()
        {
            let start = Instant::now();
            let subject = column.open(location)?;
            let opened = Instant::now();
            let sizes = subject.sizes();
            let ns = opened.elapsed().as_nanos() as f64;
            samples[i].0.push(ns);
            samples[i].1.push((opened - start).as_secs_f64() * 1e3);
            let (bytes, count) = expect(changes);
            exact &= sizes.change_bytes == bytes && sizes.change_count.is_none_or(|c| c == count);
            drop(subject);
        }
    }
    let [(small_ns, small_open), (large_ns, large_open)] = samples;
    let (small_ns, large_ns) = (median(small_ns), median(large_ns));
    Ok(Sizes {
        small_ns,
        large_ns,
        small_open_ms: median(small_open),
        large_open_ms: median(large_open),
        exact,
        flat: large_ns <= 2.0 * small_ns + FLAT_SLACK_NS,
    })
}
