//! Copying a document between backends.

use crate::{Batch, Error, Persister, Result, StoredSizes, Write};

/// Copies every change, the document and every sync state of `src` into `dst` in one
/// batch, and returns the sizes copied. `dst` must be empty; it is not flushed.
///
/// Because the copy is one batch, a failure or crash leaves `dst` empty or complete,
/// never half copied. The copy is checked twice: what was read from `src` must add up
/// to `src`'s sizes before anything is written to `dst` (so a source whose reads come
/// back short writes nothing), and `dst`'s sizes must equal `src`'s afterwards.
///
/// # Errors
///
/// [`Error::InvalidInput`] when `dst` is not empty; [`Error::Corrupt`] when what was
/// read from `src` does not add up to its sizes (nothing is written), or when `dst`
/// holds other sizes than `src` after the copy; [`Error::TooLarge`] when the document
/// holds more than one batch takes ([`MAX_BATCH_LEN`](crate::MAX_BATCH_LEN) bytes in
/// all: compact it first);
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
    // The sizes of what was read, as the destination will account them.
    let mut read = StoredSizes::default();
    if let Some(document) = src.get_document()? {
        read.replace_document(document.len() as u64);
        batch.push(Write::SetDocument(document));
    }
    for (actor, seq, value) in src.get_change_entries()? {
        read.replace_change(None, Some(value.len() as u64));
        batch.push(Write::InsertChange { actor, seq, value });
    }
    for peer in src.get_peer_ids()? {
        let state = src.get_sync_state(&peer)?.ok_or_else(|| Error::NotFound {
            what: "sync state of a listed peer (the source changed during the copy)".into(),
        })?;
        read.replace_sync_state(None, Some(state.len() as u64));
        batch.push(Write::SetSyncState { peer, state });
    }
    let expected = src.sizes();
    if read != expected {
        return Err(mismatch(
            "(copy source)",
            format!("it read back as {read:?}, but its sizes say {expected:?}; nothing was copied"),
        ));
    }
    dst.apply(batch)?;
    let copied = dst.sizes();
    if copied != expected {
        return Err(mismatch(
            "(copy destination)",
            format!("it holds {copied:?} after the copy, not {expected:?}"),
        ));
    }
    Ok(copied)
}

/// A copy whose sizes do not add up, at `side`.
fn mismatch(side: &str, what: String) -> Error {
    Error::corrupt(format!("copying a document: {what}"), side, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorId, Batch, ChangeEntry, MemoryPersister};

    /// A source whose reads come back short of its sizes, as a damaged backend's could.
    struct Short(MemoryPersister);

    impl Persister for Short {
        type Error = Error;

        fn apply(&mut self, batch: Batch) -> Result<()> {
            self.0.apply(batch)
        }
        fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
            let mut entries = self.0.get_change_entries()?;
            entries.pop();
            Ok(entries)
        }
        fn get_document(&self) -> Result<Option<Vec<u8>>> {
            self.0.get_document()
        }
        fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
            self.0.get_sync_state(peer_id)
        }
        fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
            self.0.get_peer_ids()
        }
        fn sizes(&self) -> StoredSizes {
            self.0.sizes()
        }
        fn flush(&mut self) -> Result<usize> {
            self.0.flush()
        }
    }

    /// A copy from a source whose reads do not add up to its sizes fails, and writes
    /// nothing: the destination is not left with a partial copy to flush.
    #[test]
    fn a_short_read_of_the_source_copies_nothing() -> Result<()> {
        let mut src = Short(MemoryPersister::new());
        src.apply(
            Batch::new()
                .insert_change(ActorId::new([1]), 1, b"one".to_vec())
                .insert_change(ActorId::new([1]), 2, b"two".to_vec())
                .set_document(b"doc".to_vec()),
        )?;
        let mut dst = MemoryPersister::new();
        let copied = copy_document(&src, &mut dst);
        assert!(
            matches!(&copied, Err(Error::Corrupt { what, .. }) if what.contains("nothing was copied")),
            "{copied:?}"
        );
        assert!(dst.sizes().is_empty(), "{:?}", dst.sizes());
        assert_eq!(dst.get_document()?, None);
        assert_eq!(dst.flush()?, 0, "the failed copy left writes to flush");
        Ok(())
    }

    /// A whole copy is exact: every part, empty values included.
    #[test]
    fn a_copy_holds_every_part() -> Result<()> {
        let mut src = MemoryPersister::new();
        src.apply(
            Batch::new()
                .insert_change(ActorId::new([2]), 7, Vec::new())
                .insert_change(ActorId::new([1]), 9, b"c".to_vec())
                .set_document(Vec::new())
                .set_sync_state(Vec::new(), b"s".to_vec()),
        )?;
        let mut dst = MemoryPersister::new();
        assert_eq!(copy_document(&src, &mut dst)?, src.sizes());
        assert_eq!(dst.get_change_entries()?, src.get_change_entries()?);
        assert_eq!(dst.get_document()?, Some(Vec::new()));
        assert_eq!(dst.get_sync_state(b"")?, Some(b"s".to_vec()));
        // Not into a document that holds something, even only an empty document.
        let mut full = MemoryPersister::new();
        full.set_document(Vec::new())?;
        assert!(matches!(
            copy_document(&src, &mut full),
            Err(Error::InvalidInput { .. })
        ));
        Ok(())
    }
}
