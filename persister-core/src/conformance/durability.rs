//! Durability (contract point 4), flush results, and poisoning (point 7).

use super::{Fixture, actor, after_a_failed_flush, contents, open, reopen};
use crate::{Batch, Error, Persister, Result, Store};

/// Everything written before a successful flush is there after reopening.
pub fn flushed_writes_survive_reopen<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"c1".to_vec())
            .insert_change(actor(2), 5, b"c2".to_vec())
            .set_document(b"doc".to_vec())
            .set_sync_state(b"peer".to_vec(), b"state".to_vec()),
    )?;
    p.remove_changes(vec![(&actor(2), 5)])?;
    let before = contents(&p)?;
    assert!(p.flush()? > 0);
    drop(p);
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert!(
        contents(&p)? == before,
        "flushed writes differ after reopen"
    );
    Ok(())
}

/// The order of changes is the same after reopening.
pub fn order_survives_reopen<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for seq in [300u64, 2, 1, 256, 10] {
        for a in [3u8, 1, 2] {
            p.insert_changes(vec![(actor(a), seq, vec![a, seq as u8])])?;
        }
    }
    let before = p.get_change_entries()?;
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert!(p.get_change_entries()? == before);
    let seqs: Vec<u64> = before.iter().take(5).map(|e| e.1).collect();
    assert_eq!(seqs, vec![1, 2, 10, 256, 300]);
    Ok(())
}

/// A flush with nothing pending returns 0, also on a new document.
pub fn flush_with_nothing_pending_returns_zero<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    assert_eq!(p.flush()?, 0);
    p.set_document(b"x".to_vec())?;
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let mut p = open(&store, "doc")?;
    assert_eq!(p.flush()?, 0, "a reopened document had something pending");
    Ok(())
}

/// A flush after a write returns a positive byte count, at least the payload's.
pub fn flush_after_a_write_returns_bytes<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, vec![7; 1000])])?;
    let written = p.flush()?;
    assert!(
        written >= 1000,
        "flush reported {written} bytes for a 1000-byte change"
    );
    Ok(())
}

/// Two flushes in a row: the second returns 0.
pub fn second_flush_returns_zero<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_sync_state(b"peer".to_vec(), b"state".to_vec())?;
    assert!(p.flush()? > 0);
    assert_eq!(p.flush()?, 0);
    Ok(())
}

/// After a failed flush the handle refuses writes and flushes with `Poisoned`.
pub fn failed_flush_poisons_the_handle<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = after_a_failed_flush(f, &store, b"doomed?")?;
    assert!(matches!(
        p.insert_changes(vec![(actor(1), 3, b"x".to_vec())]),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        p.set_document(b"x".to_vec()),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(p.flush(), Err(Error::Poisoned { .. })));
    Ok(())
}

/// Reopening after a failed flush gives a working handle holding at least what was
/// flushed before the failure.
pub fn poison_clears_after_reopen<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    drop(after_a_failed_flush(f, &store, b"maybe")?);
    let store = reopen(f, store)?;
    let mut p = open(&store, "doc")?;
    let changes = p.get_changes()?;
    assert_eq!(changes.first(), Some(&b"flushed".to_vec()));
    p.insert_changes(vec![(actor(1), 3, b"after".to_vec())])?;
    assert!(p.flush()? > 0);
    Ok(())
}

/// [`Store::flush_documents`](crate::Store::flush_documents) makes the writes of every
/// handle given durable, and leaves nothing pending.
pub fn flush_documents_makes_every_handle_durable<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut handles = Vec::new();
    for d in 0..5u8 {
        let mut p = open(&store, &format!("doc-{d}"))?;
        p.insert_changes(vec![(actor(d + 1), 1, vec![d; 100])])?;
        handles.push(p);
    }
    let mut all: Vec<&mut <F::Store as Store>::Persister> = handles.iter_mut().collect();
    let written = store.flush_documents(&mut all)?;
    assert!(
        written >= 500,
        "flush_documents reported {written} bytes for 500"
    );
    for p in &mut handles {
        assert_eq!(p.flush()?, 0, "a handle still had writes pending");
    }
    drop(handles);
    let store = reopen(f, store)?;
    for d in 0..5u8 {
        let p = open(&store, &format!("doc-{d}"))?;
        assert!(
            p.get_change_entries()? == vec![(actor(d + 1), 1, vec![d; 100])],
            "document {d} lost its flushed change"
        );
    }
    Ok(())
}

/// When a sync of [`Store::flush_documents`](crate::Store::flush_documents) fails, it
/// returns an error, and no handle reports `Ok` for writes that sync carried: each
/// handle is poisoned, or its writes were made durable by a sync that succeeded.
pub fn failed_flush_documents_reports_every_handle_it_carried<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut handles = Vec::new();
    for d in 0..4u8 {
        let mut p = open(&store, &format!("doc-{d}"))?;
        p.insert_changes(vec![(actor(d + 1), 1, vec![d; 10])])?;
        handles.push(p);
    }
    f.fail_next_flush(&store);
    let mut all: Vec<&mut <F::Store as Store>::Persister> = handles.iter_mut().collect();
    assert!(
        store.flush_documents(&mut all).is_err(),
        "the simulated flush failure was not reported"
    );
    let mut durable = Vec::new();
    for (d, p) in handles.iter_mut().enumerate() {
        match p.flush() {
            Err(Error::Poisoned { .. }) => {}
            Ok(0) => durable.push(d),
            other => panic!("document {d}: expected Poisoned or nothing pending, got {other:?}"),
        }
    }
    assert!(
        durable.len() < 4,
        "no handle was poisoned by the failed sync"
    );
    drop(handles);
    let store = reopen(f, store)?;
    for d in durable {
        let p = open(&store, &format!("doc-{d}"))?;
        assert_eq!(
            p.get_changes()?,
            vec![vec![d as u8; 10]],
            "document {d} reported its flush durable but lost it"
        );
    }
    Ok(())
}
