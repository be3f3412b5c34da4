//! What no persister stores (an update over persister-core's value limit) and what
//! yrs panics on inside an edit break the document with an error, and are never left
//! queued: a write that can never be applied would go first in every later batch, and
//! no edit would be stored again. A failed flush says the handle refuses every later
//! write, not that the write is retried.

use persister_core::{
    CompactionTrigger, FlushPolicy, MAX_VALUE_LEN, MemoryStore, Persister, Store,
};
use persister_yrs::{Error, Options, PersistentYDoc};
use yrs::updates::decoder::Decode;
use yrs::{Text, Transact};

use crate::support::{TEXT, TestResult, doc_id, read_text};

fn manual() -> Options {
    Options::default()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger::never())
}

/// Whether `result` is [`Error::Broken`] with a reason containing `part`.
fn broken_with<T: std::fmt::Debug>(result: &persister_yrs::Result<T>, part: &str) -> bool {
    matches!(result, Err(Error::Broken { reason }) if reason.contains(part))
}

#[test]
fn an_edit_whose_update_no_persister_stores_breaks_the_document_and_is_not_queued() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "kept"))?;
    let huge = "x".repeat(MAX_VALUE_LEN);
    let edit = doc.edit(|t| text.push(t, &huge));
    drop(huge);
    assert!(broken_with(&edit, "cannot be stored"), "{edit:?}");
    assert!(
        edit.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("load the document again")),
        "{edit:?}"
    );
    // Nothing of it waits to be written, so what was written before is made durable.
    assert_eq!(doc.queued_writes(), 0);
    assert!(matches!(doc.edit(|_| ()), Err(Error::Broken { .. })));
    doc.flush()?;
    drop(doc);
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(&doc), "kept");
    Ok(())
}

#[test]
fn a_direct_transaction_no_persister_stores_breaks_the_document_on_flush() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    {
        let mut txn = doc.doc().transact_mut();
        text.insert(&mut txn, 0, "kept");
    }
    {
        let huge = "y".repeat(MAX_VALUE_LEN);
        let mut txn = doc.doc().transact_mut();
        text.push(&mut txn, &huge);
    }
    // The update before it is queued and flushed; the huge one is refused, not queued.
    let flushed = doc.flush();
    assert!(broken_with(&flushed, "cannot be stored"), "{flushed:?}");
    assert_eq!(doc.queued_writes(), 0);
    // The document is unusable now, and flushing it again is fine.
    doc.flush()?;
    drop(doc);
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(&doc), "kept");
    Ok(())
}

#[test]
fn a_panic_in_an_edit_breaks_the_document_and_writes_nothing_of_it() -> TestResult {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "kept"))?;
    // A panic after the first insert of the edit: yrs commits the half edit as the
    // transaction unwinds.
    let edit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.edit(|t| {
            text.insert(t, 0, "half ");
            panic!("an edit that stops half way");
        })
    }))
    .map_err(|_| "the panic escaped the edit")?;
    assert!(broken_with(&edit, "panicked"), "{edit:?}");
    assert_eq!(doc.queued_writes(), 0);
    assert!(matches!(doc.edit(|_| ()), Err(Error::Broken { .. })));
    doc.flush()?;
    drop(doc);
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(&doc), "kept");
    Ok(())
}

#[test]
fn a_peer_s_update_applied_inside_an_edit_is_checked_as_apply_update_checks_it() -> TestResult {
    let update = yrs::Update::decode_v1(&crate::damage::unhex(crate::damage::PANICS_APPLYING))?;
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "kept"))?;
    let edit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.edit(|t| t.apply_update(update))
    }))
    .map_err(|_| "the panic escaped the edit")?;
    assert!(matches!(edit, Err(Error::Broken { .. })), "{edit:?}");
    doc.flush()?;
    drop(doc);
    let doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(read_text(&doc), "kept");
    Ok(())
}

#[test]
fn a_failed_flush_says_the_handle_refuses_every_later_write() -> TestResult {
    let store = MemoryStore::new();
    let options = Options::default().with_compaction(CompactionTrigger::never());
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "durable"))?;
    // The edit's write is applied, then its flush fails: nothing is queued to retry.
    store.fail_next_flush();
    let edit = doc.edit(|t| text.push(t, " one"));
    assert!(matches!(edit, Err(Error::FlushFailed(_))), "{edit:?}");
    assert_eq!(doc.queued_writes(), 0);
    let message = edit.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("encode_state"), "{message}");
    assert!(!message.contains("retries"), "{message}");

    // So with an explicit flush.
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, manual())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "unflushed"))?;
    store.fail_next_flush();
    let flushed = doc.flush();
    assert!(matches!(flushed, Err(Error::FlushFailed(_))), "{flushed:?}");
    let message = flushed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!message.contains("retries"), "{message}");

    // A compaction that changes no size (the same state again), applied, whose flush
    // then fails: a failed flush all the same.
    let store = MemoryStore::new();
    let options = Options::default()
        .with_flush(FlushPolicy::EveryBatch)
        .with_compaction(CompactionTrigger::never());
    let mut doc = PersistentYDoc::load_with(store.open_document(&doc_id())?, options)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "compacted"))?;
    doc.compact()?;
    let sizes = doc.persister().sizes();
    store.fail_next_flush();
    let compacted = doc.compact();
    assert!(
        matches!(compacted, Err(Error::FlushFailed(_))),
        "{compacted:?}"
    );
    assert_eq!(doc.persister().sizes(), sizes);
    Ok(())
}
