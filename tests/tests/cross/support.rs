//! Opening every backend the same way, and reading a whole store back.

use persister_core::{BoxedStore, DocumentId, DynStore, MemoryStore, Result, Store, StoredSizes};
use persister_testkit::{Contents, Rng};
use tempfile::TempDir;

/// Every backend of the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redb,
    Sled,
    Fs,
}

pub const ALL: [Kind; 4] = [Kind::Memory, Kind::Redb, Kind::Sled, Kind::Fs];

/// Where one store lives; `open` after a drop reopens it.
pub struct Location {
    pub kind: Kind,
    dir: TempDir,
    memory: MemoryStore,
}

impl Location {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            dir: tempfile::tempdir().expect("temp dir"),
            memory: MemoryStore::new(),
        }
    }

    /// The store's path (nothing there for the memory backend).
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    /// Opens the store with the backend chosen at run time.
    pub fn open(&self) -> Result<DynStore> {
        let path = self.path();
        Ok(match self.kind {
            Kind::Memory => Box::new(BoxedStore(self.memory.clone())),
            Kind::Redb => Box::new(BoxedStore(persister_redb::RedbStore::open(path)?)),
            Kind::Sled => Box::new(BoxedStore(persister_sled::SledStore::open(path)?)),
            Kind::Fs => Box::new(BoxedStore(persister_fs::FsStore::open(path)?)),
        })
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
