//! One editing session: the edits, each written to the store, with compaction when
//! the stored sizes say so; and the check after reopening.

use std::path::Path;
use std::time::{Duration, Instant};

use persister_core::CompactionTrigger;

use super::Doc;
use super::crdt::DemoDoc;
use super::source::Source;
use crate::CliError;
use crate::output::progress;

/// What the editing loop did.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) edits: u64,
    pub(super) insertions: u64,
    pub(super) deletions: u64,
    pub(super) compactions: u64,
    pub(super) loop_time: Duration,
    pub(super) loop_flush_time: Duration,
    pub(super) compact_time: Duration,
}

/// Makes up to `edits` edits, each one commit written to the store, compacting when
/// the stored sizes say so.
pub(super) fn edit(
    doc: &mut Doc,
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
        doc.splice(&splices)?;
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
pub(super) fn check<P>(
    doc: &dyn DemoDoc<P>,
    model: &[char],
    edits: u64,
    path: &Path,
) -> Result<(), CliError> {
    let meta = doc.meta()?;
    let text = doc.text()?;
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
