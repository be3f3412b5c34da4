//! The automerge-paper trace replayed one transaction per trace transaction, then
//! reloaded.

use persister_core::FlushPolicy;
use persister_yrs::Options;
use yrs::Text;

use crate::support::{
    Location, TEXT, apply_txn, backend_tests, full_trace, load_trace, open_doc, read_text,
};

/// Transactions replayed by default; `PERSISTER_FULL_TRACE=1` replays all 259,778.
const DEFAULT_TXNS: usize = 3_000;

backend_tests! {
    [memory, redb, sled, fs, postgres]

    /// Every transaction of the trace as its own yrs transaction, flushed every 1,000,
    /// with automatic compaction; after a flush and dropping everything, the reloaded
    /// text is the trace's text at that point.
    fn paper_replay_survives_reload(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("automerge-paper")? else {
            return Ok(());
        };
        let txns = if full_trace() { trace.txns.len() } else { DEFAULT_TXNS };
        let location = Location::new(&backend)?;
        let started = std::time::Instant::now();
        {
            let store = location.open()?;
            let options = Options::default().with_flush(FlushPolicy::EveryBatches(1_000));
            let mut doc = open_doc(&store, options)?;
            let text = doc.doc().get_or_insert_text(TEXT);
            if !trace.start_content.is_empty() {
                doc.edit(|t| text.insert(t, 0, &trace.start_content))?;
            }
            for txn in &trace.txns[..txns] {
                doc.edit(|t| apply_txn(t, &text, txn))?;
            }
            // The default trigger compacted along the way: a document is stored and
            // far fewer updates than transactions remain.
            let sizes = doc.sizes();
            assert!(sizes.document > 0, "{sizes:?}");
            assert!(sizes.change_count < txns as u64 / 2, "{sizes:?}");
            assert_eq!(doc.queued_writes(), 0);
            doc.flush()?;
        }
        let replayed = started.elapsed();

        let started = std::time::Instant::now();
        let store = location.open()?;
        let doc = open_doc(&store, Options::default())?;
        let loaded = started.elapsed();
        let expected = if txns == trace.txns.len() {
            trace.end_content.clone()
        } else {
            trace.text_after(txns)?
        };
        assert_eq!(read_text(&doc), expected);
        println!(
            "{}: {txns} transactions replayed in {replayed:?}, reloaded in {loaded:?}",
            backend.name()
        );
        Ok(())
    }
}
