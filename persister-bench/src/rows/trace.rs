//! Row 7: a real editing trace through the automerge integration, one commit per edit,
//! on every backend and in memory; then reloading the compacted store against
//! automerge's own `load` of the same bytes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DynPersister, Persister};
use persister_traces::Trace;

use crate::Result;
use crate::columns::{Column, Location, document_id};
use crate::results::{Config, TraceRun};

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
const PROGRESS: &str = "progress ";

/// How often the child reports progress, in edits.
const PROGRESS_EVERY: usize = 1_000;

/// How long the child may go without reporting progress before it is deemed hung.
const STALL: Duration = Duration::from_secs(60);

/// Replays the trace for one column in a child process, so that a backend that hangs
/// (sled 0.34 can deadlock in its own thread pool) costs one failed cell, not the whole
/// run, and no column inherits another's threads or heap. The child reports progress;
/// one that reports nothing for a minute, or runs past `config.trace_timeout_s`, is
/// stopped.
pub fn run(config: &Config, column: Column, dir: &Path) -> Result<TraceRun> {
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

/// The child's side: loads the trace, replays it for `column` in `dir`, and prints
/// the [`TraceRun`] as one line of JSON.
pub fn child(column: Column, dir: &Path, edits: Option<usize>, flush_every: usize) -> Result<()> {
    let trace = load(edits)?;
    let run = replay_and_reload(column, dir, &trace, flush_every)?;
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// What the replay of one column measured, before the ratio to memory is known.
fn replay_and_reload(
    column: Column,
    dir: &Path,
    edits: &Edits,
    flush_every: usize,
) -> Result<TraceRun> {
    std::fs::create_dir_all(dir)?;
    let location = match column {
        Column::Memory => Location::Memory(persister_core::MemoryStore::new()),
        Column::Peer => return Err("the peer has no automerge 0.12 integration".into()),
        _ => Location::Dir(dir.to_owned()),
    };
    let (replay_s, compactions) = replay(flush_every, column, &location, edits)?;

    // Reload what the replay left (the last compacted document and the changes made
    // since), as a program that starts would.
    let start = Instant::now();
    let store = column.open_store(&location)?;
    let doc = PersistentDoc::load(store.open_document(&document_id())?)?;
    let reload_ms = start.elapsed().as_secs_f64() * 1e3;
    check_text(doc.doc(), &edits.end_text)?;

    // Automerge's own load of the same bytes: the document followed by the changes.
    let mut bytes = doc.persister().get_document()?.unwrap_or_default();
    for change in doc.persister().get_changes()? {
        bytes.extend_from_slice(&change);
    }
    drop(doc);
    let start = Instant::now();
    let plain = AutoCommit::load(&bytes)?;
    let automerge_load_ms = start.elapsed().as_secs_f64() * 1e3;
    check_text(&plain, &edits.end_text)?;

    Ok(TraceRun {
        edits: edits.edits.len(),
        replay_s,
        ratio_to_memory: None,
        compactions,
        reload_ms,
        automerge_load_ms,
        reload_ratio: reload_ms / automerge_load_ms,
    })
}

/// Replays every edit as one commit, flushing every `flush_every` edits and
/// compacting when the default trigger fires; returns the time and the compactions.
fn replay(
    flush_every: usize,
    column: Column,
    location: &Location,
    edits: &Edits,
) -> Result<(f64, u64)> {
    let store = column.open_store(location)?;
    let options = Options::default()
        .with_flush(FlushPolicy::EveryWrites(flush_every as u64))
        .with_compaction(CompactionTrigger::default())
        .with_actor(automerge::ActorId::from(&[0x42; 16][..]));
    let persister: DynPersister = store.open_document(&document_id())?;
    let start = Instant::now();
    let mut doc = PersistentDoc::load_with(persister, options)?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    let mut compactions = 0;
    let mut stored = doc.sizes().change_count;
    for (i, (pos, delete, insert)) in edits.edits.iter().enumerate() {
        doc.edit(|d| d.splice_text(&text, *pos, *delete as isize, insert))?;
        if (i + 1).is_multiple_of(PROGRESS_EVERY) {
            eprintln!("{PROGRESS}{}", i + 1);
        }
        let now = doc.sizes().change_count;
        if now < stored {
            compactions += 1;
        }
        stored = now;
    }
    doc.flush()?;
    let replay_s = start.elapsed().as_secs_f64();
    check_text(doc.doc(), &edits.end_text)?;
    doc.close()?;
    Ok((replay_s, compactions))
}

/// Checks that the document's text is what the trace says it must be.
fn check_text(doc: &AutoCommit, expected: &str) -> Result<()> {
    let (_, text) = doc
        .get(ROOT, "text")?
        .ok_or("the replayed document has no text object")?;
    if doc.text(&text)? != expected {
        return Err("the replayed text differs from the trace's".into());
    }
    Ok(())
}
