//! The engine's state: the database, the writer, the flusher and the poison flag.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use persister_core::{Error, Result};

use crate::calls;
use crate::copy::CopyDir;
use crate::durable::Durable;
use crate::layout::{self, STORE_KEY};
use crate::manifest::{StoreManifest, Tally};

/// The storage engine of a [`SledStore`](crate::SledStore): one sled database, its
/// documents under length-prefixed keys with checksummed values and per-document
/// manifests (see the [layout](crate#layout)).
///
/// A commit is one sled batch for every document it carries, with the store manifest;
/// a durable one then flushes sled and syncs what sled's flush leaves unsynced (see
/// [durability](crate#durability)).
#[derive(Debug)]
pub struct SledEngine {
    /// `None` only once the store is closed.
    db: Option<sled::Db>,
    /// The store's directory as the application named it, for messages.
    pub(crate) path: PathBuf,
    /// The directory sled has open: `path`, or a copy of it for a read-only store.
    dir: PathBuf,
    /// A read-only store refuses every write.
    pub(crate) read_only: bool,
    /// The copy a read-only store reads, removed once sled has closed it.
    pub(crate) copy: Option<CopyDir>,
    /// See [`SledOptions::max_pending_bytes`](crate::SledOptions::max_pending_bytes).
    pub(crate) max_pending_bytes: usize,
    /// The store manifest as last applied. Its lock orders batches, so the sequence
    /// numbers in the store increase in the order sled applies them.
    writer: Mutex<StoreManifest>,
    durable: Mutex<Durable>,
    /// Why the store is poisoned, once sled panicked or a write or durable flush
    /// failed, so that nothing more is written to a database in an unknown state, and
    /// no later flush reports durable what a failed sync may have dropped. (Core's
    /// store poisons itself too, but only once the failing call has returned: a flush
    /// already past its check would otherwise sync again and succeed.)
    poisoned: Mutex<Option<String>>,
}

impl Drop for SledEngine {
    fn drop(&mut self) {
        // Returns once sled's lock is released; `copy` is removed after this.
        let _ = self.release();
    }
}

impl SledEngine {
    pub(crate) fn new(
        db: sled::Db,
        dir: PathBuf,
        manifest: StoreManifest,
        durable: Durable,
        max_pending_bytes: usize,
    ) -> Self {
        Self {
            db: Some(db),
            path: dir.clone(),
            dir,
            read_only: false,
            copy: None,
            max_pending_bytes,
            writer: Mutex::new(manifest),
            durable: Mutex::new(durable),
            poisoned: Mutex::new(None),
        }
    }

    /// Closes sled and waits for its lock to be released (see [`calls::close`]).
    pub(crate) fn release(&mut self) -> Result<()> {
        match self.db.take() {
            Some(db) => calls::close(db, &self.dir),
            None => Ok(()),
        }
    }

    fn db(&self) -> Result<&sled::Db> {
        self.db.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "store",
            reason: format!("the store at {} is closed", self.path.display()),
        })
    }

    /// Fails with a clear error when the store was opened read-only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::read_only(&self.path, "SledStore::open"));
        }
        self.check_poisoned()
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::corrupt(what, &self.path, None)
    }

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match &*lock(&self.poisoned) {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&self, error: &Error) {
        lock(&self.poisoned).get_or_insert_with(|| error.to_string());
    }

    /// Runs a sled call; a panic in it poisons the store, since sled's state is then
    /// unknown.
    fn call<T>(&self, action: &'static str, f: impl FnOnce() -> sled::Result<T>) -> Result<T> {
        calls::call(&self.path, action, f).inspect_err(|e| {
            if calls::is_caught_panic(e) {
                self.poison(e);
            }
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        let db = self.db()?;
        self.call("read", || db.get(key))
    }

    /// Calls `f` on every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let db = self.db()?;
        let mut iter = self.call("read", || Ok(db.scan_prefix(prefix)))?;
        while let Some((key, value)) = self.call("read", || iter.next().transpose())? {
            f(&key, &value)?;
        }
        Ok(())
    }

    /// The last key (in key order) that starts with `prefix`, if any.
    pub(crate) fn last_key(&self, prefix: &[u8]) -> Result<Option<sled::IVec>> {
        let db = self.db()?;
        let mut iter = self.call("read", || Ok(db.scan_prefix(prefix).keys()))?;
        self.call("read", || iter.next_back().transpose())
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, StoreManifest> {
        lock(&self.writer)
    }

    /// Applies `batch` atomically with the next store manifest: the sequence number
    /// advanced, and the document tally changed by `documents`. A failure poisons the
    /// engine before the writer lock is released (core's store poisons itself too,
    /// once the call returned): sled's errors are fail-stop.
    pub(crate) fn apply_batch(
        &self,
        mut batch: sled::Batch,
        documents: impl FnOnce(&mut Tally) -> Result<()>,
    ) -> Result<()> {
        let mut writer = lock(&self.writer);
        self.check_writable()?;
        let db = self.db()?;
        let mut next = *writer;
        next.seq += 1;
        documents(&mut next.documents)?;
        batch.insert(STORE_KEY, layout::frame(STORE_KEY, &next.encode()));
        self.call("write", || db.apply_batch(batch))
            .inspect_err(|e| self.poison(e))?;
        *writer = next;
        Ok(())
    }

    /// Makes every batch applied so far durable (see the crate docs). Core's group
    /// commit runs one commit at a time; the lock orders it with a removal's flush, and
    /// a flush finding every batch already durable does nothing.
    ///
    /// A failure poisons the store before the lock is released: the failed sync may
    /// have dropped the dirty pages of every batch it carried, and a second sync of the
    /// same files succeeds without writing them, so a flush that waited for this one
    /// must fail too rather than advance the mark over them.
    pub(crate) fn flush_durable(&self) -> Result<()> {
        let mut durable = lock(&self.durable);
        self.check_writable()?;
        let seq = lock(&self.writer).seq;
        if durable.mark.seq() >= seq {
            return Ok(());
        }
        let db = self.db()?;
        self.call("flush", || db.flush())
            .and_then(|_| durable.sync(&self.dir))
            .and_then(|()| durable.mark.advance(seq))
            .inspect_err(|e| self.poison(e))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
