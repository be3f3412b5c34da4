//! The automerge-paper trace replayed one commit per edit, then reloaded.

use persister_core::FlushPolicy;

use crate::support::{
    Location, apply_txn, backend_tests, full_trace, load_trace, open_doc, read_text, text_object,
    text_options,
};

/// Transactions replayed by default; `PERSISTER_FULL_TRACE=1` replays all 259,778.
const DEFAULT_TXNS: usize = 3_000;

backend_tests! {
    [memory, redb, sled, fs]

    /// Every edit of the trace as its own commit, flushed every 1,000 commits, with
    /// automatic compaction; after closing and dropping everything, the reloaded text is
    /// the trace's text at that point.
    fn paper_replay_survives_reload(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("automerge-paper")? else {
            return Ok(());
        };
        let txns = if full_trace() { trace.txns.len() } else { DEFAULT_TXNS };
        let location = Location::new(&backend)?;
        let started = std::time::Instant::now();
        {
            let store = location.open()?;
            let options = text_options().with_flush(FlushPolicy::EveryBatches(1_000));
            let mut doc = open_doc(&store, options)?;
            let text = text_object(&mut doc)?;
            for txn in &trace.txns[..txns] {
                doc.edit(|d| apply_txn(d, &text, txn))?;
            }
            // The default trigger compacted along the way: a document is stored and
            // far fewer changes than commits remain.
            let sizes = doc.sizes();
            assert!(sizes.document > 0, "{sizes:?}");
            assert!(sizes.change_count < txns as u64 / 2, "{sizes:?}");
            assert_eq!(doc.queued_writes(), 0);
            doc.close()?;
        }
        let replayed = started.elapsed();

        let started = std::time::Instant::now();
        let store = location.open()?;
        let doc = open_doc(&store, text_options())?;
        let loaded = started.elapsed();
        let expected = if txns == trace.txns.len() {
            trace.end_content.clone()
        } else {
            trace.text_after(txns)?
        };
        assert_eq!(read_text(doc.doc())?.as_deref(), Some(expected.as_str()));
        assert_eq!(doc.orphaned_changes(), 0);
        println!(
            "{}: {txns} commits replayed in {replayed:?}, reloaded in {loaded:?}",
            backend.name()
        );
        Ok(())
    }
}
