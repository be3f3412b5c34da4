//! Documents in a store are exactly isolated, whatever their ids (the `Store` contract).

use super::{Fixture, actor, contents, open, reopen};
use crate::{Batch, DocumentId, Error, MAX_DOCUMENT_ID_LEN, Persister, Result, Store};

/// Writes a distinct value set to each id, then checks each id reads back only its own.
fn check_isolated<F: Fixture>(f: &F, ids: &[DocumentId]) -> Result<()> {
    let store = f.open()?;
    write_each(&store, ids)?;
    check_each(&store, ids)?;
    let mut listed = store.list_documents()?;
    listed.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    Ok(())
}

fn write_each<S: Store>(store: &S, ids: &[DocumentId]) -> Result<()> {
    for (i, id) in ids.iter().enumerate() {
        let mut p = store.open_document(id)?;
        let tag = format!("doc {i}").into_bytes();
        p.apply(
            Batch::new()
                .insert_change(actor(1), 1, tag.clone())
                .insert_change(actor(1), 2 + i as u64, tag.clone())
                .set_document(tag.clone())
                .set_sync_state(b"peer".to_vec(), tag.clone())
                .set_sync_state(tag.clone(), tag),
        )?;
        p.flush()?;
    }
    Ok(())
}

fn check_each<S: Store>(store: &S, ids: &[DocumentId]) -> Result<()> {
    for (i, id) in ids.iter().enumerate() {
        let p = store.open_document(id)?;
        let tag = format!("doc {i}").into_bytes();
        let c = contents(&p)?;
        assert_eq!(
            c.changes,
            vec![
                (actor(1), 1, tag.clone()),
                (actor(1), 2 + i as u64, tag.clone())
            ],
            "document {id:?} sees changes that are not its own"
        );
        assert_eq!(c.document, Some(tag.clone()), "document {id:?}");
        let mut peers = vec![b"peer".to_vec(), tag.clone()];
        peers.sort();
        assert_eq!(p.get_peer_ids()?, peers, "document {id:?}");
        assert_eq!(p.get_sync_state(b"peer")?, Some(tag), "document {id:?}");
        assert_eq!(p.sizes().change_count, 2);
        assert_eq!(p.sizes().sync_state_count, 2);
    }
    Ok(())
}

/// `"1"` and `"10"`, `"a"` and `"ab"`: an id that is a prefix of another sees nothing of it.
pub fn ids_that_are_prefixes_are_isolated<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = ["1", "10", "100", "a", "ab", "abc", "b"]
        .into_iter()
        .map(DocumentId::from)
        .collect();
    check_isolated(f, &ids)
}

/// The empty id is a document like any other.
pub fn empty_id_is_isolated<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = ["", "a", "\0"].into_iter().map(DocumentId::from).collect();
    check_isolated(f, &ids)
}

/// Ids that look like paths reach no file of another id, nor outside the store.
pub fn path_like_ids_are_isolated<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = [
        "/",
        "..",
        ".",
        "../..",
        "a/b",
        "a",
        "../escape",
        "/etc/passwd",
        "a\\b",
        "C:",
        "con",
        "nul",
        "x:y",
        " ",
        "*?<>|",
    ]
    .into_iter()
    .map(DocumentId::from)
    .collect();
    check_isolated(f, &ids)
}

/// Ids holding NUL or bytes that are not UTF-8 are distinct documents.
pub fn nul_and_non_utf8_ids_are_isolated<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = [
        vec![0],
        vec![0, 0],
        vec![0xff],
        vec![0xff, 0xfe],
        vec![0xc3, 0x28],
        b"a\0b".to_vec(),
        b"a".to_vec(),
        vec![1, 0],
        vec![1],
    ]
    .into_iter()
    .map(DocumentId::from)
    .collect();
    check_isolated(f, &ids)
}

/// `"A"` and `"a"` are different documents, also on case-insensitive file systems.
pub fn ids_differing_in_case_are_isolated<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = ["A", "a", "Doc", "doc", "DOC"]
        .into_iter()
        .map(DocumentId::from)
        .collect();
    check_isolated(f, &ids)
}

/// Isolation holds after the store is reopened.
pub fn isolation_survives_reopen<F: Fixture>(f: &F) -> Result<()> {
    let ids: Vec<DocumentId> = [&b"1"[..], b"10", b"", b"/", b"..", b"\xff"]
        .into_iter()
        .map(DocumentId::from)
        .collect();
    let store = f.open()?;
    write_each(&store, &ids)?;
    let store = reopen(f, store)?;
    check_each(&store, &ids)?;
    assert_eq!(store.list_documents()?.len(), ids.len());
    Ok(())
}

/// `list_documents` returns exactly the documents written, ordered by their bytes.
pub fn list_documents_lists_exactly_written_documents<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    assert!(store.list_documents()?.is_empty());
    let ids: Vec<DocumentId> = ["b", "a", "10", "1", ""]
        .into_iter()
        .map(DocumentId::from)
        .collect();
    for id in &ids {
        let mut p = store.open_document(id)?;
        p.set_document(b"x".to_vec())?;
        p.close()?;
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(store.list_documents()?, expected);
    Ok(())
}

/// A document exists from its first non-empty batch, flushed, even a batch that leaves
/// it empty (removing what is not there), and removals that empty a document leave it
/// listed, after reopening too: only `remove_document` ends it.
pub fn emptied_documents_stay_listed<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "emptied")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"c".to_vec())
            .set_sync_state(b"peer".to_vec(), b"s".to_vec()),
    )?;
    p.flush()?;
    p.apply(
        Batch::new()
            .remove_change(actor(1), 1)
            .remove_sync_state(b"peer".to_vec()),
    )?;
    p.close()?;
    let mut p = open(&store, "removals only")?;
    p.apply(Batch::new().remove_sync_state(b"absent".to_vec()))?;
    p.close()?;
    let expected: Vec<DocumentId> = vec!["emptied".into(), "removals only".into()];
    assert_eq!(store.list_documents()?, expected);
    let store = reopen(f, store)?;
    assert_eq!(store.list_documents()?, expected);
    for id in &expected {
        let p = store.open_document(id)?;
        assert!(p.sizes().is_empty(), "{id}: {:?}", p.sizes());
        assert!(p.get_changes()?.is_empty() && p.get_document()?.is_none());
        assert!(p.get_peer_ids()?.is_empty());
    }
    Ok(())
}

/// Opening a document, reading and flushing it creates nothing.
pub fn opening_a_document_writes_nothing<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = store.open_document(&"ghost".into())?;
    assert!(p.get_changes()?.is_empty());
    assert_eq!(p.flush()?, 0);
    drop(p);
    assert!(store.list_documents()?.is_empty());
    let store = reopen(f, store)?;
    assert!(store.list_documents()?.is_empty());
    Ok(())
}

/// `remove_document` removes every part of one document, and nothing of its neighbours.
pub fn remove_document_removes_all_its_data_only<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let ids: Vec<DocumentId> = ["1", "10", "11"]
        .into_iter()
        .map(DocumentId::from)
        .collect();
    write_each(&store, &ids)?;
    store.remove_document(&"1".into())?;
    store.remove_document(&"never existed".into())?;
    assert_eq!(
        store.list_documents()?,
        vec![DocumentId::from("10"), DocumentId::from("11")]
    );
    let p = store.open_document(&"1".into())?;
    assert!(contents(&p)?.changes.is_empty());
    assert_eq!(p.get_document()?, None);
    assert!(p.get_peer_ids()?.is_empty());
    assert!(p.sizes().is_empty());
    drop(p);
    for (i, id) in ids.iter().enumerate().skip(1) {
        let p = store.open_document(id)?;
        let tag = format!("doc {i}").into_bytes();
        assert_eq!(p.get_document()?, Some(tag.clone()));
        assert_eq!(p.get_changes()?, vec![tag.clone(), tag.clone()]);
        assert_eq!(p.get_sync_state(b"peer")?, Some(tag));
        assert_eq!(p.sizes().change_count, 2);
    }
    Ok(())
}

/// A removed document stays removed, and its id can be used again.
pub fn removed_document_stays_removed_after_reopen<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let ids: Vec<DocumentId> = ["gone", "kept"].into_iter().map(DocumentId::from).collect();
    write_each(&store, &ids)?;
    store.remove_document(&ids[0])?;
    let store = reopen(f, store)?;
    assert_eq!(store.list_documents()?, vec![ids[1].clone()]);
    let mut p = store.open_document(&ids[0])?;
    assert!(p.sizes().is_empty());
    assert_eq!(p.get_document()?, None);
    p.set_document(b"again".to_vec())?;
    p.flush()?;
    drop(p);
    let store = reopen(f, store)?;
    let p = store.open_document(&ids[0])?;
    assert_eq!(p.get_document()?, Some(b"again".to_vec()));
    assert!(p.get_changes()?.is_empty());
    Ok(())
}

/// An id over [`MAX_DOCUMENT_ID_LEN`] is refused by open and remove.
pub fn document_id_over_maximum_is_refused<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let long = DocumentId::from(vec![b'x'; MAX_DOCUMENT_ID_LEN + 1]);
    assert!(matches!(
        store.open_document(&long),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        store.remove_document(&long),
        Err(Error::TooLarge { .. })
    ));
    let longest = DocumentId::from(vec![b'x'; MAX_DOCUMENT_ID_LEN]);
    let mut p = store.open_document(&longest)?;
    p.set_document(b"ok".to_vec())?;
    p.close()?;
    assert_eq!(store.list_documents()?, vec![longest]);
    Ok(())
}

/// One handle per document: a second open, or a removal, of an open document fails
/// with `DocumentInUse`; after the handle is dropped both work.
pub fn second_handle_on_a_document_is_refused<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let id = DocumentId::from("busy");
    let mut p = store.open_document(&id)?;
    p.set_document(b"x".to_vec())?;
    p.flush()?;
    assert!(matches!(
        store.open_document(&id),
        Err(Error::DocumentInUse { .. })
    ));
    assert!(matches!(
        store.remove_document(&id),
        Err(Error::DocumentInUse { .. })
    ));
    // Other documents are unaffected.
    store.open_document(&"other".into())?;
    drop(p);
    let p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, Some(b"x".to_vec()));
    drop(p);
    store.remove_document(&id)?;
    Ok(())
}

/// A store serves different documents from different threads at once.
pub fn documents_are_served_from_threads<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                let store = &store;
                scope.spawn(move || -> Result<()> {
                    let mut p = store.open_document(&DocumentId::from(vec![t]))?;
                    for seq in 1..=50 {
                        p.insert_changes(vec![(actor(t), seq, vec![t; 8])])?;
                        if seq % 10 == 0 {
                            p.flush()?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| Error::InvalidInput {
                what: "thread",
                reason: "a worker panicked".into(),
            })??;
        }
        Ok(())
    })?;
    for t in 0..4u8 {
        let p = store.open_document(&DocumentId::from(vec![t]))?;
        let changes = p.get_change_entries()?;
        assert_eq!(changes.len(), 50);
        assert!(
            changes
                .iter()
                .all(|(a, _, v)| *a == actor(t) && *v == vec![t; 8])
        );
    }
    Ok(())
}
