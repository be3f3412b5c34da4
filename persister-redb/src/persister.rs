//! One document's handle: pending writes in memory, committed together by `flush`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::group::{Job, Outcome};
use crate::lookup::Lookup;
use crate::overlay::Overlay;
use crate::shared::{Shared, poison_reason};
use persister_core::{
    ActorId, Batch, ChangeEntry, DocumentClaim, DocumentId, Error, Persister, Result, StoredSizes,
    Write,
};

mod reads;

/// The handle of one document of a [`RedbStore`](crate::RedbStore), keeping the
/// [`Persister` contract](persister_core::Persister#contract).
///
/// Writes are held in memory until [`flush`](Persister::flush), which commits all of
/// them in one redb transaction and syncs it (`Durability::Immediate`); reads see them at
/// once. Flushes of other handles of the store that run at the same time share that
/// transaction and its sync ([group commit](crate#group-commit)). A handle about to hold more than
/// [`max_pending_bytes`](crate::RedbOptions::max_pending_bytes) flushes what it holds
/// first, which bounds its memory. Dropping a handle discards what it holds
/// ([contract point 12](persister_core::Persister#contract)); a crash loses the writes
/// made since the last flush: the document is then as it was after its last flush.
///
/// [`sizes`](Persister::sizes) is kept in memory, and stored in the same transaction as
/// the data, so it is exact and free, also right after reopening.
#[derive(Debug)]
pub struct RedbPersister {
    shared: Arc<Shared>,
    claim: DocumentClaim,
    /// The document's number in the file, once it is stored.
    number: Option<u64>,
    /// The sizes of the document as reads see it (file and overlay).
    sizes: StoredSizes,
    overlay: Overlay,
    /// For actors read so far: a seq no change of theirs in the file is above (`None`
    /// when they have none there).
    file_max_seq: HashMap<ActorId, Option<u64>>,
    /// Something was applied since the last commit.
    dirty: bool,
    /// Payload bytes applied since the last flush.
    unsynced: usize,
    poisoned: Option<String>,
}

impl RedbPersister {
    pub(crate) fn open(shared: Arc<Shared>, claim: DocumentClaim) -> Result<Self> {
        let txn = shared.begin_read()?;
        let record = shared.read_record(&txn, claim.id())?;
        Ok(Self {
            number: record.map(|r| r.number),
            sizes: record.map(|r| r.sizes).unwrap_or_default(),
            overlay: Overlay::default(),
            file_max_seq: HashMap::new(),
            dirty: false,
            unsynced: 0,
            poisoned: None,
            shared,
            claim,
        })
    }

    fn id(&self) -> &DocumentId {
        self.claim.id()
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        self.shared.check_poisoned()
    }

    /// The stored length of each write's key, for keys the overlay does not hold.
    ///
    /// A change whose seq is above the highest stored for its actor needs no read, so
    /// appending new changes, the usual case, reads the file once per actor.
    fn stored_lengths(&mut self, writes: &[Write]) -> Result<Vec<Option<u64>>> {
        let Some(number) = self.number else {
            return Ok(vec![None; writes.len()]);
        };
        let shared = Arc::clone(&self.shared);
        let mut lookup = Lookup::new(&shared, number);
        let mut lengths = Vec::with_capacity(writes.len());
        for write in writes {
            let length = match write {
                Write::InsertChange { actor, seq, .. } | Write::RemoveChange { actor, seq }
                    if self.overlay.change(actor, *seq).is_none() =>
                {
                    let max = match self.file_max_seq.get(actor) {
                        Some(max) => *max,
                        None => {
                            let max = lookup.max_seq(actor)?;
                            self.file_max_seq.insert(actor.clone(), max);
                            max
                        }
                    };
                    match max {
                        Some(max) if *seq <= max => lookup.change_len(actor, *seq)?,
                        _ => None,
                    }
                }
                Write::SetSyncState { peer, .. } | Write::RemoveSyncState { peer }
                    if self.overlay.sync_state(peer).is_none() =>
                {
                    lookup.sync_state_len(peer)?
                }
                _ => None,
            };
            lengths.push(length);
        }
        Ok(lengths)
    }

    /// Applies one write to the overlay and the sizes; `stored` is the length of its key
    /// in the file, when the overlay did not hold it before the batch.
    fn hold(&mut self, write: Write, stored: Option<u64>) {
        let len = |value: &[u8]| value.len() as u64;
        let in_file = self.number.is_some();
        match write {
            Write::InsertChange { actor, seq, value } => {
                let old = self
                    .overlay
                    .change(&actor, seq)
                    .map_or(stored, |v| v.map(len));
                self.sizes.replace_change(old, Some(len(&value)));
                self.overlay.put_change(actor, seq, Some(&value));
            }
            Write::RemoveChange { actor, seq } => {
                let old = self
                    .overlay
                    .change(&actor, seq)
                    .map_or(stored, |v| v.map(len));
                self.sizes.replace_change(old, None);
                if in_file {
                    self.overlay.put_change(actor, seq, None);
                } else {
                    self.overlay.forget_change(&actor, seq);
                }
            }
            Write::SetDocument(value) => {
                self.sizes.replace_document(len(&value));
                self.overlay.put_document(value);
            }
            Write::SetSyncState { peer, state } => {
                let old = self
                    .overlay
                    .sync_state(&peer)
                    .map_or(stored, |v| v.map(len));
                self.sizes.replace_sync_state(old, Some(len(&state)));
                self.overlay.put_sync_state(peer, Some(state));
            }
            Write::RemoveSyncState { peer } => {
                let old = self
                    .overlay
                    .sync_state(&peer)
                    .map_or(stored, |v| v.map(len));
                self.sizes.replace_sync_state(old, None);
                if in_file {
                    self.overlay.put_sync_state(peer, None);
                } else {
                    self.overlay.forget_sync_state(&peer);
                }
            }
        }
    }

    /// Hands the pending writes over for a commit, if there are any.
    pub(crate) fn take_job(&mut self) -> Option<Job> {
        self.dirty.then(|| Job {
            id: self.id().clone(),
            number: self.number,
            sizes: self.sizes,
            overlay: std::mem::take(&mut self.overlay),
        })
    }

    /// Takes back the job [`take_job`](Self::take_job) gave, once its commit has ended,
    /// and returns the payload bytes it made durable. A failure poisons the handle; the
    /// writes stay visible to reads.
    pub(crate) fn finish_job(&mut self, outcome: Outcome) -> Result<usize> {
        let Outcome { job, result } = outcome;
        if let Err(err) = result {
            self.overlay = job.overlay;
            self.poisoned = Some(poison_reason(&err));
            return Err(err);
        }
        self.number = job.number;
        for (actor, seq, value) in job.overlay.changes() {
            if let (Some(max), Some(_)) = (self.file_max_seq.get_mut(actor), value) {
                *max = (*max).max(Some(seq));
            }
        }
        self.overlay.reuse(job.overlay);
        self.dirty = false;
        self.shared.mark_unwritten(self.id(), false);
        Ok(std::mem::take(&mut self.unsynced))
    }

    /// Whether this handle belongs to the store that shares `shared`.
    pub(crate) fn is_of(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// Commits everything pending durably, sharing the commit with other handles that
    /// flush at the same time, and returns the payload bytes that made durable. Any
    /// failure poisons the handle and the store: redb refuses further commits after a
    /// failed one.
    fn commit(&mut self) -> Result<usize> {
        let Some(job) = self.take_job() else {
            return Ok(0);
        };
        let shared = Arc::clone(&self.shared);
        let mut outcomes = shared.commit_jobs(vec![job]).into_iter();
        match outcomes.next() {
            Some(outcome) => self.finish_job(outcome),
            // Every job comes back; should one not, the writes are not known durable.
            None => {
                let err = Error::Poisoned {
                    reason: format!("a flush of document {} lost its writes", self.id()),
                };
                self.poisoned = Some(poison_reason(&err));
                Err(err)
            }
        }
    }
}

impl Persister for RedbPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let payload = batch.payload_len();
        if self.dirty
            && self.overlay.bytes().saturating_add(payload) > self.shared.options.max_pending_bytes
        {
            self.commit()?;
        }
        // Every read happens before the first change, so a failure applies nothing.
        let stored = self.stored_lengths(batch.writes())?;
        for (write, stored) in batch.into_iter().zip(stored) {
            self.hold(write, stored);
        }
        self.overlay.add_bytes(payload);
        self.unsynced = self.unsynced.saturating_add(payload);
        if !self.dirty {
            self.dirty = true;
            if self.number.is_none() {
                self.shared.mark_unwritten(self.claim.id(), true);
            }
        }
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        self.read_change_entries()
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>> {
        self.read_document()
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_sync_state(peer_id)
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        self.read_peer_ids()
    }

    fn sizes(&self) -> StoredSizes {
        self.sizes
    }

    fn flush(&mut self) -> Result<usize> {
        self.check_writable()?;
        if !self.dirty {
            return Ok(0);
        }
        self.commit()
    }
}

impl Drop for RedbPersister {
    /// Discards the writes held since the last flush (contract point 12): they never
    /// reached the file.
    fn drop(&mut self) {
        self.shared.mark_unwritten(self.claim.id(), false);
    }
}
