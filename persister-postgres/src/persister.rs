//! One document's handle: its lease, and its writes held in memory until `flush`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use persister_core::{
    ActorId, Batch, ChangeEntry, DocumentClaim, DocumentId, Error, Persister, Result, StoredSizes,
    Write,
};

use crate::group::{Held, Job, Outcome};
use crate::shared::Shared;
use crate::sql::{Q, seq_from_sql, seq_to_sql};

mod reads;

/// The handle of one document of a [`PostgresStore`](crate::PostgresStore), keeping
/// the [`Persister` contract](persister_core::Persister#contract) as the crate docs
/// describe.
///
/// It holds the document's lease from [`open_document`](persister_core::Store::open_document)
/// until it is dropped or closed. Writes are held in memory (reads see them at once)
/// until [`flush`](Persister::flush), which writes them all in one transaction and one
/// round trip, committed with `synchronous_commit = on`. Dropping a handle without
/// flushing discards what it holds; nothing flushed is lost. [`PostgresPersister::close`]
/// flushes, releases the lease and reports errors.
#[derive(Debug)]
pub struct PostgresPersister {
    shared: Arc<Shared>,
    claim: DocumentClaim,
    place: String,
    /// The fencing token of this handle's lease.
    token: i64,
    /// The lease's `expires_at` as this handle last wrote it: a server whose record is
    /// older lost an acknowledged write of this handle (see `RENEW_LEASE`).
    expires: SystemTime,
    /// When the lease was last taken or renewed (before the statement was sent).
    renewed: Instant,
    /// Whether the server holds a record of the document (its row in `documents`).
    stored: bool,
    /// The sizes of the document as reads see it: stored, with the held writes.
    sizes: StoredSizes,
    held: Held,
    /// For actors looked up: a seq that no stored change of theirs is above.
    max_seq: HashMap<ActorId, Option<u64>>,
    /// For peers looked up: the length of their stored state.
    sync_lens: HashMap<Vec<u8>, Option<u64>>,
    /// Payload bytes of the batches applied since the last flush.
    pending: usize,
    /// A non-empty batch was applied since the last flush.
    dirty: bool,
    poisoned: Option<String>,
    /// Whether the poisoning is a lost lease, reported as [`Error::LeaseLost`].
    lease_lost: bool,
    released: bool,
}

impl PostgresPersister {
    pub(crate) fn open(shared: Arc<Shared>, claim: DocumentClaim) -> Result<Self> {
        let id = claim.id().clone();
        let place = shared.document_place(&id);
        let renewed = Instant::now();
        let lease_ms = shared.lease_ms();
        let id_bytes = id.as_bytes();
        // Not retried on a lost connection: a lease taken by a statement whose answer
        // was lost would make the retry find the document locked until it expires.
        let (token, expires) = shared
            .run(false, |conn| {
                let rows = conn.query(
                    &shared.sql,
                    Q::TakeLease,
                    &[&id_bytes, &shared.holder, &lease_ms],
                )?;
                match rows.first() {
                    Some(row) => Ok(Ok((
                        row.try_get::<_, i64>(0)?,
                        row.try_get::<_, SystemTime>(1)?,
                    ))),
                    None => Ok(Err(shared.locked(conn, &id))),
                }
            })?
            .map_err(|err| shared.error(&err, "take the lease of", &place))??;
        let mut handle = Self {
            shared,
            claim,
            place,
            token,
            expires,
            renewed,
            stored: false,
            sizes: StoredSizes::default(),
            held: Held::default(),
            max_seq: HashMap::new(),
            sync_lens: HashMap::new(),
            pending: 0,
            dirty: false,
            poisoned: None,
            lease_lost: false,
            released: false,
        };
        // Read after taking the lease, so every write of the previous holder is seen.
        if let Some(sizes) = handle.read_record()? {
            handle.stored = true;
            handle.sizes = sizes;
        }
        Ok(handle)
    }

    fn id(&self) -> &DocumentId {
        self.claim.id()
    }

    /// The fencing token of this handle's lease: it grows each time the document's
    /// lease changes hands.
    pub fn lease_token(&self) -> i64 {
        self.token
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) if self.lease_lost => Err(Error::LeaseLost {
                reason: reason.clone(),
            }),
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the handle with `reason` and returns the error for it.
    fn poison(&mut self, reason: String) -> Error {
        self.shared.note_failed(self.claim.id(), &reason);
        self.poisoned = Some(reason.clone());
        Error::Poisoned { reason }
    }

    fn lease_lost(&mut self) -> Error {
        let reason = format!(
            "the lease of {} expired, was taken over by another holder (this handle's fencing token {} is no longer current), or is older than this handle's last write (the server lost acknowledged writes: a standby promoted without them), so the handle can write nothing more; nothing of the writes since its last flush was written: reopen the document",
            self.place, self.token
        );
        self.lease_lost = true;
        self.shared.note_failed(self.claim.id(), &reason);
        self.poisoned = Some(reason.clone());
        Error::LeaseLost { reason }
    }

    /// Renews the document's lease now, so that it lasts another
    /// [`lease_duration`](crate::PostgresOptions::lease_duration).
    ///
    /// Writes and flushes renew the lease themselves; call this from a timer to keep a
    /// document that is open but idle for longer than the lease.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] when the lease has already expired or been taken over (the
    /// handle can then never write again), or the server's error.
    pub fn renew_lease(&mut self) -> Result<()> {
        self.check_writable()?;
        let started = Instant::now();
        let shared = Arc::clone(&self.shared);
        let (id, token, ms) = (self.id().as_bytes().to_vec(), self.token, shared.lease_ms());
        let expires = self.expires;
        // Renewing twice is harmless, so a lost connection is retried: a renewal whose
        // answer was lost leaves a newer `expires_at`, which the retry accepts.
        let renewed = shared.read("renew the lease of", &self.place, |conn| {
            let rows = conn.query(&shared.sql, Q::RenewLease, &[&id, &token, &ms, &expires])?;
            rows.first()
                .map(|row| row.try_get::<_, SystemTime>(0))
                .transpose()
        })?;
        let Some(expires) = renewed else {
            return Err(self.lease_lost());
        };
        self.expires = expires;
        self.renewed = started;
        Ok(())
    }

    /// Flushes, releases the document's lease (another process can open it at once),
    /// and returns the first error.
    ///
    /// # Errors
    ///
    /// The flush's error, or the server's error while releasing the lease (which then
    /// expires on its own).
    pub fn close(mut self) -> Result<()> {
        let flushed = self.flush().map(drop);
        let released = self.release();
        flushed.and(released)
    }

    fn release(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let (id, token) = (self.id().as_bytes().to_vec(), self.token);
        shared.read("release the lease of", &self.place, |conn| {
            conn.query(&shared.sql, Q::ReleaseLease, &[&id, &token])
                .map(drop)
        })
    }

    /// The stored length of each write's key, for keys the handle does not hold: one
    /// round trip per kind of lookup a batch needs, none when it only appends changes
    /// above the highest stored seq of actors already seen.
    fn stored_lengths(&mut self, writes: &[Write]) -> Result<Vec<Option<u64>>> {
        if !self.stored {
            return Ok(vec![None; writes.len()]);
        }
        let shared = Arc::clone(&self.shared);
        let sql = &shared.sql;
        let id = self.id().as_bytes().to_vec();
        let unheld_change =
            |actor: &ActorId, seq: u64| !self.held.changes.contains_key(&(actor.clone(), seq));
        let mut actors = BTreeSet::new();
        let mut peers = BTreeSet::new();
        for write in writes {
            match write {
                Write::InsertChange { actor, seq, .. } | Write::RemoveChange { actor, seq }
                    if unheld_change(actor, *seq) && !self.max_seq.contains_key(actor) =>
                {
                    actors.insert(actor.as_bytes().to_vec());
                }
                Write::SetSyncState { peer, .. } | Write::RemoveSyncState { peer }
                    if !self.held.sync_states.contains_key(peer)
                        && !self.sync_lens.contains_key(peer) =>
                {
                    peers.insert(peer.clone());
                }
                _ => {}
            }
        }
        if !actors.is_empty() {
            let actors: Vec<Vec<u8>> = actors.into_iter().collect();
            let found = shared.read("read", &self.place, |conn| {
                let rows = conn.query(sql, Q::MaxSeqs, &[&id, &actors])?;
                rows.iter()
                    .map(|row| {
                        let actor: Vec<u8> = row.try_get(0)?;
                        let max: Option<i64> = row.try_get(1)?;
                        Ok((ActorId::new(actor), max.map(seq_from_sql)))
                    })
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            })?;
            self.max_seq.extend(found);
        }
        if !peers.is_empty() {
            let peers: Vec<Vec<u8>> = peers.into_iter().collect();
            let found = shared.read("read", &self.place, |conn| {
                let rows = conn.query(sql, Q::SyncStateLengths, &[&id, &peers])?;
                rows.iter()
                    .map(|row| Ok((row.try_get::<_, Vec<u8>>(0)?, row.try_get::<_, i64>(1)?)))
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            })?;
            for peer in peers {
                self.sync_lens.insert(peer, None);
            }
            for (peer, len) in found {
                self.sync_lens.insert(peer, Some(len.unsigned_abs()));
            }
        }
        // Changes at or below their actor's highest stored seq may be overwrites.
        let mut keys = BTreeSet::new();
        for write in writes {
            if let Write::InsertChange { actor, seq, .. } | Write::RemoveChange { actor, seq } =
                write
                && !self.held.changes.contains_key(&(actor.clone(), *seq))
                && self
                    .max_seq
                    .get(actor)
                    .copied()
                    .flatten()
                    .is_some_and(|max| *seq <= max)
            {
                keys.insert((actor.clone(), *seq));
            }
        }
        let mut change_lens = HashMap::new();
        if !keys.is_empty() {
            let (actors, seqs): (Vec<Vec<u8>>, Vec<i64>) = keys
                .iter()
                .map(|(actor, seq)| (actor.as_bytes().to_vec(), seq_to_sql(*seq)))
                .unzip();
            let found = shared.read("read", &self.place, |conn| {
                let rows = conn.query(sql, Q::ChangeLengths, &[&id, &actors, &seqs])?;
                rows.iter()
                    .map(|row| {
                        let actor: Vec<u8> = row.try_get(0)?;
                        let seq: i64 = row.try_get(1)?;
                        let len: i64 = row.try_get(2)?;
                        Ok(((ActorId::new(actor), seq_from_sql(seq)), len.unsigned_abs()))
                    })
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            })?;
            change_lens.extend(found);
        }
        Ok(writes
            .iter()
            .map(|write| match write {
                Write::InsertChange { actor, seq, .. } | Write::RemoveChange { actor, seq } => {
                    change_lens.get(&(actor.clone(), *seq)).copied()
                }
                Write::SetSyncState { peer, .. } | Write::RemoveSyncState { peer } => {
                    self.sync_lens.get(peer).copied().flatten()
                }
                Write::SetDocument(_) => None,
            })
            .collect())
    }

    /// Holds one write and accounts it in the sizes; `stored` is the stored length of
    /// its key, used when the handle did not hold the key before.
    fn hold(&mut self, write: Write, stored: Option<u64>) {
        let len = |value: &[u8]| value.len() as u64;
        match write {
            Write::InsertChange { actor, seq, value } => {
                let key = (actor, seq);
                let old = self
                    .held
                    .changes
                    .get(&key)
                    .map_or(stored, |v| v.as_deref().map(len));
                self.sizes.replace_change(old, Some(len(&value)));
                self.held.changes.insert(key, Some(value));
            }
            Write::RemoveChange { actor, seq } => {
                let key = (actor, seq);
                let old = self
                    .held
                    .changes
                    .get(&key)
                    .map_or(stored, |v| v.as_deref().map(len));
                self.sizes.replace_change(old, None);
                self.held.changes.insert(key, None);
            }
            Write::SetDocument(value) => {
                self.sizes.replace_document(len(&value));
                self.held.document = Some(value);
            }
            Write::SetSyncState { peer, state } => {
                let old = self
                    .held
                    .sync_states
                    .get(&peer)
                    .map_or(stored, |v| v.as_deref().map(len));
                self.sizes.replace_sync_state(old, Some(len(&state)));
                self.held.sync_states.insert(peer, Some(state));
            }
            Write::RemoveSyncState { peer } => {
                let old = self
                    .held
                    .sync_states
                    .get(&peer)
                    .map_or(stored, |v| v.as_deref().map(len));
                self.sizes.replace_sync_state(old, None);
                self.held.sync_states.insert(peer, None);
            }
        }
    }

    /// Hands the writes held since the last flush to a commit, or `None` when there
    /// are none.
    pub(crate) fn take_job(&mut self) -> Option<Job> {
        self.dirty.then(|| Job {
            id: self.id().clone(),
            token: self.token,
            expires: self.expires,
            sizes: self.sizes,
            stored: self.stored,
            held: std::mem::take(&mut self.held),
        })
    }

    /// Takes back the job [`take_job`](Self::take_job) gave, once its commit has ended,
    /// and returns the payload bytes it made durable. Any failure poisons the handle
    /// (a lost lease as [`Error::LeaseLost`]); the writes stay visible to reads.
    /// `started` is when the flush began, before the lease was renewed.
    pub(crate) fn finish_job(
        &mut self,
        job: Job,
        outcome: Outcome,
        started: Instant,
    ) -> Result<usize> {
        self.held = job.held;
        match outcome {
            Outcome::Written { expires } => self.expires = expires,
            Outcome::LeaseLost => return Err(self.lease_lost()),
            Outcome::Failed { lost, error } => {
                let what = if lost {
                    "the connection was lost while committing a flush, so whether the server committed it is unknown; reopening the document shows all of that flush or none of it"
                } else {
                    "a flush failed and nothing of it was written"
                };
                self.poison(format!("{what} ({error})"));
                return Err(error);
            }
        }
        self.renewed = started;
        let was_stored = std::mem::replace(&mut self.stored, true);
        self.forget_held(was_stored);
        self.dirty = false;
        Ok(std::mem::take(&mut self.pending))
    }

    /// Whether this handle belongs to the store that shares `shared`.
    pub(crate) fn is_of(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// After a successful flush: what the server now holds is known for every key the
    /// handle held.
    fn forget_held(&mut self, was_stored: bool) {
        let held = std::mem::take(&mut self.held);
        for ((actor, seq), value) in held.changes {
            if value.is_none() {
                continue;
            }
            match self.max_seq.get_mut(&actor) {
                Some(max) => *max = Some(max.map_or(seq, |m| m.max(seq))),
                // A new document holds exactly what was flushed.
                None if !was_stored => {
                    self.max_seq.insert(actor, Some(seq));
                }
                None => {}
            }
        }
        for (peer, state) in held.sync_states {
            let len = state.map(|s| s.len() as u64);
            self.sync_lens.insert(peer, len);
        }
    }
}

impl Persister for PostgresPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        if self.renewed.elapsed() >= self.shared.options.lease_renewal {
            self.renew_lease()?;
        }
        // Every read happens before the first write is held, so a failure holds nothing.
        let stored = self.stored_lengths(batch.writes())?;
        let payload = batch.payload_len();
        for (write, stored) in batch.into_iter().zip(stored) {
            self.hold(write, stored);
        }
        self.pending = self.pending.saturating_add(payload);
        self.dirty = true;
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
        let started = Instant::now();
        let Some(job) = self.take_job() else {
            return Ok(0);
        };
        let shared = Arc::clone(&self.shared);
        match shared.commit_jobs(vec![job]).pop() {
            Some((job, outcome)) => self.finish_job(job, outcome, started),
            // Every job comes back; should one not, its writes are not known durable.
            None => Err(self.poison(format!(
                "a flush of {} lost its writes before they were committed",
                self.place
            ))),
        }
    }
}

impl Drop for PostgresPersister {
    fn drop(&mut self) {
        // Unflushed writes are discarded; the lease is released so that the next open,
        // here or in another process, does not wait for it to expire. If releasing
        // fails, the lease expires on its own.
        let _ = self.release();
    }
}
