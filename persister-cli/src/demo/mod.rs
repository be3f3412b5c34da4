//! `persister demo`: an editing session on an Automerge text (or a Yjs text, with
//! `--crdt yjs`), persisted on a real store as an application would: every edit
//! written as it happens, a flush every N edits, compaction when `sizes()` says so,
//! then the store reopened and the text checked. Run again, it continues the same
//! document.

mod crdt;
mod meta;
mod report;
mod session;
mod source;
mod timed;
mod typing;

use std::path::{Path, PathBuf};
use std::time::Instant;

use persister_core::{DocumentId, DynPersister};

use self::report::{CutShort, Report, Timings, TraceProgress};
use self::session::{check, edit};
use self::source::{Source, TraceReplay};
use self::timed::Timed;
use self::typing::Typist;
use crate::cli::DemoArgs;
use crate::commands::plural;
use crate::error::io_error;
use crate::output::{print_json, say, spinner};
use crate::{Access, Backend, CliError, Crdt, OpenStore};

/// The demo's document for generated typing; a trace has one of its own
/// ([`document_name`]), and Yjs documents have `-yjs` after the name.
const DOCUMENT: &str = "demo";

/// The document a session edits: timed flushes over any backend.
type Doc = dyn self::crdt::DemoDoc<Timed<DynPersister>>;

pub(crate) fn run(args: &DemoArgs, json: bool) -> Result<(), CliError> {
    if !args.backend.is_file() && !args.backend.is_directory() {
        return Err(CliError::new(
            format!(
                "the demo makes its store in --dir, and a {} store is not a file or a directory but lives on a server, named by a URL",
                args.backend
            ),
            format!(
                "run the demo on an embedded backend (--backend redb, sled or fs), then move its store with `persister copy {} 'postgres://user@host/db?schema=demo'`",
                store_path(&args.dir, Backend::default_for_new()).display()
            ),
        ));
    }
    let mut source = match &args.trace {
        Some(path) => {
            let reading = spinner("reading the trace");
            let replay = TraceReplay::load(path)?;
            reading.finish_and_clear();
            Source::Trace(replay)
        }
        None => Source::Typing(Typist::new(0, 0)),
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| io_error("create", &args.dir, e))?;
    let path = store_path(&args.dir, args.backend);
    let name = document_name(&source, args.crdt);
    let id = DocumentId::from(name.as_str());
    let mut timings = Timings::default();

    let started = Instant::now();
    let opening = spinner("opening the store");
    let store = if path.exists() {
        OpenStore::existing(&path, Some(args.backend), Access::Write)?
    } else {
        OpenStore::create(&path, args.backend)?
    };
    timings.open = started.elapsed();
    opening.finish_and_clear();
    let started = Instant::now();
    let loading = spinner("loading the document");
    let persister = Timed::new(store.open_document(&id)?.persister);
    let mut doc = crdt::load(args.crdt, persister, Some(args.flush_every))?;
    timings.load = started.elapsed();
    loading.finish_and_clear();
    let loaded_sizes = doc.sizes();

    let elsewhere = || {
        format!(
            "give the demo a directory of its own, such as --dir {}",
            fresh_dir(&args.dir).display()
        )
    };
    let meta = doc
        .meta()
        .map_err(|e| CliError::new(e.cause, elsewhere()))?;
    let label = source.label();
    if let Some(made_by) = meta.source.as_deref().filter(|s| *s != label) {
        return Err(CliError::new(
            format!(
                // Escaped: the document's own text, which may hold control characters.
                "the document \"{name}\" in {} was made by {}, not {label}",
                path.display(),
                made_by.escape_debug()
            ),
            format!("run the demo as it was first run, or {}", elsewhere()),
        ));
    }
    let text = doc.text()?;
    let mut model: Vec<char> = text.chars().collect();
    let loaded_chars = model.len();
    let session = meta.sessions + 1;
    // Edits a session stopped before its end flushed beyond its record: found from
    // the text for a trace (the first position from the recorded one whose text this
    // is: should the trace pass through the same text twice, the edits between are
    // replayed again, which leaves the text as it should be, and counted once), not
    // counted for generated typing.
    let mut recovered = None;
    match &mut source {
        Source::Typing(typist) => *typist = Typist::new(session, model.len()),
        Source::Trace(replay) => {
            let recorded = usize::try_from(meta.trace_position).unwrap_or(usize::MAX);
            let found = replay.trace.position_of(&text, recorded).map_err(|e| {
                CliError::new(e.to_string(), "give the trace the document was made with")
            })?;
            // Only a session that did not end leaves text beyond its record.
            let found = found.filter(|&at| at == recorded || meta.open_session != 0);
            let Some(position) = found else {
                return Err(CliError::new(
                    format!(
                        "the demo document's text is not the text of {label} after {recorded} transactions{}",
                        match meta.open_session {
                            0 => "",
                            _ => " or more",
                        }
                    ),
                    format!(
                        "give the trace the document was made with, or {}",
                        elsewhere()
                    ),
                ));
            };
            replay.position = position;
            recovered = Some((position - recorded) as u64);
        }
    }
    let cut_short = (meta.open_session != 0).then_some(CutShort {
        session: meta.open_session,
        recovered_edits: recovered,
    });
    let previous_edits = meta.edits + recovered.unwrap_or(0);

    // What will really run: a trace may have fewer transactions left than --edits.
    let planned = match &source {
        Source::Typing(_) => args.edits,
        Source::Trace(replay) => args.edits.min(replay.remaining() as u64),
    };
    if planned == 0 {
        // Nothing was written: the document is only read, and dropped unflushed with
        // nothing to flush.
        drop(doc);
        let idle = Idle {
            store: path.display().to_string(),
            backend: args.backend,
            crdt: args.crdt,
            document: name,
            source: label,
            sessions: meta.sessions,
            edits: previous_edits,
            text_chars: model.len(),
            nothing_to_do: true,
            cut_short,
        };
        return if json {
            print_json(&idle)
        } else {
            idle.print(&fresh_dir(&args.dir));
            Ok(())
        };
    }
    doc.start(&label, session)?;

    let stats = edit(&mut *doc, &mut model, &mut source, planned)?;
    timings.compact = stats.compact_time;
    let trace_position = match &source {
        Source::Trace(replay) => replay.position as u64,
        Source::Typing(_) => 0,
    };
    doc.record(session, previous_edits + stats.edits, trace_position)?;
    let closing = spinner("flushing");
    let timed = doc.close()?;
    closing.finish_and_clear();
    timings.flush = timed.flush_time;
    timings.edit = stats
        .loop_time
        .saturating_sub(stats.loop_flush_time)
        .saturating_sub(stats.compact_time);
    let (flushes, flushed_bytes) = (timed.flushes, timed.flushed_bytes);
    drop(timed);
    // A checked shutdown, as an application that must know makes one.
    store.close()?;

    // Reopen from disk, and check that the text is what was typed.
    let started = Instant::now();
    let checking = spinner("reopen + check");
    let store = OpenStore::existing(&path, Some(args.backend), Access::New)?;
    let reread = crdt::load(args.crdt, store.open_document(&id)?.persister, None)?;
    check(&*reread, &model, previous_edits + stats.edits, &path)?;
    timings.reopen = started.elapsed();
    checking.finish_and_clear();
    let sizes = reread.sizes();
    drop(reread);
    store.close()?;

    let trace = match &source {
        Source::Trace(replay) => {
            let complete = replay.complete();
            if complete && model.iter().copied().ne(replay.trace.end_content.chars()) {
                return Err(CliError::new(
                    format!(
                        "after the whole trace, the text is not the trace's final text, its endContent ({label})"
                    ),
                    "the trace file contradicts itself: its edits do not make its final text; use another copy of the trace",
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
        crdt: args.crdt,
        document: name,
        source: label,
        session,
        cut_short,
        previous_edits,
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

/// The document of `source` on `crdt`: each trace has its own, and so has each CRDT,
/// so that the generated typing and every trace can be run in turn in the same
/// directory, on both.
fn document_name(source: &Source, crdt: Crdt) -> String {
    let name = match source {
        Source::Typing(_) => DOCUMENT.into(),
        Source::Trace(replay) => format!("trace-{}", replay.name),
    };
    match crdt {
        Crdt::Automerge => name,
        Crdt::Yjs => format!("{name}-yjs"),
    }
}

/// A directory beside `dir` that does not exist yet: `DIR-2`, `DIR-3`, ...
fn fresh_dir(dir: &Path) -> PathBuf {
    let mut n = 2u64;
    loop {
        let mut name = dir.as_os_str().to_os_string();
        name.push(format!("-{n}"));
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// A run with nothing to do: the trace is replayed to its end.
#[derive(Debug, serde::Serialize)]
struct Idle {
    store: String,
    backend: Backend,
    crdt: Crdt,
    document: String,
    source: String,
    sessions: u64,
    edits: u64,
    text_chars: usize,
    nothing_to_do: bool,
    /// The last session, when it stopped before its end: what it flushed is counted.
    cut_short: Option<CutShort>,
}

impl Idle {
    fn print(&self, fresh: &Path) {
        say(&format!(
            "persister demo: {} store {}, {} document \"{}\" ({})",
            self.backend, self.store, self.crdt, self.document, self.source
        ));
        say(&format!(
            "nothing to do: the trace is replayed to its end ({} in {}, text of {}); the document is left as it was",
            plural(self.edits, "edit", "edits"),
            plural(self.sessions, "session", "sessions"),
            plural(self.text_chars as u64, "char", "chars")
        ));
        if let Some(cut) = &self.cut_short {
            say(&cut.line());
        }
        say(&format!(
            "Replay it again from the start in a new directory (--dir {}); look inside with `persister info {} {}`.",
            fresh.display(),
            self.store,
            self.document
        ));
    }
}

/// The store of `backend` in the demo's directory: `demo.NAME` for a file, `NAME`
/// otherwise (for a URL backend, not a URL: opening it says that such a store is
/// given by its URL).
fn store_path(dir: &Path, backend: Backend) -> PathBuf {
    if backend.is_file() {
        dir.join(format!("demo.{backend}"))
    } else {
        dir.join(backend.name())
    }
}
