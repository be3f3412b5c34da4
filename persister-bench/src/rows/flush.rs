//! Row 2: one change then a flush, again and again, against the disk's own rate of
//! appends followed by `fdatasync`.

use std::path::Path;
use std::time::Instant;

use crate::Result;
use crate::columns::Column;
use crate::data::Workload;
use crate::limit;
use crate::results::{Cell, Config, Flush};

/// Bytes of each raw append: the size of one change's value.
pub const RAW_APPEND: usize = 100;

/// Runs row 2 for one column in a new store in `dir`. The raw `fdatasync` rate is
/// measured just before, with as many rounds, so a drift of the machine between columns
/// does not skew the ratio; it is returned for the limit row.
pub fn run(config: &Config, column: Column, dir: &Path) -> (Cell<Flush>, Option<f64>) {
    let raw = match std::fs::create_dir_all(dir)
        .map_err(Into::into)
        .and_then(|()| limit::fdatasync_per_s(dir, config.flushes, RAW_APPEND))
    {
        Ok(raw) => raw,
        Err(e) => return (Cell::Failed(format!("raw fdatasync: {e}")), None),
    };
    let cell = Cell::from_result(flushes_per_s(config, column, dir).map(|rate| Flush {
        flushes_per_s: rate,
        raw_fdatasync_per_s: raw,
        ratio_to_raw: rate / raw,
    }));
    (cell, Some(raw))
}

fn flushes_per_s(config: &Config, column: Column, dir: &Path) -> Result<f64> {
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
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
    let start = Instant::now();
    for batch in batches {
        subject.insert(batch)?;
        subject.flush()?;
    }
    Ok(config.flushes as f64 / start.elapsed().as_secs_f64())
}
