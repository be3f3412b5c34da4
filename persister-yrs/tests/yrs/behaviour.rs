//! What a document stores and when: keys, counters, sync, compaction, flush.

use persister_core::{CompactionTrigger, FlushPolicy, MemoryStore, Persister, Store};
use persister_yrs::{Error, Options, PersistentYDoc, actor_of};
use yrs::sync::SyncMessage;
use yrs::{ClientID, GetString, Text, Transact};

use crate::support::named;
use crate::support::{Replica, TEXT, TestResult, doc_id, read_text, sync_pair};

fn manual() -> Options {
    Options::default()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger::never())
}

#[test]
fn every_edit_is_stored_under_the_client_id_and_the_next_seq() -> TestResult {
    let store = MemoryStore::new();
    let client = ClientID::new(0x1234);
    let options = manual().with_client_id(client);
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options.clone())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "a"))?;
    doc.edit(|t| text.insert(t, 1, "b"))?;
    // A transaction that changes nothing stores nothing.
    doc.edit(|_| ())?;
    assert_eq!(doc.actor(), &actor_of(client));
    assert_eq!(doc.actor().as_bytes(), &0x1234u64.to_be_bytes());
    let keys: Vec<_> = doc
        .persister()
        .get_change_entries()?
        .into_iter()
        .map(|(a, s, _)| (a, s))
        .collect();
    assert_eq!(keys, vec![(actor_of(client), 1), (actor_of(client), 2)]);
    doc.flush()?;
    drop(doc);

    // The same client id after a restart continues the counter: nothing is replaced.
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options)?;
    assert_eq!(doc.next_seq(), 3);
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 2, "c"))?;
    assert_eq!(doc.sizes().change_count, 3);
    doc.flush()?;
    drop(doc);

    // A fresh load gets a fresh client id, and sees everything.
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_ne!(doc.actor(), &actor_of(client));
    assert_eq!(read_text(&doc), "abc");
    Ok(())
}

#[test]
fn dropping_without_flush_keeps_every_flushed_write() -> TestResult {
    let mut replica = Replica::new(&named("redb"), manual())?;
    let doc = replica.doc()?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "kept"))?;
    doc.flush()?;
    doc.edit(|t| text.insert(t, 4, " lost"))?;
    replica.reload()?;
    // The flushed edit is there. Whether the unflushed one is depends on the backend's
    // drop, which the contract leaves to discard it: only the flushed part is promised.
    let text = replica.text()?;
    assert!(text == "kept" || text == "kept lost", "{text:?}");
    Ok(())
}

#[test]
fn compaction_stores_one_update_and_removes_the_rest_in_one_batch() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    for i in 0..20 {
        doc.edit(|t| text.insert(t, i, "x"))?;
    }
    assert_eq!(doc.sizes().change_count, 20);
    doc.compact()?;
    let sizes = doc.sizes();
    assert_eq!((sizes.change_count, sizes.document > 0), (0, true));
    doc.edit(|t| text.push(t, "!"))?;
    doc.flush()?;
    drop(doc);

    // The document is the state as one update any yrs document can apply.
    let p = store.open_document(&doc_id())?;
    let state = p.get_document()?.ok_or("no document")?;
    let plain = yrs::Doc::new();
    {
        use yrs::updates::decoder::Decode;
        plain
            .transact_mut()
            .apply_update(yrs::Update::decode_v1(&state)?)?;
    }
    let plain_text = plain.get_or_insert_text(TEXT).get_string(&plain.transact());
    assert_eq!(plain_text, "x".repeat(20));
    let doc = PersistentYDoc::load(p)?;
    assert_eq!(read_text(&doc), format!("{}!", "x".repeat(20)));
    Ok(())
}

#[test]
fn automatic_compaction_follows_the_trigger() -> TestResult {
    let store = MemoryStore::new();
    let options = manual().with_compaction(CompactionTrigger {
        min_changes: 10,
        change_to_document_ratio: 0.0,
    });
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    for i in 0..9 {
        doc.edit(|t| text.insert(t, i, "y"))?;
    }
    assert_eq!(doc.sizes().change_count, 9);
    doc.edit(|t| text.push(t, "z"))?;
    assert_eq!(doc.sizes().change_count, 0);
    assert!(doc.sizes().document > 0);
    Ok(())
}

#[test]
fn synced_updates_are_stored_and_no_sync_state_is() -> TestResult {
    for backend in [named("memory"), named("fs")] {
        let mut a = Replica::new(&backend, manual())?;
        let mut b = Replica::new(&backend, manual())?;
        let text = a.doc()?.doc().get_or_insert_text(TEXT);
        a.doc()?.edit(|t| text.insert(t, 0, "from a"))?;
        let text = b.doc()?.doc().get_or_insert_text(TEXT);
        b.doc()?.edit(|t| text.insert(t, 0, "from b "))?;
        sync_pair(a.doc()?, b.doc()?)?;
        let merged = a.text()?;
        assert_eq!(b.text()?, merged);
        assert_eq!(merged.len(), "from a".len() + "from b ".len());
        // What came from the peer is stored like a local edit.
        for replica in [&mut a, &mut b] {
            assert_eq!(replica.doc()?.sizes().change_count, 2);
            replica.doc()?.flush()?;
            replica.reload()?;
            assert_eq!(replica.text()?, merged);
            assert_eq!(replica.doc()?.sizes().sync_state_count, 0);
        }
        // Nothing left to send either way.
        let step1 = a.doc()?.sync_step1();
        let Some(SyncMessage::SyncStep2(diff)) = b.doc()?.receive_sync_message(step1)? else {
            return Err("no step 2".into());
        };
        a.doc()?.apply_update(&diff)?;
        assert_eq!(
            a.doc()?.sizes().change_count,
            2,
            "an empty diff stores nothing"
        );
    }
    Ok(())
}

#[test]
fn an_update_waiting_for_its_dependencies_survives_a_restart() -> TestResult {
    // Three updates of one writer; the second reaches the persisted document first.
    let source = yrs::Doc::new();
    let text = source.get_or_insert_text(TEXT);
    let mut updates = Vec::new();
    for (at, s) in [(0, "one"), (3, " two"), (7, " three")] {
        let mut txn = source.transact_mut();
        text.insert(&mut txn, at, s);
        updates.push(txn.encode_update_v1());
    }
    let mut replica = Replica::new(&named("sled"), manual())?;
    replica.doc()?.apply_update(&updates[1])?;
    assert_eq!(replica.text()?, "");
    replica.doc()?.flush()?;
    replica.reload()?;
    replica.doc()?.compact()?;
    replica.doc()?.apply_update(&updates[0])?;
    assert_eq!(replica.text()?, "one two");
    replica.doc()?.apply_update(&updates[2])?;
    replica.doc()?.flush()?;
    replica.reload()?;
    assert_eq!(replica.text()?, "one two three");
    Ok(())
}

#[test]
fn a_failed_flush_loses_nothing_of_the_document() -> TestResult {
    let store = MemoryStore::new();
    let options = Options::default().with_compaction(CompactionTrigger::never());
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "durable"))?;
    store.fail_next_flush();
    let failed = doc.edit(|t| text.push(t, " one"));
    assert!(matches!(failed, Err(Error::FlushFailed(_))), "{failed:?}");
    // The edit is in the document; its update went to the poisoned handle, so keep the
    // state and bring it to a reopened store.
    assert_eq!(read_text(&doc), "durable one");
    let state = doc.encode_state()?;
    drop(doc);
    let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    doc.apply_update(&state)?;
    doc.flush()?;
    drop(doc);
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(&doc), "durable one");
    Ok(())
}

#[test]
fn errors_say_what_to_do() {
    let e = Error::Compaction(persister_core::Error::Poisoned { reason: "x".into() });
    assert!(e.to_string().contains("writes nothing more"), "{e}");
    assert!(!e.to_string().contains("retried"), "{e}");
    let e = Error::Compaction(persister_core::Error::TooLarge {
        what: "batch",
        len: 2,
        max: 1,
    });
    assert!(e.to_string().contains("nothing is lost"), "{e}");
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Error>();
    fn send<T: Send>() {}
    send::<PersistentYDoc<persister_core::MemoryPersister>>();
}
