//! Closing (contract point 12): what dropping a handle or a store does, and `close`.

use super::{Fixture, actor, after_a_failed_flush, contents, open, reopen};
use std::sync::Arc;

use crate::{Batch, BoxedStore, Error, Persister, Result, Store};

/// A handle dropped without a flush discards its writes since its last flush: the next
/// handle of the document sees exactly the flushed state, in the same store and after
/// reopening; a document that was never flushed does not exist.
pub fn dropped_handle_discards_unflushed_writes<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"flushed".to_vec())
            .set_sync_state(b"peer".to_vec(), b"state".to_vec()),
    )?;
    p.flush()?;
    let flushed = contents(&p)?;
    let flushed_sizes = p.sizes();
    p.apply(
        Batch::new()
            .insert_change(actor(1), 2, b"unflushed".to_vec())
            .insert_change(actor(1), 1, b"overwritten".to_vec())
            .set_document(b"doc".to_vec())
            .remove_sync_state(b"peer".to_vec()),
    )?;
    drop(p);
    let mut never = open(&store, "never flushed")?;
    never.set_document(b"gone".to_vec())?;
    drop(never);

    let p = open(&store, "doc")?;
    assert!(
        contents(&p)? == flushed,
        "the next handle saw writes a dropped handle had not flushed"
    );
    assert_eq!(p.sizes(), flushed_sizes);
    drop(p);
    assert_eq!(store.list_documents()?, vec!["doc".into()]);

    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert!(contents(&p)? == flushed, "after reopening");
    assert_eq!(p.sizes(), flushed_sizes);
    assert_eq!(store.list_documents()?, vec!["doc".into()]);
    Ok(())
}

/// `close` flushes: what was written before it is there after reopening.
pub fn close_flushes_the_handle<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"c1".to_vec())])?;
    p.set_document(b"doc".to_vec())?;
    let before = contents(&p)?;
    p.close()?;
    let store = reopen(f, store)?;
    let p = open(&store, "doc")?;
    assert!(contents(&p)? == before, "closed writes differ after reopen");
    Ok(())
}

/// A store closed with [`Store::close`] reopens at once with everything flushed.
pub fn closed_store_reopens_at_once<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"c1".to_vec())])?;
    p.close()?;
    store.close()?;
    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert_eq!(p.get_changes()?, vec![b"c1".to_vec()]);
    Ok(())
}

/// A checked close of a store whose flush failed reports an error: the application
/// that closes to know its data is safe must not hear `Ok` from a store that could not
/// make a flush durable. The store is released all the same, and reopens with what was
/// flushed before the failure.
pub fn closing_a_store_after_a_failed_flush_reports_it<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    drop(after_a_failed_flush(f, &store, b"maybe")?);
    let closed = store.close();
    assert!(
        closed.is_err(),
        "closing a store whose flush failed gave {closed:?}"
    );
    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert_eq!(p.get_changes()?.first(), Some(&b"flushed".to_vec()));
    Ok(())
}

/// Closing a store while one of its handles is open fails with `DocumentInUse`, and
/// loses nothing flushed.
pub fn closing_a_store_with_an_open_handle_is_refused<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let mut p = open(&store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"c1".to_vec())])?;
    p.flush()?;
    let closed = store.close();
    assert!(
        matches!(closed, Err(Error::DocumentInUse { .. })),
        "closing a store with an open handle gave {closed:?}"
    );
    drop(p);
    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert_eq!(p.get_changes()?, vec![b"c1".to_vec()]);
    Ok(())
}

/// A store closed through a `Box`, a [`DynStore`](crate::DynStore) or an `Arc` is closed as the store
/// itself would be: refused with `DocumentInUse` while a handle is open, and an `Arc`
/// with another clone open refused with `InvalidInput`; closed, it reopens at once
/// with everything flushed.
pub fn closing_a_boxed_or_shared_store_is_checked<F: Fixture>(f: &F) -> Result<()> {
    let in_use = |closed: Result<()>, how: &str| {
        assert!(
            matches!(closed, Err(Error::DocumentInUse { .. })),
            "closing a store {how} with an open handle gave {closed:?}"
        );
    };
    let store = Box::new(f.open()?);
    let mut p = open(&*store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"c1".to_vec())])?;
    p.flush()?;
    in_use(store.close(), "in a Box");
    drop(p);

    // What a `DynStore` holds.
    let store = Box::new(BoxedStore(f.open()?));
    let p = store.open_document(&"doc".into())?;
    in_use(store.close(), "as a DynStore");
    drop(p);

    let store = Arc::new(f.open()?);
    let p = open(&*store, "doc")?;
    in_use(store.close(), "in an Arc");
    drop(p);

    let store = Arc::new(f.open()?);
    let clone = Arc::clone(&store);
    let closed = clone.close();
    assert!(
        matches!(closed, Err(Error::InvalidInput { .. })),
        "closing one of two clones of an Arc gave {closed:?}"
    );
    store.close()?;

    let store = Box::new(f.open()?);
    let mut p = open(&*store, "doc")?;
    p.insert_changes(vec![(actor(1), 2, b"c2".to_vec())])?;
    p.close()?;
    store.close()?;
    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert_eq!(p.get_changes()?, vec![b"c1".to_vec(), b"c2".to_vec()]);
    Ok(())
}

/// A store closed with [`Store::close`] has nothing torn (point 6): reopening it, and
/// opening its documents, report no recovered tail, even after a handle dropped its
/// unflushed writes before the close, and everything flushed is there. A new store
/// reports none either.
pub fn clean_close_leaves_nothing_torn<F: Fixture>(f: &F) -> Result<()> {
    let store = f.open()?;
    let recovered = store.recovered();
    assert!(
        recovered.is_empty(),
        "a new store reported torn tails: {recovered:?}"
    );
    let mut p = open(&store, "doc")?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 1, b"flushed".to_vec())
            .set_sync_state(b"peer".to_vec(), b"state".to_vec()),
    )?;
    p.flush()?;
    let flushed = contents(&p)?;
    p.apply(
        Batch::new()
            .insert_change(actor(1), 2, b"discarded".to_vec())
            .set_document(b"discarded".to_vec()),
    )?;
    drop(p);
    let mut other = open(&store, "other")?;
    other.set_document(b"closed".to_vec())?;
    other.close()?;
    store.close()?;

    let store = f.open()?;
    let p = open(&store, "doc")?;
    assert!(
        contents(&p)? == flushed,
        "a cleanly closed store lost flushed writes or kept discarded ones"
    );
    let other = open(&store, "other")?;
    assert_eq!(other.get_document()?, Some(b"closed".to_vec()));
    let recovered = store.recovered();
    assert!(
        recovered.is_empty(),
        "a cleanly closed store reported torn tails: {recovered:?}"
    );
    Ok(())
}
