//! Two peers, each with its own store, sync through a real message loop and are
//! dropped and reloaded in the middle of it.

use automerge::transaction::Transactable;

use crate::support::{
    Replica, apply_txn, backend_tests, load_trace, sync_until_quiet, text_object, text_options,
};

const A: &[u8] = b"peer-a";
const B: &[u8] = b"peer-b";
/// A's history before the first sync, and after the concurrent edits.
const FIRST: usize = 200;
const SECOND: usize = 400;
/// B's concurrent edits, each `<bN>` at the start of the text (A edits from 198 on).
const B_EDITS: usize = 30;

backend_tests! {
    [memory, redb, sled, fs]

    fn peers_converge_across_reloads_mid_sync(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("automerge-paper")? else {
            return Ok(());
        };
        let mut a = Replica::new(&backend, text_options())?;
        let mut b = Replica::new(&backend, text_options())?;

        // A writes a history; B starts empty. Both are reloaded after the first
        // message, so the rest of the sync runs on reloaded documents and states.
        let text = text_object(a.doc()?)?;
        for txn in &trace.txns[..FIRST] {
            a.doc()?.edit(|d| apply_txn(d, &text, txn))?;
        }
        let (delivered, _) = sync_until_quiet((&mut a, A), (&mut b, B), |n, a, b| {
            if n == 1 {
                a.reload()?;
                b.reload()?;
            }
            Ok(())
        })?;
        assert!(delivered > 1);
        assert_eq!(b.text()?, trace.text_after(FIRST)?);

        // Concurrent edits on both sides, then a sync with reloads after the second
        // and the third message.
        for txn in &trace.txns[FIRST..SECOND] {
            a.doc()?.edit(|d| apply_txn(d, &text, txn))?;
        }
        for i in 0..B_EDITS {
            b.doc()?.edit(|d| d.splice_text(&text, 0, 0, &format!("<b{i}>")))?;
        }
        let (delivered, _) = sync_until_quiet((&mut a, A), (&mut b, B), |n, a, b| {
            match n {
                2 => a.reload()?,
                3 => b.reload()?,
                _ => {}
            }
            Ok(())
        })?;
        assert!(delivered >= 3);
        let converged = a.text()?;
        assert_eq!(converged, b.text()?);
        let mut without_b = converged.clone();
        for i in 0..B_EDITS {
            let marker = format!("<b{i}>");
            assert!(converged.contains(&marker), "B's edit {i} is missing");
            without_b = without_b.replacen(&marker, "", 1);
        }
        assert_eq!(without_b, trace.text_after(SECOND)?, "A's edits are missing");
        assert_eq!(a.doc()?.heads(), b.doc()?.heads());

        // Reloaded once more, both still hold the merged document, and their persisted
        // sync states know it: the next sync sends no change at all.
        a.reload()?;
        b.reload()?;
        assert_eq!(a.text()?, converged);
        assert_eq!(b.text()?, converged);
        let (delivered, with_changes) =
            sync_until_quiet((&mut a, A), (&mut b, B), |_, _, _| Ok(()))?;
        assert!(delivered > 0);
        assert_eq!(with_changes, 0, "the persisted sync states were not used");
        Ok(())
    }
}
