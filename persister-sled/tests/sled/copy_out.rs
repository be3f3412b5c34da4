//! The way out of sled: `copy_document` from a `SledStore` into a `RedbStore` keeps
//! changes, document and sync states exactly, for every document, across reopening
//! both stores.

use persister_core::{ActorId, DocumentId, Persister, Result, Store, copy_document};
use persister_redb::RedbStore;
use persister_sled::SledStore;
use persister_testkit::Contents;

use crate::raw::sample_document;

#[test]
fn documents_copy_out_to_redb_exactly() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (sled_path, redb_path) = (dir.path().join("sled"), dir.path().join("out.redb"));
    let ids: Vec<DocumentId> = vec![
        "1".into(),
        "10".into(),
        "".into(),
        "a/../b".into(),
        vec![0xff, 0, 0xfe].into(),
    ];

    let sled = SledStore::open(&sled_path)?;
    for (tag, id) in ids.iter().enumerate() {
        let mut p = sled.open_document(id)?;
        p.apply(sample_document(tag as u8).to_batch())?;
        // A value large enough for sled's blob files, and an empty one.
        p.insert_changes(vec![
            (
                ActorId::new([0xee; 16]),
                u64::MAX,
                vec![tag as u8; 200 * 1024],
            ),
            (ActorId::new([0xee; 16]), 0, Vec::new()),
        ])?;
        p.flush()?;
    }
    // One document with only sync states, one with only a document.
    let mut p = sled.open_document(&"peers only".into())?;
    p.set_sync_state(b"p".to_vec(), b"s".to_vec())?;
    p.close()?;
    let mut p = sled.open_document(&"doc only".into())?;
    p.set_document(Vec::new())?;
    p.close()?;
    drop(sled);

    let sled = SledStore::open(&sled_path)?;
    let redb = RedbStore::open(&redb_path)?;
    let listed = sled.list_documents()?;
    assert_eq!(listed.len(), ids.len() + 2);
    for id in &listed {
        let src = sled.open_document(id)?;
        let mut dst = redb.open_document(id)?;
        let copied = copy_document(&src, &mut dst)?;
        assert_eq!(copied, src.sizes());
        assert!(dst.flush()? > 0 || copied.is_empty());
    }
    drop(redb);

    let redb = RedbStore::open(&redb_path)?;
    assert_eq!(redb.list_documents()?, listed);
    for id in &listed {
        let (src, dst) = (sled.open_document(id)?, redb.open_document(id)?);
        let expected = Contents::read(&src)?;
        assert!(
            Contents::read(&dst)? == expected,
            "document {id} differs after the copy"
        );
        assert_eq!(dst.sizes(), src.sizes(), "document {id}");
    }
    let empty = redb.open_document(&"doc only".into())?;
    assert_eq!(empty.get_document()?, Some(Vec::new()));
    Ok(())
}
