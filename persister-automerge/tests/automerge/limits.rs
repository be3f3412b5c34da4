//! What no persister stores (an actor id or a peer id over persister-core's limits) is
//! refused with an error, and never left queued: a write that can never be applied
//! would go first in every later batch, and no edit would be stored again.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use persister_automerge::{Error, PersistentDoc};
use persister_core::{MAX_ACTOR_ID_LEN, MAX_PEER_ID_LEN, MemoryPersister, Persister};

use crate::support::TestResult;

/// The first message `peer` sends to a document that has nothing.
fn first_message(peer: &mut AutoCommit) -> TestResult<sync::Message> {
    let mut state = sync::State::new();
    let mut ours = sync::State::new();
    let hello = AutoCommit::new()
        .sync()
        .generate_sync_message(&mut ours)
        .ok_or("no first message")?;
    peer.sync().receive_sync_message(&mut state, hello)?;
    let message = peer
        .sync()
        .generate_sync_message(&mut state)
        .ok_or("the peer sends nothing")?;
    assert!(!message.changes.is_empty());
    Ok(sync::Message::decode(&message.encode())?)
}

#[test]
fn a_peer_s_change_whose_actor_id_no_persister_stores_is_refused() -> TestResult {
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p)?;
    doc.edit(|d| d.put(ROOT, "before", 1))?;
    let mut peer =
        AutoCommit::new().with_actor(automerge::ActorId::from(vec![9u8; MAX_ACTOR_ID_LEN + 1]));
    peer.put(ROOT, "from_peer", 2)?;
    peer.commit();

    let received = doc.receive_sync_message(b"peer", first_message(&mut peer)?);
    assert!(
        matches!(&received, Err(Error::Broken { reason }) if reason.contains("actor id")),
        "{received:?}"
    );
    // Nothing of it waits to be written, so nothing blocks what is written next.
    assert_eq!(doc.queued_writes(), 0);
    drop(doc);
    assert_eq!(p.sizes().change_count, 1);
    assert_eq!(p.sizes().sync_state_count, 0);
    let mut doc = PersistentDoc::load(&mut p)?;
    assert!(doc.doc().get(ROOT, "from_peer")?.is_none());
    doc.edit(|d| d.put(ROOT, "after", 3))?;
    assert_eq!(doc.queued_writes(), 0);
    drop(doc);
    assert_eq!(p.sizes().change_count, 2);
    Ok(())
}

#[test]
fn a_peer_id_no_persister_stores_is_refused_before_anything_is_applied() -> TestResult {
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p)?;
    doc.edit(|d| d.put(ROOT, "before", 1))?;
    let heads = doc.heads();
    let long = vec![b'p'; MAX_PEER_ID_LEN + 1];
    let mut peer = AutoCommit::new();
    peer.put(ROOT, "from_peer", 2)?;
    peer.commit();

    let received = doc.receive_sync_message(&long, first_message(&mut peer)?);
    assert!(
        matches!(
            &received,
            Err(Error::Persister(persister_core::Error::TooLarge {
                what: "peer id",
                ..
            }))
        ),
        "{received:?}"
    );
    assert_eq!(doc.heads(), heads, "the message was applied");
    assert!(doc.sync_state(&long).is_none());
    let generated = doc.generate_sync_message(&long);
    assert!(
        matches!(&generated, Err(Error::Persister(_))),
        "{generated:?}"
    );
    let removed = doc.remove_peer(&long);
    assert!(matches!(&removed, Err(Error::Persister(_))), "{removed:?}");

    // Nothing was queued: the next edit is written.
    doc.edit(|d| d.put(ROOT, "after", 3))?;
    assert_eq!(doc.queued_writes(), 0);
    drop(doc);
    assert_eq!(p.sizes().change_count, 2);
    Ok(())
}

#[test]
fn an_actor_id_no_persister_stores_is_refused_on_load() -> TestResult {
    let mut p = MemoryPersister::new();
    let options = persister_automerge::Options::default()
        .with_actor(automerge::ActorId::from(vec![1u8; MAX_ACTOR_ID_LEN + 1]));
    let loaded = PersistentDoc::load_with(&mut p, options);
    assert!(
        matches!(
            &loaded,
            Err(Error::Persister(persister_core::Error::TooLarge {
                what: "actor id",
                ..
            }))
        ),
        "{:?}",
        loaded.err()
    );
    Ok(())
}
