//! Stores: many documents under one path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{DocumentId, Error, Persister, Recovered, Result};

/// Many documents under one path (a redb file, a sled directory, an fs directory).
///
/// # Contract
///
/// - Documents are exactly isolated: no id ever sees another id's data, whatever bytes
///   the ids hold (prefixes of each other, empty, `/`, `..`, NUL, not UTF-8).
/// - A document exists from the first non-empty batch applied to it until
///   [`remove_document`](Store::remove_document); opening a document writes nothing.
/// - At most one handle per document is open at a time: a second
///   [`open_document`](Store::open_document) of the same id, or removing an open
///   document, fails with [`Error::DocumentInUse`].
/// - A store is `Send + Sync`: different threads may work on different documents at the
///   same time. A second process opening the same path fails with [`Error::Locked`].
pub trait Store: Send + Sync {
    /// The handle of one document.
    type Persister: Persister<Error = Error> + 'static;

    /// Opens the document `id`, which need not exist yet.
    fn open_document(&self, id: &DocumentId) -> Result<Self::Persister>;

    /// The ids of every existing document, ordered by their bytes.
    fn list_documents(&self) -> Result<Vec<DocumentId>>;

    /// Removes the document `id` with all its changes, document and sync states, in one
    /// atomic step that is durable when this returns. Removing a document that does not
    /// exist is not an error.
    fn remove_document(&self, id: &DocumentId) -> Result<()>;

    /// Makes the writes of every handle in `handles` durable, as [`flush`](Persister::flush)
    /// on each would, with as few syncs as the backend allows: the store-wide flush, for
    /// an application that flushes on a timer or at shutdown. Returns the bytes made
    /// durable, summed over the handles.
    ///
    /// Every handle is flushed even when one fails; each handle whose flush fails is
    /// poisoned, as after its own failed `flush`, and the first error is returned. The
    /// default flushes the handles one after another; a backend that can commit many
    /// documents at once (one transaction, one sync) overrides it. Handles of another
    /// store are flushed on their own.
    ///
    /// Concurrent [`flush`](Persister::flush) calls on different handles of one store
    /// may share their syncs too (group commit), where the backend says so; each still
    /// returns only once its own writes are durable.
    ///
    /// # Errors
    ///
    /// The first error a handle's flush returned.
    fn flush_documents(&self, handles: &mut [&mut Self::Persister]) -> Result<usize> {
        flush_each(handles)
    }

    /// Releases the store's files and locks, and reports what went wrong doing so: the
    /// checked counterpart of dropping it (contract point 12). Handles still open keep
    /// the store's files open until they are dropped; close or flush them first, since
    /// their unflushed writes are discarded when they are dropped.
    ///
    /// # Errors
    ///
    /// [`Error::DocumentInUse`] if a handle of the store is still open (the store is
    /// released when that handle is dropped); otherwise whatever releasing the files
    /// reported, and, once they are released, a flush of a handle of the store that
    /// failed since it was opened (usually [`Error::Poisoned`]): a checked shutdown
    /// never reports `Ok` for a store that could not make a flush durable.
    fn close(self) -> Result<()>
    where
        Self: Sized,
    {
        drop(self);
        Ok(())
    }

    /// Every torn tail that opening documents of this store has found since the store was
    /// opened, in the order found. Backends without torn tails return an empty list.
    fn recovered(&self) -> Vec<Recovered> {
        Vec::new()
    }

    /// The format version the store is of, as it is stored: what a backend that reads
    /// and writes older versions as they are (no silent migration) found when it opened
    /// the store, or the version it migrated the store to when asked. It can be older
    /// than the version the build writes into new stores. `None` for a store with no
    /// format of its own (the memory store), the default.
    fn format_version(&self) -> Option<u32> {
        None
    }

    /// [`close`](Store::close) for a store behind a `Box`, which `close` (taking the
    /// store by value) cannot reach: a boxed store's `close` calls this, so that
    /// closing a `Box<S>` or a [`DynStore`] closes the store inside. The default drops
    /// the store, so a store that overrides `close` overrides this too, as
    /// `Store::close(*self)`: every store of this workspace does, and the conformance case
    /// `closing_a_boxed_or_shared_store_is_checked` fails for one that does not.
    ///
    /// # Errors
    ///
    /// As [`close`](Store::close).
    fn close_boxed(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}

/// A store whose handles are boxed, so stores of different backends share one type.
///
/// Its [`flush_documents`](Store::flush_documents) flushes each handle on its own: the
/// boxed handles cannot be handed back to the inner store.
///
/// ```
/// use persister_core::{BoxedStore, DynStore, MemoryStore, Store};
///
/// let store: DynStore = Box::new(BoxedStore(MemoryStore::new()));
/// let mut doc = store.open_document(&"notes".into())?;
/// doc.set_document(b"hello".to_vec())?;
/// # Ok::<(), persister_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BoxedStore<S>(pub S);

/// A persister handle whose backend is chosen at run time.
pub type DynPersister = Box<dyn Persister<Error = Error>>;

/// A store whose backend is chosen at run time.
pub type DynStore = Box<dyn Store<Persister = DynPersister>>;

impl<S: Store> Store for BoxedStore<S> {
    type Persister = DynPersister;

    fn open_document(&self, id: &DocumentId) -> Result<DynPersister> {
        Ok(Box::new(self.0.open_document(id)?))
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        self.0.list_documents()
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        self.0.remove_document(id)
    }

    fn close(self) -> Result<()> {
        self.0.close()
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        self.0.close()
    }

    fn recovered(&self) -> Vec<Recovered> {
        self.0.recovered()
    }

    fn format_version(&self) -> Option<u32> {
        self.0.format_version()
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    type Persister = S::Persister;

    fn flush_documents(&self, handles: &mut [&mut Self::Persister]) -> Result<usize> {
        (**self).flush_documents(handles)
    }

    fn open_document(&self, id: &DocumentId) -> Result<Self::Persister> {
        (**self).open_document(id)
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        (**self).list_documents()
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        (**self).remove_document(id)
    }

    fn close(self) -> Result<()> {
        self.close_boxed()
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        (*self).close_boxed()
    }

    fn recovered(&self) -> Vec<Recovered> {
        (**self).recovered()
    }

    fn format_version(&self) -> Option<u32> {
        (**self).format_version()
    }
}

/// A store shared between owners. Its [`close`](Store::close) closes the store when
/// this is the last clone, and otherwise fails with [`Error::InvalidInput`] (the store
/// is closed when the last clone is dropped), the way a clone of an
/// [`EngineStore`](crate::EngineStore) does.
impl<S: Store> Store for Arc<S> {
    type Persister = S::Persister;

    fn flush_documents(&self, handles: &mut [&mut Self::Persister]) -> Result<usize> {
        (**self).flush_documents(handles)
    }

    fn open_document(&self, id: &DocumentId) -> Result<Self::Persister> {
        (**self).open_document(id)
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        (**self).list_documents()
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        (**self).remove_document(id)
    }

    fn close(self) -> Result<()> {
        match Arc::try_unwrap(self) {
            Ok(store) => store.close(),
            Err(_) => Err(Error::InvalidInput {
                what: "close",
                reason: "another clone of the store is still open; the store is closed when the last clone is dropped".to_string(),
            }),
        }
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        Store::close(*self)
    }

    fn recovered(&self) -> Vec<Recovered> {
        (**self).recovered()
    }

    fn format_version(&self) -> Option<u32> {
        (**self).format_version()
    }
}

/// Flushes each of `handles` in turn, all of them even when one fails, and returns the
/// bytes they made durable or the first error: the default of
/// [`Store::flush_documents`], for backends that override it to fall back on.
pub fn flush_each<P: Persister<Error = Error>>(handles: &mut [&mut P]) -> Result<usize> {
    sum_flushed(handles.iter_mut().map(|handle| handle.flush()))
}

/// The bytes made durable by the flushes of `results` that succeeded, or the first
/// error: how a flush of many handles reports once it has tried every one.
pub fn sum_flushed(results: impl IntoIterator<Item = Result<usize>>) -> Result<usize> {
    let mut written = 0usize;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(bytes) => written = written.saturating_add(bytes),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(written), Err)
}

/// The set of documents with an open handle, which backends use to keep one handle
/// per document.
///
/// [`claim`](OpenDocuments::claim) returns a guard that releases the id when dropped;
/// a handle keeps its guard for its lifetime, and `remove_document` holds one while it
/// removes, so that no handle can open a document halfway through its removal.
#[derive(Debug, Clone, Default)]
pub struct OpenDocuments {
    open: Arc<Mutex<HashSet<DocumentId>>>,
}

impl OpenDocuments {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `id` open, or fails with [`Error::DocumentInUse`] if it already is. Also
    /// checks the id's length limit.
    pub fn claim(&self, id: &DocumentId) -> Result<DocumentClaim> {
        id.validate()?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.insert(id.clone()) {
            return Err(Error::DocumentInUse {
                document: id.clone(),
            });
        }
        Ok(DocumentClaim {
            open: Arc::clone(&self.open),
            id: id.clone(),
        })
    }
}

impl OpenDocuments {
    /// One of the documents open now, if any.
    pub fn any_open(&self) -> Option<DocumentId> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .next()
            .cloned()
    }

    /// Fails with [`Error::DocumentInUse`] naming a document that is still open, for a
    /// store's [`close`](Store::close).
    pub fn check_none_open(&self) -> Result<()> {
        match self.any_open() {
            Some(document) => Err(Error::DocumentInUse { document }),
            None => Ok(()),
        }
    }
}

/// Proof that a document is open; releases it when dropped.
#[derive(Debug)]
pub struct DocumentClaim {
    open: Arc<Mutex<HashSet<DocumentId>>>,
    id: DocumentId,
}

impl DocumentClaim {
    /// The claimed document.
    pub fn id(&self) -> &DocumentId {
        &self.id
    }
}

impl Drop for DocumentClaim {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}
