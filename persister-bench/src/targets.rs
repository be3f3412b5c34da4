//! The targets each backend must meet, checked against one run's figures.

use crate::columns::Column;
use crate::results::{ColumnReport, TargetCheck};

/// How a measured figure is compared with its bound.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
    True,
}

/// Checks every target against `columns`; a target whose figures are missing (a row
/// not run, a column that failed) is listed with `met: None`.
pub fn check(columns: &[ColumnReport]) -> Vec<TargetCheck> {
    let find = |c: Column| columns.iter().find(|r| r.column == c.name());
    let peer = find(Column::Peer);
    let peer_rate = peer
        .and_then(|p| p.insert.as_ref()?.value())
        .map(|i| i.changes_per_s);
    let peer_reload = peer.and_then(|p| p.reload.as_ref()?.value()).map(|r| r.ms);

    let mut checks = Vec::new();
    let mut add = |column: Column, row: u8, target: &str, measured: Option<f64>, bound: Bound| {
        // A target of a row this run did not measure is not listed.
        if !find(column).is_some_and(|r| r.ran(row)) {
            return;
        }
        let met = measured
            .map(|m| match bound {
                Bound::AtLeast(b) => m >= b,
                Bound::AtMost(b) => m <= b,
                Bound::True => m >= 1.0,
            })
            // A row the column failed (an error, a hang) misses its target.
            .or_else(|| find(column).is_some_and(|r| r.failed(row)).then_some(false));
        checks.push(TargetCheck {
            column: column.name().to_owned(),
            row,
            target: target.to_owned(),
            measured,
            met,
        });
    };

    let insert_vs_peer = |c: Column| {
        let rate = find(c)?.insert.as_ref()?.value()?.changes_per_s;
        Some(rate / peer_rate?)
    };
    // Wall time minus what other processes took from the replay: on a shared machine
    // the raw wall ratio swings by tens of percent from round to round.
    let trace_ratio = |c: Column| {
        let run = find(c)?.trace.as_ref()?.value()?;
        run.own_ratio_to_memory.or(run.ratio_to_memory)
    };
    let fs = find(Column::Fs);

    add(
        Column::Fs,
        1,
        "insert at least 8x the peer",
        insert_vs_peer(Column::Fs),
        Bound::AtLeast(8.0),
    );
    add(
        Column::Fs,
        2,
        "flushes/s at least 0.8x raw fdatasync/s",
        fs.and_then(|f| f.flush.as_ref()?.value())
            .map(|f| f.ratio_to_raw),
        Bound::AtLeast(0.8),
    );
    add(
        Column::Fs,
        3,
        "reopen + get_changes at least 3x faster than the peer",
        fs.and_then(|f| f.reload.as_ref()?.value())
            .and_then(|r| Some(peer_reload? / r.ms)),
        Bound::AtLeast(3.0),
    );
    add(
        Column::Fs,
        4,
        "disk / payload at most 1.2",
        fs.and_then(|f| f.disk.as_ref()?.value()).map(|d| d.ratio),
        Bound::AtMost(1.2),
    );
    add(
        Column::Fs,
        5,
        "sizes() flat and exact (1 = yes)",
        fs.and_then(|f| f.sizes.as_ref()?.value())
            .map(|s| f64::from(u8::from(s.flat && s.exact))),
        Bound::True,
    );
    add(
        Column::Fs,
        7,
        "trace replay at most 1.10x memory (wall minus run-queue wait)",
        trace_ratio(Column::Fs),
        Bound::AtMost(1.10),
    );
    add(
        Column::Fs,
        7,
        "reload at most 1.1x automerge's load",
        fs.and_then(|f| f.trace.as_ref()?.value())
            .map(|t| t.reload_ratio),
        Bound::AtMost(1.1),
    );
    add(
        Column::Redb,
        1,
        "insert at least 4x the peer",
        insert_vs_peer(Column::Redb),
        Bound::AtLeast(4.0),
    );
    add(
        Column::Redb,
        4,
        "disk / payload at most 2.5",
        find(Column::Redb)
            .and_then(|r| r.disk.as_ref()?.value())
            .map(|d| d.ratio),
        Bound::AtMost(2.5),
    );
    add(
        Column::Redb,
        7,
        "trace replay at most 1.25x memory (wall minus run-queue wait)",
        trace_ratio(Column::Redb),
        Bound::AtMost(1.25),
    );
    add(
        Column::Sled,
        1,
        "insert at least 1.5x the peer",
        insert_vs_peer(Column::Sled),
        Bound::AtLeast(1.5),
    );
    add(
        Column::Sled,
        7,
        "trace replay at most 1.25x memory (wall minus run-queue wait)",
        trace_ratio(Column::Sled),
        Bound::AtMost(1.25),
    );
    checks
}
