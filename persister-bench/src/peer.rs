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
    /// `None` once dropped; the trees go before the database.
    persister: Option<SledPersister>,
    /// Closed last, waiting for sled to let go of its lock (see [`Drop`]).
    db: Option<sled::Db>,
    dir: std::path::PathBuf,
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
        Ok(Self {
            persister: Some(persister),
            db: Some(db),
            dir: dir.to_owned(),
        })
    }

    fn persister(&self) -> Result<&SledPersister> {
        Ok(self.persister.as_ref().ok_or("the peer is closed")?)
    }

    fn persister_mut(&mut self) -> Result<&mut SledPersister> {
        Ok(self.persister.as_mut().ok_or("the peer is closed")?)
    }
}

/// sled 0.34 lets go of its lock on the `db` file a moment after its `Db` is dropped,
/// so a row that reopens the peer's directory at once could find it locked: the drop
/// waits for the lock, as `persister_sled::close_database` does for any sled database.
impl Drop for PeerSubject {
    fn drop(&mut self) {
        drop(self.persister.take());
        if let Some(db) = self.db.take() {
            let _ = persister_sled::close_database(db, &self.dir);
        }
    }
}

impl Subject for PeerSubject {
    fn insert(&mut self, batch: Prepared) -> Result<()> {
        match batch {
            Prepared::Peer(changes) => Ok(self.persister_mut()?.insert_changes(changes)?),
            Prepared::Core(_) => Err("a batch prepared for a backend was given to the peer".into()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.persister_mut()?.flush()?;
        Ok(())
    }

    fn get_changes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.persister()?.get_changes()?)
    }

    fn sizes(&self) -> SeenSizes {
        SeenSizes {
            change_bytes: self.persister.as_ref().map_or(0, |p| p.sizes().changes),
            change_count: None,
        }
    }
}
