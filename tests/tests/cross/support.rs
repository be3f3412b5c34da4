//! Opening every backend the same way, and reading a whole store back.

use persister_backends::{Backend, Registry, StoreKind};
use persister_core::{DocumentId, DynStore, Result, Store, StoredSizes};
use persister_testkit::{Contents, Rng};
use tempfile::TempDir;

/// The backend called `name`: one of the standard registry, or `memory`.
pub fn named(name: &str) -> Backend {
    if name == "memory" {
        return Backend::memory();
    }
    Registry::standard()
        .backend(name)
        .cloned()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every backend under test: the memory reference first, then every backend of the
/// standard registry that keeps its stores on this machine.
pub fn all() -> Vec<Backend> {
    let local = Registry::standard()
        .iter()
        .filter(|b| b.kind() != StoreKind::Url)
        .cloned()
        .collect::<Vec<_>>();
    std::iter::once(Backend::memory()).chain(local).collect()
}

/// Where one store lives, in a temporary directory of its own; `open` after a drop
/// reopens it.
pub struct Location {
    pub kind: Backend,
    store: persister_backends::Location,
    _dir: TempDir,
}

impl Location {
    pub fn new(kind: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = persister_backends::Location::new(kind.clone(), dir.path().join("store"));
        Self {
            kind,
            store,
            _dir: dir,
        }
    }

    /// The store's path (nothing there for the memory backend).
    pub fn path(&self) -> std::path::PathBuf {
        self.store.path().to_path_buf()
    }

    /// Opens the store with the backend chosen at run time.
    pub fn open(&self) -> Result<DynStore> {
        self.store.open()
    }
}

/// Every document of a store with its contents and sizes, ordered by id.
pub fn store_contents(store: &DynStore) -> Result<Vec<(DocumentId, Contents, StoredSizes)>> {
    let mut all = Vec::new();
    for id in store.list_documents()? {
        let p = store.open_document(&id)?;
        let contents = Contents::read(&*p)?;
        all.push((id, contents, p.sizes()));
    }
    Ok(all)
}

/// Ids that break naive key or file-name schemes.
pub fn hostile_ids() -> Vec<DocumentId> {
    let mut ids: Vec<DocumentId> = [
        "", "1", "10", "a", "A", "/", "..", "../x", "a/b", "con", " ", "0x00",
    ]
    .into_iter()
    .map(DocumentId::from)
    .collect();
    ids.extend([vec![0], vec![0, 0], vec![0xff, 0xfe], vec![b'x'; 1024]].map(DocumentId::from));
    ids
}

/// Up to `max` random bytes, of a random length.
pub fn some_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.index(max + 1);
    rng.bytes(len)
}
