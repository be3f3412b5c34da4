//! Damage made by hand, under the API, with sled itself: each kind of missing, extra,
//! altered or stale entry makes the reads that would return it fail with `Corrupt`,
//! and leaves the other documents readable.

use persister_core::{DocumentId, Persister, Result, Store};
use persister_sled::{SledPersister, SledStore};
use persister_testkit::Contents;

use crate::raw::{
    change_key, document_key, frame, manifest_key, open_raw, sample_document, sync_state_key,
};

const DOCS: [&str; 2] = ["1", "10"];

/// A closed store holding the sample documents "1" and "10", damaged by `tamper`.
fn tampered(tamper: impl FnOnce(&sled::Db)) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(dir.path())?;
    for (i, id) in DOCS.iter().enumerate() {
        let mut p = store.open_document(&(*id).into())?;
        p.apply(sample_document(i as u8 + 1).to_batch())?;
        p.flush()?;
    }
    drop(store);
    let db = open_raw(dir.path());
    tamper(&db);
    db.flush().expect("flush");
    drop(db);
    Ok(dir)
}

fn open(store: &SledStore, id: &str) -> Result<SledPersister> {
    store.open_document(&DocumentId::from(id))
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(e) if e.is_corrupt() => {}
        other => panic!("{what}: expected a corruption error, got {other:?}"),
    }
}

/// Document "10" is untouched by damage to "1".
fn neighbour_is_intact(store: &SledStore) -> Result<()> {
    let p = open(store, "10")?;
    assert!(Contents::read(&p)? == Contents::of(&sample_document(2)));
    Ok(())
}

#[test]
fn missing_change_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        db.remove(change_key(b"1", &[1, 0], 255)).unwrap().unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    let p = open(&store, "1")?;
    assert_corrupt(p.get_changes(), "get_changes");
    assert_corrupt(p.get_change_entries(), "get_change_entries");
    // The rest of the document is still readable, and sizes are the manifest's.
    assert_eq!(
        p.get_document()?,
        sample_document(1).document().map(<[u8]>::to_vec)
    );
    assert_eq!(p.sizes(), sample_document(1).sizes());
    neighbour_is_intact(&store)
}

#[test]
fn extra_change_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        let key = change_key(b"1", &[1], 7);
        db.insert(&key, frame(&key, b"smuggled")).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1")?.get_changes(), "get_changes");
    neighbour_is_intact(&store)
}

#[test]
fn altered_change_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        let key = change_key(b"1", &[1, 0, 1], 3);
        let mut value = db.get(&key).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x10;
        db.insert(&key, value).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1")?.get_changes(), "get_changes");
    neighbour_is_intact(&store)
}

/// A well-formed value that is not the one last written (as an older version of the
/// page would hold): same key, same length, valid checksum.
#[test]
fn stale_change_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        let key = change_key(b"1", &[0, 1], 1000);
        let len = db.get(&key).unwrap().unwrap().len() - 4;
        db.insert(&key, frame(&key, &vec![0x5a; len])).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1")?.get_changes(), "get_changes");
    Ok(())
}

#[test]
fn moved_value_is_detected() -> Result<()> {
    // Document "10"'s change copied, bytes unchanged, under document "1"'s key.
    let dir = tampered(|db| {
        let value = db.get(change_key(b"10", &[2], 2)).unwrap().unwrap();
        db.insert(change_key(b"1", &[1], 2), value).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1")?.get_changes(), "get_changes");
    Ok(())
}

#[test]
fn missing_or_replaced_document_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        db.remove(document_key(b"1")).unwrap().unwrap();
        let key = document_key(b"10");
        db.insert(&key, frame(&key, &[2; 3000][..2999])).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1")?.get_document(), "missing document");
    assert_corrupt(open(&store, "10")?.get_document(), "replaced document");
    // The changes of both are still readable.
    assert_eq!(open(&store, "10")?.get_changes()?.len(), 24);
    Ok(())
}

#[test]
fn missing_sync_state_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        db.remove(sync_state_key(b"1", b"")).unwrap().unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    let p = open(&store, "1")?;
    assert_corrupt(p.get_peer_ids(), "get_peer_ids");
    // Even asking for the missing peer, or another one, does not answer "none".
    assert_corrupt(p.get_sync_state(b""), "get_sync_state of the missing peer");
    assert_corrupt(
        p.get_sync_state(b"peer"),
        "get_sync_state of a present peer",
    );
    neighbour_is_intact(&store)
}

#[test]
fn missing_manifest_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        db.remove(manifest_key(b"1")).unwrap().unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(store.list_documents(), "list_documents");
    let p = open(&store, "1")?;
    assert_corrupt(p.get_changes(), "changes without a manifest");
    assert_corrupt(p.get_document(), "document without a manifest");
    neighbour_is_intact(&store)
}

#[test]
fn damaged_manifest_or_store_manifest_is_detected() -> Result<()> {
    let dir = tampered(|db| {
        let key = manifest_key(b"1");
        let mut value = db.get(&key).unwrap().unwrap().to_vec();
        value[10] ^= 1;
        db.insert(&key, value).unwrap();
    })?;
    let store = SledStore::open(dir.path())?;
    assert_corrupt(open(&store, "1"), "open_document");
    assert_corrupt(store.list_documents(), "list_documents");
    neighbour_is_intact(&store)?;
    drop(store);

    let db = open_raw(dir.path());
    db.remove(b"\x00store").unwrap().unwrap();
    drop(db);
    assert_corrupt(SledStore::open(dir.path()), "open without a store manifest");
    Ok(())
}
