//! `persister demo`: an editing session on an Automerge text, persisted on a real
//! store as an application would: every edit written as it happens, a flush every N
//! edits, compaction when `sizes()` says so, then the store reopened and the text
//! checked. Run again, it continues the same document.

mod meta;
mod report;
mod session;
mod source;
mod timed;
mod typing;

use std::path::{Path, PathBuf};
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc, TextEncoding};
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DocumentId, DynPersister};

use self::meta::Meta;
use self::report::{Report, Timings, TraceProgress};
use self::session::{check, edit};
use self::source::{Source, TraceReplay};
use self::timed::Timed;
use self::typing::Typist;
use crate::cli::DemoArgs;
use crate::commands::read_only_options;
use crate::error::io_error;
use crate::output::print_json;
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
        // Not a URL: opening it says that a postgres store is given by its URL.
        Backend::Postgres => "postgres",
    })
}

fn bug(e: automerge::AutomergeError) -> CliError {
    CliError::from(persister_automerge::Error::from(e))
}
