//! The peer: automerge-persistent-sled 0.4, driven only through automerge-persistent's
//! own `Persister` trait, with the same bytes as every other column.

use std::path::Path;

use automerge_persistent::Persister as _;
use automerge_persistent_sled::SledPersister;

use crate::Result;
use crate::columns::{Prepared, SeenSizes, Subject};
use crate::data::RawChange;

/// The peer's name and version, as the table shows it.
pub const NAME: &str = "automerge-persistent-sled 0.4";

/// One change in the peer's types (automerge 0.4's actor id).
pub type PeerChange = (automerge04::ActorId, u64, Vec<u8>);

/// Converts changes to the peer's types.
pub fn prepare(changes: &[RawChange]) -> Vec<PeerChange> {
    changes
        .iter()
        .map(|c| {
            (
                automerge04::ActorId::from(&c.actor[..]),
                c.seq,
                c.value.clone(),
            )
        })
        .collect()
}

/// The peer's document, opened as its documentation shows: sled's default
/// configuration, three trees, an empty prefix.
pub struct PeerSubject {
    persister: SledPersister,
    // Kept so the database outlives the trees' users; dropped last.
    _db: sled::Db,
}

impl PeerSubject {
    /// Opens (or creates) the peer's database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::open(dir)?;
        let persister = SledPersister::new(
            db.open_tree("changes")?,
            db.open_tree("documents")?,
            db.open_tree("sync-states")?,
            "",
        )?;
        Ok(Self { persister, _db: db })
    }
}

impl Subject for PeerSubject {
    fn insert(&mut self, batch: Prepared) -> Result<()> {
        match batch {
            Prepared::Peer(changes) => Ok(self.persister.insert_changes(changes)?),
            Prepared::Core(_) => Err("a batch prepared for a backend was given to the peer".into()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.persister.flush()?;
        Ok(())
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.persister.get_changes()?)
    }

    fn sizes(&self) -> SeenSizes {
        SeenSizes {
            change_bytes: self.persister.sizes().changes,
            change_count: None,
        }
    }
}
