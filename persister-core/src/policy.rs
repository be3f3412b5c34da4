//! What every application writes otherwise: when to flush and when to compact.

use std::time::{Duration, Instant};

use crate::{Batch, ChangeEntry, Persister, StoredSizes};

/// When [`AutoFlush`] makes writes durable.
///
/// The counts are of **batches**: one call of [`apply`](Persister::apply) (or of a
/// single-write method such as [`insert_changes`](Persister::insert_changes)) is one
/// batch, whatever it holds. For a `PersistentDoc` of `persister-automerge` that is one
/// batch per edit, per sync message that brought something, and per compaction, so
/// `EveryBatches(100)` flushes after 100 edits only when nothing else wrote between
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every batch: nothing acknowledged is ever lost, at one `fsync` per batch.
    EveryBatch,
    /// After every `n` batches (compactions included): at most the last `n - 1`
    /// batches are lost in a crash. `EveryBatches(0)` behaves as `EveryBatches(1)`.
    EveryBatches(u64),
    /// On the first write at least this long after the previous flush. There is no
    /// background thread: a write followed by silence stays pending until the next write
    /// or an explicit [`flush`](Persister::flush) or [`AutoFlush::close`].
    Every(Duration),
    /// Only when the application calls [`flush`](Persister::flush).
    Manual,
}

/// A persister that flushes by a [`FlushPolicy`], so an application's fsync policy is
/// one line.
///
/// ```
/// use persister_core::{ActorId, AutoFlush, FlushPolicy, MemoryPersister, Persister};
///
/// let mut p = AutoFlush::new(MemoryPersister::new(), FlushPolicy::EveryBatches(100));
/// p.insert_changes(vec![(ActorId::new([1; 16]), 1, b"change".to_vec())])?;
/// // One batch applied, not yet durable.
/// assert_eq!(p.unflushed_batches(), 1);
/// // Before exiting: flush what is pending and learn that it is safe to stop.
/// let inner = p.close()?;
/// # drop(inner);
/// # Ok::<(), persister_core::Error>(())
/// ```
///
/// Dropping an `AutoFlush` does not flush (a flush can fail, and a drop cannot report
/// it): call [`close`](AutoFlush::close) or [`flush`](Persister::flush) before exiting.
#[derive(Debug)]
pub struct AutoFlush<P> {
    inner: P,
    policy: FlushPolicy,
    unflushed_batches: u64,
    last_flush: Instant,
}

impl<P: Persister> AutoFlush<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, policy: FlushPolicy) -> Self {
        Self {
            inner,
            policy,
            unflushed_batches: 0,
            last_flush: Instant::now(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    /// Changes the policy; it applies from the next write.
    pub fn set_policy(&mut self, policy: FlushPolicy) {
        self.policy = policy;
    }

    /// How many batches were applied since the last flush: what a crash now could
    /// lose. [`FlushPolicy::EveryBatches`] flushes when it reaches `n`.
    pub fn unflushed_batches(&self) -> u64 {
        self.unflushed_batches
    }

    /// The old name of [`unflushed_batches`](Self::unflushed_batches).
    #[deprecated(
        note = "renamed `unflushed_batches`: it counts batches applied since the last flush"
    )]
    pub fn pending_writes(&self) -> u64 {
        self.unflushed_batches
    }

    /// The wrapped persister.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped persister, mutably. Writes made through it bypass the policy.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// Flushes what is pending and returns the wrapped persister: after `Ok`, every
    /// write made through this wrapper is durable.
    pub fn close(mut self) -> Result<P, P::Error> {
        self.flush()?;
        Ok(self.inner)
    }

    /// Applies `batch`, then flushes if the policy says so, and tells the two failures
    /// apart: [`WriteError::NotApplied`] (nothing changed) from
    /// [`WriteError::FlushFailed`] (the batch was applied, but the flush the policy
    /// asked for failed, so the handle is poisoned and the batch is not durable). A
    /// caller that keeps failed writes to retry them keeps only the first kind.
    /// [`apply`](Persister::apply) is this with the two errors merged.
    pub fn write(&mut self, batch: Batch) -> Result<(), WriteError<P::Error>> {
        if batch.is_empty() {
            return Ok(());
        }
        self.inner.apply(batch).map_err(WriteError::NotApplied)?;
        self.unflushed_batches += 1;
        if self.due() {
            self.flush().map_err(WriteError::FlushFailed)?;
        }
        Ok(())
    }

    fn due(&self) -> bool {
        match self.policy {
            FlushPolicy::EveryBatch => true,
            FlushPolicy::EveryBatches(n) => self.unflushed_batches >= n.max(1),
            FlushPolicy::Every(period) => self.last_flush.elapsed() >= period,
            FlushPolicy::Manual => false,
        }
    }
}

impl<P: Persister> Persister for AutoFlush<P> {
    type Error = P::Error;

    /// Applies the batch, then flushes if the policy says so. If that flush fails the
    /// error is returned although the batch was applied: the handle is then poisoned.
    /// [`AutoFlush::write`] tells the two apart.
    fn apply(&mut self, batch: Batch) -> Result<(), Self::Error> {
        self.write(batch).map_err(WriteError::into_inner)
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Self::Error> {
        self.inner.get_change_entries()
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.inner.get_changes()
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>, Self::Error> {
        self.inner.get_document()
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.inner.get_sync_state(peer_id)
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.inner.get_peer_ids()
    }

    fn sizes(&self) -> StoredSizes {
        self.inner.sizes()
    }

    fn flush(&mut self) -> Result<usize, Self::Error> {
        let written = self.inner.flush()?;
        self.unflushed_batches = 0;
        self.last_flush = Instant::now();
        Ok(written)
    }
}

/// Why [`AutoFlush::write`] failed: before or after the batch was applied.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The batch was not applied: the persister is as it was.
    NotApplied(E),
    /// The batch was applied, then the flush the policy asked for failed: the batch
    /// is not durable and the handle is poisoned (until the store is reopened).
    FlushFailed(E),
}

impl<E> WriteError<E> {
    /// The persister's error, whichever step failed.
    pub fn into_inner(self) -> E {
        match self {
            Self::NotApplied(e) | Self::FlushFailed(e) => e,
        }
    }
}

/// When to compact: store one compacted document and drop the changes it covers.
///
/// The default follows automerge-repo: compact once the changes take at least as many
/// bytes as the compacted document, and there are at least 1,000 of them (so a small
/// document is not rewritten on every edit).
///
/// ```
/// use persister_core::{CompactionTrigger, StoredSizes};
///
/// let trigger = CompactionTrigger::default();
/// let sizes = StoredSizes { changes: 90_000, document: 80_000, change_count: 1_500, ..Default::default() };
/// assert!(trigger.should_compact(&sizes));
/// assert!(!trigger.should_compact(&StoredSizes { change_count: 10, ..sizes }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionTrigger {
    /// Compact only with at least this many changes stored.
    pub min_changes: u64,
    /// Compact only when change bytes are at least this many times the document bytes.
    pub change_to_document_ratio: f64,
}

impl Default for CompactionTrigger {
    fn default() -> Self {
        Self {
            min_changes: 1_000,
            change_to_document_ratio: 1.0,
        }
    }
}

impl CompactionTrigger {
    /// A trigger that never fires.
    pub fn never() -> Self {
        Self {
            min_changes: u64::MAX,
            change_to_document_ratio: f64::INFINITY,
        }
    }

    /// Whether a persister holding `sizes` should be compacted now.
    pub fn should_compact(&self, sizes: &StoredSizes) -> bool {
        sizes.change_count > 0
            && sizes.change_count >= self.min_changes
            && sizes.changes as f64 >= self.change_to_document_ratio * sizes.document as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorId, Error, MemoryStore, Store};

    fn one_change(p: &mut impl Persister<Error = Error>, seq: u64) -> Result<(), Error> {
        p.insert_changes(vec![(ActorId::new([1]), seq, vec![0; 10])])
    }

    #[test]
    fn write_tells_a_batch_not_applied_from_a_failed_policy_flush() -> Result<(), Error> {
        let store = MemoryStore::new();
        let handle = store.open_document(&"doc".into())?;
        let mut p = AutoFlush::new(handle, FlushPolicy::EveryBatch);
        store.fail_next_flush();
        let change = |seq| {
            Batch::from(vec![crate::Write::InsertChange {
                actor: ActorId::new([1]),
                seq,
                value: vec![0; 10],
            }])
        };
        // Applied, then the flush failed: the change is there, not durable.
        assert!(matches!(
            p.write(change(1)),
            Err(WriteError::FlushFailed(_))
        ));
        assert_eq!(p.get_ref().sizes().change_count, 1);
        // The handle is poisoned: the next batch is not applied.
        assert!(matches!(p.write(change(2)), Err(WriteError::NotApplied(_))));
        assert_eq!(p.get_ref().sizes().change_count, 1);
        Ok(())
    }

    #[test]
    fn every_batches_flushes_on_the_nth_batch() -> Result<(), Error> {
        let mut p = AutoFlush::new(crate::MemoryPersister::new(), FlushPolicy::EveryBatches(3));
        for seq in 1..=2 {
            one_change(&mut p, seq)?;
        }
        assert_eq!(p.unflushed_batches(), 2);
        one_change(&mut p, 3)?;
        assert_eq!(p.unflushed_batches(), 0);
        // The flush really happened: nothing is left for a manual one.
        assert_eq!(p.flush()?, 0);
        Ok(())
    }

    #[test]
    fn a_batch_counts_once_whatever_it_holds() -> Result<(), Error> {
        let mut p = AutoFlush::new(crate::MemoryPersister::new(), FlushPolicy::EveryBatches(2));
        let actor = ActorId::new([1]);
        let batch: Batch = (1..=5)
            .map(|seq| crate::Write::InsertChange {
                actor: actor.clone(),
                seq,
                value: vec![0; 10],
            })
            .collect();
        p.apply(batch)?;
        assert_eq!(p.unflushed_batches(), 1);
        assert_eq!(p.sizes().change_count, 5);
        // A compaction is a batch like any other: it is the second, and flushes.
        let mut compaction = Batch::new().set_document(b"doc".to_vec());
        for seq in 1..=5 {
            compaction = compaction.remove_change(actor.clone(), seq);
        }
        p.apply(compaction)?;
        assert_eq!(p.unflushed_batches(), 0);
        Ok(())
    }

    #[test]
    fn every_batch_leaves_nothing_unflushed() -> Result<(), Error> {
        let mut p = AutoFlush::new(crate::MemoryPersister::new(), FlushPolicy::EveryBatch);
        one_change(&mut p, 1)?;
        assert_eq!(p.unflushed_batches(), 0);
        assert_eq!(p.get_mut().flush()?, 0);
        Ok(())
    }

    #[test]
    fn manual_never_flushes_by_itself_and_close_does() -> Result<(), Error> {
        let mut p = AutoFlush::new(crate::MemoryPersister::new(), FlushPolicy::Manual);
        for seq in 1..=50 {
            one_change(&mut p, seq)?;
        }
        assert_eq!(p.unflushed_batches(), 50);
        let mut inner = p.close()?;
        assert_eq!(inner.flush()?, 0);
        Ok(())
    }

    #[test]
    fn elapsed_policy_flushes_on_the_first_write_after_the_period() -> Result<(), Error> {
        let mut p = AutoFlush::new(
            crate::MemoryPersister::new(),
            FlushPolicy::Every(Duration::from_secs(3600)),
        );
        one_change(&mut p, 1)?;
        assert_eq!(p.unflushed_batches(), 1);
        p.set_policy(FlushPolicy::Every(Duration::ZERO));
        one_change(&mut p, 2)?;
        assert_eq!(p.unflushed_batches(), 0);
        Ok(())
    }

    #[test]
    fn a_failed_policy_flush_is_reported() -> Result<(), Error> {
        let store = MemoryStore::new();
        let mut p = AutoFlush::new(store.open_document(&"d".into())?, FlushPolicy::EveryBatch);
        store.fail_next_flush();
        assert!(matches!(one_change(&mut p, 1), Err(Error::Io { .. })));
        assert!(matches!(one_change(&mut p, 2), Err(Error::Poisoned { .. })));
        Ok(())
    }

    #[test]
    fn trigger_needs_both_count_and_ratio() {
        let t = CompactionTrigger {
            min_changes: 10,
            change_to_document_ratio: 1.0,
        };
        let s = |changes, document, change_count| StoredSizes {
            changes,
            document,
            change_count,
            ..StoredSizes::default()
        };
        assert!(t.should_compact(&s(100, 0, 10)));
        assert!(!t.should_compact(&s(100, 0, 9)));
        assert!(!t.should_compact(&s(99, 100, 50)));
        assert!(t.should_compact(&s(100, 100, 50)));
        assert!(!CompactionTrigger::never().should_compact(&s(u64::MAX, 0, u64::MAX)));
        assert!(
            !CompactionTrigger {
                min_changes: 0,
                ..t
            }
            .should_compact(&s(0, 0, 0))
        );
    }
}
