//! Row 7: a real editing trace through the automerge integration, one commit per edit,
//! on every backend and in memory; then reloading the compacted store against
//! automerge's own `load` of the same bytes.

use std::path::Path;
use std::time::Instant;

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

/// Loads the trace, cut after `limit` edits; `Err` holds the reason to print for a
/// skipped row.
pub fn load(limit: Option<usize>) -> std::result::Result<Edits, String> {
    let path = persister_traces::find(TRACE).ok_or_else(|| {
        format!(
            "trace {TRACE} not found (put the traces in ../shared/traces or set PERSISTER_TRACES)"
        )
    })?;
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

/// What the replay of one column measured, before the ratio to memory is known.
pub fn run(config: &Config, column: Column, dir: &Path, edits: &Edits) -> Result<TraceRun> {
    std::fs::create_dir_all(dir)?;
    let location = match column {
        Column::Memory => Location::Memory(persister_core::MemoryStore::new()),
        Column::Peer => return Err("the peer has no automerge 0.12 integration".into()),
        _ => Location::Dir(dir.to_owned()),
    };
    let (replay_s, compactions) = replay(config, column, &location, edits)?;

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

/// Replays every edit as one commit, flushing every `trace_flush_every` edits and
/// compacting when the default trigger fires; returns the time and the compactions.
fn replay(
    config: &Config,
    column: Column,
    location: &Location,
    edits: &Edits,
) -> Result<(f64, u64)> {
    let store = column.open_store(location)?;
    let options = Options::default()
        .with_flush(FlushPolicy::EveryWrites(config.trace_flush_every as u64))
        .with_compaction(CompactionTrigger::default())
        .with_actor(automerge::ActorId::from(&[0x42; 16][..]));
    let persister: DynPersister = store.open_document(&document_id())?;
    let start = Instant::now();
    let mut doc = PersistentDoc::load_with(persister, options)?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    let mut compactions = 0;
    let mut stored = doc.sizes().change_count;
    for (pos, delete, insert) in &edits.edits {
        doc.edit(|d| d.splice_text(&text, *pos, *delete as isize, insert))?;
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
