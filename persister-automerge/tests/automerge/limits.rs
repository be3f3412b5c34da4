//! What no persister stores (an actor id or a peer id over persister-core's limits) is
//! refused with an error, and never left queued: a write that can never be applied
//! would go first in every later batch, and no edit would be stored again. A failed
//! flush says the handle refuses every later write, not that the write is retried.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use persister_automerge::{CompactionTrigger, Error, FlushPolicy, Options, PersistentDoc};
use persister_core::{
    MAX_ACTOR_ID_LEN, MAX_PEER_ID_LEN, MemoryPersister, MemoryStore, Persister, Store,
};

use crate::support::{TestResult, doc_id, read_text};

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

/// Checks that `result` is [`Error::FlushFailed`] and that its message tells how to keep
/// the changes, not that anything is retried.
fn assert_flush_failed<T: std::fmt::Debug>(result: &persister_automerge::Result<T>, what: &str) {
    let Err(e @ Error::FlushFailed(_)) = result else {
        panic!("{what}: expected Error::FlushFailed, got {result:?}");
    };
    let message = e.to_string();
    assert!(
        message.contains("refuses every later write"),
        "{what}: {message}"
    );
    assert!(message.contains("merge the clone in"), "{what}: {message}");
    assert!(!message.contains("retries"), "{what}: {message}");
    assert!(!message.contains("retried"), "{what}: {message}");
    assert!(std::error::Error::source(e).is_some(), "{what}");
}

fn manual() -> Options {
    Options::default()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger::never())
}

#[test]
fn a_failed_flush_says_the_handle_refuses_every_later_write() -> TestResult {
    // An edit whose write is applied, then its flush fails: nothing is queued to retry.
    let store = MemoryStore::new();
    let options = Options::default().with_compaction(CompactionTrigger::never());
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options.clone())?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    doc.edit(|d| d.splice_text(&text, 0, 0, "durable"))?;
    store.fail_next_flush();
    let edit = doc.edit(|d| d.splice_text(&text, 7, 0, " one"));
    assert_flush_failed(&edit, "edit");
    assert_eq!(doc.queued_writes(), 0);
    // Every later write is refused, and the message says how to keep it.
    let later = doc.edit(|d| d.splice_text(&text, 11, 0, " two"));
    let Err(e @ Error::Persister(persister_core::Error::Poisoned { .. })) = &later else {
        return Err(format!("expected a poisoned handle, got {later:?}").into());
    };
    assert!(!e.to_string().contains("retries"), "{e}");
    assert!(e.to_string().contains("merge the clone in"), "{e}");
    // So is closing: the queued write is refused, and it says so.
    let mut kept = doc.doc().clone();
    let closed = doc.close();
    assert!(
        matches!(
            closed,
            Err(Error::Persister(persister_core::Error::Poisoned { .. }))
        ),
        "{:?}",
        closed.err()
    );
    // The way back the message gives keeps every edit.
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    doc.edit(|d| d.merge(&mut kept).map(|_| ()))?;
    doc.close()?;
    let doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("durable one two"));

    // An explicit flush, and every flush after it.
    let store = MemoryStore::new();
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, manual())?;
    doc.edit(|d| d.put(ROOT, "unflushed", 1))?;
    store.fail_next_flush();
    assert_flush_failed(&doc.flush(), "flush");
    assert_flush_failed(&doc.flush(), "the flush after a failed flush");
    assert_flush_failed(&doc.close(), "close after a failed flush");

    // Close, whose flush fails.
    let store = MemoryStore::new();
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, manual())?;
    doc.edit(|d| d.put(ROOT, "unflushed", 1))?;
    store.fail_next_flush();
    assert_flush_failed(&doc.close(), "close");
    Ok(())
}

#[test]
fn a_sync_message_whose_flush_fails_is_a_failed_flush() -> TestResult {
    let store = MemoryStore::new();
    let options = Options::default().with_compaction(CompactionTrigger::never());
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    let mut peer = AutoCommit::new();
    peer.put(ROOT, "from_peer", 2)?;
    peer.commit();
    store.fail_next_flush();
    let received = doc.receive_sync_message(b"peer", first_message(&mut peer)?);
    assert_flush_failed(&received, "receive_sync_message");
    assert_eq!(doc.queued_writes(), 0);
    Ok(())
}

#[test]
fn a_compaction_whose_flush_fails_is_a_failed_flush_not_a_compaction_to_retry() -> TestResult {
    // The automatic compaction after an edit: the edit's batch is not flushed (one
    // batch of two), the compaction's is, and that flush fails.
    let store = MemoryStore::new();
    let options = Options::default()
        .with_flush(FlushPolicy::EveryBatches(2))
        .with_compaction(CompactionTrigger {
            min_changes: 1,
            change_to_document_ratio: 0.0,
        });
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options.clone())?;
    store.fail_next_flush();
    let edit = doc.edit(|d| d.put(ROOT, "compacted", 1));
    assert_flush_failed(&edit, "automatic compaction");
    let message = edit.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!message.contains("nothing is lost"), "{message}");
    assert_eq!(doc.queued_writes(), 0);
    // It was applied: the change it covered is no longer stored.
    assert_eq!(doc.sizes().change_count, 0);
    let mut kept = doc.doc().clone();
    drop(doc);
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    doc.edit(|d| d.merge(&mut kept).map(|_| ()))?;
    doc.close()?;
    let doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    assert!(doc.doc().get(ROOT, "compacted")?.is_some());

    // An explicit compaction.
    let store = MemoryStore::new();
    let options = Options::default().with_compaction(CompactionTrigger::never());
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    doc.edit(|d| d.put(ROOT, "compacted", 1))?;
    store.fail_next_flush();
    assert_flush_failed(&doc.compact(), "compact");

    // One that changes no size (the same document again, nothing stored), applied,
    // whose flush then fails: a failed flush all the same.
    let store = MemoryStore::new();
    let options = Options::default()
        .with_flush(FlushPolicy::EveryBatch)
        .with_compaction(CompactionTrigger::never());
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    doc.edit(|d| d.put(ROOT, "compacted", 1))?;
    doc.compact()?;
    let sizes = doc.sizes();
    store.fail_next_flush();
    assert_flush_failed(&doc.compact(), "compact with no change");
    assert_eq!(doc.sizes(), sizes);
    Ok(())
}
