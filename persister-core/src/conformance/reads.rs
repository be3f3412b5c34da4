//! Read your writes (contract point 1), overwrite and remove (2), order (3).

use super::{Fixture, actor, contents, open};
use crate::{ActorId, Batch, Persister, Result};

/// A document never written holds nothing (points 1, 8).
pub fn new_document_is_empty<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let p = open(&store, "fresh")?;
    assert!(p.get_changes()?.is_empty());
    assert!(p.get_change_entries()?.is_empty());
    assert_eq!(p.get_document()?, None);
    assert_eq!(p.get_sync_state(b"peer")?, None);
    assert!(p.get_peer_ids()?.is_empty());
    assert!(p.sizes().is_empty());
    Ok(())
}

/// Inserted changes are read back with their bytes (point 1).
pub fn inserted_changes_are_read_back<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![
        (actor(1), 1, b"one".to_vec()),
        (actor(1), 2, b"two".to_vec()),
    ])?;
    p.insert_changes(vec![(actor(2), 1, b"three".to_vec())])?;
    assert_eq!(
        p.get_changes()?,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    Ok(())
}

/// The document is read back (point 1).
pub fn document_is_read_back<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_document(b"compacted \x00 bytes".to_vec())?;
    assert_eq!(p.get_document()?, Some(b"compacted \x00 bytes".to_vec()));
    Ok(())
}

/// A sync state is read back under its peer id, and only there (point 1).
pub fn sync_state_is_read_back<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_sync_state(b"peer-a".to_vec(), b"state a".to_vec())?;
    assert_eq!(p.get_sync_state(b"peer-a")?, Some(b"state a".to_vec()));
    assert_eq!(p.get_sync_state(b"peer-")?, None);
    assert_eq!(p.get_sync_state(b"peer-ab")?, None);
    Ok(())
}

/// Reads see writes that were never flushed (point 1).
pub fn unflushed_writes_are_visible<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.flush()?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"c".to_vec())
            .set_document(b"d".to_vec())
            .set_sync_state(b"p".to_vec(), b"s".to_vec()),
    )?;
    assert_eq!(p.get_changes()?, vec![b"c".to_vec()]);
    assert_eq!(p.get_document()?, Some(b"d".to_vec()));
    assert_eq!(p.get_sync_state(b"p")?, Some(b"s".to_vec()));
    assert_eq!(p.sizes().total_bytes(), 3);
    Ok(())
}

/// Empty values are stored as empty, not as absent (point 1).
pub fn empty_values_are_stored<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, Vec::new())
            .set_document(Vec::new())
            .set_sync_state(Vec::new(), Vec::new()),
    )?;
    assert_eq!(p.get_changes()?, vec![Vec::<u8>::new()]);
    assert_eq!(p.get_document()?, Some(Vec::new()));
    assert_eq!(p.get_peer_ids()?, vec![Vec::<u8>::new()]);
    assert_eq!(p.get_sync_state(b"")?, Some(Vec::new()));
    assert_eq!(p.sizes().change_count, 1);
    assert_eq!(p.sizes().sync_state_count, 1);
    Ok(())
}

/// Values of several MiB come back byte for byte, before and after a flush (point 1).
pub fn large_values_round_trip<F: Fixture>(f: &F) -> Result<()> {
    let big: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_document(big.clone())?;
    p.insert_changes(vec![(actor(1), 1, big[..1024 * 1024].to_vec())])?;
    assert_eq!(p.get_document()?.as_deref(), Some(big.as_slice()));
    p.flush()?;
    drop(p);
    let store = super::reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert_eq!(p.get_document()?.as_deref(), Some(big.as_slice()));
    assert_eq!(p.get_changes()?, vec![big[..1024 * 1024].to_vec()]);
    Ok(())
}

/// Ten thousand changes in many batches come back in order (points 1, 3).
pub fn many_changes_round_trip<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for chunk in 0..100u64 {
        p.insert_changes(
            (0..100u64)
                .map(|i| {
                    let seq = chunk * 100 + i + 1;
                    (actor((seq % 4) as u8), seq, seq.to_be_bytes().to_vec())
                })
                .collect(),
        )?;
    }
    let entries = p.get_change_entries()?;
    assert_eq!(entries.len(), 10_000);
    let mut expected: Vec<_> = (1..=10_000u64)
        .map(|seq| (actor((seq % 4) as u8), seq, seq.to_be_bytes().to_vec()))
        .collect();
    expected.sort();
    assert!(entries == expected, "changes differ from those inserted");
    Ok(())
}

/// `get_changes` is `get_change_entries` without the keys (point 3).
pub fn change_entries_match_changes<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![
        (actor(3), 2, b"a".to_vec()),
        (actor(1), 9, b"b".to_vec()),
        (actor(3), 1, b"c".to_vec()),
    ])?;
    let values: Vec<_> = p.get_change_entries()?.into_iter().map(|e| e.2).collect();
    assert_eq!(values, p.get_changes()?);
    assert_eq!(values, vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]);
    Ok(())
}

/// Inserting an existing `(actor, seq)` replaces its bytes (point 2).
pub fn overwriting_a_change_replaces_it<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"old value".to_vec())])?;
    p.insert_changes(vec![(actor(1), 1, b"new".to_vec())])?;
    assert_eq!(p.get_changes()?, vec![b"new".to_vec()]);
    assert_eq!(p.sizes().changes, 3);
    assert_eq!(p.sizes().change_count, 1);
    Ok(())
}

/// Setting the document again replaces it (point 2).
pub fn overwriting_the_document_replaces_it<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_document(b"first version".to_vec())?;
    p.set_document(b"second".to_vec())?;
    assert_eq!(p.get_document()?, Some(b"second".to_vec()));
    assert_eq!(p.sizes().document, 6);
    Ok(())
}

/// Setting a peer's sync state again replaces it (point 2).
pub fn overwriting_a_sync_state_replaces_it<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.set_sync_state(b"peer".to_vec(), b"state one".to_vec())?;
    p.set_sync_state(b"peer".to_vec(), b"two".to_vec())?;
    assert_eq!(p.get_sync_state(b"peer")?, Some(b"two".to_vec()));
    assert_eq!(p.get_peer_ids()?, vec![b"peer".to_vec()]);
    assert_eq!((p.sizes().sync_states, p.sizes().sync_state_count), (3, 1));
    Ok(())
}

/// Removing a change removes that one and no other (point 2).
pub fn removing_a_change_removes_only_it<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![
        (actor(1), 1, b"a".to_vec()),
        (actor(1), 2, b"b".to_vec()),
        (actor(2), 1, b"c".to_vec()),
    ])?;
    p.remove_changes(vec![(&actor(1), 2)])?;
    assert_eq!(p.get_changes()?, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!((p.sizes().changes, p.sizes().change_count), (2, 2));
    Ok(())
}

/// Removing changes that are not there is not an error and changes nothing (point 2).
pub fn removing_absent_changes_is_not_an_error<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.remove_changes(vec![(&actor(1), 1)])?;
    p.insert_changes(vec![(actor(1), 1, b"a".to_vec())])?;
    p.remove_changes(vec![(&actor(1), 2), (&actor(2), 1)])?;
    assert_eq!(p.get_changes()?, vec![b"a".to_vec()]);
    assert_eq!(p.sizes().change_count, 1);
    Ok(())
}

/// Removing flushed changes removes exactly those named, whether they are dense in the
/// seqs they span (as a compaction removes them), sparse, or absent; also when the actor
/// is a prefix of another's (points 2, 3).
pub fn removing_flushed_runs_removes_exactly_them<F: Fixture>(f: &F) -> Result<()> {
    let (a, b) = (ActorId::new([1]), ActorId::new([1, 0]));
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for seq in 1..=40u64 {
        p.insert_changes(vec![
            (a.clone(), seq, vec![seq as u8]),
            (b.clone(), seq, vec![2; 2]),
        ])?;
    }
    p.flush()?;
    let mut removals: Vec<(&ActorId, u64)> =
        (1..=20).filter(|s| s % 7 != 0).map(|s| (&a, s)).collect();
    removals.extend([(&b, 2), (&b, 30), (&b, 99)]);
    p.remove_changes(removals)?;
    p.flush()?;
    drop(p);
    let store = super::reopen(f, store)?;
    let p = open(&store, "doc")?;
    let kept: Vec<(ActorId, u64)> = p
        .get_change_entries()?
        .into_iter()
        .map(|(actor, seq, _)| (actor, seq))
        .collect();
    let mut expected: Vec<(ActorId, u64)> = (1..=40)
        .filter(|s| *s > 20 || s % 7 == 0)
        .map(|s| (a.clone(), s))
        .collect();
    expected.extend(
        (1..=40)
            .filter(|s| ![2, 30].contains(s))
            .map(|s| (b.clone(), s)),
    );
    assert_eq!(kept, expected);
    assert_eq!(p.sizes().change_count, expected.len() as u64);
    Ok(())
}

/// Removing sync states removes exactly the peers named (point 2).
pub fn removing_sync_states_removes_only_them<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for peer in [&b"a"[..], b"b", b"c"] {
        p.set_sync_state(peer.to_vec(), peer.repeat(3))?;
    }
    p.remove_sync_states(&[b"a", b"c"])?;
    assert_eq!(p.get_peer_ids()?, vec![b"b".to_vec()]);
    assert_eq!(p.get_sync_state(b"a")?, None);
    assert_eq!(p.get_sync_state(b"b")?, Some(b"bbb".to_vec()));
    assert_eq!((p.sizes().sync_states, p.sizes().sync_state_count), (3, 1));
    Ok(())
}

/// Removing sync states that are not there is not an error (point 2).
pub fn removing_absent_sync_states_is_not_an_error<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.remove_sync_states(&[b"nobody"])?;
    p.set_sync_state(b"x".to_vec(), b"s".to_vec())?;
    p.remove_sync_states(&[b"y", b""])?;
    assert_eq!(p.get_peer_ids()?, vec![b"x".to_vec()]);
    Ok(())
}

/// A peer without a state reads as absent beside stored states, held new ones and held
/// removals, before and after a flush and a reopen: the check that tells a lost state
/// from an absent one (point 2, and errors, not lies) never takes one for the other.
pub fn a_peer_without_state_reads_absent_beside_others<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    for peer in [&b"a"[..], b"b", b"c"] {
        p.set_sync_state(peer.to_vec(), peer.repeat(2))?;
    }
    p.flush()?;
    p.remove_sync_states(&[b"a"])?;
    p.set_sync_state(b"d".to_vec(), b"dd".to_vec())?;
    for _ in 0..2 {
        for absent in [&b"a"[..], b"nobody", b""] {
            assert_eq!(p.get_sync_state(absent)?, None);
        }
        assert_eq!(p.get_sync_state(b"b")?, Some(b"bb".to_vec()));
        assert_eq!(p.get_sync_state(b"d")?, Some(b"dd".to_vec()));
        p.flush()?;
    }
    drop(p);
    let mut p = open(&store, "doc")?;
    p.remove_sync_states(&[b"b", b"c", b"d"])?;
    assert_eq!(p.get_sync_state(b"b")?, None);
    assert_eq!(p.get_sync_state(b"nobody")?, None);
    p.flush()?;
    drop(p);
    let p = open(&store, "doc")?;
    assert_eq!(p.get_sync_state(b"nobody")?, None);
    assert_eq!(p.get_peer_ids()?, Vec::<Vec<u8>>::new());
    Ok(())
}

/// Changes come ordered by actor bytes (a prefix first), then by numeric seq (point 3).
pub fn changes_are_ordered_by_actor_then_seq<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    let actors = [
        crate::ActorId::new(vec![0x01, 0x00]),
        crate::ActorId::new(vec![0x01]),
        crate::ActorId::new(vec![0xff]),
        crate::ActorId::new(vec![0x01, 0x00, 0x00]),
        crate::ActorId::new(vec![0x00]),
    ];
    let seqs = [u64::MAX, 256, 1, 255, 0, 65_536, 2];
    let mut inserted = Vec::new();
    for (i, a) in actors.iter().enumerate() {
        for (j, seq) in seqs.iter().enumerate() {
            inserted.push((a.clone(), *seq, vec![i as u8, j as u8]));
        }
    }
    // Insert in a scrambled order, in two batches.
    inserted.reverse();
    let second = inserted.split_off(inserted.len() / 2);
    p.insert_changes(second.clone())?;
    p.insert_changes(inserted.clone())?;
    inserted.extend(second);
    inserted.sort_by(|a, b| (a.0.as_bytes(), a.1).cmp(&(b.0.as_bytes(), b.1)));
    assert!(
        p.get_change_entries()? == inserted,
        "changes not in (actor, seq) order"
    );
    Ok(())
}

/// `get_peer_ids` returns exactly the peer ids given, binary ones too, sorted (point 3).
pub fn peer_ids_are_exactly_those_given<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    let mut peers: Vec<Vec<u8>> = vec![
        b"peer".to_vec(),
        b"peer-2".to_vec(),
        vec![0, 0, 0],
        vec![0xff, 0xfe],
        b"pe".to_vec(),
        vec![b'/'; 40],
    ];
    for (i, peer) in peers.iter().enumerate() {
        p.set_sync_state(peer.clone(), vec![i as u8])?;
    }
    peers.sort();
    assert_eq!(p.get_peer_ids()?, peers);
    for peer in &peers {
        assert!(p.get_sync_state(peer)?.is_some());
    }
    assert_eq!(contents(&p)?.sync_states.len(), 6);
    Ok(())
}
