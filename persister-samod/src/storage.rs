//! The samod storage: a handle that sends each operation to the store's worker thread.

use std::collections::HashMap;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use persister_core::{DocumentId, Error, Result, Store};
use samod::storage::{Storage, StorageKey};

use crate::layout;
use crate::options::{Health, Options, WhenUnusable};
use crate::worker::{Msg, Op, Opener, Worker, exit, lock};

/// A samod [`Storage`] over any [`Store`] of this workspace.
///
/// One worker thread per storage owns the store. Each operation is queued there when
/// its method is called (so operations on one document take effect in the order they
/// were called); the returned future completes when the worker has answered, which
/// for a put or a delete means the write is durable. The futures need no particular
/// executor.
///
/// Clones share the worker. Dropping the last clone, or [`close`](Self::close), waits
/// until every queued write is durable (unless the worker ended with a panic, see
/// `close`) and releases the store. The wait blocks the
/// thread it happens on: a samod `Repo` holds a clone, so dropping the last one on an
/// async runtime's thread blocks that thread for as long (call `close` from a thread
/// that may block, such as `spawn_blocking`'s, before the last drop).
#[derive(Clone, Debug)]
pub struct SamodStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: Option<Sender<Msg>>,
    health: Arc<Mutex<Health>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// What ended the worker thread with a panic, if one did.
    panicked: Arc<Mutex<Option<String>>>,
}

impl SamodStorage {
    /// Opens the store with `open`, and calls it again to reopen the store after a
    /// write or flush failed (a failed flush poisons a store's handles until it is
    /// reopened). The recommended constructor.
    ///
    /// Fails if the first open fails, or the store holds a layout of another version
    /// ([`Error::UnsupportedFormat`]).
    pub fn open<S, F>(open: F) -> Result<Self>
    where
        S: Store + 'static,
        F: FnMut() -> Result<S> + Send + 'static,
    {
        Self::open_with(open, Options::default())
    }

    /// [`SamodStorage::open`] with options.
    pub fn open_with<S, F>(mut open: F, options: Options) -> Result<Self>
    where
        S: Store + 'static,
        F: FnMut() -> Result<S> + Send + 'static,
    {
        let store = open()?;
        Self::start(store, Some(Box::new(open)), options)
    }

    /// A storage on a store that is never reopened: after a failure its handles are
    /// reopened instead (the failed document's after a failed read; every document's
    /// after a failed open, write or flush). For [`MemoryStore`](persister_core::MemoryStore)
    /// and stores shared with other code.
    ///
    /// On a store whose failed flush poisons more than the handle (`persister-redb` and
    /// `persister-sled` poison the whole store, `persister-fs` the document, whatever
    /// handle opens it next), writes fail from then on until the store is opened again,
    /// which this storage never does: with
    /// [`WhenUnusable::KeepRetrying`](crate::WhenUnusable::KeepRetrying) samod's puts
    /// then never complete, and neither does `Repo::stop`. Use
    /// [`open`](Self::open) for such stores, unless their owner reopens them.
    pub fn on_store<S: Store + 'static>(store: S, options: Options) -> Result<Self> {
        Self::start(store, None, options)
    }

    fn start<S: Store + 'static>(
        store: S,
        opener: Option<Opener<S>>,
        options: Options,
    ) -> Result<Self> {
        {
            let mut layout_doc = store.open_document(&DocumentId::from(layout::LAYOUT_DOCUMENT))?;
            layout::check_format(&mut layout_doc)?;
        }
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(Mutex::new(Health::default()));
        let when_unusable = options.when_unusable;
        let worker = Worker::new(store, opener, rx, options, Arc::clone(&health));
        let reported = Arc::clone(&health);
        let panicked = Arc::new(Mutex::new(None));
        let panic_noted = Arc::clone(&panicked);
        let handle = std::thread::Builder::new()
            .name("persister-samod".into())
            .spawn(move || {
                // A panic (the event hook's, or a crate's on damaged bytes) ends the
                // worker: every operation still waiting stays pending, so the health
                // says so, rather than that all is well; and under `Exit`, nothing can
                // be stored any more, so the process ends instead of hanging.
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()))
                {
                    let message = persister_core::panic_message(&*panic);
                    let what = format!(
                        "the storage's worker thread panicked ({message}), so no operation completes from now on"
                    );
                    if let WhenUnusable::Exit { .. } = when_unusable {
                        exit(&what);
                    }
                    *lock(&panic_noted) = Some(what.clone());
                    let mut health = lock(&reported);
                    health.closed = true;
                    health.failures += 1;
                    health.last_error = Some(format!(
                        "{what}: drop the repo and open the storage again"
                    ));
                }
            })
            .map_err(|e| Error::io("start the worker thread of", "persister-samod", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                health,
                worker: Mutex::new(Some(handle)),
                panicked,
            }),
        })
    }

    /// What has failed so far, and what is failing now.
    pub fn health(&self) -> Health {
        lock(&self.inner.health).clone()
    }

    /// Waits until every operation queued so far is done (every write durable), then
    /// releases the store, so that it can be opened again at once. Operations after
    /// this never complete.
    ///
    /// With [`WhenUnusable::KeepRetrying`](crate::WhenUnusable::KeepRetrying) and a
    /// store that stays unusable, this waits as long as the store does.
    ///
    /// Closing again, from this clone or another, does nothing more and returns `Ok`.
    ///
    /// # Errors
    ///
    /// What closing the store reported (a flush that failed since the store was last
    /// reopened, say). [`Error::Poisoned`] if the worker thread ended with a panic (see
    /// [`health`](Self::health), whose `last_error` then says so): this then returns at
    /// once, the writes still queued were never made durable, and their futures never
    /// complete.
    pub fn close(&self) -> Result<()> {
        let (done_tx, done_rx) = mpsc::channel();
        let answer = match &self.inner.tx {
            Some(tx) if tx.send(Msg::Close(done_tx)).is_ok() => done_rx.recv().ok(),
            _ => None,
        };
        if let Some(worker) = lock(&self.inner.worker).take() {
            let _ = worker.join();
        }
        match (answer, lock(&self.inner.panicked).clone()) {
            (Some(answer), _) => answer,
            (None, Some(what)) => Err(Error::Poisoned {
                reason: format!("{what}; the writes still queued were not stored"),
            }),
            // Closed before: nothing is left to do.
            (None, None) => Ok(()),
        }
    }

    fn submit(&self, op: Op) {
        let sent = self
            .inner
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Op(op)).is_ok());
        if !sent {
            // Closed: the operation's future never completes, as nothing answers it.
            lock(&self.inner.health).closed = true;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The worker finishes every queued write once no sender is left.
        drop(self.tx.take());
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

/// Waits for the worker's answer. An operation the worker dropped (refused, or after
/// `close`) is never answered: its future stays pending rather than report a result
/// that is not true.
async fn settle<T>(rx: oneshot::Receiver<T>) -> T {
    match rx.await {
        Ok(value) => value,
        Err(oneshot::Canceled) => std::future::pending().await,
    }
}

impl Storage for SamodStorage {
    fn load(&self, key: StorageKey) -> impl Future<Output = Option<Vec<u8>>> + Send {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Load { key, reply });
        settle(rx)
    }

    fn load_range(
        &self,
        prefix: StorageKey,
    ) -> impl Future<Output = HashMap<StorageKey, Vec<u8>>> + Send {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Range { prefix, reply });
        settle(rx)
    }

    fn put(&self, key: StorageKey, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Put { key, data, reply });
        settle(rx)
    }

    fn delete(&self, key: StorageKey) -> impl Future<Output = ()> + Send {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Delete { key, reply });
        settle(rx)
    }
}
