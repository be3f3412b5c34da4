//! Making sled's files durable: what sled 0.34's own `flush` leaves undone.
//!
//! sled writes its log with `sync_file_range`, which neither syncs the file's metadata
//! nor flushes the drive's cache, and never syncs its blob files (values and nodes too
//! large for the log) or its directories. After sled's flush, this syncs all of them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use persister_core::files::sync_dir;
use persister_core::{Error, Result};

use crate::mark::Mark;

/// The files a flush syncs, and the mark it advances.
#[derive(Debug)]
pub(crate) struct Durable {
    db_file: File,
    /// Blob files already synced; a blob never changes once written.
    synced_blobs: BTreeSet<OsString>,
    pub mark: Mark,
}

impl Durable {
    pub(crate) fn new(dir: &Path, mark: Mark) -> Result<Self> {
        let db = dir.join("db");
        let db_file = File::open(&db).map_err(|e| Error::io("open", db, e))?;
        Ok(Self {
            db_file,
            synced_blobs: BTreeSet::new(),
            mark,
        })
    }

    /// Syncs new blob files and the blob directory, the `db` file and the store
    /// directory, in that order, so the log never becomes durable before the blobs it
    /// points to (of the batches sled flushed before this call).
    pub(crate) fn sync(&mut self, dir: &Path) -> Result<()> {
        self.sync_blobs(&dir.join("blobs"))?;
        self.db_file
            .sync_all()
            .map_err(|e| Error::io("sync", dir.join("db"), e))?;
        sync_dir(dir)
    }

    fn sync_blobs(&mut self, blobs: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", blobs, e)),
        };
        let mut present = BTreeSet::new();
        for entry in entries {
            present.insert(entry.map_err(|e| Error::io("list", blobs, e))?.file_name());
        }
        for name in present.difference(&self.synced_blobs) {
            let path = blobs.join(name);
            match File::open(&path).and_then(|f| f.sync_all()) {
                // sled removed it (garbage collection) since the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                result => result.map_err(|e| Error::io("sync", path, e))?,
            }
        }
        if present != self.synced_blobs {
            sync_dir(blobs)?;
            self.synced_blobs = present;
        }
        Ok(())
    }
}
