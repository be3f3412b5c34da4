//! Stores of every backend, and a store that fails or waits on demand.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub use persister_backends::Backend;
use persister_backends::{Access, Registry, StoreKind};
use persister_core::{
    Batch, ChangeEntry, DocumentId, Error, MemoryStore, Persister, Store, StoredSizes,
};
use persister_samod::{Options, SamodStorage};

pub type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// Runs the ignored test `child` of this binary in a process of its own, with `env`
/// set, and checks that the storage stopped it (`WhenUnusable::Exit`): its exit code
/// is `EXIT_CODE` and it said why. Returns its standard error.
pub fn stopped_child(child: &str, env: &str) -> Result<String> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(env, "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(persister_samod::EXIT_CODE),
        "{stderr}"
    );
    assert!(
        stderr.contains("persister-samod: stopping the process"),
        "{stderr}"
    );
    Ok(stderr)
}

/// The backend called `name`: `memory`, or one of the standard registry's (the
/// storage takes any store, so a backend added there runs here by its name).
pub fn named(name: &str) -> Backend {
    parse_backend(name).unwrap_or_else(|| panic!("no backend called {name}"))
}

/// The backend called `name`, if there is one.
pub fn parse_backend(name: &str) -> Option<Backend> {
    Registry::standard()
        .with(Backend::memory())
        .get(name)
        .cloned()
}

/// A storage on `backend`'s store in `dir`, reopened from there after failures (a
/// memory store is one store for the storage's life).
pub fn storage(
    backend: &Backend,
    dir: &Path,
    options: Options,
) -> persister_core::Result<SamodStorage> {
    if backend.kind() == StoreKind::Memory {
        return SamodStorage::on_store(MemoryStore::new(), options);
    }
    let path = dir.join(backend.name());
    let backend = backend.clone();
    SamodStorage::open_with(move || backend.open(&path, Access::ReadWrite), options)
}

/// An empty storage on `backend`, and the directory it lives in.
pub fn fresh(backend: Backend) -> (SamodStorage, tempfile::TempDir) {
    let made = tempfile::tempdir()
        .map_err(Error::from_io)
        .and_then(|dir| Ok((storage(&backend, dir.path(), Options::new())?, dir)));
    match made {
        Ok(made) => made,
        Err(e) => panic!("cannot make a {} storage: {e}", backend.name()),
    }
}

trait FromIo {
    fn from_io(e: std::io::Error) -> Self;
}

impl FromIo for Error {
    fn from_io(e: std::io::Error) -> Self {
        Error::io("create", "a temporary directory", e)
    }
}

/// What a [`FaultyStore`]'s test controls: broken or not, a gate that holds flushes,
/// and a count of flushes.
#[derive(Debug, Default)]
pub struct Faults {
    pub broken: AtomicBool,
    pub flushes: AtomicUsize,
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    waiting: usize,
}

impl Faults {
    /// Makes the next flushes wait until [`Faults::open_gate`].
    pub fn close_gate(&self) {
        lock(&self.gate).closed = true;
    }

    pub fn open_gate(&self) {
        lock(&self.gate).closed = false;
        self.changed.notify_all();
    }

    /// Waits until a flush waits at the gate.
    pub fn wait_for_flush_at_gate(&self) {
        let mut gate = lock(&self.gate);
        while gate.waiting == 0 {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn pass_gate(&self) {
        let mut gate = lock(&self.gate);
        gate.waiting += 1;
        self.changed.notify_all();
        while gate.closed {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        gate.waiting -= 1;
    }

    fn check(&self, action: &'static str) -> persister_core::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::io(
                action,
                "<faulty store>",
                std::io::Error::other("the disk is broken"),
            ));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A memory store whose every operation fails while broken.
#[derive(Clone, Debug, Default)]
pub struct FaultyStore {
    pub inner: MemoryStore,
    pub faults: Arc<Faults>,
}

impl Store for FaultyStore {
    type Persister = FaultyPersister;

    fn open_document(&self, id: &DocumentId) -> persister_core::Result<FaultyPersister> {
        self.faults.check("open")?;
        Ok(FaultyPersister {
            inner: self.inner.open_document(id)?,
            faults: Arc::clone(&self.faults),
        })
    }

    fn list_documents(&self) -> persister_core::Result<Vec<DocumentId>> {
        self.faults.check("list")?;
        self.inner.list_documents()
    }

    fn remove_document(&self, id: &DocumentId) -> persister_core::Result<()> {
        self.faults.check("remove")?;
        self.inner.remove_document(id)
    }
}

#[derive(Debug)]
pub struct FaultyPersister {
    inner: persister_core::MemoryPersister,
    faults: Arc<Faults>,
}

impl Persister for FaultyPersister {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> persister_core::Result<()> {
        self.faults.check("write")?;
        self.inner.apply(batch)
    }
    fn get_change_entries(&self) -> persister_core::Result<Vec<ChangeEntry>> {
        self.faults.check("read")?;
        self.inner.get_change_entries()
    }
    fn get_document(&self) -> persister_core::Result<Option<Vec<u8>>> {
        self.faults.check("read")?;
        self.inner.get_document()
    }
    fn get_sync_state(&self, peer_id: &[u8]) -> persister_core::Result<Option<Vec<u8>>> {
        self.faults.check("read")?;
        self.inner.get_sync_state(peer_id)
    }
    fn get_peer_ids(&self) -> persister_core::Result<Vec<Vec<u8>>> {
        self.faults.check("read")?;
        self.inner.get_peer_ids()
    }
    fn sizes(&self) -> StoredSizes {
        self.inner.sizes()
    }
    fn flush(&mut self) -> persister_core::Result<usize> {
        self.faults.pass_gate();
        self.faults.check("sync")?;
        self.faults.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush()
    }
}

/// Polls a future once: `Some` if it is ready.
pub fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(value) => Some(value),
        std::task::Poll::Pending => None,
    }
}

/// A tokio runtime for the samod repos.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
