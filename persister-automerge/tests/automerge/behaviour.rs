//! The pending queue, compaction, sync-state writes, loading and errors, observed
//! through a persister that records every batch and fails on demand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use persister_automerge::{Error, Options, PersistentDoc};
use persister_core::{
    ActorId, Batch, ChangeEntry, CompactionTrigger, DynPersister, FlushPolicy, MemoryStore,
    Persister, Store, StoredSizes, Write,
};

use crate::support::named;
use crate::support::{
    Location, Replica, TestResult, backend_tests, doc_id, open_doc, read_text, text_object,
};

/// A persister that records the batches it applies and refuses them while `fail` is
/// set (or, while `fail_compactions` is set, those that store a document), as a full
/// disk would.
struct Watched<P> {
    inner: P,
    batches: Arc<Mutex<Vec<Batch>>>,
    fail: Arc<AtomicBool>,
    fail_compactions: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
struct Watch {
    batches: Arc<Mutex<Vec<Batch>>>,
    fail: Arc<AtomicBool>,
    fail_compactions: Arc<AtomicBool>,
}

impl Watch {
    fn wrap<P>(&self, inner: P) -> Watched<P> {
        Watched {
            inner,
            batches: Arc::clone(&self.batches),
            fail: Arc::clone(&self.fail),
            fail_compactions: Arc::clone(&self.fail_compactions),
        }
    }

    fn fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Refuses the batches that store a document (compactions) while `fail` is set.
    fn fail_compactions(&self, fail: bool) {
        self.fail_compactions.store(fail, Ordering::SeqCst);
    }

    /// The batches applied since the last call.
    fn take(&self) -> Vec<Batch> {
        std::mem::take(&mut *self.batches.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<P: Persister<Error = persister_core::Error>> Persister for Watched<P> {
    type Error = persister_core::Error;

    fn apply(&mut self, batch: Batch) -> persister_core::Result<()> {
        let compaction = batch
            .writes()
            .iter()
            .any(|w| matches!(w, Write::SetDocument(_)));
        if self.fail.load(Ordering::SeqCst)
            || (compaction && self.fail_compactions.load(Ordering::SeqCst))
        {
            return Err(persister_core::Error::io(
                "write",
                "<watched>",
                std::io::Error::other("no space left on device (simulated)"),
            ));
        }
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(batch.clone());
        self.inner.apply(batch)
    }
    fn get_change_entries(&self) -> persister_core::Result<Vec<ChangeEntry>> {
        self.inner.get_change_entries()
    }
    fn get_document(&self) -> persister_core::Result<Option<Vec<u8>>> {
        self.inner.get_document()
    }
    fn get_sync_state(&self, peer_id: &[u8]) -> persister_core::Result<Option<Vec<u8>>> {
        self.inner.get_sync_state(peer_id)
    }
    fn get_peer_ids(&self) -> persister_core::Result<Vec<Vec<u8>>> {
        self.inner.get_peer_ids()
    }
    fn sizes(&self) -> StoredSizes {
        self.inner.sizes()
    }
    fn flush(&mut self) -> persister_core::Result<usize> {
        self.inner.flush()
    }
}

type WatchedDoc = PersistentDoc<Watched<DynPersister>>;

fn open_watched(
    store: &persister_core::DynStore,
    watch: &Watch,
    options: Options,
) -> TestResult<WatchedDoc> {
    let persister = watch.wrap(store.open_document(&doc_id())?);
    Ok(PersistentDoc::load_with(persister, options)?)
}

fn manual() -> Options {
    Options::default()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger::never())
}

fn insert(doc: &mut WatchedDoc, text: &automerge::ObjId, at: usize, s: &str) -> Result<(), Error> {
    doc.edit(|d| d.splice_text(text, at, 0, s))
}

fn watched_text(doc: &mut WatchedDoc) -> TestResult<automerge::ObjId> {
    Ok(doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?)
}

fn count(batch: &Batch, pred: impl Fn(&Write) -> bool) -> usize {
    batch.writes().iter().filter(|w| pred(w)).count()
}

fn is_insert(w: &Write) -> bool {
    matches!(w, Write::InsertChange { .. })
}

fn is_sync_state(w: &Write) -> bool {
    matches!(w, Write::SetSyncState { .. })
}

backend_tests! {
    [memory, redb, sled, fs]

    /// A refused write keeps its change queued; the next write applies the queue and
    /// the new change in one batch; after a restart every edit is there.
    fn failed_writes_stay_queued_until_the_next_write(backend: Backend) -> TestResult {
        let location = Location::new(&backend)?;
        let watch = Watch::default();
        {
            let store = location.open()?;
            let mut doc = open_watched(&store, &watch, manual())?;
            let text = watched_text(&mut doc)?;
            insert(&mut doc, &text, 0, "a")?;
            assert_eq!(doc.sizes().change_count, 2);

            watch.fail(true);
            let refused = insert(&mut doc, &text, 1, "b");
            assert!(matches!(refused, Err(Error::Persister(_))), "{refused:?}");
            // Not applied, so queued: the message saying it is retried is true.
            let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("retries them on the next write"), "{message}");
            let refused = insert(&mut doc, &text, 2, "c");
            assert!(matches!(refused, Err(Error::Persister(_))), "{refused:?}");
            // The edits are in the document, not yet in the store.
            assert_eq!(doc.queued_writes(), 2);
            assert_eq!(doc.sizes().change_count, 2);
            assert_eq!(read_text(doc.doc())?.as_deref(), Some("abc"));

            watch.fail(false);
            watch.take();
            insert(&mut doc, &text, 3, "d")?;
            assert_eq!(doc.queued_writes(), 0);
            let batches = watch.take();
            assert_eq!(batches.len(), 1, "the queue and the new change go in one batch");
            assert_eq!(count(&batches[0], is_insert), 3);
            assert_eq!(doc.sizes().change_count, 5);

            // A failed write is also drained by flush; a flush that cannot apply it says
            // so, and is not a failed flush.
            watch.fail(true);
            assert!(insert(&mut doc, &text, 4, "e").is_err());
            let flushed = doc.flush();
            assert!(matches!(flushed, Err(Error::Persister(_))), "{flushed:?}");
            assert_eq!(doc.queued_writes(), 1);
            watch.fail(false);
            assert!(doc.flush()? > 0);
            assert_eq!(doc.queued_writes(), 0);
            doc.close()?;
        }
        let store = location.open()?;
        let doc = open_doc(&store, manual())?;
        assert_eq!(read_text(doc.doc())?.as_deref(), Some("abcde"));
        Ok(())
    }

    /// Compaction is one batch: the document, and the removal of exactly the changes it
    /// covers. A stored change whose predecessor is missing is not covered and stays,
    /// until the document gets it.
    fn compaction_removes_exactly_the_covered_changes(backend: Backend) -> TestResult {
        // An outside history of three changes by one actor; the store gets only the
        // third, so it cannot apply until the first two arrive.
        let mut outside = AutoCommit::new().with_actor(automerge::ActorId::from([7u8; 16]));
        let list = outside.put_object(ROOT, "outside", ObjType::List)?;
        outside.commit();
        outside.insert(&list, 0, 1)?;
        outside.commit();
        outside.insert(&list, 1, 2)?;
        outside.commit();
        let changes = outside.get_changes(&[]);
        let orphan = &changes[2];
        let orphan_key = (ActorId::new(orphan.actor_id().to_bytes()), orphan.seq());

        let location = Location::new(&backend)?;
        let watch = Watch::default();
        let store = location.open()?;
        {
            let mut p = store.open_document(&doc_id())?;
            p.insert_changes(vec![(orphan_key.0.clone(), orphan_key.1, orphan.raw_bytes().to_vec())])?;
            p.flush()?;
        }
        let mut doc = open_watched(&store, &watch, manual())?;
        assert_eq!(doc.orphaned_changes(), 1);
        let text = watched_text(&mut doc)?;
        for (i, s) in ["x", "y", "z"].into_iter().enumerate() {
            insert(&mut doc, &text, i, s)?;
        }
        assert_eq!(doc.sizes().change_count, 5);
        watch.take();

        doc.compact()?;
        let batches = watch.take();
        assert_eq!(batches.len(), 1, "compaction is one batch");
        let writes = batches[0].writes();
        assert_eq!(count(&batches[0], |w| matches!(w, Write::SetDocument(_))), 1);
        let removed: Vec<_> = writes
            .iter()
            .filter_map(|w| match w {
                Write::RemoveChange { actor, seq } => Some((actor.clone(), *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(removed.len(), 4, "the text object and three inserts: {removed:?}");
        assert!(!removed.contains(&orphan_key));
        let kept = doc.persister().get_change_entries()?;
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].0.clone(), kept[0].1), orphan_key);

        // The missing changes arrive (by a merge, persisted like any edit): now the
        // orphan applies, and the next compaction removes it.
        let mut first_two = AutoCommit::new();
        first_two.apply_changes(changes[..2].to_vec())?;
        doc.edit(|d| d.merge(&mut first_two).map(|_| ()))?;
        assert_eq!(doc.orphaned_changes(), 1);
        doc.compact()?;
        assert_eq!(doc.orphaned_changes(), 0);
        assert_eq!(doc.sizes().change_count, 0);
        let (_, outside_list) = doc.doc().get(ROOT, "outside")?.ok_or("no list")?;
        assert_eq!(doc.doc().length(&outside_list), 2);
        doc.close()?;

        // Reloading the compacted document gives the same state.
        let doc = open_doc(&store, manual())?;
        assert_eq!(read_text(doc.doc())?.as_deref(), Some("xyz"));
        assert_eq!(doc.orphaned_changes(), 0);
        Ok(())
    }

    /// The automatic trigger compacts after the write that crosses it, and compacted
    /// documents with changes after them reload.
    fn automatic_compaction_follows_the_trigger(backend: Backend) -> TestResult {
        let location = Location::new(&backend)?;
        let watch = Watch::default();
        let trigger = CompactionTrigger { min_changes: 10, change_to_document_ratio: 0.0 };
        let store = location.open()?;
        let mut doc = open_watched(&store, &watch, manual().with_compaction(trigger))?;
        let text = watched_text(&mut doc)?;
        for i in 0..8 {
            insert(&mut doc, &text, i, "a")?;
        }
        assert_eq!(doc.sizes().change_count, 9);
        assert_eq!(doc.sizes().document, 0);
        insert(&mut doc, &text, 8, "b")?;
        assert_eq!(doc.sizes().change_count, 0);
        assert!(doc.sizes().document > 0);
        for i in 0..5 {
            insert(&mut doc, &text, 9 + i, "c")?;
        }
        assert_eq!(doc.sizes().change_count, 5);
        doc.close()?;
        let doc = open_doc(&store, manual())?;
        assert_eq!(read_text(doc.doc())?.as_deref(), Some("aaaaaaaabccccc"));
        Ok(())
    }

    /// A sync state is written when its encoding changes and never otherwise; the
    /// changes a message brings and the new state go in one batch.
    fn sync_state_is_written_only_when_it_changes(backend: Backend) -> TestResult {
        let location = Location::new(&backend)?;
        let watch = Watch::default();
        let store = location.open()?;
        let mut a = open_watched(&store, &watch, manual())?;
        let mut b = Replica::new(&named("memory"), manual())?;
        let text = text_object(b.doc()?)?;
        b.doc()?.edit(|d| d.splice_text(&text, 0, 0, "from b"))?;
        watch.take();

        let mut last_written: Option<Vec<u8>> = None;
        let mut state_writes = 0;
        for _ in 0..20 {
            let from_a = a.generate_sync_message(b"b")?;
            let generated = watch.take();
            for batch in &generated {
                assert_eq!(count(batch, is_insert), 0);
            }
            let from_b = match from_a {
                Some(m) => {
                    b.doc()?.receive_sync_message(b"a", crate::support::transmit(m)?)?;
                    b.doc()?.generate_sync_message(b"a")?
                }
                None => b.doc()?.generate_sync_message(b"a")?,
            };
            let Some(message) = from_b else {
                break;
            };
            let brought_changes = !message.changes.is_empty();
            a.receive_sync_message(b"b", crate::support::transmit(message)?)?;
            for batch in generated.iter().chain(&watch.take()) {
                if brought_changes && count(batch, is_insert) > 0 {
                    assert_eq!(count(batch, is_sync_state), 1, "changes and state in one batch");
                }
                for write in batch.writes() {
                    if let Write::SetSyncState { peer, state } = write {
                        assert_eq!(peer, b"b");
                        assert_ne!(last_written.as_ref(), Some(state), "an unchanged state was written");
                        last_written = Some(state.clone());
                        state_writes += 1;
                    }
                }
            }
        }
        assert_eq!(read_text(a.doc())?.as_deref(), Some("from b"));
        assert!(state_writes >= 1);
        let stored = a.persister().get_sync_state(b"b")?;
        assert_eq!(stored, last_written);
        let in_memory = a.sync_state(b"b").ok_or("no state")?.encode();
        assert_eq!(stored, Some(in_memory));

        // In sync: generating writes nothing.
        assert!(a.generate_sync_message(b"b")?.is_none());
        assert!(watch.take().is_empty());
        Ok(())
    }
}

#[test]
fn a_failing_edit_is_rolled_back_and_what_it_committed_is_kept() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    let result = doc.edit(|d| {
        d.splice_text(&text, 0, 0, "kept")?;
        d.commit();
        d.splice_text(&text, 4, 0, " dropped")?;
        d.splice_text(&text, 1_000, 0, "out of range")
    });
    assert!(matches!(result, Err(Error::Automerge(_))), "{result:?}");
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("kept"));
    assert_eq!(doc.sizes().change_count, 2);

    // A commit inside the edit, then operations left for the edit to commit: both
    // changes are stored.
    doc.edit(|d| {
        let at = d.length(&text);
        d.splice_text(&text, at, 0, "!")?;
        d.commit();
        d.splice_text(&text, at + 1, 0, "?")
    })?;
    assert_eq!(doc.sizes().change_count, 4);
    doc.close()?;
    let mut doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("kept!?"));
    // The exported document is the same document.
    let mut exported = AutoCommit::load(&doc.save_document())?;
    assert_eq!(read_text(&exported)?.as_deref(), Some("kept!?"));
    assert_eq!(exported.get_heads(), doc.heads());
    Ok(())
}

/// An automatic compaction the persister does not apply is [`Error::Compaction`], and
/// what its message says is true: every change is still stored, and compaction is
/// tried again after the next write.
#[test]
fn a_refused_automatic_compaction_keeps_every_change_and_is_retried() -> TestResult {
    let location = Location::new(&named("memory"))?;
    let watch = Watch::default();
    let store = location.open()?;
    let trigger = CompactionTrigger {
        min_changes: 3,
        change_to_document_ratio: 0.0,
    };
    let mut doc = open_watched(&store, &watch, manual().with_compaction(trigger))?;
    let text = watched_text(&mut doc)?;
    insert(&mut doc, &text, 0, "a")?;
    watch.fail_compactions(true);
    let refused = insert(&mut doc, &text, 1, "b");
    let Err(e @ Error::Compaction(_)) = &refused else {
        return Err(format!("expected a failed compaction, got {refused:?}").into());
    };
    assert!(e.to_string().contains("nothing is lost"), "{e}");
    assert!(
        e.to_string().contains("retried after the next write"),
        "{e}"
    );
    assert_eq!(doc.queued_writes(), 0);
    assert_eq!(doc.sizes().change_count, 3);
    assert_eq!(doc.sizes().document, 0);

    watch.fail_compactions(false);
    insert(&mut doc, &text, 2, "c")?;
    assert_eq!(doc.sizes().change_count, 0);
    assert!(doc.sizes().document > 0);
    doc.close()?;
    let doc = open_doc(&store, manual())?;
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("abc"));
    Ok(())
}

/// After a failed flush poisons the handle, the documented way back: keep the
/// document, reopen the store, merge it into a fresh load. Nothing is lost.
#[test]
fn a_poisoned_handle_recovers_by_merging_into_a_reopened_store() -> TestResult {
    let store = MemoryStore::new();
    let options = Options::default()
        .with_flush(FlushPolicy::EveryBatch)
        .with_compaction(CompactionTrigger::never());
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options.clone())?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    doc.edit(|d| d.splice_text(&text, 0, 0, "durable"))?;
    store.fail_next_flush();
    let failed = doc.edit(|d| d.splice_text(&text, 7, 0, " one"));
    assert!(matches!(failed, Err(Error::FlushFailed(_))), "{failed:?}");
    let refused = doc.edit(|d| d.splice_text(&text, 11, 0, " two"));
    let Err(Error::Persister(persister_core::Error::Poisoned { .. })) = refused else {
        return Err(format!("expected a poisoned handle, got {refused:?}").into());
    };
    // " one" was applied (only its flush failed), so only " two" waits.
    assert_eq!(doc.queued_writes(), 1);

    let mut kept = doc.doc().clone();
    drop(doc);
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, options)?;
    doc.edit(|d| d.merge(&mut kept).map(|_| ()))?;
    doc.close()?;
    let doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("durable one two"));
    Ok(())
}

#[test]
fn damaged_stored_data_is_an_error_not_a_partial_document() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    doc.edit(|d| d.splice_text(&text, 0, 0, "abc"))?;
    let mut p = doc.close()?;
    let mut entries = p.get_change_entries()?;
    entries.sort_by_key(|(_, seq, _)| *seq);
    let (actor, seq, bytes) = entries.pop().ok_or("no change")?;

    // Damage that still parses (the inserted text, the checksum itself) and damage
    // that does not (the last byte): each is an error naming the change.
    let text_at = bytes
        .windows(3)
        .position(|w| w == b"abc")
        .ok_or("text not found")?;
    for at in [text_at + 2, 4, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x07;
        p.insert_changes(vec![(actor.clone(), seq, damaged)])?;
        let loaded = PersistentDoc::load(&mut p);
        assert!(
            matches!(&loaded, Err(Error::CorruptChange { seq: s, .. }) if *s == seq),
            "byte {at}: {:?}",
            loaded.err()
        );
    }

    // The right bytes under the wrong key.
    p.insert_changes(vec![(actor.clone(), seq, bytes.clone())])?;
    p.insert_changes(vec![(actor.clone(), seq + 1, bytes.clone())])?;
    let loaded = PersistentDoc::load(&mut p);
    assert!(
        matches!(&loaded, Err(Error::CorruptChange { seq: s, .. }) if *s == seq + 1),
        "{:?}",
        loaded.err()
    );
    p.remove_changes(vec![(&actor, seq + 1)])?;

    // A damaged document.
    p.set_document(b"not an automerge document".to_vec())?;
    assert!(matches!(
        PersistentDoc::load(&mut p),
        Err(Error::CorruptDocument(_))
    ));
    p.apply(Batch::new().set_document(AutoCommit::new().save()))?;

    // A damaged sync state is reported when the peer is first used.
    p.set_sync_state(b"peer".to_vec(), b"garbage".to_vec())?;
    let mut doc = PersistentDoc::load(&mut p)?;
    assert_eq!(read_text(doc.doc())?.as_deref(), Some("abc"));
    let message = doc.generate_sync_message(b"peer");
    assert!(
        matches!(message, Err(Error::CorruptSyncState { .. })),
        "{message:?}"
    );
    doc.remove_peer(b"peer")?;
    assert!(doc.generate_sync_message(b"peer")?.is_some());
    Ok(())
}

#[test]
fn errors_say_what_to_do() {
    let e = Error::Persister(persister_core::Error::Poisoned {
        reason: "fsync failed".into(),
    });
    assert!(e.to_string().contains("reopen"), "{e}");
    // A poisoned handle never retries: the message tells how to keep the edits (merge
    // the document into a reload), not that the next write retries them.
    assert!(!e.to_string().contains("retries"), "{e}");
    assert!(e.to_string().contains("merge"), "{e}");
    // A failed flush retries nothing either.
    let e = Error::FlushFailed(persister_core::Error::Poisoned {
        reason: "fsync failed".into(),
    });
    assert!(!e.to_string().contains("retries"), "{e}");
    assert!(e.to_string().contains("merge"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    let e = Error::Compaction(persister_core::Error::Poisoned { reason: "x".into() });
    assert!(e.to_string().contains("writes nothing more"), "{e}");
    assert!(!e.to_string().contains("retried"), "{e}");
    let e = Error::Compaction(persister_core::Error::TooLarge {
        what: "batch",
        len: 2,
        max: 1,
    });
    assert!(e.to_string().contains("nothing is lost"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Error>();
    fn send<T: Send>() {}
    send::<PersistentDoc<persister_core::MemoryPersister>>();
}
