//! The document slot shared with other programs: what `persister-automerge` (or any
//! code using the plain store API) puts there is loaded by samod, never ignored.

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use persister_core::{DocumentId, MemoryStore, Persister, Store};
use persister_samod::acceptance::{block_on, key};
use persister_samod::{Options, SamodStorage, UNNAMED_SNAPSHOT, check_document};
use samod::storage::Storage;

use crate::support::Result;

/// A document compacted by other code into a slot samod had vacated (its snapshot
/// deleted, none beside it) loads as the snapshot [`UNNAMED_SNAPSHOT`], as it does into
/// a slot samod never used: it was ignored, so samod loaded the document without the
/// edits the compaction moved there, and `check_document` called it sound.
#[test]
fn a_document_stored_by_other_code_in_a_vacated_slot_loads() -> Result {
    let store = MemoryStore::new();
    let storage = SamodStorage::on_store(store.clone(), Options::new())?;
    block_on(storage.put(key(&["doc", "snapshot", "old"]), b"old".to_vec()));
    block_on(storage.delete(key(&["doc", "snapshot", "old"])));
    assert!(block_on(storage.load_range(key(&["doc", "snapshot"]))).is_empty());
    storage.close()?;

    // Other code compacts the document: the slot now holds every edit.
    let mut doc = Automerge::new();
    doc.transact(|tx| tx.put(ROOT, "edit", "kept"))
        .map_err(|f| f.error)?;
    let saved = doc.save();
    let id = DocumentId::from("doc");
    {
        let mut p = store.open_document(&id)?;
        p.set_document(saved.clone())?;
        p.flush()?;
    }
    let check = check_document(&id, &store.open_document(&id)?)?;
    assert_eq!(check.chunks_in_entries, 0);

    let storage = SamodStorage::on_store(store.clone(), Options::new())?;
    let unnamed = key(&["doc", "snapshot", UNNAMED_SNAPSHOT]);
    assert_eq!(
        block_on(storage.load_range(key(&["doc", "snapshot"]))),
        [(unnamed.clone(), saved.clone())].into(),
        "the document in the slot was not loaded"
    );
    assert_eq!(block_on(storage.load(unnamed.clone())), Some(saved));
    // samod deletes it once compacted into a snapshot of its own: the slot is vacant.
    block_on(storage.delete(unnamed));
    assert!(block_on(storage.load_range(key(&["doc"]))).is_empty());
    storage.close()?;
    let storage = SamodStorage::on_store(store, Options::new())?;
    assert!(block_on(storage.load_range(key(&["doc"]))).is_empty());
    storage.close()?;
    Ok(())
}
