//! Row 7: a real editing trace through the automerge integration, one commit per edit,
//! on every backend and in memory; then reloading the compacted store against
//! automerge's own `load` of the same bytes. Each replay runs in a child process
//! ([`replay`](crate::rows::replay) is its side).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use persister_traces::Trace;

use crate::Result;
use crate::columns::Column;
use crate::results::{Cell, ColumnReport, Config, TraceRun};
use crate::rows::median;

/// The trace replayed.
pub const TRACE: &str = "automerge-paper";

/// The edits of a trace to replay, and the text they must leave.
pub struct Edits {
    /// `(position, deleted, inserted)` in Unicode scalar values, in order.
    pub edits: Vec<(usize, usize, String)>,
    /// The text after them.
    pub end_text: String,
}

/// The trace's file; `Err` holds the reason to print for a skipped row.
pub fn locate() -> std::result::Result<PathBuf, String> {
    persister_traces::find(TRACE).ok_or_else(|| {
        format!(
            "trace {TRACE} not found (put the traces in ../shared/traces or set PERSISTER_TRACES)"
        )
    })
}

/// Loads the trace, cut after `limit` edits; `Err` holds the reason to print for a
/// skipped row.
pub fn load(limit: Option<usize>) -> std::result::Result<Edits, String> {
    let path = locate()?;
    let trace = Trace::load(&path).map_err(|e| e.to_string())?;
    if trace.is_concurrent() {
        return Err(format!(
            "trace {TRACE} is concurrent; a sequential trace is needed"
        ));
    }
    let mut edits = Vec::new();
    let mut txns = 0;
    for txn in &trace.txns {
        if limit.is_some_and(|limit| edits.len() >= limit) {
            break;
        }
        edits.extend(
            txn.patches
                .iter()
                .map(|p| (p.pos(), p.delete(), p.insert().to_owned())),
        );
        txns += 1;
    }
    let end_text = trace.text_after(txns).map_err(|e| e.to_string())?;
    if !trace.start_content.is_empty() {
        edits.insert(0, (0, 0, trace.start_content.clone()));
    }
    Ok(Edits { edits, end_text })
}

/// The hidden subcommand that replays the trace for one column in a child process.
pub const SUBCOMMAND: &str = "trace-run";

/// What the child prints on stderr every [`PROGRESS_EVERY`] edits.
pub const PROGRESS: &str = "progress ";

/// How often the child reports progress, in edits.
pub const PROGRESS_EVERY: usize = 1_000;

/// How long the child may go without reporting progress before it is deemed hung.
const STALL: Duration = Duration::from_secs(60);

/// Replays the trace for one column in a child process, so that a backend that hangs
/// (sled 0.34 can deadlock in its own thread pool) costs one failed cell, not the whole
/// run, and no column inherits another's threads or heap. The child reports progress;
/// one that reports nothing for a minute, or runs past `config.trace_timeout_s`, is
/// stopped.
fn run_child(config: &Config, column: Column, dir: &Path) -> Result<TraceRun> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([SUBCOMMAND, "--column", column.name(), "--dir"])
        .arg(dir)
        .args(["--flush-every", &config.trace_flush_every.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(edits) = config.trace_edits {
        command.args(["--edits", &edits.to_string()]);
    }
    let mut child = command.spawn()?;
    let watch = Arc::new(Mutex::new(Watch {
        last: Instant::now(),
        edits: 0,
        messages: Vec::new(),
    }));
    let reader = child.stderr.take().map(|stderr| {
        let watch = Arc::clone(&watch);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::io::Result::ok)
            {
                let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
                watch.last = Instant::now();
                match line.strip_prefix(PROGRESS).and_then(|n| n.parse().ok()) {
                    Some(edits) => watch.edits = edits,
                    None => watch.messages.push(line),
                }
            }
        })
    });
    let deadline = Instant::now() + Duration::from_secs(config.trace_timeout_s);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let (stalled, edits) = {
            let watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
            (watch.last.elapsed() >= STALL, watch.edits)
        };
        if stalled || Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            let why = if stalled {
                format!("no progress for {} s", STALL.as_secs())
            } else {
                format!("not done after {} s", config.trace_timeout_s)
            };
            return Err(format!("stopped: {why}, after {edits} edits").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if !status.success() {
        let watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        return Err(format!(
            "the child process failed ({status}): {}",
            watch.messages.join(" / ")
        )
        .into());
    }
    let line = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)
        .map_err(|e| format!("the child process printed {line:?}: {e}"))?)
}

/// What the parent knows of a running child.
struct Watch {
    /// When the child last printed anything.
    last: Instant,
    /// The edits it last reported done.
    edits: usize,
    /// Whatever else it printed (errors).
    messages: Vec<String>,
}

/// Row 7 for every column, in `rounds` rounds that each replay memory and then every
/// backend, so that a drift of the machine hits the baseline as much as the backends.
/// A column's ratio is the median over rounds of its time over memory's in the same
/// round; its reported run is its median one.
pub fn run_all(
    config: &Config,
    columns: &[Column],
    reports: &mut [ColumnReport],
    base: &Path,
    progress: &dyn Fn(&str),
) {
    if let Err(reason) = locate() {
        for report in reports.iter_mut() {
            report.trace = Some(Cell::Skipped(reason.clone()));
        }
        return;
    }
    let replayed: Vec<Column> = columns
        .iter()
        .copied()
        .filter(|&c| c != Column::Peer)
        .collect();
    let mut runs: Vec<(Column, Vec<Option<TraceRun>>)> =
        replayed.iter().map(|&c| (c, Vec::new())).collect();
    let mut failures: Vec<(Column, String)> = Vec::new();
    for round in 0..config.trace_rounds.max(1) {
        for (column, samples) in runs.iter_mut() {
            if failures.iter().any(|(c, _)| c == column) {
                continue;
            }
            progress(&format!(
                "row 7: {TRACE} trace, {column}, round {}",
                round + 1
            ));
            let dir = base.join(format!("trace-{column}-{round}"));
            match run_child(config, *column, &dir) {
                Ok(run) => samples.push(Some(run)),
                Err(e) => {
                    samples.push(None);
                    failures.push((*column, e.to_string()));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let memory: Option<Vec<Option<TraceRun>>> = runs
        .iter()
        .find(|(c, _)| *c == Column::Memory)
        .map(|(_, s)| s.clone());
    for report in reports.iter_mut() {
        let Some(column) = Column::ALL.into_iter().find(|c| c.name() == report.column) else {
            continue;
        };
        if column == Column::Peer {
            report.trace = Some(Cell::NotApplicable(
                "the peer runs on automerge 0.4; this row drives automerge 0.12".into(),
            ));
            continue;
        }
        if let Some((_, error)) = failures.iter().find(|(c, _)| *c == column) {
            report.trace = Some(Cell::Failed(error.clone()));
            continue;
        }
        let Some((_, samples)) = runs.iter_mut().find(|(c, _)| *c == column) else {
            continue;
        };
        let samples: Vec<TraceRun> = samples.drain(..).flatten().collect();
        let times: Vec<f64> = samples.iter().map(|r| r.replay_s).collect();
        let ratios = |of: fn(&TraceRun) -> f64| -> Vec<f64> {
            match &memory {
                Some(memory) => samples
                    .iter()
                    .zip(memory)
                    .filter_map(|(run, m)| Some(of(run) / of(m.as_ref()?)))
                    .collect(),
                None => Vec::new(),
            }
        };
        let wall = ratios(|r| r.replay_s);
        let own = ratios(|r| r.replay_s - r.runnable_wait_s);
        let cpu = ratios(|r| r.cpu_s);
        let mid = median(times.clone());
        let Some(mut run) = samples.into_iter().min_by(|a, b| {
            (a.replay_s - mid)
                .abs()
                .total_cmp(&(b.replay_s - mid).abs())
        }) else {
            continue;
        };
        run.ratio_to_memory = (!wall.is_empty()).then(|| median(wall.clone()));
        run.own_ratio_to_memory = (!own.is_empty()).then(|| median(own.clone()));
        run.own_ratio_samples = own;
        run.cpu_ratio_to_memory = (!cpu.is_empty()).then(|| median(cpu));
        run.replay_samples_s = times;
        run.ratio_samples = wall;
        report.trace = Some(Cell::Value(run));
    }
}
