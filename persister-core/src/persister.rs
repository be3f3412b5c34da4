//! The `Persister` trait: the contract every backend keeps.

use crate::{ActorId, Batch, StoredSizes, Write};

/// A stored change with its key: `(actor, seq, bytes)`.
pub type ChangeEntry = (ActorId, u64, Vec<u8>);

/// Where one CRDT document keeps its changes, its compacted form and its sync states.
///
/// A persister holds, for one document:
///
/// | part | key | value |
/// |---|---|---|
/// | changes | `(ActorId, seq: u64)` | opaque bytes |
/// | document | none, at most one | opaque bytes (a compacted snapshot) |
/// | sync states | peer id, opaque bytes | opaque bytes |
///
/// The method names are those of `automerge-persistent`, so code written against it
/// ports by changing an import. Backends implement the seven required methods; the
/// single-write methods are provided and each is exactly a one-write [`Batch`].
///
/// # Contract
///
/// Every backend of this workspace must meet each point, and the conformance suite
/// (feature `conformance`) checks each one that can be checked in one process.
///
/// 1. **Read your writes.** A read on a handle reflects every successful write made
///    through it, flushed or not.
/// 2. **Overwrite and remove.** Inserting an existing `(actor, seq)` replaces its bytes,
///    and [`sizes`](Persister::sizes) accounts the old value out. Removing a change or a
///    sync state that is not there is not an error.
/// 3. **Order.** [`get_changes`](Persister::get_changes) returns changes ordered by
///    `(actor bytes, seq)`, on every backend; [`get_peer_ids`](Persister::get_peer_ids)
///    returns peer ids ordered by their bytes.
/// 4. **Durability.** Once [`flush`](Persister::flush) returns `Ok`, every write made
///    before it survives a process kill and, on backends that say so (fs, redb), a power
///    loss. `flush` returns a count of bytes, 0 exactly when nothing was pending; on
///    every backend built on an [`Engine`](crate::Engine) (the memory engine, redb,
///    sled) and on PostgreSQL it is the [`payload_len`](crate::Batch::payload_len) of
///    the batches it made durable, while fs counts its encoded log records, so compare
///    it only with itself. Writes become durable only when the application says so: by `flush`, by
///    `close`, or by a handle outgrowing its backend's `max_pending_bytes` (which then
///    flushes); [`Store::remove_document`](crate::Store::remove_document) is durable
///    when it returns. Besides these, a backend syncs only its own bookkeeping (redb
///    when its file grows; fs when it cuts a torn tail on open, when it rewrites on
///    open a log whose sync failed earlier in the process, and when the first write
///    after opening clears its clean-close record; sled the directories holding the
///    entries of a new store and of the directories made for it), and each backend's crate
///    docs list those syncs. The application owns the fsync policy (see
///    [`AutoFlush`](crate::AutoFlush)).
/// 5. **Crash state.** After any crash, reopening gives the state after some prefix of
///    the batches applied, and that prefix includes every batch before the last
///    successful flush. A batch is never half there.
/// 6. **Errors, not lies.** Every operation returns an error rather than panicking. A
///    read that hits corrupt or unreadable data fails; it never returns a partial set of
///    changes, wrong bytes, or no document in place of a damaged one. The only data a
///    backend may drop silently on open is an incomplete tail written after the last
///    flush (a torn write), and it reports how much it dropped, through the generic
///    store API ([`Store::recovered`](crate::Store::recovered)). After a clean close
///    nothing is torn: reopening then drops nothing, and any damage is an error.
/// 7. **Poison after a failed flush.** Once a flush fails, the handle refuses further
///    writes and flushes with [`Error::Poisoned`](crate::Error::Poisoned) until the
///    store is reopened, because the kernel may have dropped the dirty pages.
/// 8. **Sizes.** [`sizes`](Persister::sizes) is O(1), does no I/O, and is exact: the
///    total bytes of the stored change values, of the document and of the sync-state
///    values, and the number of changes and of sync states ([`StoredSizes`]). It is
///    exact again right after reopening, without reading every value.
/// 9. **Formats.** Every on-disk format of the workspace starts with a magic and a
///    format version; an unknown version is refused with an error naming both versions.
///    No silent migration: a store of an older version is read as it is, or migrated
///    only when the application asks.
/// 10. **Limits.** Values, ids and batches over the documented maxima
///     ([`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) and friends) are refused with an error
///     and nothing of their batch is applied; nothing already stored is lost. Lengths
///     read from disk are bounded by the bytes present and by those maxima: nothing
///     allocates from an untrusted count.
/// 11. **One writer per store.** A second process opening an open store fails at once
///     with [`Error::Locked`](crate::Error::Locked). Handles are `Send`; a store is
///     `Send + Sync` and serves different documents from different threads at once.
/// 12. **Closing.** Dropping a handle without a successful
///     [`flush`](Persister::flush) or [`close`](Persister::close) *discards* its writes
///     since its last flush, on every backend, like a transaction that was never
///     committed: the next handle of the document, in this process or after a reopen,
///     sees exactly the state at that last flush. Nothing flushed is ever lost.
///     [`close`](Persister::close) is the checked way out: it flushes, releases the
///     handle and returns the flush's error. The only writes a backend may make durable
///     before `flush` are those of a handle that holds more unflushed bytes than the
///     backend's documented bound: it then flushes them itself (see each backend's
///     options), and they count as flushed. Dropping a store releases its files and
///     locks before the drop returns, once its last handle is dropped, so the next open,
///     in this process or another, never waits; [`Store::close`](crate::Store::close)
///     does the same and reports what went wrong.
///
/// # Networked stores
///
/// A store on a database server (`persister-postgres`) keeps every point above, with
/// these readings:
///
/// - **Durability** is the server's: `flush` returns once the server has made every
///   write before it durable (a synchronous commit). A connection lost during a flush
///   is an unknown outcome: the handle is poisoned, and reopening shows all of that
///   flush or none of it.
/// - **One writer per document**, not per store: many processes share one database and
///   serve different documents at once. A document is held through a lease with a
///   fencing token checked inside every write transaction; a second holder gets
///   [`Error::Locked`](crate::Error::Locked) at once, and a handle that lost its lease
///   can never write again ([`Error::LeaseLost`](crate::Error::LeaseLost)).
/// - **Crash state** holds for a killed client and for a killed or restarted server.
/// - **Bad input** includes the network: every statement is parameterised, and no
///   password appears in an error or a log.
///
/// # Example
///
/// Choosing the backend at run time, and compacting in one batch:
///
/// ```
/// use persister_core::{ActorId, Batch, Error, MemoryPersister, Persister};
///
/// fn open(backend: &str) -> Result<Box<dyn Persister<Error = Error>>, Error> {
///     match backend {
///         "memory" => Ok(Box::new(MemoryPersister::new())),
///         other => Err(Error::NotFound { what: format!("backend {other}") }),
///     }
/// }
///
/// # fn main() -> Result<(), Error> {
/// let mut p = open("memory")?;
/// let actor = ActorId::new([7; 16]);
/// p.insert_changes(vec![(actor.clone(), 1, b"c1".to_vec()), (actor.clone(), 2, b"c2".to_vec())])?;
/// assert_eq!(p.get_changes()?, vec![b"c1".to_vec(), b"c2".to_vec()]);
///
/// // Compaction: the document and the removal of the changes it covers, all-or-nothing.
/// p.apply(Batch::new().set_document(b"doc".to_vec()).remove_change(actor.clone(), 1).remove_change(actor, 2))?;
/// assert_eq!(p.sizes().change_count, 0);
/// assert_eq!(p.get_document()?, Some(b"doc".to_vec()));
///
/// // Durable from here on.
/// assert!(p.flush()? > 0);
/// # Ok(())
/// # }
/// ```
pub trait Persister: Send {
    /// The error every method returns. All backends of this workspace use
    /// [`persister_core::Error`](crate::Error).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies every write of `batch`, in order, all-or-nothing.
    ///
    /// On `Ok` every write is visible to reads on this handle; it is durable after the
    /// next successful [`flush`](Persister::flush). On `Err` none of them is applied:
    /// a batch that breaks a limit is refused before anything is written
    /// ([`Batch::validate`]). An empty batch is a no-op.
    fn apply(&mut self, batch: Batch) -> Result<(), Self::Error>;

    /// Every stored change with its key, ordered by `(actor bytes, seq)`.
    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Self::Error>;

    /// The stored document, if one was set.
    fn get_document(&self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The stored sync state of `peer_id`, if any.
    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The ids of every peer with a stored sync state, ordered by their bytes.
    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// What is stored, in bytes and counts: exact, O(1), and without I/O.
    fn sizes(&self) -> StoredSizes;

    /// Makes every write applied so far durable, and returns how many bytes that wrote
    /// (0 when nothing was pending).
    ///
    /// If it fails, the handle is poisoned: every later write and flush returns
    /// [`Error::Poisoned`](crate::Error::Poisoned) until the store is reopened, and the
    /// writes since the last successful flush may or may not be on disk.
    fn flush(&mut self) -> Result<usize, Self::Error>;

    /// Flushes every write applied so far, then releases the handle: the checked way to
    /// stop using a document (dropping a handle discards its unflushed writes, contract
    /// point 12).
    ///
    /// # Errors
    ///
    /// The flush's error; the handle is released either way, and what was not flushed
    /// is discarded.
    fn close(mut self) -> Result<(), Self::Error>
    where
        Self: Sized,
    {
        self.flush().map(drop)
    }

    /// Every stored change's bytes, ordered by `(actor bytes, seq)`.
    fn get_changes(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(self
            .get_change_entries()?
            .into_iter()
            .map(|(_, _, value)| value)
            .collect())
    }

    /// Stores changes, replacing any already stored under the same keys: one batch.
    fn insert_changes(&mut self, changes: Vec<ChangeEntry>) -> Result<(), Self::Error> {
        self.apply(
            changes
                .into_iter()
                .map(|(actor, seq, value)| Write::InsertChange { actor, seq, value })
                .collect(),
        )
    }

    /// Removes changes; keys that are not stored are ignored: one batch.
    fn remove_changes(&mut self, changes: Vec<(&ActorId, u64)>) -> Result<(), Self::Error> {
        self.apply(
            changes
                .into_iter()
                .map(|(actor, seq)| Write::RemoveChange {
                    actor: actor.clone(),
                    seq,
                })
                .collect(),
        )
    }

    /// Stores the document, replacing any already stored: one batch.
    fn set_document(&mut self, data: Vec<u8>) -> Result<(), Self::Error> {
        self.apply(Batch::new().set_document(data))
    }

    /// Stores the sync state of `peer_id`, replacing any already stored: one batch.
    fn set_sync_state(&mut self, peer_id: Vec<u8>, sync_state: Vec<u8>) -> Result<(), Self::Error> {
        self.apply(Batch::new().set_sync_state(peer_id, sync_state))
    }

    /// Removes the sync states of `peer_ids`; absent ones are ignored: one batch.
    fn remove_sync_states(&mut self, peer_ids: &[&[u8]]) -> Result<(), Self::Error> {
        self.apply(
            peer_ids
                .iter()
                .map(|peer| Write::RemoveSyncState {
                    peer: peer.to_vec(),
                })
                .collect(),
        )
    }
}

macro_rules! forward_persister {
    ($ty:ty) => {
        type Error = P::Error;

        fn apply(&mut self, batch: Batch) -> Result<(), Self::Error> {
            (**self).apply(batch)
        }
        fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Self::Error> {
            (**self).get_change_entries()
        }
        fn get_document(&self) -> Result<Option<Vec<u8>>, Self::Error> {
            (**self).get_document()
        }
        fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
            (**self).get_sync_state(peer_id)
        }
        fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
            (**self).get_peer_ids()
        }
        fn sizes(&self) -> StoredSizes {
            (**self).sizes()
        }
        fn flush(&mut self) -> Result<usize, Self::Error> {
            (**self).flush()
        }
        fn get_changes(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
            (**self).get_changes()
        }
    };
}

/// A boxed persister, such as `Box<dyn Persister<Error = Error>>`, is a persister.
impl<P: Persister + ?Sized> Persister for Box<P> {
    forward_persister!(Box<P>);
}

/// A borrowed persister is a persister, so wrappers can borrow instead of own.
impl<P: Persister + ?Sized> Persister for &mut P {
    forward_persister!(&mut P);
}
