//! Closing (contract point 12): what dropping a handle or a store does, and `close`.

use super::{Fixture, actor, contents, open, reopen};
use crate::{Batch, Error, Persister, Result, Store};

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
