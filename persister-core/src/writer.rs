//! The write side of a CRDT document over a persister: retried batches, the flush
//! policy, and the keys of stored changes for compaction.

use std::collections::BTreeMap;

use crate::{
    ActorId, AutoFlush, Batch, Error, FlushPolicy, Persister, StoredSizes, Write, WriteError,
};

/// Writes a CRDT document's batches to a persister the way a document type needs: a
/// batch that could not be applied stays queued and goes first in the next one (so a
/// failed write is retried, never lost), the [`FlushPolicy`] flushes as it says, and
/// the key of every stored change is remembered, so that a compaction removes exactly
/// the changes its document covers without reading the persister.
///
/// `persister-automerge`'s `PersistentDoc` and `persister-yrs`'s document are built on
/// it.
///
/// ```
/// use persister_core::{ActorId, DocumentWriter, FlushPolicy, MemoryStore, Persister, Store, Write};
///
/// let store = MemoryStore::new();
/// let mut writer = DocumentWriter::new(store.open_document(&"notes".into())?, FlushPolicy::Manual);
/// let actor = ActorId::new([7; 16]);
/// for seq in 1..=3 {
///     writer.write([Write::InsertChange { actor: actor.clone(), seq, value: vec![seq as u8] }])?;
/// }
/// assert_eq!(writer.sizes().change_count, 3);
///
/// // The compacted document replaces the three changes, in one batch.
/// writer.compact(b"all three".to_vec(), [])?;
/// assert_eq!(writer.sizes().change_count, 0);
/// let persister = writer.close()?; // flushed
/// assert_eq!(persister.get_document()?, Some(b"all three".to_vec()));
/// # Ok::<(), persister_core::Error>(())
/// ```
#[derive(Debug)]
pub struct DocumentWriter<P> {
    persister: AutoFlush<P>,
    /// Writes not yet applied, in order. They go first in the next batch.
    queued: Vec<Write>,
    /// The keys of the stored changes the in-memory document holds, by actor: one
    /// growing list per actor rather than a key per change, so that a write allocates
    /// nothing that outlives it. Ordered rather than hashed: there are few actors, most
    /// often one, and comparing a short id costs less than hashing it.
    stored: BTreeMap<ActorId, Vec<u64>>,
}

impl<P: Persister<Error = Error>> DocumentWriter<P> {
    /// Writes to `persister`, flushing as `policy` says.
    pub fn new(persister: P, policy: FlushPolicy) -> Self {
        Self {
            persister: AutoFlush::new(persister, policy),
            queued: Vec::new(),
            stored: BTreeMap::new(),
        }
    }

    /// The persister.
    pub fn persister(&self) -> &P {
        self.persister.get_ref()
    }

    /// The persister's sizes.
    pub fn sizes(&self) -> StoredSizes {
        self.persister.sizes()
    }

    /// How many writes wait for the next successful batch: those of batches that could
    /// not be applied, and those [`queue`](Self::queue)d.
    pub fn queued_writes(&self) -> usize {
        self.queued.len()
    }

    /// Records a change that is stored already (found when the document was loaded)
    /// and that the next [`compact`](Self::compact) must remove.
    pub fn mark_stored(&mut self, actor: ActorId, seq: u64) {
        match self.stored.get_mut(&actor) {
            Some(seqs) => seqs.push(seq),
            None => {
                self.stored.insert(actor, vec![seq]);
            }
        }
    }

    /// Records changes that are stored already, as [`mark_stored`](Self::mark_stored)
    /// does for each; a run of one actor's keys (as a persister returns them) is looked
    /// up once.
    pub fn mark_all_stored(&mut self, stored: impl IntoIterator<Item = (ActorId, u64)>) {
        let mut run: Option<(ActorId, Vec<u64>)> = None;
        for (actor, seq) in stored {
            match &mut run {
                Some((current, seqs)) if *current == actor => seqs.push(seq),
                _ => {
                    if let Some((current, seqs)) = run.replace((actor, vec![seq])) {
                        self.mark_run(current, seqs);
                    }
                }
            }
        }
        if let Some((actor, seqs)) = run {
            self.mark_run(actor, seqs);
        }
    }

    fn mark_run(&mut self, actor: ActorId, mut seqs: Vec<u64>) {
        match self.stored.get_mut(&actor) {
            Some(known) => known.append(&mut seqs),
            None => {
                self.stored.insert(actor, seqs);
            }
        }
    }

    /// The largest seq of `actor`'s changes stored since the last compaction (written
    /// or marked stored), if it has any.
    pub fn last_stored(&self, actor: &ActorId) -> Option<u64> {
        self.stored.get(actor)?.iter().copied().max()
    }

    /// Queues `writes` behind the queued ones, to go in the next batch.
    pub fn queue(&mut self, writes: impl IntoIterator<Item = Write>) {
        self.queued.extend(writes);
    }

    /// Applies the queued writes followed by `writes` as one batch, then flushes if the
    /// policy says so.
    ///
    /// If the batch cannot be applied, every one of its writes stays queued, to go first
    /// in the next batch, and the error is returned. If it was applied and only the
    /// policy's flush failed, none stays queued (the handle is poisoned, see
    /// [`WriteError::FlushFailed`]) and the error is returned.
    pub fn write(&mut self, writes: impl IntoIterator<Item = Write>) -> Result<(), Error> {
        self.queued.extend(writes);
        if self.queued.is_empty() {
            return Ok(());
        }
        // The persister consumes the batch, so it gets a copy: on error the queue must
        // still hold every write.
        let written = self.persister.write(Batch::from(self.queued.clone()));
        if let Err(WriteError::NotApplied(e)) = written {
            return Err(e);
        }
        // Applied (even if the policy's flush then failed): no longer queued. The queue
        // keeps its buffer for the next write.
        let mut queued = std::mem::take(&mut self.queued);
        for write in queued.drain(..) {
            if let Write::InsertChange { actor, seq, .. } = write {
                self.mark_stored(actor, seq);
            }
        }
        self.queued = queued;
        written.map_err(WriteError::into_inner)
    }

    /// Stores `document` and removes every change it covers, in one batch: the changes
    /// stored through this writer or [marked stored](Self::mark_stored), and
    /// `also_covered`. Queued change insertions are dropped (the document holds them);
    /// the other queued writes go in the batch. On error nothing changes.
    pub fn compact(
        &mut self,
        document: Vec<u8>,
        also_covered: impl IntoIterator<Item = (ActorId, u64)>,
    ) -> Result<(), Error> {
        let mut batch: Batch = self
            .queued
            .iter()
            .filter(|write| !matches!(write, Write::InsertChange { .. }))
            .cloned()
            .collect();
        batch.push(Write::SetDocument(document));
        for (actor, seqs) in &mut self.stored {
            seqs.sort_unstable();
            seqs.dedup();
            batch.extend(seqs.iter().map(|&seq| Write::RemoveChange {
                actor: actor.clone(),
                seq,
            }));
        }
        batch.extend(
            also_covered
                .into_iter()
                .map(|(actor, seq)| Write::RemoveChange { actor, seq }),
        );
        let written = self.persister.write(batch);
        if let Err(WriteError::NotApplied(e)) = written {
            return Err(e);
        }
        self.queued.clear();
        self.stored.clear();
        written.map_err(WriteError::into_inner)
    }

    /// Writes what is queued, then makes everything durable; the bytes the flush made
    /// durable.
    pub fn flush(&mut self) -> Result<usize, Error> {
        if let Err(err) = self.write([]) {
            // The queued writes could not be applied: what was applied before them is
            // made durable all the same (a prefix of the batches, as a crash keeps),
            // rather than held hostage by a write that may never apply.
            let _ = self.persister.flush();
            return Err(err);
        }
        self.persister.flush()
    }

    /// Writes what is queued, makes everything durable and returns the persister.
    pub fn close(mut self) -> Result<P, Error> {
        if let Err(err) = self.write([]) {
            // As in `flush`: what was applied is not discarded with the handle.
            let _ = self.persister.flush();
            return Err(err);
        }
        self.persister.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineStore, MemoryEngine, Store};

    fn insert(actor: &ActorId, seq: u64) -> Write {
        Write::InsertChange {
            actor: actor.clone(),
            seq,
            value: vec![1; 10],
        }
    }

    #[test]
    fn a_batch_not_applied_stays_queued_whole() -> Result<(), Error> {
        let store = EngineStore::new(MemoryEngine::new());
        let mut writer =
            DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::Manual);
        let actor = ActorId::new([1]);
        // An empty actor id makes the whole batch invalid: nothing is applied.
        let invalid = Write::InsertChange {
            actor: ActorId::new([]),
            seq: 1,
            value: vec![],
        };
        assert!(writer.write([insert(&actor, 1), invalid]).is_err());
        assert_eq!(
            (writer.queued_writes(), writer.sizes().change_count),
            (2, 0)
        );
        // Still invalid while the bad write is queued; the queue is kept.
        assert!(writer.write([insert(&actor, 2)]).is_err());
        assert_eq!(writer.queued_writes(), 3);
        Ok(())
    }

    #[test]
    fn a_failed_policy_flush_leaves_nothing_queued_and_compaction_removes_what_was_stored()
    -> Result<(), Error> {
        let store = EngineStore::new(MemoryEngine::new());
        let mut writer =
            DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::EveryBatch);
        let actor = ActorId::new([1]);
        writer.write([insert(&actor, 1)])?;
        store.fail_next_flush();
        // Applied, then the flush failed: the write is not retried (it was applied).
        assert!(writer.write([insert(&actor, 2)]).is_err());
        assert_eq!(writer.queued_writes(), 0);
        drop(writer);

        let store = EngineStore::new(MemoryEngine::new());
        let mut writer =
            DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::Manual);
        writer.mark_stored(actor.clone(), 7);
        writer.write([insert(&actor, 1), insert(&actor, 2)])?;
        writer.queue([insert(&actor, 3)]);
        writer.compact(b"doc".to_vec(), [(ActorId::new([2]), 1)])?;
        let persister = writer.close()?;
        assert!(persister.get_changes()?.is_empty());
        assert_eq!(persister.get_document()?, Some(b"doc".to_vec()));
        Ok(())
    }

    /// a write that can never be applied (here an empty actor id; in practice a
    /// change over `MAX_VALUE_LEN`) stays queued; it must not keep the writes applied
    /// before it from being made durable by `flush` or `close`. Without that, closing
    /// fails and drops the handle, which discards them (contract point 12).
    #[test]
    fn a_write_that_cannot_apply_does_not_keep_earlier_writes_from_durability() -> Result<(), Error>
    {
        let store = EngineStore::new(MemoryEngine::new());
        let actor = ActorId::new([1]);
        let invalid = || Write::InsertChange {
            actor: ActorId::new([]),
            seq: 1,
            value: vec![],
        };
        // flush
        let mut writer =
            DocumentWriter::new(store.open_document(&"a".into())?, FlushPolicy::Manual);
        writer.write([insert(&actor, 1)])?;
        assert!(writer.write([invalid()]).is_err());
        assert!(writer.flush().is_err(), "the queued write is still refused");
        drop(writer);
        assert_eq!(
            store.open_document(&"a".into())?.sizes().change_count,
            1,
            "flush: the change applied before the refused write was lost"
        );
        // close
        let mut writer =
            DocumentWriter::new(store.open_document(&"b".into())?, FlushPolicy::Manual);
        writer.write([insert(&actor, 1)])?;
        assert!(writer.write([invalid()]).is_err());
        assert!(writer.close().is_err(), "the queued write is still refused");
        assert_eq!(
            store.open_document(&"b".into())?.sizes().change_count,
            1,
            "close: the change applied before the refused write was lost"
        );
        Ok(())
    }
}
