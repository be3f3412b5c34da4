//! The write side of a CRDT document over a persister: retried batches, the flush
//! policy, and the keys of stored changes for compaction.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::validate_writes;
use crate::{
    ActorId, AutoFlush, Batch, Error, FlushPolicy, MAX_BATCH_LEN, Persister, StoredSizes, Write,
    WriteError,
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
/// # Batches, limits and crashes
///
/// The writes of one [`write`](Self::write) call always go in one batch, applied
/// all-or-nothing; a call whose writes no persister applies (they break a limit of
/// [`Batch::validate`], such as [`MAX_BATCH_LEN`] bytes in all) is refused at once
/// with that error, and nothing of it is queued. Queued writes go first, in order, and
/// with the new ones in one batch as long as that stays within [`MAX_BATCH_LEN`]: a
/// queue that grew larger (an application that kept writing while the disk was full)
/// is applied as several batches, in order, each holding whole calls' writes, and
/// applying stops at the first batch not applied, which stays queued with everything
/// after it. So a crash between two of these batches keeps a prefix of the writes, in
/// the order they were made and never part of one call's writes: the crash state of
/// the persister's contract (point 5) holds for the calls made here as for batches.
/// Only the writes of one [`queue`](Self::queue) call that alone exceed one batch are
/// split, between two writes.
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
    /// How many of `queued` each call of `write` or `queue` added, in order (none of
    /// them 0): a batch holds whole calls.
    calls: VecDeque<usize>,
    /// A flush through this writer failed: the handle refuses every later write.
    flush_failed: bool,
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
            calls: VecDeque::new(),
            flush_failed: false,
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

    /// Whether a flush through this writer has failed: the policy's after a batch was
    /// applied ([`WriteError::FlushFailed`]), or that of [`flush`](Self::flush) or
    /// [`close`](Self::close). The handle is then poisoned: it refuses every later
    /// write and flush, and nothing waits to be retried (the writes still queued can
    /// never be applied through it). A document type tells such a failure, whose
    /// writes since the last successful flush may not survive, from a write that was
    /// not applied and stays queued.
    pub fn flush_failed(&self) -> bool {
        self.flush_failed
    }

    /// Records a change that is stored already (found when the document was loaded)
    /// and that the next [`compact`](Self::compact) must remove.
    pub fn mark_stored(&mut self, actor: ActorId, seq: u64) {
        mark(&mut self.stored, actor, seq);
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

    /// Queues `writes` behind the queued ones, to go in the next batch, together (see
    /// [Batches, limits and crashes](Self#batches-limits-and-crashes)).
    ///
    /// They are not checked: check them as [`Batch::validate`] does first, for a write
    /// no persister applies would stay queued ahead of every later one, and no write
    /// would be stored again.
    pub fn queue(&mut self, writes: impl IntoIterator<Item = Write>) {
        let before = self.queued.len();
        self.queued.extend(writes);
        if self.queued.len() > before {
            self.calls.push_back(self.queued.len() - before);
        }
    }

    /// Applies the queued writes followed by `writes`, then flushes if the policy says
    /// so: in one batch, or in several when they add up to more than one batch may
    /// carry (see [Batches, limits and crashes](Self#batches-limits-and-crashes)).
    ///
    /// # Errors
    ///
    /// - `writes` break a limit of [`Batch::validate`] (together: at most
    ///   [`MAX_BATCH_LEN`] bytes): that error, and nothing is written or queued; the
    ///   queued writes wait for the next call.
    /// - A batch cannot be applied: its writes and every one after it stay queued, in
    ///   order, to go first in the next batch; the batches before it were applied.
    /// - A batch was applied and the policy's flush after it failed: the handle is
    ///   poisoned and refuses every later write (see [`WriteError::FlushFailed`]), so
    ///   none stays queued, not even those after that batch.
    pub fn write(&mut self, writes: impl IntoIterator<Item = Write>) -> Result<(), Error> {
        let before = self.queued.len();
        self.queued.extend(writes);
        if let Err(e) = validate_writes(&self.queued[before..]) {
            self.queued.truncate(before);
            return Err(e);
        }
        if self.queued.len() > before {
            self.calls.push_back(self.queued.len() - before);
        }
        self.apply_queued().map_err(WriteError::into_inner)
    }

    /// Applies the queue in batches of whole calls, each within [`MAX_BATCH_LEN`],
    /// until it is empty or a batch fails.
    fn apply_queued(&mut self) -> Result<(), WriteError<Error>> {
        while !self.queued.is_empty() {
            // At least one write, so that the loop ends whatever `calls` says.
            let len =
                next_batch_len(&self.queued, self.calls.iter().copied(), MAX_BATCH_LEN).max(1);
            // The persister consumes the batch, so it gets a copy: on error the queue
            // must still hold every write.
            let written = self
                .persister
                .write(Batch::from(self.queued[..len].to_vec()));
            if let Err(WriteError::NotApplied(e)) = written {
                return Err(WriteError::NotApplied(e));
            }
            // Applied (even if the policy's flush then failed): no longer queued.
            self.take_applied(len);
            if let Err(e) = written {
                // Poisoned: nothing queued can be applied through this handle again.
                self.flush_failed = true;
                self.queued.clear();
                self.calls.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes the first `len` queued writes, which were applied; the queue keeps its
    /// buffer for the next write.
    fn take_applied(&mut self, mut len: usize) {
        for write in self.queued.drain(..len) {
            if let Write::InsertChange { actor, seq, .. } = write {
                mark(&mut self.stored, actor, seq);
            }
        }
        while let Some(call) = self.calls.front_mut() {
            if *call > len {
                *call -= len;
                break;
            }
            len -= *call;
            self.calls.pop_front();
            if len == 0 {
                break;
            }
        }
    }

    /// Stores `document` and removes every change it covers: the changes stored
    /// through this writer or [marked stored](Self::mark_stored), and `also_covered`.
    /// Queued change insertions and documents are dropped (the document holds the
    /// changes and replaces the documents); the other queued writes are written with
    /// it.
    ///
    /// It is one batch, unless that would carry more than [`MAX_BATCH_LEN`]: the first
    /// batch then holds the document and as many removals and queued writes (whole
    /// calls') as fit, and the rest are queued and applied after it, as
    /// [`write`](Self::write) applies a queue. A crash between them leaves the document
    /// stored and some of the changes it covers still stored, never changes removed
    /// without the document; the queued writes (sync states, removals) commute with the
    /// compaction's. What is not applied after the first batch stays queued, for the
    /// next write or flush, which report its error; `compact` still returns `Ok`.
    ///
    /// # Errors
    ///
    /// If the first batch is not applied, nothing changes and its error is returned.
    /// If it was applied and a flush the policy asked for then failed (after it or
    /// after a later batch), the handle is poisoned, nothing stays queued, and the
    /// flush's error is returned.
    pub fn compact(
        &mut self,
        document: Vec<u8>,
        also_covered: impl IntoIterator<Item = (ActorId, u64)>,
    ) -> Result<(), Error> {
        let mut removals = Vec::new();
        for (actor, seqs) in &mut self.stored {
            seqs.sort_unstable();
            seqs.dedup();
            removals.extend(seqs.iter().map(|&seq| Write::RemoveChange {
                actor: actor.clone(),
                seq,
            }));
        }
        removals.extend(
            also_covered
                .into_iter()
                .map(|(actor, seq)| Write::RemoveChange { actor, seq }),
        );
        let mut kept = Vec::new();
        let mut kept_calls = VecDeque::new();
        let mut rest = self.queued.as_slice();
        for &call in &self.calls {
            let (writes, after) = rest.split_at(call);
            rest = after;
            let before = kept.len();
            kept.extend(
                writes
                    .iter()
                    .filter(|w| !matches!(w, Write::InsertChange { .. } | Write::SetDocument(_)))
                    .cloned(),
            );
            if kept.len() > before {
                kept_calls.push_back(kept.len() - before);
            }
        }

        let (removed, kept_taken, kept_calls_taken) =
            first_compaction_batch(document.len(), &removals, &kept, &kept_calls, MAX_BATCH_LEN);
        let mut after = removals.split_off(removed);
        let mut batch = vec![Write::SetDocument(document)];
        batch.append(&mut removals);
        kept_calls.drain(..kept_calls_taken);
        batch.extend(kept.drain(..kept_taken));
        let written = self.persister.write(Batch::from(batch));
        if let Err(WriteError::NotApplied(e)) = written {
            return Err(e);
        }
        self.stored.clear();
        self.queued.clear();
        self.calls.clear();
        if let Err(e) = written {
            self.flush_failed = true;
            return Err(e.into_inner());
        }
        // The rest, in order: the removals (split as needed) and the kept calls.
        if !after.is_empty() {
            self.calls.push_back(after.len());
            self.queued.append(&mut after);
        }
        self.queued.append(&mut kept);
        self.calls.extend(kept_calls);
        match self.apply_queued() {
            Err(WriteError::FlushFailed(e)) => Err(e),
            // Left queued for the next write or flush, which report it.
            Err(WriteError::NotApplied(_)) | Ok(()) => Ok(()),
        }
    }

    /// Writes what is queued, then makes everything durable; the bytes the flush made
    /// durable.
    pub fn flush(&mut self) -> Result<usize, Error> {
        if let Err(err) = self.write([]) {
            // The queued writes could not be applied: what was applied before them is
            // made durable all the same (a prefix of the batches, as a crash keeps),
            // rather than held hostage by a write that may never apply.
            if self.persister.flush().is_err() {
                self.flush_failed = true;
            }
            return Err(err);
        }
        self.persister
            .flush()
            .inspect_err(|_| self.flush_failed = true)
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

fn mark(stored: &mut BTreeMap<ActorId, Vec<u64>>, actor: ActorId, seq: u64) {
    match stored.get_mut(&actor) {
        Some(seqs) => seqs.push(seq),
        None => {
            stored.insert(actor, vec![seq]);
        }
    }
}

/// What goes with a compacted document of `document_len` bytes in its batch, within
/// `max` bytes: how many of the first `removals`, then (once they all fit) how many of
/// the first `kept` writes, by whole calls (`kept_calls`), and how many calls.
fn first_compaction_batch(
    document_len: usize,
    removals: &[Write],
    kept: &[Write],
    kept_calls: &VecDeque<usize>,
    max: usize,
) -> (usize, usize, usize) {
    let mut len = document_len;
    let mut fits = |writes: &[Write]| {
        let more = writes
            .iter()
            .fold(0usize, |sum, write| sum.saturating_add(write.payload_len()));
        let fit = len.saturating_add(more) <= max;
        if fit {
            len += more;
        }
        fit
    };
    let removed = removals
        .iter()
        .take_while(|write| fits(std::slice::from_ref(*write)))
        .count();
    let (mut kept_taken, mut calls_taken) = (0, 0);
    if removed == removals.len() {
        for &call in kept_calls {
            if !fits(&kept[kept_taken..kept_taken + call]) {
                break;
            }
            kept_taken += call;
            calls_taken += 1;
        }
    }
    (removed, kept_taken, calls_taken)
}

/// How many of the first `writes`, which `calls` made (how many each call added, in
/// order), go in the next batch: as many whole calls as carry at most `max` bytes, at
/// least one. A first call that alone carries more is split: as many of its writes as
/// fit, at least one.
fn next_batch_len(writes: &[Write], calls: impl IntoIterator<Item = usize>, max: usize) -> usize {
    let mut taken = 0;
    let mut len = 0usize;
    for call in calls {
        let call_len = writes[taken..taken + call]
            .iter()
            .fold(0usize, |sum, write| sum.saturating_add(write.payload_len()));
        if len.saturating_add(call_len) <= max {
            taken += call;
            len += call_len;
            continue;
        }
        if taken == 0 {
            for write in &writes[..call] {
                len = len.saturating_add(write.payload_len());
                if taken > 0 && len > max {
                    break;
                }
                taken += 1;
            }
        }
        break;
    }
    taken
}

#[cfg(test)]
mod tests;
