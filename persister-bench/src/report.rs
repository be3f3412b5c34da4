//! The markdown table of a run.

use std::fmt::Write as _;

use crate::columns::Column;
use crate::results::{Cell, ColumnReport, Report};

/// Renders the run as markdown: the table, then the targets.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let columns: Vec<(Column, &ColumnReport)> = report
        .columns
        .iter()
        .filter_map(|r| Some((Column::ALL.into_iter().find(|c| c.name() == r.column)?, r)))
        .collect();
    let peer = report.columns.iter().find(|r| r.column == "peer");
    let c = &report.config;

    let _ = writeln!(
        out,
        "persister-bench, {} run: {} changes of 100 random bytes from 4 actors; \
         stores in {}; {:.0} s in all. Times are own time (wall time minus the time \
         the timed thread waited for a CPU), except row 2 and the limit, in wall time; \
         --json has both.\n",
        report.mode, c.changes, report.dir, report.wall_s
    );
    let header: Vec<&str> = columns.iter().map(|(c, _)| c.header()).collect();
    let _ = writeln!(out, "| row | {} | disk |", header.join(" | "));
    let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(columns.len()));

    let limit = &report.limit;
    let seq = match &limit.sequential_write_mb_s {
        Some(Cell::Value(v)) => format!("{v:.0} MB/s sequential"),
        Some(Cell::Failed(e)) => format!("error: {e}"),
        _ => String::new(),
    };
    let sync = limit
        .fdatasync_per_s
        .map(|v| format!("{} fdatasync/s", rate(v)))
        .unwrap_or_default();
    let both: Vec<String> = [sync, seq].into_iter().filter(|s| !s.is_empty()).collect();
    row(
        &mut out,
        "limit: the disk itself",
        &columns,
        |_| None,
        &both.join("; "),
    );

    let peer_rate = peer
        .and_then(|p| p.insert.as_ref()?.value())
        .map(|i| i.changes_per_s);
    row(
        &mut out,
        &format!(
            "1. insert {} changes in batches of {}, then flush: changes/s (x peer)",
            thousands(c.changes),
            thousands(c.batch)
        ),
        &columns,
        |r| {
            Some(cell(r.insert.as_ref()?, |i| match peer_rate {
                Some(p) => format!("{} ({:.1}x)", rate(i.changes_per_s), i.changes_per_s / p),
                None => rate(i.changes_per_s),
            }))
        },
        "",
    );
    row(
        &mut out,
        &format!(
            "2. insert 1 change then flush, {} times: flushes/s (x raw fdatasync)",
            thousands(c.flushes)
        ),
        &columns,
        |r| {
            Some(cell(r.flush.as_ref()?, |f| {
                if r.column == Column::Memory.name() {
                    // Nothing to sync: a ratio to the disk would mean nothing.
                    rate(f.flushes_per_s)
                } else {
                    format!("{} ({:.2}x)", rate(f.flushes_per_s), f.ratio_to_raw)
                }
            }))
        },
        &if report.columns.iter().any(|r| r.ran(2)) {
            limit
                .fdatasync_per_s
                .map(|v| format!("{}/s", rate(v)))
                .unwrap_or_default()
        } else {
            String::new()
        },
    );
    let peer_reload = peer.and_then(|p| p.reload.as_ref()?.value()).map(|r| r.ms);
    row(
        &mut out,
        &format!(
            "3. reopen + get_changes of {} changes: ms (peer's / this)",
            thousands(c.changes)
        ),
        &columns,
        |r| {
            Some(cell(r.reload.as_ref()?, |l| match peer_reload {
                Some(p) => format!("{} ({:.1}x)", ms(l.ms), p / l.ms),
                None => ms(l.ms),
            }))
        },
        "",
    );
    row(
        &mut out,
        "4. bytes on disk after flush / payload bytes (keys + values)",
        &columns,
        |r| Some(cell(r.disk.as_ref()?, |d| format!("{:.2}", d.ratio))),
        "",
    );
    row(
        &mut out,
        &format!(
            "5. sizes() right after reopen at {} / {} changes: ns",
            thousands(c.small_changes),
            thousands(c.changes)
        ),
        &columns,
        |r| {
            Some(cell(r.sizes.as_ref()?, |s| {
                let mut text = format!("{:.0} / {:.0}", s.small_ns, s.large_ns);
                if !s.flat {
                    text.push_str(" (grows)");
                }
                if !s.exact {
                    text.push_str(" (inexact)");
                }
                text
            }))
        },
        "",
    );
    row(
        &mut out,
        &format!(
            "6. peak resident memory loading {} changes: MiB",
            thousands(c.changes)
        ),
        &columns,
        |r| Some(cell(r.peak.as_ref()?, |p| format!("{:.1}", p.peak_mib))),
        "",
    );
    let edits = columns
        .iter()
        .find_map(|(_, r)| Some(r.trace.as_ref()?.value()?.edits))
        .map(thousands)
        .unwrap_or_else(|| "its".into());
    row(
        &mut out,
        &format!(
            "7. {} trace, {edits} edits, 1 commit each, flush every {}, auto-compaction: s (x memory: wall; wall minus run-queue wait)",
            crate::rows::trace::TRACE,
            thousands(c.trace_flush_every)
        ),
        &columns,
        |r| {
            Some(cell(r.trace.as_ref()?, |t| {
                match (t.ratio_to_memory, t.own_ratio_to_memory) {
                    (Some(m), Some(o)) if r.column != Column::Memory.name() => {
                        format!("{:.2} ({m:.2}x; {o:.2}x)", t.replay_s)
                    }
                    _ => format!("{:.2}", t.replay_s),
                }
            }))
        },
        "",
    );
    row(
        &mut out,
        "7. reload after compaction: ms (x automerge's AutoCommit::load of the same bytes)",
        &columns,
        |r| {
            Some(cell(r.trace.as_ref()?, |t| {
                format!("{} ({:.2}x)", ms(t.reload_ms), t.reload_ratio)
            }))
        },
        "",
    );

    let server = columns
        .iter()
        .find_map(|(_, r)| Some(r.server.as_ref()?.value()?.writes))
        .map(|_| crate::rows::server::ServerConfig::new(report.mode == "quick"));
    if let Some(server) = server {
        row(
            &mut out,
            &format!(
                "8. sync server: {} documents, {} threads, each inserts 1 change into one of its documents and flushes it, {} s in {} slices: durable writes/s (x raw fdatasync in the slices between; postgres: x its single-row commits/s in the slices between)",
                thousands(server.documents),
                server.threads,
                server.seconds,
                server.rounds
            ),
            &columns,
            |r| {
                Some(cell(r.server.as_ref()?, |s| {
                    let ratio = s.ratio_to_single_commits.unwrap_or(s.ratio_to_raw);
                    format!("{} ({ratio:.2}x)", rate(s.writes_per_s))
                }))
            },
            "",
        );
        row(
            &mut out,
            &format!(
                "8. raw fdatasync/s in the {} raw slices alternating with the writers' (slowest / fastest slice)",
                server.rounds
            ),
            &columns,
            |r| {
                Some(cell(r.server.as_ref()?, |s| {
                    format!(
                        "{} ({} / {})",
                        rate(s.raw_fdatasync_per_s),
                        rate(s.raw_range[0]),
                        rate(s.raw_range[1])
                    )
                }))
            },
            "",
        );
        row(
            &mut out,
            "8. flush latency p50 / p99: ms",
            &columns,
            |r| {
                Some(cell(r.server.as_ref()?, |s| {
                    format!("{} / {}", ms(s.flush_p50_ms), ms(s.flush_p99_ms))
                }))
            },
            "",
        );
        row(
            &mut out,
            &format!(
                "8. before the slices: each document opened, given 1 change and flushed, from the {} threads at once: documents stored/s",
                server.threads
            ),
            &columns,
            |r| {
                let server = r.server.as_ref()?.value()?;
                Some(rate(server.stored_per_s?))
            },
            "",
        );
        row(
            &mut out,
            &format!(
                "8. postgres: single-row commits/s in the {} slices after the raw ones (slowest / fastest slice)",
                server.rounds
            ),
            &columns,
            |r| {
                let server = r.server.as_ref()?.value()?;
                let [slowest, fastest] = server.single_commits_range?;
                Some(format!(
                    "{} ({} / {})",
                    rate(server.single_commits_per_s?),
                    rate(slowest),
                    rate(fastest)
                ))
            },
            "",
        );
    }
    if let Some(bare) = &report.bare {
        for (label, design) in [
            (
                "8. without a store, one file per document: a flush appends to its document's file and fdatasyncs it: durable writes/s (x raw fdatasync in the slices between)",
                &bare.file_per_document,
            ),
            (
                "8. without a store, one shared log: flushes that arrive together share one write and one fdatasync: durable writes/s (x raw fdatasync in the slices between)",
                &bare.shared_log,
            ),
        ] {
            let disk = cell(design, |s| {
                format!(
                    "{} ({:.2}x; p50 / p99 {} / {} ms)",
                    rate(s.writes_per_s),
                    s.ratio_to_raw,
                    ms(s.flush_p50_ms),
                    ms(s.flush_p99_ms)
                )
            });
            row(&mut out, label, &columns, |_| None, &disk);
        }
    }
    let sizes = crate::rows::many::sizes(report.mode == "quick");
    let sizes: Vec<String> = sizes.into_iter().map(thousands).collect();
    let sizes = sizes.join("; ");
    row(
        &mut out,
        &format!(
            "9. store of {sizes} documents of 10 changes: open the store / list / open + read the first document / open + read one more (median of 20): ms (one more: x the smallest store)"
        ),
        &columns,
        |r| {
            Some(cell(r.many.as_ref()?, |m| {
                let each: Vec<String> = m
                    .samples
                    .iter()
                    .map(|s| {
                        format!(
                            "{} / {} / {} / {}",
                            ms(s.open_ms),
                            ms(s.list_ms),
                            ms(s.first_doc_ms),
                            ms(s.doc_ms)
                        )
                    })
                    .collect();
                format!("{} ({:.2}x)", each.join("; "), m.doc_ratio)
            }))
        },
        "",
    );
    row(
        &mut out,
        &format!(
            "9. peak resident memory over the process's start, after opening the store / listing / reading 21 documents, and the heap of the list itself: MiB ({sizes} documents)"
        ),
        &columns,
        |r| {
            Some(cell(r.many.as_ref()?, |m| {
                let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
                let each: Vec<String> = m
                    .samples
                    .iter()
                    .map(|s| {
                        format!(
                            "{} / {} / {} (list {})",
                            mib(s.open_kib),
                            mib(s.list_kib),
                            mib(s.doc_kib),
                            mib(s.list_own_kib)
                        )
                    })
                    .collect();
                each.join("; ")
            }))
        },
        "",
    );

    if let Some(replication) = &report.replication {
        crate::rows::replication::markdown(&mut out, replication);
    }
    if let Some(yjs) = &report.yjs {
        crate::rows::yjs::markdown(&mut out, yjs);
    }

    if !report.targets.is_empty() {
        if report.mode == "quick" {
            let _ = writeln!(
                out,
                "\nA quick run's sizes are too small for the targets to mean anything; \
                 they are checked only so that the check keeps working."
            );
        }
        let _ = writeln!(out, "\n| column | row | target | measured | met |");
        let _ = writeln!(out, "|---|---:|---|---:|---|");
        for t in &report.targets {
            let measured = t.measured.map(|m| format!("{m:.2}")).unwrap_or("—".into());
            let met = match (t.met, t.measured) {
                (Some(true), _) => "yes",
                (Some(false), Some(_)) => "**no**",
                (Some(false), None) => "**no** (the row failed)",
                (None, _) => "not measured",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {measured} | {met} |",
                t.column, t.row, t.target
            );
        }
    }
    if let Some(samod) = &report.samod {
        out.push_str(&crate::samod::markdown(samod));
    }
    out
}

fn row(
    out: &mut String,
    label: &str,
    columns: &[(Column, &ColumnReport)],
    value: impl Fn(&ColumnReport) -> Option<String>,
    disk: &str,
) {
    let cells: Vec<String> = columns
        .iter()
        .map(|(_, r)| value(r).unwrap_or_default())
        .collect();
    if cells.iter().all(String::is_empty) && disk.is_empty() {
        return;
    }
    let _ = writeln!(out, "| {label} | {} | {disk} |", cells.join(" | "));
}

fn cell<T>(cell: &Cell<T>, show: impl Fn(&T) -> String) -> String {
    match cell {
        Cell::Value(v) => show(v),
        Cell::Skipped(reason) => format!("skipped: {reason}"),
        Cell::NotApplicable(_) => "n/a".into(),
        Cell::Failed(error) => format!("error: {}", error.replace('|', "/")),
    }
}

/// A rate with three significant digits and a k or M suffix.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Milliseconds, with decimals only where they matter.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An integer with thousands separated by commas.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(rate(1_234_567.0), "1.23 M");
        assert_eq!(rate(45_600.0), "46 k");
        assert_eq!(rate(812.3), "812");
        assert_eq!(ms(1234.4), "1234");
    }
}
