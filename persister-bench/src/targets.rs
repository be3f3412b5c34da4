//! The targets each backend must meet, checked against one run's figures.

use crate::columns::Column;
use crate::results::{ColumnReport, TargetCheck};

/// Every target: the column, the figure, its bound, and the target in words.
#[rustfmt::skip]
const TARGETS: [Target; 15] = {
    use Bound::{AtLeast, AtMost, True};
    use Column::{Fs, Postgres, Redb, Sled};
    use Measure::{
        DiskOverPayload, FlushVsRaw, InsertVsPeer, ReloadSpeedupOverPeer, SizesFlatAndExact,
        TraceReloadVsAutomerge, TraceReplayVsMemory,
    };
    [
        Target(Fs, InsertVsPeer, AtLeast(8.0), "insert at least 8x the peer"),
        Target(Fs, FlushVsRaw, AtLeast(0.8), "flushes/s at least 0.8x raw fdatasync/s"),
        Target(Fs, ReloadSpeedupOverPeer, AtLeast(3.0), "reopen + get_changes at least 3x faster than the peer"),
        Target(Fs, DiskOverPayload, AtMost(1.2), "disk / payload at most 1.2"),
        Target(Fs, SizesFlatAndExact, True, "sizes() flat and exact (1 = yes)"),
        Target(Fs, TraceReplayVsMemory, AtMost(1.10), "trace replay at most 1.10x memory (wall minus run-queue wait)"),
        Target(Fs, TraceReloadVsAutomerge, AtMost(1.1), "reload at most 1.1x automerge's load"),
        Target(Redb, InsertVsPeer, AtLeast(4.0), "insert at least 4x the peer"),
        Target(Redb, DiskOverPayload, AtMost(2.5), "disk / payload at most 2.5"),
        Target(Redb, TraceReplayVsMemory, AtMost(1.25), "trace replay at most 1.25x memory (wall minus run-queue wait)"),
        Target(Sled, InsertVsPeer, AtLeast(1.5), "insert at least 1.5x the peer"),
        Target(Sled, TraceReplayVsMemory, AtMost(1.25), "trace replay at most 1.25x memory (wall minus run-queue wait)"),
        Target(Postgres, InsertVsPeer, AtLeast(10.0), "insert at least 10x the peer"),
        Target(Postgres, FlushVsRaw, AtLeast(0.8), "flushes/s at least 0.8x the server's single-row commits/s"),
        Target(Postgres, TraceReplayVsMemory, AtMost(1.25), "trace replay at most 1.25x memory (wall minus run-queue wait)"),
    ]
};

/// A target: a column's figure, its bound, and the target in words.
struct Target(Column, Measure, Bound, &'static str);

/// A figure a target bounds, each from one row.
#[derive(Clone, Copy)]
enum Measure {
    /// Row 1: changes inserted per second, over the peer's.
    InsertVsPeer,
    /// Row 2: flushes per second, over raw `fdatasync`s per second.
    FlushVsRaw,
    /// Row 3: the peer's reopen-and-read time over the column's.
    ReloadSpeedupOverPeer,
    /// Row 4: bytes on disk over payload bytes.
    DiskOverPayload,
    /// Row 5: 1 when `sizes()` is flat and exact, else 0.
    SizesFlatAndExact,
    /// Row 7: trace replay time over memory's.
    TraceReplayVsMemory,
    /// Row 7: reload time over automerge's own load.
    TraceReloadVsAutomerge,
}

impl Measure {
    /// The row the figure comes from.
    fn row(self) -> u8 {
        match self {
            Measure::InsertVsPeer => 1,
            Measure::FlushVsRaw => 2,
            Measure::ReloadSpeedupOverPeer => 3,
            Measure::DiskOverPayload => 4,
            Measure::SizesFlatAndExact => 5,
            Measure::TraceReplayVsMemory | Measure::TraceReloadVsAutomerge => 7,
        }
    }

    /// The figure in `report`, with the peer's report for the figures relative to it;
    /// `None` when a row it needs has no value.
    fn of(self, report: &ColumnReport, peer: Option<&ColumnReport>) -> Option<f64> {
        match self {
            Measure::InsertVsPeer => {
                let rate = report.insert.as_ref()?.value()?.changes_per_s;
                Some(rate / peer?.insert.as_ref()?.value()?.changes_per_s)
            }
            Measure::FlushVsRaw => Some(report.flush.as_ref()?.value()?.ratio_to_raw),
            Measure::ReloadSpeedupOverPeer => {
                let ms = report.reload.as_ref()?.value()?.ms;
                Some(peer?.reload.as_ref()?.value()?.ms / ms)
            }
            Measure::DiskOverPayload => Some(report.disk.as_ref()?.value()?.ratio),
            Measure::SizesFlatAndExact => {
                let sizes = report.sizes.as_ref()?.value()?;
                Some(f64::from(u8::from(sizes.flat && sizes.exact)))
            }
            // Wall time minus what other processes took from the replay: on a shared
            // machine the raw wall ratio swings by tens of percent from round to round.
            Measure::TraceReplayVsMemory => {
                let run = report.trace.as_ref()?.value()?;
                run.own_ratio_to_memory.or(run.ratio_to_memory)
            }
            Measure::TraceReloadVsAutomerge => Some(report.trace.as_ref()?.value()?.reload_ratio),
        }
    }
}

/// How a measured figure is compared with its bound.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
    True,
}

impl Bound {
    fn holds(self, measured: f64) -> bool {
        match self {
            Bound::AtLeast(b) => measured >= b,
            Bound::AtMost(b) => measured <= b,
            Bound::True => measured >= 1.0,
        }
    }
}

/// Checks every target against `columns`. A target of a row this run did not measure
/// is not listed; one whose figure is missing is listed with `met: Some(false)` when its
/// column failed the row, and with `met: None` otherwise (a skipped row, no peer).
pub fn check(columns: &[ColumnReport]) -> Vec<TargetCheck> {
    let find = |c: Column| columns.iter().find(|r| r.column == c.name());
    let peer = find(Column::Peer);
    TARGETS
        .iter()
        .filter_map(|&Target(column, measure, bound, target)| {
            let report = find(column)?;
            let row = measure.row();
            // A target of a row this run did not measure is not listed.
            if !report.ran(row) {
                return None;
            }
            let measured = measure.of(report, peer);
            let met = measured
                .map(|m| bound.holds(m))
                // A row the column failed (an error, a hang) misses its target.
                .or_else(|| report.failed(row).then_some(false));
            Some(TargetCheck {
                column: column.name().to_owned(),
                row,
                target: target.to_owned(),
                measured,
                met,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Cell, Insert};

    fn inserting(column: Column, changes_per_s: f64) -> ColumnReport {
        let mut report = ColumnReport::new(column.name());
        report.insert = Some(Cell::Value(Insert {
            changes_per_s,
            wall_changes_per_s: changes_per_s,
            insert_s: 1.0,
            flush_s: 0.0,
            samples: vec![changes_per_s],
            wall_samples: vec![changes_per_s],
        }));
        report
    }

    #[test]
    fn targets_of_rows_run_are_checked_and_failed_rows_miss() {
        let mut sled = ColumnReport::new(Column::Sled.name());
        sled.insert = Some(Cell::Failed("hung".into()));
        let columns = [
            inserting(Column::Peer, 100.0),
            inserting(Column::Fs, 1000.0),
            inserting(Column::Redb, 300.0),
            sled,
        ];
        let checks: Vec<_> = check(&columns)
            .into_iter()
            .map(|c| (c.column, c.row, c.measured, c.met))
            .collect();
        // Only row 1 ran, so only its targets are listed.
        assert_eq!(
            checks,
            [
                ("fs".to_owned(), 1, Some(10.0), Some(true)),
                ("redb".to_owned(), 1, Some(3.0), Some(false)),
                ("sled".to_owned(), 1, None, Some(false)),
            ]
        );
    }

    #[test]
    fn a_missing_peer_leaves_relative_targets_unchecked() {
        let checks = check(&[inserting(Column::Fs, 1000.0)]);
        assert_eq!(checks.len(), 1);
        assert_eq!((checks[0].measured, checks[0].met), (None, None));
    }
}
