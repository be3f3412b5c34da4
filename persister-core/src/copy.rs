//! Copying a document between backends.

use crate::{Batch, Error, Persister, Result, StoredSizes, Write};

/// Copies every change, the document and every sync state of `src` into `dst` in one
/// batch, and returns the sizes copied. `dst` must be empty; it is not flushed.
///
/// Because the copy is one batch, a failure or crash leaves `dst` empty or complete,
/// never half copied. The copy is checked: `dst`'s sizes must equal `src`'s afterwards.
///
/// # Errors
///
/// [`Error::InvalidInput`] when `dst` is not empty, or holds other sizes than `src`
/// after the copy; [`Error::TooLarge`] when the document holds more than one batch
/// takes ([`MAX_BATCH_LEN`](crate::MAX_BATCH_LEN) bytes in all: compact it first);
/// [`Error::NotFound`] when `src` changed during the copy; and the error of a read of
/// `src` or of the write to `dst` that fails.
///
/// ```
/// use persister_core::{copy_document, ActorId, MemoryPersister, Persister};
///
/// let mut src = MemoryPersister::new();
/// src.insert_changes(vec![(ActorId::new([1]), 1, b"c".to_vec())])?;
/// src.set_sync_state(b"peer".to_vec(), b"state".to_vec())?;
/// let mut dst = MemoryPersister::new();
/// let copied = copy_document(&src, &mut dst)?;
/// assert_eq!(copied, src.sizes());
/// assert_eq!(dst.get_sync_state(b"peer")?, Some(b"state".to_vec()));
/// # Ok::<(), persister_core::Error>(())
/// ```
pub fn copy_document<S, D>(src: &S, dst: &mut D) -> Result<StoredSizes>
where
    S: Persister<Error = Error> + ?Sized,
    D: Persister<Error = Error> + ?Sized,
{
    if !dst.sizes().is_empty() || dst.get_document()?.is_some() {
        return Err(Error::InvalidInput {
            what: "copy destination",
            reason: "the destination document is not empty; copy into a new document".into(),
        });
    }
    let mut batch = Batch::new();
    if let Some(document) = src.get_document()? {
        batch.push(Write::SetDocument(document));
    }
    for (actor, seq, value) in src.get_change_entries()? {
        batch.push(Write::InsertChange { actor, seq, value });
    }
    for peer in src.get_peer_ids()? {
        let state = src.get_sync_state(&peer)?.ok_or_else(|| Error::NotFound {
            what: "sync state of a listed peer (the source changed during the copy)".into(),
        })?;
        batch.push(Write::SetSyncState { peer, state });
    }
    dst.apply(batch)?;
    let (copied, expected) = (dst.sizes(), src.sizes());
    if copied != expected {
        return Err(Error::InvalidInput {
            what: "copy",
            reason: format!("the destination holds {copied:?} after the copy, not {expected:?}"),
        });
    }
    Ok(copied)
}
