//! Row 7 for Yjs: the trace of row 7 through `persister-yrs` (one yrs transaction per
//! edit, flush every `trace_flush_every` edits, automatic compaction) on redb and fs,
//! against the same replay on a plain `yrs::Doc` in memory; then reloading the store
//! against yrs' own decode of the same bytes (the document applied in one transaction,
//! then the updates in another, as `PersistentYDoc::load` does).
//!
//! The peer, when its column is wanted, is `yrs-kvstore` on LMDB (see [`yjs_peer`]), on
//! yrs 0.19: its ratio is to the same replay on a plain yrs 0.19 `Doc`, and its reload
//! to yrs 0.19's decode of the bytes it stored.
//!
//! [`yjs_peer`]: crate::rows::yjs_peer
//!
//! Each round replays memory, redb and fs (then yrs 0.19 and the peer) in turn, each
//! in a child process of its own
//! (as row 7 does), so that no replay inherits the heap an earlier one left: how
//! yrs' items lie in memory decides how fast its position search walks them, and a
//! heap fragmented by an earlier replay slows the next one. A column's ratio is the
//! median over rounds of its own time (wall minus run-queue wait) over memory's in the
//! same round.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use persister_core::{DynPersister, Persister};
use persister_yrs::{CompactionTrigger, FlushPolicy, Options, PersistentYDoc};
use serde::Serialize;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, Text, TextRef, Transact, TransactionMut, Update};

use crate::Result;
use crate::clock::Stopwatch;
use crate::columns::{Column, Location, document_id};
use crate::report::thousands;
use crate::results::{Cell, Config, TargetCheck};
use crate::rows::trace::{Edits, TRACE, load};
use crate::rows::{median, yjs_peer};

/// The hidden subcommand that replays the trace once in a child process.
pub const SUBCOMMAND: &str = "yjs-run";

/// The columns replayed through `persister-yrs`.
const COLUMNS: [Column; 2] = [Column::Redb, Column::Fs];
/// Times each reload is measured; the fastest counts, as for yrs' own decode.
const RELOADS: usize = 5;
/// Rounds of a full run (a quick run's single round stays one): more than row 7's
/// three, because one round's ratio on a shared machine swings by 0.2 either way.
const ROUNDS: usize = 5;
/// The name of the text every replay types into (the peer's too).
pub(crate) const TEXT: &str = "text";
/// The targets: (column, replay over memory at most, reload over yrs' decode at most).
const TARGETS: [(Column, f64, f64); 2] = [(Column::Redb, 1.25, 1.1), (Column::Fs, 1.25, 1.1)];

/// A column's rounds so far: (own time s, compactions) each, or why it failed.
type Samples = (Column, Vec<(f64, u64)>, Option<String>);
/// The peer's rounds so far: (yrs 0.19 in memory s, (own time s, compactions)) each, or
/// why it failed.
type PeerSamples = (Vec<(f64, (f64, u64))>, Option<String>);

/// Row 7 for Yjs.
#[derive(Clone, Debug, Serialize)]
pub struct YjsRow {
    /// Edits replayed, one transaction each.
    pub edits: usize,
    /// The plain `yrs::Doc` replay, own time of the median round, s.
    pub memory_replay_s: f64,
    /// Every round's plain replay, own time, s.
    pub memory_samples_s: Vec<f64>,
    /// Each persisted column.
    pub columns: Vec<(String, Cell<YjsRun>)>,
    /// The peer, `yrs-kvstore` on LMDB, when its column is wanted.
    pub peer: Option<Cell<PeerRun>>,
}

/// The peer's column of row 7 for Yjs.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRun {
    /// The plain yrs 0.19 replay, own time of the median round, s.
    pub yrs019_memory_s: f64,
    /// Own time of the median round's replay through `yrs-kvstore`, s.
    pub replay_s: f64,
    /// Median over rounds of the replay's own time over yrs 0.19's in memory in the
    /// same round.
    pub ratio_to_yrs019_memory: f64,
    /// Every round's ratio.
    pub ratio_samples: Vec<f64>,
    /// Times `flush_doc_with` merged the updates into the state, in the last round.
    pub compactions: u64,
    /// Open the LMDB environment and `load_doc`, own time, ms, the fastest of five.
    pub reload_ms: f64,
    /// yrs 0.19's decode and apply of the same bytes into a new `Doc`, ms, the fastest
    /// of five.
    pub yrs019_decode_ms: f64,
    /// `reload_ms / yrs019_decode_ms`.
    pub reload_ratio: f64,
}

/// One column of row 7 for Yjs.
#[derive(Clone, Debug, Serialize)]
pub struct YjsRun {
    /// Own time of the median round's replay, s.
    pub replay_s: f64,
    /// Median over rounds of the replay's own time over memory's in the same round.
    pub ratio_to_memory: f64,
    /// Every round's ratio.
    pub ratio_samples: Vec<f64>,
    /// Compactions the default trigger caused in the last round.
    pub compactions: u64,
    /// Open the store and load the document, own time, ms, the fastest of five.
    pub reload_ms: f64,
    /// yrs' decode and apply of the same bytes into a new `Doc`, ms, the fastest of five.
    pub yrs_decode_ms: f64,
    /// `reload_ms / yrs_decode_ms`.
    pub reload_ratio: f64,
}

/// Runs the row; `Err` holds the reason it was skipped (no trace, not ASCII).
pub fn run(
    config: &Config,
    with_peer: bool,
    base: &Path,
    progress: &dyn Fn(&str),
) -> std::result::Result<YjsRow, String> {
    let edits = load(config.trace_edits)?;
    // yrs counts bytes here and the trace counts Unicode scalar values: the same in ASCII.
    if !edits.end_text.is_ascii() || edits.edits.iter().any(|(_, _, s)| !s.is_ascii()) {
        return Err(format!(
            "trace {TRACE} is not ASCII; positions would need converting"
        ));
    }
    let mut memory = Vec::new();
    let mut samples: Vec<Samples> = COLUMNS.iter().map(|&c| (c, Vec::new(), None)).collect();
    let mut peer: Option<PeerSamples> = with_peer.then(|| (Vec::new(), None));
    let rounds = match config.trace_rounds {
        0 | 1 => 1,
        n => n.max(ROUNDS),
    };
    for round in 0..rounds {
        progress(&format!(
            "row 7 (Yjs): {TRACE} trace, yrs in memory, round {}",
            round + 1
        ));
        let dir = base.join(format!("yjs-memory-{round}"));
        let plain = run_child(config, None, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        memory.push(plain.map_err(|e| e.to_string())?.0);
        for (column, runs, failed) in samples.iter_mut() {
            if failed.is_some() {
                continue;
            }
            progress(&format!(
                "row 7 (Yjs): {TRACE} trace, {column}, round {}",
                round + 1
            ));
            let dir = base.join(format!("yjs-{column}-{round}"));
            match run_child(config, Some(*column), &dir) {
                Ok(run) => runs.push(run),
                Err(e) => *failed = Some(e.to_string()),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        if let Some((runs, None)) = &mut peer {
            progress(&format!(
                "row 7 (Yjs): {TRACE} trace, yrs 0.19 in memory and yrs-kvstore, round {}",
                round + 1
            ));
            let dir = base.join(format!("yjs-peer-{round}"));
            let plain = run_child(config, Some(Column::Peer), &dir.join("memory"));
            let persisted = plain.and_then(|(plain, _)| {
                let run = run_child_with(config, Some(Column::Peer), &dir, false)?;
                Ok((plain, run))
            });
            match persisted {
                Ok(round) => runs.push(round),
                Err(e) => peer = Some((Vec::new(), Some(e.to_string()))),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let peer = peer.map(|(runs, failed)| match failed {
        Some(e) => Cell::Failed(e),
        None => Cell::from_result(finish_peer(config, base, &edits, &runs)),
    });
    let mut columns = Vec::new();
    for (column, runs, failed) in samples {
        let cell = match failed {
            Some(e) => Cell::Failed(e),
            None => Cell::from_result(finish(config, column, base, &edits, &runs, &memory)),
        };
        columns.push((column.name().to_owned(), cell));
    }
    Ok(YjsRow {
        edits: edits.edits.len(),
        memory_replay_s: median(memory.clone()),
        memory_samples_s: memory,
        columns,
        peer,
    })
}

/// The peer's ratios, round by round, and the reload of one more replay (kept on disk
/// for it).
fn finish_peer(
    config: &Config,
    base: &Path,
    edits: &Edits,
    runs: &[(f64, (f64, u64))],
) -> Result<PeerRun> {
    let ratios: Vec<f64> = runs.iter().map(|(m, (s, _))| s / m).collect();
    let dir = base.join("yjs-peer-reload");
    let (_, compactions) = yjs_peer::replay_persisted(config.trace_flush_every, &dir, edits)?;
    let reload = yjs_peer::reload(&dir, &edits.end_text, RELOADS);
    let _ = std::fs::remove_dir_all(&dir);
    let (reload_ms, yrs019_decode_ms) = reload?;
    Ok(PeerRun {
        yrs019_memory_s: median(runs.iter().map(|(m, _)| *m).collect()),
        replay_s: median(runs.iter().map(|(_, (s, _))| *s).collect()),
        ratio_to_yrs019_memory: median(ratios.clone()),
        ratio_samples: ratios,
        compactions,
        reload_ms,
        yrs019_decode_ms,
        reload_ratio: reload_ms / yrs019_decode_ms,
    })
}

/// The ratios of `runs` to `memory`, round by round, and the reload of one more replay
/// (kept on disk for it).
fn finish(
    config: &Config,
    column: Column,
    base: &Path,
    edits: &Edits,
    runs: &[(f64, u64)],
    memory: &[f64],
) -> Result<YjsRun> {
    let ratios: Vec<f64> = runs.iter().zip(memory).map(|((s, _), m)| s / m).collect();
    let times: Vec<f64> = runs.iter().map(|(s, _)| *s).collect();
    let dir = base.join(format!("yjs-{column}-reload"));
    let (_, compactions) = replay_persisted(config.trace_flush_every, column, &dir, edits)?;
    let reload = reload(column, &dir, &edits.end_text);
    let _ = std::fs::remove_dir_all(&dir);
    let (reload_ms, yrs_decode_ms) = reload?;
    Ok(YjsRun {
        replay_s: median(times),
        ratio_to_memory: median(ratios.clone()),
        ratio_samples: ratios,
        compactions,
        reload_ms,
        yrs_decode_ms,
        reload_ratio: reload_ms / yrs_decode_ms,
    })
}

/// Replays the trace once in a child process: on yrs in memory (`column` `None`) or
/// through `persister-yrs` on `column`, with its store in `dir`; own time (s) and
/// compactions. The peer's column is yrs 0.19 in memory here; see [`run_child_with`].
fn run_child(config: &Config, column: Option<Column>, dir: &Path) -> Result<(f64, u64)> {
    run_child_with(config, column, dir, true)
}

/// [`run_child`], where the peer's column is the replay through `yrs-kvstore` unless
/// `in_memory`.
fn run_child_with(
    config: &Config,
    column: Option<Column>,
    dir: &Path,
    in_memory: bool,
) -> Result<(f64, u64)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(SUBCOMMAND)
        .arg("--dir")
        .arg(dir)
        .args(["--flush-every", &config.trace_flush_every.to_string()]);
    if let Some(column) = column {
        command.args(["--column", column.name()]);
        if column == Column::Peer && in_memory {
            command.arg("--in-memory");
        }
    }
    if let Some(edits) = config.trace_edits {
        command.args(["--edits", &edits.to_string()]);
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "the child process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)
        .map_err(|e| format!("the child process printed {line:?}: {e}"))?)
}

/// The child's side of [`run_child`]: one replay, its `(own s, compactions)` printed
/// as JSON. The peer's column replays through `yrs-kvstore`, or on yrs 0.19 in memory
/// when `in_memory`.
pub fn child(
    column: Option<Column>,
    in_memory: bool,
    dir: &Path,
    edits: Option<usize>,
    flush_every: usize,
) -> Result<()> {
    let edits = load(edits)?;
    let run = match column {
        None => (replay_plain(&edits)?, 0),
        Some(Column::Peer) if in_memory => (yjs_peer::replay_plain(&edits)?, 0),
        Some(Column::Peer) => yjs_peer::replay_persisted(flush_every, dir, &edits)?,
        Some(column) => replay_persisted(flush_every, column, dir, &edits)?,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// Applies one edit in `txn`.
fn apply(
    txn: &mut TransactionMut<'_>,
    text: &TextRef,
    (pos, delete, insert): &(usize, usize, String),
) {
    if *delete > 0 {
        text.remove_range(txn, *pos as u32, *delete as u32);
    }
    if !insert.is_empty() {
        text.insert(txn, *pos as u32, insert);
    }
}

/// The client id of every replay. yrs picks a random one of 53 bits by default, whose
/// encoded length (most often 8 bytes, one time in sixteen 7 or fewer) changes the size
/// of every update, and so when compactions happen and what a reload decodes: a fixed
/// id of the common length makes runs compare.
const CLIENT_ID: u64 = 0x1a_bcde_f012_3456;

/// The baseline: every edit as one transaction on a plain `yrs::Doc`; own time, s.
fn replay_plain(edits: &Edits) -> Result<f64> {
    let watch = Stopwatch::start();
    let doc = Doc::with_client_id(CLIENT_ID);
    let text = doc.get_or_insert_text(TEXT);
    for edit in &edits.edits {
        apply(&mut doc.transact_mut(), &text, edit);
    }
    let own = watch.lap().own.as_secs_f64();
    check(&text.get_string(&doc.transact()), &edits.end_text)?;
    Ok(own)
}

/// Every edit as one transaction through `persister-yrs`; own time (s) and
/// compactions.
fn replay_persisted(
    flush_every: usize,
    column: Column,
    dir: &Path,
    edits: &Edits,
) -> Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let store = column.open_store(&Location::Dir(dir.to_owned()))?;
    let options = Options::default()
        .with_client_id(ClientID::new(CLIENT_ID))
        .with_flush(FlushPolicy::EveryBatches(flush_every as u64))
        .with_compaction(CompactionTrigger::default());
    let persister: DynPersister = store.open_document(&document_id())?;
    let watch = Stopwatch::start();
    let mut doc = PersistentYDoc::load_with(persister, options)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    let (mut compactions, mut stored) = (0, 0);
    for edit in &edits.edits {
        doc.edit(|txn| apply(txn, &text, edit))?;
        let now = doc.sizes().change_count;
        compactions += u64::from(now < stored);
        stored = now;
    }
    doc.flush()?;
    let own = watch.lap().own.as_secs_f64();
    check(&text.get_string(&doc.doc().transact()), &edits.end_text)?;
    Ok((own, compactions))
}

/// Reopens the store and loads the document, then decodes the same bytes with yrs
/// alone, alternating; the fastest of [`RELOADS`] of each, ms of own time.
fn reload(column: Column, dir: &Path, expected: &str) -> Result<(f64, f64)> {
    let (mut reload_ms, mut decode_ms) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..RELOADS {
        let watch = Stopwatch::start();
        let store = column.open_store(&Location::Dir(dir.to_owned()))?;
        let doc = PersistentYDoc::load(store.open_document(&document_id())?)?;
        reload_ms = reload_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        let text = doc.doc().get_or_insert_text(TEXT);
        check(&text.get_string(&doc.doc().transact()), expected)?;
        let mut updates: Vec<Vec<u8>> = doc.persister().get_document()?.into_iter().collect();
        let stored_document = updates.len();
        updates.extend(doc.persister().get_changes()?);
        drop(doc);
        drop(store);

        let watch = Stopwatch::start();
        let plain = Doc::new();
        let (document, changes) = updates.split_at(stored_document);
        for part in [document, changes] {
            let mut txn = plain.transact_mut();
            for update in part {
                txn.apply_update(Update::decode_v1(update)?)?;
            }
        }
        decode_ms = decode_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        let text = plain.get_or_insert_text(TEXT);
        check(&text.get_string(&plain.transact()), expected)?;
    }
    Ok((reload_ms, decode_ms))
}

/// Fails unless a replay's text is the trace's `expected` end text.
pub(crate) fn check(text: &str, expected: &str) -> Result<()> {
    if text != expected {
        return Err("the replayed Yjs text differs from the trace's".into());
    }
    Ok(())
}

/// The row's targets, checked.
pub fn targets(row: &YjsRow) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    for (column, replay_max, reload_max) in TARGETS {
        let run = row
            .columns
            .iter()
            .find(|(c, _)| c == column.name())
            .map(|(_, cell)| cell);
        let value = run.and_then(Cell::value);
        let failed = run.is_some_and(Cell::failed);
        for (target, measured, max) in [
            (
                format!("Yjs trace replay at most {replay_max:.2}x yrs in memory (own time)"),
                value.map(|r| r.ratio_to_memory),
                replay_max,
            ),
            (
                format!("Yjs reload at most {reload_max:.1}x yrs' own decode"),
                value.map(|r| r.reload_ratio),
                reload_max,
            ),
        ] {
            checks.push(TargetCheck {
                column: column.name().to_owned(),
                row: 7,
                target,
                measured,
                met: measured.map(|m| m <= max).or(failed.then_some(false)),
            });
        }
    }
    checks
}

/// The row as a markdown table of its own.
pub fn markdown(out: &mut String, row: &Cell<YjsRow>) {
    let row = match row {
        Cell::Value(row) => row,
        Cell::Skipped(why) | Cell::NotApplicable(why) => {
            let _ = writeln!(out, "\n7 (Yjs). skipped: {why}");
            return;
        }
        Cell::Failed(why) => {
            let _ = writeln!(out, "\n7 (Yjs). failed: {why}");
            return;
        }
    };
    let _ = writeln!(
        out,
        "\n7 (Yjs). {TRACE} trace through persister-yrs, {} edits, 1 transaction each: own time\n",
        thousands(row.edits)
    );
    let mut names: Vec<&str> = row.columns.iter().map(|(c, _)| c.as_str()).collect();
    if row.peer.is_some() {
        names.push("yrs-kvstore 0.3 on LMDB (yrs 0.19)");
    }
    let _ = writeln!(out, "| row | yrs in memory | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(names.len()));
    let peer = |f: &dyn Fn(&PeerRun) -> String| -> Vec<String> {
        row.peer
            .iter()
            .map(|cell| match cell {
                Cell::Value(run) => f(run),
                Cell::Failed(e) => format!("error: {e}"),
                Cell::Skipped(why) | Cell::NotApplicable(why) => why.clone(),
            })
            .collect()
    };
    let show = |f: &dyn Fn(&YjsRun) -> String| -> Vec<String> {
        row.columns
            .iter()
            .map(|(_, cell)| match cell {
                Cell::Value(run) => f(run),
                Cell::Failed(e) => format!("error: {e}"),
                Cell::Skipped(why) | Cell::NotApplicable(why) => why.clone(),
            })
            .collect()
    };
    let mut replay = show(&|r| format!("{:.2} ({:.2}x)", r.replay_s, r.ratio_to_memory));
    replay.extend(peer(&|r| {
        format!(
            "{:.2} ({:.2}x yrs 0.19 in memory, {:.2}; {} compactions)",
            r.replay_s, r.ratio_to_yrs019_memory, r.yrs019_memory_s, r.compactions
        )
    }));
    let _ = writeln!(
        out,
        "| replay: s (x yrs in memory) | {:.2} | {} |",
        row.memory_replay_s,
        replay.join(" | ")
    );
    let mut reload = show(&|r| format!("{:.1} ({:.2}x)", r.reload_ms, r.reload_ratio));
    reload.extend(peer(&|r| {
        format!(
            "{:.1} ({:.2}x yrs 0.19's decode)",
            r.reload_ms, r.reload_ratio
        )
    }));
    let _ = writeln!(
        out,
        "| reload: ms (x yrs' decode of the same bytes) | | {} |",
        reload.join(" | ")
    );
}
