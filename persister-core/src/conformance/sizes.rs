//! Sizes are exact, O(1), and exact again after reopen (contract point 8).

use super::{Fixture, actor, contents, open, reopen};
use crate::{ActorId, Batch, Persister, Result, StoredSizes};

/// The sizes that `p`'s contents add up to, computed by reading everything.
fn counted<P: Persister<Error = crate::Error>>(p: &P) -> Result<StoredSizes> {
    let c = contents(p)?;
    Ok(StoredSizes {
        changes: c.changes.iter().map(|e| e.2.len() as u64).sum(),
        document: c.document.map_or(0, |d| d.len() as u64),
        sync_states: c
            .sync_states
            .iter()
            .map(|(_, s)| s.as_ref().map_or(0, |s| s.len() as u64))
            .sum(),
        change_count: c.changes.len() as u64,
        sync_state_count: c.sync_states.len() as u64,
    })
}

/// A new document has all sizes zero.
pub fn sizes_are_zero_when_empty<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert_eq!(p.sizes(), StoredSizes::default());
    Ok(())
}

/// Each part is counted in its own field, in bytes of values.
pub fn sizes_count_every_part<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, vec![1; 100])
            .insert_change(actor(2), 1, vec![2; 50])
            .set_document(vec![3; 1000])
            .set_sync_state(b"peer one".to_vec(), vec![4; 7]),
    )?;
    let expected = StoredSizes {
        changes: 150,
        document: 1000,
        sync_states: 7,
        change_count: 2,
        sync_state_count: 1,
    };
    assert_eq!(p.sizes(), expected);
    assert_eq!(p.sizes().total_bytes(), 1157);
    assert_eq!(counted(&p)?, expected);
    Ok(())
}

/// Overwrites account the old value out, for every part.
pub fn sizes_account_overwrites<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, vec![0; 100])])?;
    p.insert_changes(vec![(actor(1), 1, vec![0; 30])])?;
    p.set_document(vec![0; 500])?;
    p.set_document(vec![0; 20])?;
    p.set_sync_state(b"p".to_vec(), vec![0; 40])?;
    p.set_sync_state(b"p".to_vec(), vec![0; 4])?;
    let expected = StoredSizes {
        changes: 30,
        document: 20,
        sync_states: 4,
        change_count: 1,
        sync_state_count: 1,
    };
    assert_eq!(p.sizes(), expected);
    assert_eq!(counted(&p)?, expected);
    Ok(())
}

/// Overwrites and removals of changes that were flushed (and reopened) account the
/// stored value out: the newest change of an actor, an older one, one of an actor whose
/// id is a prefix of another's, and one written again before the next flush.
pub fn sizes_account_overwrites_of_flushed_changes<F: Fixture>(f: &F) -> Result<()> {
    let short = ActorId::new([7]);
    let long = ActorId::new([7, 0]);
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for seq in 1..=3 {
        p.insert_changes(vec![
            (short.clone(), seq, vec![1; 10]),
            (long.clone(), seq, vec![2; 10]),
        ])?;
    }
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(short.clone(), 3, vec![3; 4])])?; // the newest
    p.insert_changes(vec![(short.clone(), 2, vec![3; 5])])?; // an older one
    p.remove_changes(vec![(&long, 3)])?;
    p.insert_changes(vec![(long.clone(), 4, vec![4; 6])])?; // a new one
    p.flush()?;
    p.insert_changes(vec![(long.clone(), 4, vec![5; 1])])?; // the new one again
    p.insert_changes(vec![(long.clone(), 4, vec![5; 2])])?; // and before a flush
    let expected = StoredSizes {
        changes: 10 + 5 + 4 + 10 + 10 + 2,
        document: 0,
        sync_states: 0,
        change_count: 6,
        sync_state_count: 0,
    };
    assert_eq!(p.sizes(), expected);
    assert_eq!(counted(&p)?, expected);
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert_eq!(p.sizes(), expected);
    assert_eq!(counted(&p)?, expected);
    Ok(())
}

/// Removing what was removed already, or never there, never drops a size below zero.
pub fn sizes_never_drop_below_zero<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.remove_changes(vec![(&actor(1), 1)])?;
    p.remove_sync_states(&[b"p"])?;
    p.insert_changes(vec![(actor(1), 1, vec![0; 10])])?;
    p.set_sync_state(b"p".to_vec(), vec![0; 10])?;
    for _ in 0..3 {
        p.remove_changes(vec![(&actor(1), 1), (&actor(1), 1)])?;
        p.remove_sync_states(&[b"p", b"p"])?;
    }
    assert_eq!(p.sizes(), StoredSizes::default());
    p.insert_changes(vec![(actor(1), 2, vec![0; 5])])?;
    assert_eq!((p.sizes().changes, p.sizes().change_count), (5, 1));
    Ok(())
}

/// Sizes read right after reopening equal those before, and what the contents add to.
pub fn sizes_are_exact_after_reopen<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for seq in 1..=200u64 {
        p.insert_changes(vec![(actor((seq % 3) as u8), seq, vec![0; seq as usize])])?;
    }
    p.remove_changes(
        (1..=50)
            .map(|seq| (&ACTORS[(seq % 3) as usize], seq))
            .collect(),
    )?;
    p.insert_changes(vec![(actor(1), 100, vec![0; 7])])?;
    p.set_document(vec![0; 999])?;
    p.set_sync_state(b"a".to_vec(), vec![0; 11])?;
    p.set_sync_state(b"b".to_vec(), vec![0; 12])?;
    p.remove_sync_states(&[b"a"])?;
    let before = p.sizes();
    assert_eq!(before, counted(&p)?);
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert_eq!(p.sizes(), before, "sizes changed across a reopen");
    assert_eq!(counted(&p)?, before);
    Ok(())
}

static ACTORS: std::sync::LazyLock<[crate::ActorId; 3]> =
    std::sync::LazyLock::new(|| [actor(0), actor(1), actor(2)]);

/// After a reopen without a flush, sizes match the contents: the flushed state.
pub fn sizes_match_contents_after_reopen_without_flush<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, vec![0; 10])])?;
    p.flush()?;
    p.insert_changes(vec![(actor(1), 2, vec![0; 20])])?;
    p.set_document(vec![0; 30])?;
    drop(p);
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    let sizes = p.sizes();
    assert_eq!(sizes, counted(&p)?);
    assert_eq!(
        sizes.change_count, 1,
        "flushed: one change; the rest was discarded"
    );
    assert_eq!(
        sizes.document, 0,
        "an unflushed document outlived its handle"
    );
    Ok(())
}
