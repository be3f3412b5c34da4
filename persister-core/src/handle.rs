//! The one store and handle of every backend built on an [`Engine`]: the contract
//! implemented once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine::{Engine, PendingDocument, StoredKey};
use crate::group::{GroupCommit, GroupCommits, poison_reason};
use crate::{
    ActorId, Batch, ChangeEntry, DocumentClaim, DocumentId, Error, HeldWrites, OpenDocuments,
    Persister, Recovered, Result, Store, StoredSizes, Write, merge_held,
};

/// The [`Store`] of a backend built on an [`Engine`].
///
/// It keeps one handle per document, lists the documents that exist only in a handle's
/// held writes, poisons itself when a commit fails, and runs group commit: concurrent
/// [`flush`](Persister::flush) calls on different handles hand their writes to one
/// queue, and whichever finds no commit running leads: it commits everything queued at
/// that moment in one [`Engine::commit`] (one sync), while flushes that arrive meanwhile
/// wait and one of them leads the next group. Nothing waits for company (no timers): a
/// lone flush commits at once. Each flush returns once the commit carrying its own
/// writes is durable; a failed shared commit poisons every handle it carried (the
/// leader gets the error, the others [`Error::Poisoned`] naming it), and the store. A
/// panic of the engine while committing fails the commit the same way, as
/// [`Error::Poisoned`] naming the panic's message: it does not unwind through `flush`.
///
/// Clones share the engine, like an `Arc`. Dropping the store and every handle drops the
/// engine, which releases its files and locks; [`close`](Store::close) reports what went
/// wrong doing so.
///
/// ```
/// use persister_core::{EngineStore, MemoryEngine, Persister, Store};
///
/// let store = EngineStore::new(MemoryEngine::new());
/// let mut doc = store.open_document(&"notes".into())?;
/// doc.set_document(b"hello".to_vec())?;
/// assert!(doc.flush()? > 0);
/// assert_eq!(store.list_documents()?, vec!["notes".into()]);
/// # Ok::<(), persister_core::Error>(())
/// ```
pub struct EngineStore<E: Engine> {
    shared: Arc<Shared<E>>,
}

impl<E: Engine> Clone for EngineStore<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Engine> fmt::Debug for EngineStore<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineStore")
            .field("path", &self.shared.engine.path())
            .finish_non_exhaustive()
    }
}

/// What a store and its handles share.
struct Shared<E: Engine> {
    engine: E,
    open: OpenDocuments,
    /// Set when a commit or a removal fails: the engine's state is then unknown.
    poisoned: Mutex<Option<String>>,
    /// Documents an open handle has written to but that the engine does not hold yet:
    /// they exist, so `list_documents` lists them.
    unwritten: Mutex<BTreeSet<DocumentId>>,
    group: GroupCommit<PendingDocument<E::Address>>,
    /// The error the next durable commit or removal fails with (see
    /// [`EngineStore::fail_next_flush`]).
    #[cfg(any(test, feature = "fault-injection"))]
    fail_next_sync: Mutex<Option<std::io::Error>>,
}

impl<E: Engine> EngineStore<E> {
    /// A store on `engine`.
    pub fn new(engine: E) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine,
                open: OpenDocuments::new(),
                poisoned: Mutex::new(None),
                unwritten: Mutex::default(),
                group: GroupCommit::new(),
                #[cfg(any(test, feature = "fault-injection"))]
                fail_next_sync: Mutex::default(),
            }),
        }
    }

    /// The engine under the store.
    pub fn engine(&self) -> &E {
        &self.shared.engine
    }

    /// How many handles' flushes the store's commits have carried since it was opened.
    pub fn group_commits(&self) -> GroupCommits {
        self.shared.group.counters()
    }

    /// Makes the next flush of any handle of this store (or its next removal) fail, as a
    /// failed `fsync` would, so that tests can check what a program does then: the
    /// flush's writes are committed without being made durable, then the flush fails,
    /// which poisons the store until it is reopened. Backends built on an engine offer
    /// it as `fail_next_flush` with their `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn fail_next_flush(&self) {
        self.fail_next_flush_with(std::io::Error::other("injected fsync failure"));
    }

    /// As [`fail_next_flush`](Self::fail_next_flush), failing with `error` as the disk
    /// would report it: `ENOSPC` (`std::io::Error::from_raw_os_error(28)`) for a full
    /// disk, `EROFS` (30) for a file system remounted read-only.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn fail_next_flush_with(&self, error: std::io::Error) {
        *lock(&self.shared.fail_next_sync) = Some(error);
    }

    /// The store's path, as the engine gives it.
    pub fn path(&self) -> &Path {
        self.shared.engine.path()
    }

    /// Closes the store as [`Store::close`] does, and hands back the engine instead of
    /// closing it, for a backend whose own `close` does more.
    ///
    /// # Errors
    ///
    /// [`Error::DocumentInUse`] while a handle is open, [`Error::InvalidInput`] while
    /// another clone of the store is.
    pub fn into_engine(self) -> Result<E> {
        self.shared.open.check_none_open()?;
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => Ok(shared.engine),
            Err(shared) => Err(Error::InvalidInput {
                what: "close",
                reason: format!(
                    "another clone of the store at {} is still open; the store is closed when the last clone is dropped",
                    shared.engine.path().display()
                ),
            }),
        }
    }
}

impl<E: Engine> Shared<E> {
    fn check_poisoned(&self) -> Result<()> {
        match &*lock(&self.poisoned) {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned by `err` (the first reason stays), and returns it.
    fn poison_with(&self, err: Error) -> Error {
        lock(&self.poisoned).get_or_insert_with(|| poison_reason(&err));
        err
    }

    /// The fault a test asked for, as the error a failed sync of the engine gives.
    fn injected_fault(&self) -> Option<Error> {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(err) = lock(&self.fail_next_sync).take() {
            return Some(Error::io("sync", self.engine.path(), err));
        }
        None
    }

    /// Commits `group` durably, or, when a fault was injected, as a failed sync leaves
    /// it: written, not durable, and an error.
    fn commit_durably(&self, group: &mut [PendingDocument<E::Address>]) -> Result<()> {
        if let Some(err) = self.injected_fault() {
            self.engine.commit(group, false)?;
            return Err(err);
        }
        self.engine.commit(group, true)
    }

    fn mark_unwritten(&self, id: &DocumentId, unwritten: bool) {
        let mut set = lock(&self.unwritten);
        if unwritten {
            set.insert(id.clone());
        } else {
            set.remove(id);
        }
    }

    /// Checks that the store is not poisoned, then commits `group` durably in one
    /// [`Engine::commit`], on a short-lived thread of its own that the caller waits for
    /// when the group holds at least [`COMMIT_THREAD_BYTES`], on the caller's thread
    /// otherwise; a panic of the engine comes back as the `Err` of `catch_unwind`.
    ///
    /// The thread is for the heap, not for concurrency. What an engine allocates while
    /// committing and keeps afterwards (redb: the pages it writes, in its cache), made
    /// on the application's thread, lands between the application's own allocations
    /// (a CRDT's items), which then spread over more cache lines and make the
    /// application's walks of them slower. With glibc's malloc a thread other than the
    /// main one allocates from an arena of its own, which the next commit thread reuses,
    /// so the engine's allocations stay apart. The thread is joined before this returns,
    /// so a flush still returns only once its commit is durable. Should no thread start,
    /// the commit runs on the caller's thread. A thread costs about as much as a small
    /// commit without its sync (it made one-change flushes a third slower), and a small
    /// commit keeps little, so small groups commit on the caller's thread.
    fn commit_apart(
        &self,
        group: &mut [PendingDocument<E::Address>],
    ) -> std::thread::Result<Result<()>> {
        let commit = |group: &mut [PendingDocument<E::Address>]| {
            self.check_poisoned()?;
            self.commit_durably(group)
        };
        let bytes: usize = group.iter().map(|pending| pending.writes.bytes()).sum();
        if bytes < COMMIT_THREAD_BYTES {
            return catch_unwind(AssertUnwindSafe(|| commit(group)));
        }
        let mut group = Some(group);
        let joined = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("persister commit".into())
                .spawn_scoped(scope, || group.take().map(commit));
            spawned.ok().map(|thread| thread.join())
        });
        match (joined, group) {
            (Some(Ok(Some(result))), _) => Ok(result),
            (Some(Err(panic)), _) => Err(panic),
            // The thread did not start: commit here.
            (_, Some(group)) => catch_unwind(AssertUnwindSafe(|| commit(group))),
            (_, None) => Ok(Err(Error::Poisoned {
                reason: "a commit thread ended without committing".into(),
            })),
        }
    }

    /// Commits `documents` durably, sharing the commit with whatever other handles are
    /// flushing, and returns each document's outcome, in order.
    fn commit_shared(
        &self,
        documents: Vec<PendingDocument<E::Address>>,
    ) -> Vec<(PendingDocument<E::Address>, Result<()>)> {
        let commit = |group: &mut [PendingDocument<E::Address>]| {
            // A panic of the engine is a bug of the engine, but it fails the commit like
            // any other error rather than unwind through the application's flush
            // (contract point 6): every handle it carried, the leader's too, is
            // poisoned and keeps its writes for reads.
            let result = self.commit_apart(group).unwrap_or_else(|panic| {
                Err(Error::Poisoned {
                    reason: format!(
                        "the storage engine panicked while committing to {}: {}",
                        self.engine.path().display(),
                        crate::panic_message(&*panic)
                    ),
                })
            });
            result
                .map(|()| vec![(); group.len()])
                .map_err(|err| (self.poison_with(err), ()))
        };
        let failed = |err: Error| {
            let reason = format!("{}: {}", poison_reason(&err), self.engine.path().display());
            (self.poison_with(Error::Poisoned { reason }), ())
        };
        let outcomes = self.group.commit(documents, commit, failed);
        outcomes
            .into_iter()
            .map(|(pending, result)| (pending, result.map_err(|(err, ())| err)))
            .collect()
    }
}

impl<E: Engine> Store for EngineStore<E> {
    type Persister = EnginePersister<E>;

    fn open_document(&self, id: &DocumentId) -> Result<EnginePersister<E>> {
        let claim = self.shared.open.claim(id)?;
        let record = self.shared.engine.read_record(claim.id())?;
        Ok(EnginePersister {
            address: record.as_ref().map(|r| r.address.clone()),
            sizes: record.map(|r| r.sizes).unwrap_or_default(),
            held: HeldWrites::default(),
            stored: BTreeMap::new(),
            lengths: Vec::new(),
            dirty: false,
            unflushed: 0,
            poisoned: None,
            shared: Arc::clone(&self.shared),
            claim,
        })
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        // Before the engine's list: a document committed in between is then in one or
        // both.
        let mut ids = lock(&self.shared.unwritten).clone();
        ids.extend(self.shared.engine.list_documents()?);
        Ok(ids.into_iter().collect())
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let _claim = self.shared.open.claim(id)?;
        self.shared.check_poisoned()?;
        self.shared.engine.check_writable()?;
        if let Some(err) = self.shared.injected_fault() {
            return Err(self.shared.poison_with(err));
        }
        self.shared.engine.remove_document(id).map_err(|err| {
            // Damage found before anything was written leaves the engine as it was.
            if err.is_corrupt() {
                err
            } else {
                self.shared.poison_with(err)
            }
        })
    }

    /// Commits the pending writes of every handle of this store in `handles` in one
    /// engine commit (with whatever other flushes are running at the time); handles of
    /// another store are flushed on their own. A failed commit poisons every handle it
    /// carried.
    fn flush_documents(&self, handles: &mut [&mut EnginePersister<E>]) -> Result<usize> {
        let mut results = Vec::new();
        let mut carried = Vec::new();
        let mut documents = Vec::new();
        for (index, handle) in handles.iter_mut().enumerate() {
            if !Arc::ptr_eq(&handle.shared, &self.shared) {
                results.push(handle.flush());
                continue;
            }
            match handle.check_flushable().map(|()| handle.take_pending()) {
                Ok(Some(pending)) => {
                    carried.push(index);
                    documents.push(pending);
                }
                Ok(None) => {}
                Err(err) => results.push(Err(err)),
            }
        }
        let outcomes = self.shared.commit_shared(documents);
        for (index, (pending, result)) in carried.into_iter().zip(outcomes) {
            if let Some(handle) = handles.get_mut(index) {
                results.push(handle.finish(pending, result));
            }
        }
        crate::sum_flushed(results)
    }

    /// Closes the engine (see [`Store::close`]); a store that a failed commit or
    /// removal poisoned reports that failure as [`Error::Poisoned`] once the engine is
    /// closed, whatever the engine's own close says.
    fn close(self) -> Result<()> {
        let poisoned = self.shared.check_poisoned();
        let closed = self.into_engine()?.close();
        poisoned.and(closed)
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        Store::close(*self)
    }

    fn recovered(&self) -> Vec<Recovered> {
        self.shared.engine.recovered()
    }

    fn format_version(&self) -> Option<u32> {
        self.shared.engine.format_version()
    }
}

/// Implements [`Store`] for a backend's store type that wraps an [`EngineStore`] in a
/// field, every method forwarded to it, and gives the type the store's
/// [`group_commits`](EngineStore::group_commits): a backend built on an engine adds only
/// its own ways of opening. With the backend crate's own `fault-injection` feature
/// (which must enable this crate's), it also gets
/// `fail_next_flush` and `fail_next_flush_with` (this crate's `fault-injection`
/// feature gives them to [`EngineStore`]), the way every disk
/// backend of the workspace fails a flush on purpose.
///
/// ```
/// use persister_core::{EnginePersister, EngineStore, MemoryEngine, Persister, Store};
///
/// /// A store of this backend.
/// pub struct NotesStore {
///     inner: EngineStore<MemoryEngine>,
/// }
///
/// persister_core::forward_store!(NotesStore, inner, EnginePersister<MemoryEngine>);
///
/// let store = NotesStore { inner: EngineStore::new(MemoryEngine::new()) };
/// store.open_document(&"notes".into())?.set_document(b"hi".to_vec())?;
/// # Ok::<(), persister_core::Error>(())
/// ```
#[macro_export]
macro_rules! forward_store {
    ($store:ty, $field:ident, $persister:ty) => {
        impl $store {
            /// How many handles' flushes the store's commits have carried since it was
            /// opened: flushes that run at the same time share one commit.
            pub fn group_commits(&self) -> $crate::GroupCommits {
                self.$field.group_commits()
            }

            /// Makes the next flush of any handle of this store (or its next removal)
            /// fail, as a failed `fsync` would, so that tests can check what a program
            /// does then: the flush's writes are committed without being made durable,
            /// the flush fails, and the store is poisoned until it is reopened.
            #[cfg(feature = "fault-injection")]
            pub fn fail_next_flush(&self) {
                self.$field.fail_next_flush();
            }

            /// As `fail_next_flush`, failing with `error` as the disk would report it:
            /// `ENOSPC` (`std::io::Error::from_raw_os_error(28)`) for a full disk,
            /// `EROFS` (30) for a file system remounted read-only.
            #[cfg(feature = "fault-injection")]
            pub fn fail_next_flush_with(&self, error: std::io::Error) {
                self.$field.fail_next_flush_with(error);
            }
        }

        /// Everything is done by the [`EngineStore`]($crate::EngineStore) it wraps.
        impl $crate::Store for $store {
            type Persister = $persister;

            fn open_document(&self, id: &$crate::DocumentId) -> $crate::Result<$persister> {
                self.$field.open_document(id)
            }

            fn list_documents(&self) -> $crate::Result<Vec<$crate::DocumentId>> {
                self.$field.list_documents()
            }

            fn remove_document(&self, id: &$crate::DocumentId) -> $crate::Result<()> {
                self.$field.remove_document(id)
            }

            /// Commits the pending writes of every handle of this store in `handles` in
            /// one engine commit (with whatever other flushes are running); handles of
            /// another store are flushed on their own. A failed commit poisons every
            /// handle it carried, and the store.
            fn flush_documents(&self, handles: &mut [&mut $persister]) -> $crate::Result<usize> {
                self.$field.flush_documents(handles)
            }

            fn close(self) -> $crate::Result<()> {
                self.$field.close()
            }

            fn close_boxed(self: Box<Self>) -> $crate::Result<()> {
                $crate::Store::close(*self)
            }

            fn recovered(&self) -> Vec<$crate::Recovered> {
                self.$field.recovered()
            }

            fn format_version(&self) -> Option<u32> {
                self.$field.format_version()
            }
        }
    };
}

/// The handle of one document of an [`EngineStore`], keeping the
/// [`Persister` contract](crate::Persister#contract).
///
/// Writes are held in memory until [`flush`](Persister::flush), which commits all of
/// them in one [`Engine::commit`] and syncs it; reads see them at once, merged over what
/// the engine holds. Flushes of other handles of the store that run at the same time
/// share that commit ([group commit](EngineStore)). A handle about to hold more than the
/// engine's [`max_pending_bytes`](Engine::max_pending_bytes) flushes what it holds
/// first, which bounds its memory. Dropping a handle discards what it holds (contract
/// point 12): nothing of it reaches the engine.
///
/// [`sizes`](Persister::sizes) is kept in memory and stored with the data in every
/// commit, so it is exact and free, also right after reopening; reads check what the
/// engine returns against it and fail with [`Error::Corrupt`] on a mismatch.
///
/// [`flush`](Persister::flush) returns the payload bytes it made durable: the
/// [`payload_len`](Batch::payload_len) of every batch applied since the last flush.
pub struct EnginePersister<E: Engine> {
    shared: Arc<Shared<E>>,
    claim: DocumentClaim,
    /// Where the engine keeps the document, once it holds it.
    address: Option<E::Address>,
    /// The sizes of the document as reads see it (engine and held writes).
    sizes: StoredSizes,
    held: HeldWrites,
    /// What the handle knows of the stored changes of each actor it wrote so far, so
    /// that appending a change, the usual write, and removing changes this handle
    /// committed (a compaction) read nothing. Ordered rather than hashed: a handle
    /// writes for a few actors, most often one, and comparing a short id costs less
    /// than hashing it with the standard library's DoS-resistant hash, twice a write.
    stored: BTreeMap<ActorId, StoredChanges>,
    /// The stored length of each write of the batch being applied, a buffer reused
    /// from one batch to the next.
    lengths: Vec<Option<u64>>,
    /// Something was applied since the last commit.
    dirty: bool,
    /// Payload bytes applied since the last flush.
    unflushed: usize,
    poisoned: Option<String>,
}

impl<E: Engine> fmt::Debug for EnginePersister<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnginePersister")
            .field("document", self.claim.id())
            .field("address", &self.address)
            .field("sizes", &self.sizes)
            .field("held", &self.held)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<E: Engine> EnginePersister<E> {
    /// The document this handle is for.
    pub fn id(&self) -> &DocumentId {
        self.claim.id()
    }

    fn engine(&self) -> &E {
        &self.shared.engine
    }

    /// Fails when this handle, or its store, is poisoned.
    fn check_flushable(&self) -> Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        self.shared.check_poisoned()
    }

    /// The stored length of each write's key, for keys the held writes do not hold,
    /// into `lengths` (emptied first).
    ///
    /// A change above its actor's [floor](StoredChanges::floor) is answered from what
    /// the handle knows, so appending new changes, and removing the changes this handle
    /// committed, read the engine once per actor at most.
    fn stored_lengths(&mut self, writes: &[Write], lengths: &mut Vec<Option<u64>>) -> Result<()> {
        let mut unknown: Vec<&ActorId> = Vec::new();
        for write in writes {
            if let Write::InsertChange { actor, .. } | Write::RemoveChange { actor, .. } = write
                && !self.stored.contains_key(actor)
                && !unknown.contains(&actor)
            {
                unknown.push(actor);
            }
        }
        if !unknown.is_empty() {
            // A document the engine does not hold has no stored change.
            let maxima = match &self.address {
                Some(address) => self.shared.engine.max_seqs(address, &unknown)?,
                None => vec![None; unknown.len()],
            };
            for (actor, floor) in unknown.into_iter().zip(maxima) {
                let known = StoredChanges {
                    floor,
                    lengths: Vec::new(),
                };
                self.stored.insert(actor.clone(), known);
            }
        }
        // The keys only the engine knows, and where their lengths go.
        let mut keys = Vec::new();
        let mut asked = Vec::new();
        lengths.clear();
        for write in writes {
            let known = match write {
                Write::InsertChange { actor, seq, .. } | Write::RemoveChange { actor, seq }
                    if self.held.change(actor, *seq).is_none() =>
                {
                    let known = self.stored.get(actor).and_then(|known| known.length(*seq));
                    if known.is_none() {
                        keys.push(StoredKey::Change(actor, *seq));
                    }
                    known
                }
                Write::SetSyncState { peer, .. } | Write::RemoveSyncState { peer }
                    if self.held.sync_state(peer).is_none() =>
                {
                    keys.push(StoredKey::SyncState(peer));
                    None
                }
                _ => Some(None),
            };
            if known.is_none() {
                asked.push(lengths.len());
            }
            lengths.push(known.flatten());
        }
        if let (Some(address), false) = (&self.address, keys.is_empty()) {
            let found = self.shared.engine.stored_lengths(address, &keys)?;
            for (at, found) in asked.into_iter().zip(found) {
                lengths[at] = found;
            }
        }
        Ok(())
    }

    /// Applies one write to the held writes and the sizes; `stored` is the length of
    /// its key in the engine, when the held writes did not hold it before the batch
    /// (`None` when the engine does not hold it).
    fn hold(&mut self, write: Write, stored: Option<u64>) {
        let len = |value: &[u8]| value.len() as u64;
        let in_engine = stored.is_some();
        match write {
            Write::InsertChange { actor, seq, value } => {
                let held = self.held.put_change(actor, seq, Some(&value), in_engine);
                self.sizes
                    .replace_change(held.unwrap_or(stored), Some(len(&value)));
            }
            Write::RemoveChange { actor, seq } => {
                let held = self.held.put_change(actor, seq, None, in_engine);
                self.sizes.replace_change(held.unwrap_or(stored), None);
            }
            Write::SetDocument(value) => {
                self.sizes.replace_document(len(&value));
                self.held.put_document(value);
            }
            Write::SetSyncState { peer, state } => {
                let old = self.held.sync_state(&peer).map_or(stored, |v| v.map(len));
                self.sizes.replace_sync_state(old, Some(len(&state)));
                self.held.put_sync_state(peer, Some(state), in_engine);
            }
            Write::RemoveSyncState { peer } => {
                let old = self.held.sync_state(&peer).map_or(stored, |v| v.map(len));
                self.sizes.replace_sync_state(old, None);
                self.held.put_sync_state(peer, None, in_engine);
            }
        }
    }

    /// Hands the held writes over for a commit, if there are any.
    fn take_pending(&mut self) -> Option<PendingDocument<E::Address>> {
        self.dirty.then(|| PendingDocument {
            id: self.id().clone(),
            address: self.address.clone(),
            sizes: self.sizes,
            writes: std::mem::take(&mut self.held),
        })
    }

    /// Takes back what [`take_pending`](Self::take_pending) gave, once its commit has
    /// ended, and returns the payload bytes it made durable. A failure poisons the
    /// handle; the writes stay visible to reads.
    fn finish(
        &mut self,
        pending: PendingDocument<E::Address>,
        result: Result<()>,
    ) -> Result<usize> {
        if let Err(err) = result {
            // The engine may hold the writes without their being durable: reads then
            // find them where its address says.
            self.address = pending.address;
            self.held = pending.writes;
            self.poisoned = Some(poison_reason(&err));
            return Err(err);
        }
        self.address = pending.address;
        let mut changes = pending.writes.changes().peekable();
        while let Some(&(actor, _, _)) = changes.peek() {
            let committed = std::iter::from_fn(|| changes.next_if(|(a, _, _)| *a == actor))
                .map(|(_, seq, value)| (seq, value.map(|v| v.len() as u64)));
            match self.stored.get_mut(actor) {
                Some(known) => known.record(committed),
                None => committed.for_each(drop),
            }
        }
        drop(changes);
        self.held.reuse(pending.writes);
        self.dirty = false;
        self.shared.mark_unwritten(self.claim.id(), false);
        // At least 1 when something was made durable, even batches of empty values.
        Ok(std::mem::take(&mut self.unflushed).max(1))
    }

    /// Commits everything held durably, sharing the commit with other handles that
    /// flush at the same time.
    fn commit(&mut self) -> Result<usize> {
        let Some(pending) = self.take_pending() else {
            return Ok(0);
        };
        let shared = Arc::clone(&self.shared);
        match shared.commit_shared(vec![pending]).pop() {
            Some((pending, result)) => self.finish(pending, result),
            // Every document comes back; should one not, its writes are not known durable.
            None => {
                let err = Error::Poisoned {
                    reason: format!("a flush of document {} lost its writes", self.id()),
                };
                self.poisoned = Some(poison_reason(&err));
                Err(err)
            }
        }
    }

    fn corrupt(&self, what: String) -> Error {
        Error::corrupt(what, self.engine().path(), None)
    }

    fn check_count(
        &self,
        what: &str,
        count: usize,
        bytes: u64,
        expected: (u64, u64),
    ) -> Result<()> {
        if (count as u64, bytes) != expected {
            return Err(self.corrupt(format!(
                "document {} holds {count} {what} of {bytes} bytes, but its record says {} of {} bytes",
                self.id(),
                expected.0,
                expected.1
            )));
        }
        Ok(())
    }
}

impl<E: Engine> Persister for EnginePersister<E> {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<()> {
        self.check_flushable()?;
        self.engine().check_writable()?;
        batch.validate()?;
        if batch.is_empty() {
            return Ok(());
        }
        let payload = batch.payload_len();
        if self.dirty
            && self.held.bytes().saturating_add(payload) > self.engine().max_pending_bytes()
        {
            self.commit()?;
        }
        // Every read happens before the first change, so a failure applies nothing.
        let mut stored = std::mem::take(&mut self.lengths);
        let read = self.stored_lengths(batch.writes(), &mut stored);
        if let Err(err) = read {
            self.lengths = stored;
            return Err(err);
        }
        for (write, stored) in batch.into_iter().zip(stored.drain(..)) {
            self.hold(write, stored);
        }
        self.lengths = stored;
        self.held.settle();
        self.held.add_bytes(payload);
        self.unflushed = self.unflushed.saturating_add(payload);
        if !self.dirty {
            self.dirty = true;
            if self.address.is_none() {
                self.shared.mark_unwritten(self.claim.id(), true);
            }
        }
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>> {
        let stored = match &self.address {
            Some(address) => self.engine().read_changes(address)?,
            None => Vec::new(),
        };
        let entries = if self.held.has_changes() {
            let mut entries = Vec::with_capacity(stored.len());
            let stored = stored
                .into_iter()
                .map(|(actor, seq, value)| Ok::<_, Error>(((actor, seq), value)));
            let held = self
                .held
                .changes()
                .map(|(actor, seq, value)| ((actor.clone(), seq), value.map(<[u8]>::to_vec)));
            merge_held(stored, held, |(actor, seq), value| {
                entries.push((actor, seq, value))
            })?;
            entries
        } else {
            stored
        };
        let bytes = entries.iter().map(|e| e.2.len() as u64).sum();
        let expected = (self.sizes.change_count, self.sizes.changes);
        self.check_count("changes", entries.len(), bytes, expected)?;
        Ok(entries)
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>> {
        if let Some(document) = self.held.document() {
            return Ok(Some(document.to_vec()));
        }
        let Some(address) = &self.address else {
            return Ok(None);
        };
        let document = self.engine().read_document(address)?;
        let len = document.as_ref().map_or(0, |d| d.len() as u64);
        if len != self.sizes.document {
            return Err(self.corrupt(format!(
                "the compacted document of {} is {} bytes, but its record says {}",
                self.id(),
                len,
                self.sizes.document
            )));
        }
        Ok(document)
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(held) = self.held.sync_state(peer_id) {
            return Ok(held.map(<[u8]>::to_vec));
        }
        let Some(address) = &self.address else {
            return Ok(None);
        };
        let state = self.engine().read_sync_state(address, peer_id)?;
        if state.is_none() && self.sizes.sync_state_count > 0 {
            // Absent, or its entry lost: the count of the others tells.
            self.get_peer_ids()?;
        }
        Ok(state)
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>> {
        let stored = match &self.address {
            Some(address) => self.engine().read_peers(address)?,
            None => Vec::new(),
        };
        let mut peers = Vec::with_capacity(stored.len());
        let mut bytes = 0u64;
        let held = self
            .held
            .sync_states()
            .map(|(peer, value)| (peer.to_vec(), value.map(|v| v.len() as u64)));
        merge_held(stored.into_iter().map(Ok::<_, Error>), held, |peer, len| {
            peers.push(peer);
            bytes += len;
        })?;
        let expected = (self.sizes.sync_state_count, self.sizes.sync_states);
        self.check_count("sync states", peers.len(), bytes, expected)?;
        Ok(peers)
    }

    fn sizes(&self) -> StoredSizes {
        self.sizes
    }

    fn flush(&mut self) -> Result<usize> {
        self.check_flushable()?;
        if !self.dirty {
            return Ok(0);
        }
        self.commit()
    }
}

impl<E: Engine> Drop for EnginePersister<E> {
    /// Discards the writes held since the last flush (contract point 12): they never
    /// reached the engine.
    fn drop(&mut self) {
        self.shared.mark_unwritten(self.claim.id(), false);
    }
}

/// What a handle knows of one actor's stored changes: the length of every one above
/// a floor, the stored changes at or below it being known only to the engine.
///
/// The floor is the actor's highest stored seq when the handle first wrote one of its
/// changes (none for a document the engine does not hold); from then on the handle
/// records what each of its commits stored and removed above it. Appending new
/// changes and removing the ones this handle committed (what a compaction does) then
/// need no read of the engine. The lengths are one list per actor, reused from one
/// commit to the next, and at most [`MAX_KNOWN_LENGTHS`]: past that the floor rises
/// over the older half.
#[derive(Debug)]
struct StoredChanges {
    /// Every stored change of the actor with a seq above this one is in `lengths`;
    /// `None`: every stored change of the actor is.
    floor: Option<u64>,
    /// `(seq, length)` of those changes, sorted by seq.
    lengths: Vec<(u64, u64)>,
}

/// The held bytes from which a group commits on a thread of its own (see
/// `Shared::commit_apart`).
const COMMIT_THREAD_BYTES: usize = 4 << 10;

/// The most change lengths a handle keeps per actor (16 bytes each).
const MAX_KNOWN_LENGTHS: usize = 1 << 16;

/// A length no value has, marking a change removed while [`StoredChanges::record`]
/// runs.
const REMOVED: u64 = u64::MAX;

impl StoredChanges {
    /// The stored length of the change `seq` (`Some(None)`: not stored), or `None` when
    /// it is at or below the floor, where only the engine knows.
    fn length(&self, seq: u64) -> Option<Option<u64>> {
        if self.floor.is_some_and(|floor| seq <= floor) {
            return None;
        }
        Some(
            self.lengths
                .binary_search_by_key(&seq, |&(s, _)| s)
                .ok()
                .map(|i| self.lengths[i].1),
        )
    }

    /// Records committed changes: `(seq, length)` of each stored, or `(seq, None)` of
    /// each removed, in seq order.
    fn record(&mut self, committed: impl Iterator<Item = (u64, Option<u64>)>) {
        let known = self.lengths.len();
        let (mut unsorted, mut removed) = (false, false);
        for (seq, length) in committed {
            if self.floor.is_some_and(|floor| seq <= floor) {
                continue;
            }
            // Only the entries known before this commit are searched: the ones added
            // below are of other seqs, each written once.
            match self.lengths[..known].binary_search_by_key(&seq, |&(s, _)| s) {
                Ok(i) => {
                    self.lengths[i].1 = length.unwrap_or(REMOVED);
                    removed |= length.is_none();
                }
                Err(i) => {
                    if let Some(length) = length {
                        unsorted |= i < known;
                        self.lengths.push((seq, length));
                    }
                }
            }
        }
        if unsorted {
            self.lengths.sort_unstable_by_key(|&(s, _)| s);
        }
        if removed {
            self.lengths.retain(|&(_, length)| length != REMOVED);
        }
        if self.lengths.len() > MAX_KNOWN_LENGTHS {
            let older = self.lengths.len() - MAX_KNOWN_LENGTHS / 2;
            self.floor = Some(self.lengths[older - 1].0);
            self.lengths.drain(..older);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, MemoryEngine};

    /// What the engine itself holds of `id`'s changes, bypassing every handle.
    fn engine_changes(store: &EngineStore<MemoryEngine>, id: &DocumentId) -> Vec<ChangeEntry> {
        let engine = store.engine();
        match engine.read_record(id).expect("record") {
            Some(record) => engine.read_changes(&record.address).expect("changes"),
            None => Vec::new(),
        }
    }

    /// A failed flush poisons every handle of the store, and `remove_document`, until
    /// the store is reopened; reads still work, and the flushed data is there after.
    #[test]
    fn failed_flush_poisons_the_whole_store_until_reopened() -> Result<()> {
        let engine = MemoryEngine::new();
        let store = EngineStore::new(engine.clone());
        let mut a = store.open_document(&"a".into())?;
        let mut b = store.open_document(&"b".into())?;
        let actor = ActorId::new([1]);
        a.insert_changes(vec![(actor.clone(), 1, b"flushed".to_vec())])?;
        assert!(a.flush()? > 0);

        a.insert_changes(vec![(actor.clone(), 2, b"maybe".to_vec())])?;
        store.fail_next_flush_with(std::io::Error::other("injected fsync failure"));
        let err = a.flush().err();
        assert!(
            matches!(err, Some(Error::Io { action: "sync", .. })),
            "{err:?}"
        );

        let poisoned = |r: Result<()>| matches!(r, Err(Error::Poisoned { .. }));
        assert!(poisoned(a.set_document(b"x".to_vec())));
        assert!(poisoned(b.set_document(b"x".to_vec())));
        assert!(poisoned(a.flush().map(drop)));
        assert!(poisoned(store.remove_document(&"c".into())));
        assert_eq!(a.get_changes()?.len(), 2);
        assert_eq!(b.get_document()?, None);
        drop((a, b));
        // A checked close reports the failure too, and still releases the engine.
        let closed = store.close();
        assert!(poisoned(closed.map(drop)));

        let store = EngineStore::new(engine);
        let mut a = store.open_document(&"a".into())?;
        assert_eq!(a.get_changes()?.first(), Some(&b"flushed".to_vec()));
        a.insert_changes(vec![(actor, 3, b"after".to_vec())])?;
        assert!(a.flush()? > 0);
        Ok(())
    }

    /// The writes of a handle dropped without a flush are discarded: they never reach
    /// the engine, and the next handle has nothing to flush.
    #[test]
    fn a_dropped_handle_discards_what_it_did_not_flush() -> Result<()> {
        let store = EngineStore::new(MemoryEngine::new());
        let id = DocumentId::from("doc");
        let mut p = store.open_document(&id)?;
        p.insert_changes(vec![(ActorId::new([1]), 1, vec![7; 500])])?;
        assert_eq!(store.list_documents()?, vec![id.clone()]);
        drop(p);
        assert!(
            store.engine().list_documents()?.is_empty(),
            "held writes reached the engine"
        );
        assert!(store.list_documents()?.is_empty());

        let mut p = store.open_document(&id)?;
        assert!(p.get_changes()?.is_empty());
        assert_eq!(p.flush()?, 0);
        Ok(())
    }

    /// Past `max_pending_bytes` a handle flushes what it holds; a document that exists
    /// only in a handle's held writes is listed.
    #[test]
    fn held_writes_past_the_bound_are_flushed() -> Result<()> {
        let store = EngineStore::new(MemoryEngine::new().with_max_pending_bytes(1000));
        let id = DocumentId::from("doc");
        let mut p = store.open_document(&id)?;
        p.insert_changes(vec![(ActorId::new([1]), 1, vec![1; 600])])?;
        assert_eq!(store.list_documents()?, vec![id.clone()]);
        assert!(engine_changes(&store, &id).is_empty());
        p.insert_changes(vec![(ActorId::new([1]), 2, vec![2; 600])])?;
        assert_eq!(
            engine_changes(&store, &id).len(),
            1,
            "the first batch stayed held"
        );
        assert_eq!(store.list_documents()?, vec![id.clone()]);
        assert_eq!(p.get_changes()?, vec![vec![1; 600], vec![2; 600]]);
        assert_eq!(p.sizes().changes, 1200);
        assert!(p.flush()? >= 600);
        assert_eq!(engine_changes(&store, &id).len(), 2);
        // What was flushed past the bound stays when the handle is dropped unflushed.
        p.insert_changes(vec![(ActorId::new([1]), 3, vec![3; 10])])?;
        drop(p);
        let p = store.open_document(&id)?;
        assert_eq!(p.get_changes()?, vec![vec![1; 600], vec![2; 600]]);
        Ok(())
    }

    #[test]
    fn stored_changes_follow_commits_above_their_floor() {
        let mut known = StoredChanges {
            floor: Some(10),
            lengths: Vec::new(),
        };
        assert_eq!(known.length(10), None, "at the floor only the engine knows");
        assert_eq!(known.length(11), Some(None));
        known.record([(5, Some(1)), (11, Some(3)), (13, Some(4))].into_iter());
        assert_eq!(known.lengths, vec![(11, 3), (13, 4)]);
        // A seq between known ones, a removal, then an overwrite.
        known.record([(12, Some(7)), (13, None)].into_iter());
        known.record([(11, Some(2))].into_iter());
        assert_eq!(known.lengths, vec![(11, 2), (12, 7)]);
        assert_eq!(known.length(13), Some(None));
        // A removal of a change never stored changes nothing.
        known.record([(20, None)].into_iter());
        assert_eq!(known.lengths, vec![(11, 2), (12, 7)]);

        let mut many = StoredChanges {
            floor: None,
            lengths: Vec::new(),
        };
        let count = MAX_KNOWN_LENGTHS as u64 + 1;
        many.record((1..=count).map(|seq| (seq, Some(seq))));
        let floor = many.floor.expect("the floor rose");
        assert_eq!(many.lengths.first().map(|e| e.0), Some(floor + 1));
        assert_eq!(many.length(floor), None);
        assert_eq!(many.length(count), Some(Some(count)));
        assert!(many.lengths.len() <= MAX_KNOWN_LENGTHS);
    }
}

/// An engine whose commit panics on demand: a bug in an engine must not leave a handle
/// that reads its own writes as corruption.
#[cfg(test)]
mod engine_panics {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::{Engine, MemoryEngine, Record};

    #[derive(Clone)]
    struct PanickyEngine {
        inner: MemoryEngine,
        panic_next_commit: Arc<AtomicBool>,
    }

    impl Engine for PanickyEngine {
        type Address = u64;

        fn path(&self) -> &Path {
            self.inner.path()
        }
        fn max_pending_bytes(&self) -> usize {
            self.inner.max_pending_bytes()
        }
        fn read_record(&self, id: &DocumentId) -> Result<Option<Record<u64>>> {
            self.inner.read_record(id)
        }
        fn max_seqs(&self, address: &u64, actors: &[&ActorId]) -> Result<Vec<Option<u64>>> {
            self.inner.max_seqs(address, actors)
        }
        fn stored_lengths(
            &self,
            address: &u64,
            keys: &[StoredKey<'_>],
        ) -> Result<Vec<Option<u64>>> {
            self.inner.stored_lengths(address, keys)
        }
        fn read_changes(&self, address: &u64) -> Result<Vec<ChangeEntry>> {
            self.inner.read_changes(address)
        }
        fn read_document(&self, address: &u64) -> Result<Option<Vec<u8>>> {
            self.inner.read_document(address)
        }
        fn read_sync_state(&self, address: &u64, peer: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.read_sync_state(address, peer)
        }
        fn read_peers(&self, address: &u64) -> Result<Vec<(Vec<u8>, u64)>> {
            self.inner.read_peers(address)
        }
        fn commit(&self, documents: &mut [PendingDocument<u64>], durable: bool) -> Result<()> {
            if self.panic_next_commit.swap(false, Ordering::SeqCst) {
                panic!("engine bug while committing");
            }
            self.inner.commit(documents, durable)
        }
        fn list_documents(&self) -> Result<Vec<DocumentId>> {
            self.inner.list_documents()
        }
        fn remove_document(&self, id: &DocumentId) -> Result<()> {
            self.inner.remove_document(id)
        }
    }

    /// A panic of the engine while committing a flush is the flush's error, not a
    /// panic of the application's thread (contract point 6): the handle and the store
    /// are poisoned, the handle still reads its writes, and reopening gives what was
    /// flushed before. Small and large flushes commit on different threads; both are
    /// checked.
    #[test]
    fn an_engine_panic_while_committing_is_a_failed_flush() -> Result<()> {
        for value_len in [10, 2 * COMMIT_THREAD_BYTES] {
            let engine = PanickyEngine {
                inner: MemoryEngine::new(),
                panic_next_commit: Arc::default(),
            };
            let store = EngineStore::new(engine.clone());
            let mut p = store.open_document(&"doc".into())?;
            let actor = ActorId::new([1]);
            p.insert_changes(vec![(actor.clone(), 1, b"flushed".to_vec())])?;
            assert!(p.flush()? > 0);
            p.insert_changes(vec![(actor.clone(), 2, vec![2; value_len])])?;
            engine.panic_next_commit.store(true, Ordering::SeqCst);
            let flushed = catch_unwind(AssertUnwindSafe(|| p.flush()));
            let Ok(flushed) = flushed else {
                panic!("an engine panic came out of flush as a panic");
            };
            assert!(
                matches!(&flushed, Err(Error::Poisoned { reason }) if reason.contains("engine bug while committing")),
                "{flushed:?}"
            );
            assert_eq!(
                p.get_changes()?,
                vec![b"flushed".to_vec(), vec![2; value_len]]
            );
            let poisoned = |r: Result<()>| matches!(r, Err(Error::Poisoned { .. }));
            assert!(poisoned(p.set_document(b"x".to_vec())));
            assert!(poisoned(p.flush().map(drop)));
            let mut other = store.open_document(&"other".into())?;
            assert!(poisoned(other.set_document(b"x".to_vec())));
            drop((p, other));
            assert!(poisoned(store.close()));

            let store = EngineStore::new(engine);
            let p = store.open_document(&"doc".into())?;
            assert_eq!(p.get_changes()?, vec![b"flushed".to_vec()]);
        }
        Ok(())
    }
}
