//! The write side: the pending queue, the flush policy, and the keys of stored updates.

use std::collections::BTreeMap;

use persister_core::{
    ActorId, AutoFlush, Batch, FlushPolicy, Persister, StoredSizes, Write, WriteError,
};

/// Writes batches to the persister, keeping every write that failed queued until one
/// succeeds, and remembers the key of every stored update so that compaction never has
/// to read the persister.
#[derive(Debug)]
pub(crate) struct Writer<P> {
    persister: AutoFlush<P>,
    /// Writes not yet applied, in order. They go first in the next batch.
    pending: Vec<Write>,
    /// The keys of the stored updates the in-memory document holds, by writer: one
    /// growing list per writer rather than a key per update, so that a write allocates
    /// nothing that outlives it. Ordered rather than hashed: there are few writers,
    /// most often one, and comparing a short id costs less than hashing it.
    stored: BTreeMap<ActorId, Vec<u64>>,
}

impl<P: Persister<Error = persister_core::Error>> Writer<P> {
    pub(crate) fn new(
        persister: P,
        policy: FlushPolicy,
        stored: impl IntoIterator<Item = (ActorId, u64)>,
    ) -> Self {
        let mut writer = Self {
            persister: AutoFlush::new(persister, policy),
            pending: Vec::new(),
            stored: BTreeMap::new(),
        };
        // Stored updates come by writer: each run of one writer's keys is looked up
        // once.
        let mut run: Option<(ActorId, Vec<u64>)> = None;
        for (actor, seq) in stored {
            match &mut run {
                Some((current, seqs)) if *current == actor => seqs.push(seq),
                _ => {
                    if let Some((current, seqs)) = run.replace((actor, vec![seq])) {
                        writer.mark_stored(current, seqs);
                    }
                }
            }
        }
        if let Some((actor, seqs)) = run {
            writer.mark_stored(actor, seqs);
        }
        writer
    }

    /// Records that `actor`'s updates `seqs` are stored.
    fn mark_stored(&mut self, actor: ActorId, mut seqs: Vec<u64>) {
        match self.stored.get_mut(&actor) {
            Some(known) => known.append(&mut seqs),
            None => {
                self.stored.insert(actor, seqs);
            }
        }
    }

    /// Records that `actor`'s update `seq` is stored.
    fn mark_one_stored(&mut self, actor: ActorId, seq: u64) {
        match self.stored.get_mut(&actor) {
            Some(seqs) => seqs.push(seq),
            None => {
                self.stored.insert(actor, vec![seq]);
            }
        }
    }

    /// The largest sequence number of `actor`'s stored updates, if it has any.
    pub(crate) fn last_stored(&self, actor: &ActorId) -> Option<u64> {
        self.stored.get(actor)?.iter().copied().max()
    }

    pub(crate) fn persister(&self) -> &P {
        self.persister.get_ref()
    }

    pub(crate) fn sizes(&self) -> StoredSizes {
        self.persister.sizes()
    }

    pub(crate) fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Queues `writes` behind the pending ones, to go in the next batch.
    pub(crate) fn queue(&mut self, writes: impl IntoIterator<Item = Write>) {
        self.pending.extend(writes);
    }

    /// Applies the pending writes followed by `writes` as one batch. If the batch
    /// cannot be applied, every one of them stays pending, to go first in the next
    /// batch; if it was applied and only the policy's flush failed, none does (the
    /// handle is poisoned) and the error is returned.
    pub(crate) fn write(
        &mut self,
        writes: impl IntoIterator<Item = Write>,
    ) -> Result<(), persister_core::Error> {
        self.pending.extend(writes);
        if self.pending.is_empty() {
            return Ok(());
        }
        // The persister consumes the batch, so it gets a copy: on error the queue must
        // still hold every write.
        let written = self.persister.write(Batch::from(self.pending.clone()));
        if let Err(WriteError::NotApplied(e)) = written {
            return Err(e);
        }
        // Applied (even if the policy's flush then failed): no longer pending. The
        // queue keeps its buffer for the next write.
        let mut pending = std::mem::take(&mut self.pending);
        for write in pending.drain(..) {
            if let Write::InsertChange { actor, seq, .. } = write {
                self.mark_one_stored(actor, seq);
            }
        }
        self.pending = pending;
        written.map_err(WriteError::into_inner)
    }

    /// Stores `document` and removes every stored update, in one batch. Pending update
    /// writes are dropped: the caller's document covers them. On error nothing changes.
    pub(crate) fn compact(&mut self, document: Vec<u8>) -> Result<(), persister_core::Error> {
        let mut batch: Batch = self
            .pending
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
        let written = self.persister.write(batch);
        if let Err(WriteError::NotApplied(e)) = written {
            return Err(e);
        }
        self.pending.clear();
        self.stored.clear();
        written.map_err(WriteError::into_inner)
    }

    /// Writes what is pending, then makes everything durable.
    pub(crate) fn flush(&mut self) -> Result<usize, persister_core::Error> {
        self.write([])?;
        self.persister.flush()
    }

    /// Writes what is pending, makes everything durable and returns the persister.
    pub(crate) fn close(mut self) -> Result<P, persister_core::Error> {
        self.write([])?;
        self.persister.close()
    }
}
