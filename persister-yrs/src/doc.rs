//! The persistent document: load, edit, compact, flush.

use std::panic::resume_unwind;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use persister_core::{ActorId, Batch, CompactionTrigger, Persister, StoredSizes};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, TransactionMut, Update};

use crate::{Error, Options, Result};
use persister_core::DocumentWriter;

/// The observer key under which a document captures the update of every transaction.
const OBSERVER: &str = "persister-yrs";

/// Updates of committed transactions, captured by the document's observer, not yet
/// handed to the writer.
type Captured = Arc<Mutex<Vec<Vec<u8>>>>;

/// A Yjs document (`yrs::Doc`) that writes every update to a [`Persister`] as it
/// happens.
///
/// What the persister holds, and when:
///
/// - **Updates.** The update of every transaction the document commits, by
///   [`edit`](Self::edit) or by applying a peer's update
///   ([`apply_update`](Self::apply_update),
///   [`receive_sync_message`](Self::receive_sync_message)), is written under
///   ([`actor`](Self::actor), next sequence number) before the call returns `Ok`. If
///   the persister does not apply it, the update stays queued and goes first in the
///   next write (or [`flush`](Self::flush)); the call returns the error, and nothing of
///   the in-memory document is lost. An update no persister stores is never queued: it
///   makes the document unusable ([`Error::Broken`]). A transaction opened directly on
///   [`doc`](Self::doc) (an `UndoManager`'s, say) is captured too, and written by the
///   next write or flush.
/// - **Durability** follows [`Options::flush`]; [`flush`](Self::flush) and
///   [`close`](Self::close) make everything written so far durable.
/// - **Compaction** stores the whole state as one v1 update and removes the updates it
///   covers, in one atomic batch; it runs when [`Options::compaction`] says so, or on
///   [`compact`](Self::compact).
/// - **Sync states**: none. The Yjs sync protocol keeps nothing per peer between
///   connections (each side sends its state vector, which is derived from the
///   document), so nothing is written to the persister's sync-state part.
///
/// Dropping the document does not flush (a flush can fail and a drop cannot say so):
/// its unflushed writes are discarded by the persister. Call [`close`](Self::close) or
/// [`flush`](Self::flush) before exiting.
///
/// # After a failed flush
///
/// A failed flush ([`Error::FlushFailed`]) poisons the persister (see
/// [`Persister::flush`]): every later write is refused, and nothing waits to be
/// retried. Nothing is lost as long as the document is kept: take its state, drop it,
/// load the document again and apply the state; that writes everything the store lacks.
///
/// ```
/// # use persister_core::{MemoryStore, Store};
/// # use persister_yrs::{Error, PersistentYDoc};
/// # use yrs::Text;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let store = MemoryStore::new();
/// # let mut doc = PersistentYDoc::load(store.open_document(&"notes".into())?)?;
/// # let text = doc.doc().get_or_insert_text("text");
/// # store.fail_next_flush();
/// # assert!(matches!(doc.edit(|t| text.insert(t, 0, "hello")), Err(Error::FlushFailed(_))));
/// let state = doc.encode_state()?;
/// drop(doc);
/// let mut doc = PersistentYDoc::load(store.open_document(&"notes".into())?)?;
/// doc.apply_update(&state)?;
/// doc.flush()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PersistentYDoc<P> {
    pub(crate) doc: Doc,
    writer: DocumentWriter<P>,
    pub(crate) captured: Captured,
    actor: ActorId,
    next_seq: u64,
    compaction: CompactionTrigger,
    /// Why the in-memory document is unusable (see [`Error::Broken`]), once it is.
    broken: OnceLock<String>,
}

/// The store key of the updates written by the document whose client id is `client_id`:
/// its eight bytes, big-endian.
pub fn actor_of(client_id: ClientID) -> ActorId {
    ActorId::new(client_id.get().to_be_bytes())
}

/// A stored document at least this long is applied on a thread of its own while the
/// updates are read, when there are at least [`OVERLAP_CHANGES`] of them: below, the
/// thread would cost more than the overlap saves.
const OVERLAP_DOCUMENT_BYTES: usize = 64 * 1024;
/// See [`OVERLAP_DOCUMENT_BYTES`].
const OVERLAP_CHANGES: u64 = 256;

/// Decodes a v1 update, or says why it is not one.
///
/// yrs 0.28 adds each decoded block's length to its client's clock unchecked, so an
/// update whose clocks pass `u32::MAX` (damaged, or sent by a hostile peer) overflows:
/// a panic where yrs is built with overflow checks (debug builds, and this workspace's
/// release builds, see the crate docs), caught here and reported as what it is.
/// Decoding builds a new value and touches no document, so nothing is left half done.
pub(crate) fn decode_update(bytes: &[u8]) -> std::result::Result<Update, String> {
    match std::panic::catch_unwind(|| Update::decode_v1(bytes)) {
        Ok(Ok(update)) => Ok(update),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "decoding its {} bytes overflowed a clock: its blocks pass the largest clock, {}",
            bytes.len(),
            u32::MAX
        )),
    }
}

/// Runs `f`, turning a panic of yrs into the reason it gives. yrs 0.28 panics on some
/// damaged or hostile updates while it integrates them (an index it unwraps, a clock it
/// subtracts unchecked) and while it encodes a state that holds such an update.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    persister_core::catch_panic("yrs", f)
}

/// A new document with `options`, holding the stored `document` (applied in one
/// transaction), if any.
fn with_document(options: yrs::Options, document: Option<&[u8]>) -> Result<Doc> {
    let doc = Doc::with_options(options);
    if let Some(bytes) = document {
        let corrupt = |reason: String| Error::CorruptDocument { reason };
        let update = decode_update(bytes).map_err(corrupt)?;
        // The transaction's commit (when it is dropped) inside the guard too.
        guarded(|| doc.transact_mut().apply_update(update))
            .map_err(corrupt)?
            .map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(doc)
}

impl<P: Persister<Error = persister_core::Error>> PersistentYDoc<P> {
    /// Loads the document held by `persister` with the default [`Options`].
    pub fn load(persister: P) -> Result<Self> {
        Self::load_with(persister, Options::default())
    }

    /// Loads the document held by `persister`: the stored document, applied in one
    /// transaction, then every stored update, applied in another. An empty persister
    /// gives an empty document. A large stored document (64 KiB or more, with 256
    /// updates or more) is applied on a thread of its own while this one reads the
    /// updates. Nothing observes either transaction: the document is returned after
    /// both.
    ///
    /// A stored document or update that yrs cannot decode or apply is an error
    /// ([`Error::CorruptDocument`], [`Error::CorruptUpdate`]); nothing is silently
    /// dropped. Stored updates whose dependencies are missing wait in yrs' pending set
    /// (see `ReadTxn::has_missing_updates`) and are kept by compaction; pending updates
    /// yrs cannot encode again (it panics merging them) are [`Error::CorruptDocument`].
    pub fn load_with(persister: P, options: Options) -> Result<Self> {
        let document = persister.get_document()?;
        let mut doc_options = yrs::Options::default();
        if let Some(client_id) = options.client_id {
            doc_options.client_id = client_id;
        }
        doc_options.offset_kind = options.offset_kind;
        // yrs takes a while to apply a large stored document (some 10 ms a MiB), so the
        // updates are read meanwhile, here, while another thread applies it.
        let overlap = document
            .as_ref()
            .is_some_and(|d| d.len() >= OVERLAP_DOCUMENT_BYTES)
            && persister.sizes().change_count >= OVERLAP_CHANGES;
        let (doc, entries) = std::thread::scope(|scope| {
            let document = document.as_deref();
            // Without a thread (the system refused one), the document is applied here.
            let loaded = match overlap {
                true => {
                    let options = doc_options.clone();
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || with_document(options, document))
                        .ok()
                }
                false => None,
            };
            match loaded {
                Some(loaded) => {
                    let entries = persister.get_change_entries();
                    let doc = loaded.join().unwrap_or_else(|panic| resume_unwind(panic));
                    Ok::<_, Error>((doc?, entries?))
                }
                None => Ok((
                    with_document(doc_options, document)?,
                    persister.get_change_entries()?,
                )),
            }
        })?;
        let actor = actor_of(doc.client_id());
        // Each update's apply guarded, and the transaction's commit too: a panic of
        // either is the damage it is.
        let applied = guarded(|| {
            let mut txn = doc.transact_mut();
            for (key_actor, seq, bytes) in &entries {
                let corrupt = |reason: String| Error::CorruptUpdate {
                    actor: key_actor.clone(),
                    seq: *seq,
                    reason,
                };
                let update = decode_update(bytes).map_err(corrupt)?;
                guarded(|| txn.apply_update(update))
                    .map_err(corrupt)?
                    .map_err(|e| corrupt(e.to_string()))?;
            }
            Ok::<(), Error>(())
        });
        match applied {
            Ok(result) => result?,
            Err(reason) => {
                return Err(Error::CorruptDocument {
                    reason: format!("committing the stored updates: {reason}"),
                });
            }
        }
        // Pending updates are merged as the state is encoded, and yrs panics merging some
        // damaged ones: such a store would load, then fail every compaction and sync.
        guarded(|| {
            let txn = doc.transact();
            if txn.has_missing_updates() {
                txn.encode_state_as_update_v1(&StateVector::default());
            }
        })
        .map_err(|reason| Error::CorruptDocument {
            reason: format!(
                "the stored updates leave updates pending (waiting for others) that cannot be encoded again: {reason}"
            ),
        })?;
        let stored = entries.into_iter().map(|(actor, seq, _)| (actor, seq));
        let mut writer = DocumentWriter::new(persister, options.flush);
        writer.mark_all_stored(stored);
        // A writer's counter continues after the largest sequence number it stored, so
        // a session that reuses a client id never overwrites an update.
        let next_seq = writer.last_stored(&actor).map_or(1, |seq| seq + 1);

        let captured = Captured::default();
        let sink = Arc::clone(&captured);
        doc.observe_update_v1(OBSERVER, move |_, event| {
            lock(&sink).push(event.update.clone());
        })
        .map_err(|e| Error::InvalidUpdate {
            reason: e.to_string(),
        })?;
        Ok(Self {
            doc,
            writer,
            captured,
            actor,
            next_seq,
            compaction: options.compaction,
            broken: OnceLock::new(),
        })
    }

    /// An error if the document is unusable ([`Error::Broken`]).
    pub(crate) fn usable(&self) -> Result<()> {
        match self.broken.get() {
            Some(reason) => Err(Error::Broken {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes the document unusable for `reason`, and says so.
    pub(crate) fn break_with(&self, reason: String) -> Error {
        let reason = self.broken.get_or_init(|| reason).clone();
        Error::Broken { reason }
    }

    /// The document, to read. Edits go through [`edit`](Self::edit); a transaction
    /// opened directly on it is captured and written by the next write or flush.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The key under which this document stores its updates: [`actor_of`] its client id.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The sequence number the next stored update gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The document's state vector.
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The whole state as one Yjs v1 update (what compaction stores), without writing
    /// anything: to export it, or to apply it to another `yrs::Doc`.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`] when the document is unusable, or yrs cannot encode its state
    /// (it then is).
    pub fn encode_state(&self) -> Result<Vec<u8>> {
        self.encode_diff(&StateVector::default())
    }

    /// Runs `f` in one read-write transaction, commits it, and writes its update to the
    /// persister before returning.
    ///
    /// If the write is not applied the update stays queued (see [`PersistentYDoc`])
    /// and the error is returned; the edit itself is in the document. If it was applied
    /// and the flush after it failed, [`Error::FlushFailed`] is returned. Afterwards the
    /// automatic flush and compaction run as [`Options`] say.
    ///
    /// If `f` panics (yrs panics on some damaged updates applied with
    /// `TransactionMut::apply_update`, and on some misuse), the panic is caught:
    /// yrs commits the transaction as it unwinds, so the document may hold part of the
    /// edit; nothing of it is written and [`Error::Broken`] is returned. So it is when
    /// the edit's update cannot be stored at all: longer than
    /// [`MAX_VALUE_LEN`](persister_core::MAX_VALUE_LEN), or not decodable again.
    ///
    /// A peer's update goes through [`apply_update`](Self::apply_update) rather than
    /// `f`: only that stores the part of it yrs holds pending (waiting for updates not
    /// received yet).
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut TransactionMut<'_>) -> R) -> Result<R> {
        self.usable()?;
        let before = lock(&self.captured).len();
        let doc = &self.doc;
        // The transaction's commit (when it is dropped) inside the guard too.
        let run = guarded(|| f(&mut doc.transact_mut()))
            .and_then(|value| self.check_applied(before, false).map(|()| value));
        let value = match run {
            Ok(value) => value,
            Err(reason) => {
                lock(&self.captured).truncate(before);
                return Err(
                    self.break_with(format!("an edit: {reason}; nothing of it was written"))
                );
            }
        };
        self.write_captured(Vec::new())?;
        Ok(value)
    }

    /// Compacts now: encodes the state as one update and, in one batch, stores it as
    /// the document and removes every stored update. The state includes updates yrs
    /// holds pending, so it covers every stored update. Queued writes are part of the
    /// batch (unless, queued while the store refused writes, they add up to more than
    /// [`MAX_BATCH_LEN`](persister_core::MAX_BATCH_LEN): see `DocumentWriter::compact`).
    ///
    /// On error nothing is written and the store is as before, except after
    /// [`Error::FlushFailed`]: the batch was applied and the flush after it failed.
    pub fn compact(&mut self) -> Result<()> {
        self.usable()?;
        // Taken before encoding: every captured update is then in the encoded state.
        let captured = std::mem::take(&mut *lock(&self.captured));
        let failed_before = self.writer.flush_failed();
        let written = match self.encode_state() {
            // A compaction that fails was not applied, unless the flush after it failed
            // (which the writer records; a handle whose flush had failed before refuses
            // it).
            Ok(state) => self.writer.compact(state, []).map_err(|e| {
                match !failed_before && self.writer.flush_failed() {
                    true => Error::FlushFailed(e),
                    false => Error::Persister(e),
                }
            }),
            Err(e) => Err(e),
        };
        if written
            .as_ref()
            .is_err_and(|e| !matches!(e, Error::FlushFailed(_)))
        {
            // Nothing was written: the captured updates must still be.
            let mut queue = lock(&self.captured);
            let newer = std::mem::replace(&mut *queue, captured);
            queue.extend(newer);
        }
        written
    }

    /// Writes what is queued, then makes every write so far durable. Returns how many
    /// bytes the persister's flush wrote. After `Ok` it is safe to exit.
    ///
    /// If the queued writes cannot be applied they stay queued, what was applied before
    /// them is made durable all the same, and the error ([`Error::Persister`]) is
    /// returned: a later flush retries them. If the flush itself fails,
    /// [`Error::FlushFailed`] is returned and no later flush of this persister
    /// succeeds (see there for how to keep the edits).
    ///
    /// An unusable document ([`Error::Broken`]) still flushes what it queued before it
    /// broke, and nothing after. When an update captured from a transaction opened
    /// directly on [`doc`](Self::doc) cannot be stored (see [`edit`](Self::edit)), the
    /// document breaks here: what came before it is flushed, and [`Error::Broken`] is
    /// returned.
    pub fn flush(&mut self) -> Result<usize> {
        let queued = match self.usable() {
            Ok(()) => self.queue_captured(Vec::new()).map(|_| ()),
            Err(_) => Ok(()),
        };
        let flushed = self.writer.flush().map_err(|e| self.persister_error(e))?;
        queued.map(|()| flushed)
    }

    /// Writes what is queued, makes everything durable, and returns the persister.
    ///
    /// On error the document is gone but the error says why: it is the error of
    /// [`flush`](Self::flush). To retry a write that was not applied instead, call
    /// [`flush`](Self::flush) until it succeeds, then `close`; after
    /// [`Error::FlushFailed`] no flush succeeds.
    pub fn close(mut self) -> Result<P> {
        let queued = match self.usable() {
            Ok(()) => self.queue_captured(Vec::new()).map(|_| ()),
            Err(_) => Ok(()),
        };
        if let Err(broken) = queued {
            // What was queued before the update that broke it is kept all the same.
            self.flush()?;
            return Err(broken);
        }
        if let Err(e) = self.writer.write([]) {
            let e = self.persister_error(e);
            // As in `flush`: what was applied is not discarded with the handle.
            let _ = self.writer.flush();
            return Err(e);
        }
        // Nothing is queued: what can fail now is the flush.
        self.writer.close().map_err(Error::FlushFailed)
    }

    /// The persister, to read (for example its [`sizes`](Persister::sizes)).
    pub fn persister(&self) -> &P {
        self.writer.persister()
    }

    /// What the persister holds, in bytes and counts.
    pub fn sizes(&self) -> StoredSizes {
        self.writer.sizes()
    }

    /// How many writes failed and wait for the next successful write or flush.
    pub fn queued_writes(&self) -> usize {
        self.writer.queued_writes()
    }

    /// Writes the captured updates and `extra` updates in one batch after whatever is
    /// queued; then compacts if the trigger says so.
    pub(crate) fn write_captured(&mut self, extra: Vec<Vec<u8>>) -> Result<()> {
        let writes = self.queue_captured(extra)?;
        if writes == 0 {
            return Ok(());
        }
        self.writer.write([]).map_err(|e| self.persister_error(e))?;
        if self.compaction.should_compact(&self.writer.sizes()) {
            self.compact().map_err(|e| match e {
                Error::Persister(e) => Error::Compaction(e),
                other => other,
            })?;
        }
        Ok(())
    }

    /// The error of a write or flush that failed with `e`: [`Error::Persister`] when
    /// writes wait in the queue to be retried (the batch was not applied),
    /// [`Error::FlushFailed`] when nothing does because a flush through the writer
    /// failed (the batch was applied, and the handle refuses every later write).
    fn persister_error(&self, e: persister_core::Error) -> Error {
        match self.writer.queued_writes() == 0 && self.writer.flush_failed() {
            true => Error::FlushFailed(e),
            false => Error::Persister(e),
        }
    }

    /// Moves the captured updates and `extra` into the writer's queue, each under the
    /// next key; returns how many.
    ///
    /// An update no persister stores (over persister-core's limits) would stay queued
    /// ahead of every later write, and nothing would be stored again; the document
    /// holds it and cannot be stored whole either. So it breaks the document instead:
    /// the updates before it are queued, it and those after it are not.
    fn queue_captured(&mut self, extra: Vec<Vec<u8>>) -> Result<usize> {
        let updates: Vec<Vec<u8>> = lock(&self.captured).drain(..).chain(extra).collect();
        let mut writes = Vec::with_capacity(updates.len());
        let mut refused = None;
        for value in updates {
            let len = value.len();
            let write = Batch::new().insert_change(self.actor.clone(), self.next_seq, value);
            if let Err(e) = write.validate() {
                refused = Some(format!("an update of {len} bytes cannot be stored: {e}"));
                break;
            }
            self.next_seq += 1;
            writes.extend(write);
        }
        let count = writes.len();
        self.writer.queue(writes);
        match refused {
            Some(reason) => Err(self.break_with(reason)),
            None => Ok(count),
        }
    }
}

pub(crate) fn lock(captured: &Captured) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    captured.lock().unwrap_or_else(PoisonError::into_inner)
}
