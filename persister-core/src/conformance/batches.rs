//! Atomic batches (the trait's `apply`) and limits (contract point 10).

use super::{Fixture, actor, contents, open};
use crate::{
    ActorId, Batch, Error, MAX_ACTOR_ID_LEN, MAX_BATCH_LEN, MAX_PEER_ID_LEN, MAX_VALUE_LEN,
    Persister, Result, Store, Write,
};

/// Applies `bad` (which must be refused) to a document holding some data, and checks
/// that the refusal is the expected error and nothing of the batch was applied.
fn refused_whole<F: Fixture>(f: &F, bad: Batch, expected: impl Fn(&Error) -> bool) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"kept".to_vec())
            .set_document(b"doc".to_vec())
            .set_sync_state(b"peer".to_vec(), b"state".to_vec()),
    )?;
    let before = contents(&p)?;
    let sizes = p.sizes();
    match p.apply(bad) {
        Ok(()) => panic!("a batch over a limit was accepted"),
        Err(e) => assert!(expected(&e), "unexpected error: {e}"),
    }
    assert!(
        contents(&p)? == before,
        "a refused batch changed the document"
    );
    assert_eq!(p.sizes(), sizes);
    // The handle is still usable.
    p.insert_changes(vec![(actor(1), 2, b"after".to_vec())])?;
    assert_eq!(p.get_changes()?.len(), 2);
    Ok(())
}

/// Every write of a batch is visible after it (the trait's `apply`).
pub fn batch_is_applied_whole<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"a".to_vec())
            .insert_change(actor(2), 7, b"b".to_vec())
            .set_document(b"doc".to_vec())
            .set_sync_state(b"p1".to_vec(), b"s1".to_vec())
            .set_sync_state(b"p2".to_vec(), b"s2".to_vec()),
    )?;
    let c = contents(&p)?;
    assert_eq!(c.changes.len(), 2);
    assert_eq!(c.document, Some(b"doc".to_vec()));
    assert_eq!(c.sync_states.len(), 2);
    Ok(())
}

/// Writes of one batch take effect in order: the last write to a key wins.
pub fn batch_writes_apply_in_order<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"gone".to_vec())
            .remove_change(actor(1), 1)
            .remove_change(actor(1), 2)
            .insert_change(actor(1), 2, b"kept".to_vec())
            .insert_change(actor(1), 3, b"first".to_vec())
            .insert_change(actor(1), 3, b"last".to_vec())
            .set_document(b"one".to_vec())
            .set_document(b"two".to_vec())
            .set_sync_state(b"p".to_vec(), b"s".to_vec())
            .remove_sync_state(b"p".to_vec()),
    )?;
    assert_eq!(p.get_changes()?, vec![b"kept".to_vec(), b"last".to_vec()]);
    assert_eq!(p.get_document()?, Some(b"two".to_vec()));
    assert!(p.get_peer_ids()?.is_empty());
    let s = p.sizes();
    assert_eq!(
        (s.changes, s.change_count, s.document, s.sync_state_count),
        (8, 2, 3, 0)
    );
    Ok(())
}

/// An empty batch changes nothing and leaves nothing to flush.
pub fn empty_batch_is_a_no_op<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(Batch::new())?;
    p.insert_changes(Vec::new())?;
    p.remove_sync_states(&[])?;
    assert!(p.sizes().is_empty());
    assert_eq!(p.flush()?, 0);
    assert!(store.list_documents()?.is_empty());
    Ok(())
}

/// A value one byte over [`MAX_VALUE_LEN`] is refused with `TooLarge`, and nothing of
/// its batch is applied (point 10).
pub fn batch_with_value_over_maximum_applies_nothing<F: Fixture>(f: &F) -> Result<()> {
    let bad = Batch::new()
        .insert_change(actor(1), 5, b"fine".to_vec())
        .set_document(b"replaced?".to_vec())
        .insert_change(actor(2), 1, vec![0; MAX_VALUE_LEN + 1]);
    refused_whole(
        f,
        bad,
        |e| matches!(e, Error::TooLarge { len, max, .. } if *len == MAX_VALUE_LEN as u64 + 1 && *max == MAX_VALUE_LEN as u64),
    )
}

/// An empty actor id is refused, and nothing of its batch is applied (point 10).
pub fn batch_with_empty_actor_applies_nothing<F: Fixture>(f: &F) -> Result<()> {
    let bad = Batch::new().remove_change(actor(1), 1).insert_change(
        ActorId::new(Vec::new()),
        1,
        b"x".to_vec(),
    );
    refused_whole(f, bad, |e| matches!(e, Error::InvalidInput { .. }))
}

/// An actor id over [`MAX_ACTOR_ID_LEN`] is refused, and nothing of its batch is
/// applied (point 10).
pub fn batch_with_actor_over_maximum_applies_nothing<F: Fixture>(f: &F) -> Result<()> {
    let bad = Batch::new()
        .remove_sync_state(b"peer".to_vec())
        .insert_change(
            ActorId::new(vec![1; MAX_ACTOR_ID_LEN + 1]),
            1,
            b"x".to_vec(),
        );
    refused_whole(f, bad, |e| matches!(e, Error::TooLarge { .. }))
}

/// A peer id over [`MAX_PEER_ID_LEN`] is refused, and nothing of its batch is applied
/// (point 10).
pub fn batch_with_peer_id_over_maximum_applies_nothing<F: Fixture>(f: &F) -> Result<()> {
    let bad = Batch::new()
        .set_document(Vec::new())
        .set_sync_state(vec![b'p'; MAX_PEER_ID_LEN + 1], b"s".to_vec());
    refused_whole(f, bad, |e| matches!(e, Error::TooLarge { .. }))
}

/// A batch whose writes are each within their limits but that carries more than
/// [`MAX_BATCH_LEN`] bytes in all is refused with `TooLarge`, and nothing of it is
/// applied (point 10). Its values are zeroed allocations that a refusal never reads,
/// so the batch takes a gigabyte of address space, not of memory.
pub fn batch_over_maximum_applies_nothing<F: Fixture>(f: &F) -> Result<()> {
    let mut bad = Batch::new().remove_change(actor(1), 1);
    let mut seq = 1;
    while bad.payload_len() <= MAX_BATCH_LEN {
        bad.push(Write::InsertChange {
            actor: actor(2),
            seq,
            value: vec![0; MAX_VALUE_LEN],
        });
        seq += 1;
    }
    refused_whole(
        f,
        bad,
        |e| matches!(e, Error::TooLarge { what: "batch", max, .. } if *max == MAX_BATCH_LEN as u64),
    )
}

/// `insert_changes` is one batch: one bad entry and none is stored.
pub fn insert_changes_is_all_or_nothing<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    let result = p.insert_changes(vec![
        (actor(1), 1, b"a".to_vec()),
        (actor(1), 2, b"b".to_vec()),
        (ActorId::new(Vec::new()), 3, b"bad".to_vec()),
    ]);
    assert!(matches!(result, Err(Error::InvalidInput { .. })));
    assert!(p.get_changes()?.is_empty());
    assert!(p.sizes().is_empty());
    Ok(())
}

/// Compaction is one batch: the document set and exactly the changes it covers
/// removed; changes it does not cover stay.
pub fn compaction_batch_replaces_changes_with_document<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    let changes: Vec<_> = (1..=20)
        .map(|seq| (actor(1), seq, vec![seq as u8; 10]))
        .collect();
    p.insert_changes(changes)?;
    p.insert_changes(vec![(actor(2), 1, b"not covered".to_vec())])?;
    let mut compaction = Batch::new().set_document(b"snapshot of 1..=20".to_vec());
    for seq in 1..=20 {
        compaction = compaction.remove_change(actor(1), seq);
    }
    p.apply(compaction)?;
    assert_eq!(p.get_changes()?, vec![b"not covered".to_vec()]);
    assert_eq!(p.get_document()?, Some(b"snapshot of 1..=20".to_vec()));
    let s = p.sizes();
    assert_eq!((s.change_count, s.changes, s.document), (1, 11, 18));
    Ok(())
}

/// A refused batch leaves what was stored before, flushed or not, untouched.
pub fn refused_batch_leaves_stored_data_intact<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"flushed".to_vec())])?;
    p.flush()?;
    p.insert_changes(vec![(actor(1), 2, b"pending".to_vec())])?;
    let refused = p.apply(
        Batch::new()
            .remove_change(actor(1), 1)
            .remove_change(actor(1), 2)
            .set_document(vec![0; MAX_VALUE_LEN + 1]),
    );
    assert!(matches!(refused, Err(Error::TooLarge { .. })));
    assert_eq!(
        p.get_changes()?,
        vec![b"flushed".to_vec(), b"pending".to_vec()]
    );
    p.flush()?;
    drop(p);
    let store = super::reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert_eq!(
        p.get_changes()?,
        vec![b"flushed".to_vec(), b"pending".to_vec()]
    );
    assert_eq!(p.get_document()?, None);
    Ok(())
}
