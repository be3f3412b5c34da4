//! Flushes of many handles sharing one sled flush: the store-wide flush, and what a
//! failure of that shared flush does to every handle it carried.

use persister_core::{ActorId, Error, Persister, Result, Store};
use persister_sled::{SledPersister, SledStore};

fn open_all(store: &SledStore, count: usize) -> Result<Vec<SledPersister>> {
    (0..count)
        .map(|i| store.open_document(&format!("doc-{i}").as_str().into()))
        .collect()
}

fn insert(doc: &mut SledPersister, seq: u64) -> Result<()> {
    doc.insert_changes(vec![(ActorId::new([7; 16]), seq, vec![seq as u8; 10])])
}

#[test]
fn flush_documents_makes_every_handle_durable() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
    let store = SledStore::open(dir.path())?;
    let mut docs = open_all(&store, 10)?;
    for doc in &mut docs {
        insert(doc, 1)?;
    }
    let mut handles: Vec<&mut SledPersister> = docs.iter_mut().collect();
    assert!(store.flush_documents(&mut handles)? >= 10 * 10);
    for doc in &mut docs {
        assert_eq!(doc.flush()?, 0, "nothing is left to flush");
    }
    drop((docs, store));
    let store = SledStore::open(dir.path())?;
    for (i, doc) in open_all(&store, 10)?.iter().enumerate() {
        assert_eq!(doc.get_changes()?, vec![vec![1; 10]], "document {i}");
    }
    Ok(())
}

#[test]
fn a_failed_shared_flush_poisons_every_handle_it_carried() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
    let store = SledStore::open(dir.path())?;
    let mut docs = open_all(&store, 10)?;
    for doc in &mut docs {
        insert(doc, 1)?;
    }
    store.fail_next_flush();
    let mut handles: Vec<&mut SledPersister> = docs.iter_mut().collect();
    let failed = store.flush_documents(&mut handles);
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    for (i, doc) in docs.iter_mut().enumerate() {
        let flushed = doc.flush();
        assert!(
            matches!(flushed, Err(Error::Poisoned { .. })),
            "document {i}: {flushed:?}"
        );
        let inserted = insert(doc, 2);
        assert!(
            matches!(inserted, Err(Error::Poisoned { .. })),
            "document {i}: {inserted:?}"
        );
    }
    Ok(())
}
