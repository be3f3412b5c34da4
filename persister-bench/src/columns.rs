//! The columns of the table: every backend of the workspace, the peer, and what each
//! must do for the rows to drive it the same way.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use persister_backends::{Access, Registry, StoreKind};
use persister_core::{
    ActorId, BoxedStore, ChangeEntry, DocumentId, DynPersister, DynStore, MemoryStore, Persister,
    Store,
};

use crate::Result;
use crate::data::RawChange;
use crate::peer;

/// The workspace's backends, each opened through its entry.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::standard);

/// One column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Column {
    /// `persister_core::MemoryStore`: what the persister layer costs without a disk.
    Memory,
    /// `persister_fs::FsStore`.
    Fs,
    /// `persister_redb::RedbStore`.
    Redb,
    /// `persister_sled::SledStore`.
    Sled,
    /// `persister_postgres::PostgresStore`, on a server this run starts (or
    /// `PERSISTER_POSTGRES_URL`).
    Postgres,
    /// automerge-persistent-sled 0.4, the library applications use today.
    Peer,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 6] = [
        Column::Memory,
        Column::Fs,
        Column::Redb,
        Column::Sled,
        Column::Postgres,
        Column::Peer,
    ];

    /// The short name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Column::Memory => "memory",
            Column::Fs => "fs",
            Column::Redb => "redb",
            Column::Sled => "sled",
            Column::Postgres => "postgres",
            Column::Peer => "peer",
        }
    }

    /// The table header.
    pub fn header(self) -> &'static str {
        match self {
            Column::Peer => peer::NAME,
            other => other.name(),
        }
    }

    /// The registry's entry of the column's backend; `None` for the memory store and
    /// the peer, which are not backends of the registry.
    pub fn backend(self) -> Option<&'static persister_backends::Backend> {
        match self {
            Column::Memory | Column::Peer => None,
            backend => REGISTRY.get(backend.name()),
        }
    }

    /// Whether the column keeps its data on a local disk the benchmark can measure.
    pub fn on_disk(self) -> bool {
        self == Column::Peer
            || self
                .backend()
                .is_some_and(|b| matches!(b.kind(), StoreKind::File | StoreKind::Directory))
    }

    /// Where the column's store "in" `dir` (a new, empty directory) is: a file
    /// backend's file inside it, a directory backend's store is `dir` itself, and a URL
    /// backend's is a schema of its own on the run's server.
    pub fn store_path(self, dir: &Path) -> Result<PathBuf> {
        let backend = self
            .backend()
            .ok_or_else(|| format!("column {self} has no store of a backend"))?;
        Ok(match backend.kind() {
            StoreKind::Url => {
                let (url, schema) = (crate::pg::url()?, crate::pg::schema(dir));
                if url.contains("://") {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    PathBuf::from(format!("{url}{sep}schema={schema}"))
                } else {
                    PathBuf::from(format!("{url} schema={schema}"))
                }
            }
            StoreKind::File => backend
                .store_in(dir)
                .ok_or_else(|| format!("column {self}: no path for its store"))?,
            _ => dir.to_owned(),
        })
    }

    /// Converts changes to the batch type this column takes, outside any timing.
    pub fn prepare(self, changes: &[RawChange]) -> Prepared {
        match self {
            Column::Peer => Prepared::Peer(peer::prepare(changes)),
            _ => Prepared::Core(
                changes
                    .iter()
                    .map(|c| (ActorId::new(c.actor), c.seq, c.value.clone()))
                    .collect(),
            ),
        }
    }

    /// Creates an empty store in `dir` (a new, empty directory) and opens the
    /// benchmark's document in it.
    pub fn create(self, dir: &Path) -> Result<(Box<dyn Subject>, Location)> {
        let location = match self {
            Column::Memory => Location::Memory(MemoryStore::new()),
            _ => Location::Dir(dir.to_owned()),
        };
        let subject = self.open(&location)?;
        Ok((subject, location))
    }

    /// Opens the benchmark's document in the store at `location`, as a program that
    /// starts would.
    pub fn open(self, location: &Location) -> Result<Box<dyn Subject>> {
        match (self, location) {
            (Column::Peer, Location::Dir(dir)) => Ok(Box::new(peer::PeerSubject::open(dir)?)),
            (column, location) => Ok(Box::new(CoreSubject::open(
                self.open_store(location)?,
                column,
            )?)),
        }
    }

    /// Opens the store of one of this workspace's backends, with its handles boxed so
    /// every backend has one type.
    pub fn open_store(self, location: &Location) -> Result<DynStore> {
        match (self, location, self.backend()) {
            (Column::Memory, Location::Memory(store), _) => Ok(Box::new(BoxedStore(store.clone()))),
            (column, Location::Dir(dir), Some(backend)) => {
                Ok(backend.open(column.store_path(dir)?, Access::ReadWrite)?)
            }
            (column, location, _) => {
                Err(format!("column {column} cannot open a store at {location:?}").into())
            }
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The id of the one document each benchmark store holds.
pub fn document_id() -> DocumentId {
    DocumentId::from("bench")
}

/// Where a column's store lives, so it can be opened again.
#[derive(Clone, Debug)]
pub enum Location {
    /// A directory on disk (the redb file lives inside it).
    Dir(PathBuf),
    /// A memory store: opening it again is cloning it.
    Memory(MemoryStore),
}

/// A batch of changes already converted to a column's own types.
pub enum Prepared {
    /// For this workspace's backends.
    Core(Vec<ChangeEntry>),
    /// For the peer, on automerge 0.4's types.
    Peer(Vec<peer::PeerChange>),
}

/// What the rows see of a size report: change bytes always, the count when the
/// column keeps one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenSizes {
    /// Total bytes of stored change values.
    pub change_bytes: u64,
    /// Number of stored changes, when the column reports it.
    pub change_count: Option<u64>,
}

/// One open document of one column, driven through the operations the rows time.
pub trait Subject {
    /// Inserts one batch of changes (prepared by the same column).
    fn insert(&mut self, batch: Prepared) -> Result<()>;
    /// Makes everything inserted so far durable.
    fn flush(&mut self) -> Result<()>;
    /// Every stored change's bytes.
    fn get_changes(&self) -> Result<Vec<Vec<u8>>>;
    /// The column's own size report.
    fn sizes(&self) -> SeenSizes;
}

/// A document of one of this workspace's backends. The handle is declared before the
/// store so that it is dropped first.
struct CoreSubject {
    doc: DynPersister,
    _store: DynStore,
}

impl CoreSubject {
    fn open(store: DynStore, column: Column) -> Result<Self> {
        let doc = store
            .open_document(&document_id())
            .map_err(|e| format!("{column}: opening the document: {e}"))?;
        Ok(Self { doc, _store: store })
    }
}

impl Subject for CoreSubject {
    fn insert(&mut self, batch: Prepared) -> Result<()> {
        match batch {
            Prepared::Core(changes) => Ok(self.doc.insert_changes(changes)?),
            Prepared::Peer(_) => Err("a batch prepared for the peer was given to a backend".into()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.doc.flush()?;
        Ok(())
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.doc.get_changes()?)
    }

    fn sizes(&self) -> SeenSizes {
        let sizes = self.doc.sizes();
        SeenSizes {
            change_bytes: sizes.changes,
            change_count: Some(sizes.change_count),
        }
    }
}
