//! Row 7, the child's side: replay the trace on one column, then reload it.

use std::path::Path;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DynPersister, Persister};

use crate::Result;
use crate::clock::{Stopwatch, run_queue_wait};
use crate::columns::{Column, Location, document_id};
use crate::results::TraceRun;
use crate::rows::trace::{Edits, PROGRESS, PROGRESS_EVERY, load};

/// Times each reload is measured; the fastest counts, as for automerge's own load.
const RELOADS: usize = 3;

/// Loads the trace, replays it for `column` in `dir`, and prints the [`TraceRun`] as
/// one line of JSON.
pub fn child(column: Column, dir: &Path, edits: Option<usize>, flush_every: usize) -> Result<()> {
    let trace = load(edits)?;
    let run = replay_and_reload(column, dir, &trace, flush_every)?;
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// What one column measured, before the ratio to memory is known.
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
    let (cpu_before, wait_before) = (cpu_s()?, run_queue_wait());
    let (replay_s, compactions) = replay(flush_every, column, &location, edits)?;
    let cpu = cpu_s()? - cpu_before;
    let runnable_wait = run_queue_wait().saturating_sub(wait_before).as_secs_f64();

    // Reload what the replay left (the last compacted document and the changes made
    // since) as a program that starts would, alternating with automerge's own load of
    // the same bytes (the document followed by the changes).
    let (mut reload_ms, mut automerge_load_ms) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..RELOADS {
        let watch = Stopwatch::start();
        let store = column.open_store(&location)?;
        let doc = PersistentDoc::load(store.open_document(&document_id())?)?;
        reload_ms = reload_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        check_text(doc.doc(), &edits.end_text)?;

        let mut bytes = doc.persister().get_document()?.unwrap_or_default();
        for change in doc.persister().get_changes()? {
            bytes.extend_from_slice(&change);
        }
        drop(doc);
        drop(store);
        let watch = Stopwatch::start();
        let plain = AutoCommit::load(&bytes)?;
        automerge_load_ms = automerge_load_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        check_text(&plain, &edits.end_text)?;
    }

    Ok(TraceRun {
        edits: edits.edits.len(),
        replay_s,
        cpu_s: cpu,
        runnable_wait_s: runnable_wait,
        ratio_to_memory: None,
        own_ratio_to_memory: None,
        cpu_ratio_to_memory: None,
        compactions,
        reload_ms,
        automerge_load_ms,
        reload_ratio: reload_ms / automerge_load_ms,
        replay_samples_s: Vec::new(),
        ratio_samples: Vec::new(),
        own_ratio_samples: Vec::new(),
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
        .with_flush(FlushPolicy::EveryBatches(flush_every as u64))
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

/// CPU time this process has used so far, user and system, all threads, in seconds,
/// from `/proc/self/stat` (Linux counts it in ticks of 1/100 s).
fn cpu_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<f64> {
        let field = fields.get(i).ok_or("/proc/self/stat is too short")?;
        Ok(field.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows() -> Result<()> {
        let before = cpu_s()?;
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_s()? >= before);
        Ok(())
    }
}
