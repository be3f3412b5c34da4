//! `persister demo`: an editing session on an Automerge text, persisted on a real
//! store as an application would: every edit written as it happens, a flush every N
//! edits, compaction when `sizes()` says so, then the store reopened and the text
//! checked. Run again, it continues the same document.

mod meta;
mod report;
mod source;
mod timed;
mod typing;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, TextEncoding};
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DocumentId, DynPersister, Persister};

use self::meta::Meta;
use self::report::{Report, Timings, TraceProgress};
use self::source::{Source, TraceReplay};
use self::timed::Timed;
use self::typing::Typist;
use crate::cli::DemoArgs;
use crate::commands::read_only_options;
use crate::error::io_error;
use crate::output::{print_json, progress};
use crate::{Access, Backend, CliError, OpenStore};

/// The demo's document.
const DOCUMENT: &str = "demo";

type Doc = PersistentDoc<Timed<DynPersister>>;

pub(crate) fn run(args: &DemoArgs, json: bool) -> Result<(), CliError> {
    let mut source = match &args.trace {
        Some(path) => Source::Trace(TraceReplay::load(path)?),
        None => Source::Typing(Typist::new(0, 0)),
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| io_error("create", &args.dir, e))?;
    let path = store_path(&args.dir, args.backend);
    let id = DocumentId::from(DOCUMENT);
    let mut timings = Timings::default();

    let started = Instant::now();
    let store = if path.exists() {
        OpenStore::existing(&path, Some(args.backend), Access::Write)?
    } else {
        OpenStore::create(&path, args.backend)?
    };
    timings.open = started.elapsed();
    let started = Instant::now();
    let persister = Timed::new(store.open_document(&id)?.persister);
    let options = Options::default()
        .with_flush(FlushPolicy::EveryWrites(args.flush_every))
        .with_compaction(CompactionTrigger::never())
        .with_text_encoding(TextEncoding::UnicodeCodePoint);
    let mut doc = PersistentDoc::load_with(persister, options)?;
    timings.load = started.elapsed();
    let loaded_sizes = doc.sizes();

    let meta = Meta::read(doc.doc())?;
    let label = source.label();
    if let Some(made_by) = meta.source.as_deref().filter(|s| *s != label) {
        return Err(CliError::new(
            format!(
                "the demo document in {} was made by {made_by}, not {label}",
                path.display()
            ),
            "run the demo as it was first run, or give it another --dir",
        ));
    }
    let text = match &meta.text {
        Some(text) => text.clone(),
        None => doc.edit(|d| {
            let text = d.put_object(ROOT, meta::TEXT, ObjType::Text)?;
            d.put(ROOT, meta::SOURCE, label.as_str())?;
            Ok(text)
        })?,
    };
    let mut model: Vec<char> = doc.doc().text(&text).map_err(bug)?.chars().collect();
    let loaded_chars = model.len();
    let session = meta.sessions + 1;
    match &mut source {
        Source::Typing(typist) => *typist = Typist::new(session, model.len()),
        Source::Trace(replay) => {
            replay.position = usize::try_from(meta.trace_position).unwrap_or(usize::MAX);
            let expected = replay.trace.text_after(replay.position).map_err(|e| {
                CliError::new(e.to_string(), "give the trace the document was made with")
            })?;
            if model.iter().copied().ne(expected.chars()) {
                return Err(CliError::new(
                    format!(
                        "the demo document's text is not the text of {} after {} transactions",
                        label, replay.position
                    ),
                    "give the trace the document was made with, or another --dir",
                ));
            }
        }
    }

    let stats = edit(&mut doc, &text, &mut model, &mut source, args.edits)?;
    timings.compact = stats.compact_time;
    let trace_position = match &source {
        Source::Trace(replay) => replay.position as i64,
        Source::Typing(_) => 0,
    };
    doc.edit(|d| {
        d.put(ROOT, meta::SESSIONS, session as i64)?;
        d.put(ROOT, meta::EDITS, (meta.edits + stats.edits) as i64)?;
        if trace_position > 0 {
            d.put(ROOT, meta::TRACE_POSITION, trace_position)?;
        }
        Ok(())
    })?;
    let timed = doc.close()?;
    timings.flush = timed.flush_time;
    timings.edit = stats
        .loop_time
        .saturating_sub(stats.loop_flush_time)
        .saturating_sub(stats.compact_time);
    let (flushes, flushed_bytes) = (timed.flushes, timed.flushed_bytes);
    drop(timed);
    drop(store);

    // Reopen from disk, and check that the text is what was typed.
    let started = Instant::now();
    let store = OpenStore::existing(&path, Some(args.backend), Access::New)?;
    let reread =
        PersistentDoc::load_with(store.open_document(&id)?.persister, read_only_options())?;
    timings.reopen = started.elapsed();
    check(&reread, &model, meta.edits + stats.edits, &path)?;
    let sizes = reread.sizes();
    drop(reread);
    drop(store);

    let trace = match &source {
        Source::Trace(replay) => {
            let complete = replay.complete();
            if complete && model.iter().copied().ne(replay.trace.end_content.chars()) {
                return Err(CliError::new(
                    format!("the text after the whole trace is not its endContent ({label})"),
                    "the trace file is inconsistent: check it with persister-traces",
                ));
            }
            Some(TraceProgress {
                position: replay.position,
                transactions: replay.trace.txns.len(),
                complete,
            })
        }
        Source::Typing(_) => None,
    };
    let cursor_jumps = match &source {
        Source::Typing(typist) => typist.jumps,
        Source::Trace(_) => 0,
    };
    let report = Report {
        store: path.display().to_string(),
        backend: args.backend,
        document: DOCUMENT.into(),
        source: label,
        session,
        previous_edits: meta.edits,
        loaded_chars,
        edits: stats.edits,
        insertions: stats.insertions,
        deletions: stats.deletions,
        cursor_jumps,
        text_chars: model.len(),
        flush_every: args.flush_every,
        flushes,
        flushed_bytes,
        compactions: stats.compactions,
        loaded_sizes,
        sizes,
        disk_bytes: crate::disk_usage(&path),
        trace,
        timings,
    };
    if json {
        print_json(&report)
    } else {
        report.print();
        Ok(())
    }
}

/// The store of `backend` in the demo's directory.
fn store_path(dir: &Path, backend: Backend) -> PathBuf {
    dir.join(match backend {
        Backend::Redb => "demo.redb",
        Backend::Sled => "sled",
        Backend::Fs => "fs",
    })
}

/// What the editing loop did.
#[derive(Debug, Default)]
struct Stats {
    edits: u64,
    insertions: u64,
    deletions: u64,
    compactions: u64,
    loop_time: Duration,
    loop_flush_time: Duration,
    compact_time: Duration,
}

/// Makes up to `edits` edits, each one commit written to the store, compacting when
/// the stored sizes say so.
fn edit(
    doc: &mut Doc,
    text: &ObjId,
    model: &mut Vec<char>,
    source: &mut Source,
    edits: u64,
) -> Result<Stats, CliError> {
    let trigger = CompactionTrigger::default();
    let mut stats = Stats::default();
    let flush_before = doc.persister().flush_time;
    let bar = progress(edits, "editing");
    let started = Instant::now();
    while stats.edits < edits {
        let Some(splices) = source.next_edit(model.len()) else {
            break;
        };
        let mut len = model.len();
        for splice in &splices {
            if !splice.fits(len) {
                return Err(CliError::new(
                    format!(
                        "an edit at {} deletes past the end of the text ({len} chars)",
                        splice.pos
                    ),
                    "the trace does not fit its own text: check the trace file",
                ));
            }
            len = len - splice.delete + splice.insert.chars().count();
        }
        doc.edit(|d| {
            for s in &splices {
                d.splice_text(text, s.pos, s.delete as isize, &s.insert)?;
            }
            Ok(())
        })?;
        for splice in &splices {
            splice.apply(model);
            stats.insertions += splice.insert.chars().count() as u64;
            stats.deletions += splice.delete as u64;
        }
        stats.edits += 1;
        if trigger.should_compact(&doc.sizes()) {
            let (t, flushed) = (Instant::now(), doc.persister().flush_time);
            doc.compact()?;
            // A flush the compaction's write set off is counted with the flushes.
            let in_flush = doc.persister().flush_time - flushed;
            stats.compact_time += t.elapsed().saturating_sub(in_flush);
            stats.compactions += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    stats.loop_time = started.elapsed();
    stats.loop_flush_time = doc.persister().flush_time - flush_before;
    Ok(stats)
}

/// Checks the reopened document against what the session typed.
fn check<P: Persister<Error = persister_core::Error>>(
    doc: &PersistentDoc<P>,
    model: &[char],
    edits: u64,
    path: &Path,
) -> Result<(), CliError> {
    let meta = Meta::read(doc.doc())?;
    let text = match &meta.text {
        Some(text) => doc.doc().text(text).map_err(bug)?,
        None => String::new(),
    };
    if text.chars().ne(model.iter().copied()) || meta.edits != edits {
        return Err(CliError::damaged(format!(
            "after reopening {}, the document holds {} chars and {} edits, not the {} chars and {edits} edits written",
            path.display(),
            text.chars().count(),
            meta.edits,
            model.len()
        )));
    }
    Ok(())
}

fn bug(e: automerge::AutomergeError) -> CliError {
    CliError::from(persister_automerge::Error::from(e))
}
