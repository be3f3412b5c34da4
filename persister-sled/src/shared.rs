//! What a store and all its handles share: the database, the writer, the flusher and
//! the poison flag.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use persister_core::{DocumentId, Error, Result};

use crate::durable::Durable;
use crate::engine;
use crate::layout::{self, STORE_KEY};
use crate::manifest::{StoreManifest, Tally};

#[derive(Debug)]
pub(crate) struct Shared {
    db: sled::Db,
    pub path: PathBuf,
    /// See [`SledOptions::max_pending_bytes`](crate::SledOptions::max_pending_bytes).
    pub max_pending_bytes: usize,
    /// The store manifest as last applied. Its lock orders batches, so the sequence
    /// numbers in the store increase in the order sled applies them.
    writer: Mutex<StoreManifest>,
    durable: Mutex<Durable>,
    /// Why the store is poisoned, once a flush or a write failed, or sled panicked.
    poisoned: Mutex<Option<String>>,
    /// Bytes that dropped handles applied and did not flush, by document, so that the
    /// next handle's flush makes them durable and reports them.
    unflushed: Mutex<HashMap<DocumentId, usize>>,
    /// Documents whose handles hold writes but that are not in sled yet, so that
    /// `list_documents` lists them.
    unwritten: Mutex<BTreeSet<DocumentId>>,
    #[cfg(test)]
    pub fail_next_flush: std::sync::atomic::AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        persister_core::relock::note_closed(&self.path);
    }
}

impl Shared {
    pub(crate) fn new(
        db: sled::Db,
        path: PathBuf,
        manifest: StoreManifest,
        durable: Durable,
        max_pending_bytes: usize,
    ) -> Self {
        Self {
            db,
            path,
            max_pending_bytes,
            writer: Mutex::new(manifest),
            durable: Mutex::new(durable),
            poisoned: Mutex::new(None),
            unflushed: Mutex::default(),
            unwritten: Mutex::default(),
            #[cfg(test)]
            fail_next_flush: Default::default(),
        }
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
        engine::call(&self.path, action, f).inspect_err(|e| {
            if engine::is_caught_panic(e) {
                self.poison(e);
            }
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.call("read", || self.db.get(key))
    }

    /// Calls `f` on every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut iter = self.call("read", || Ok(self.db.scan_prefix(prefix)))?;
        while let Some((key, value)) = self.call("read", || iter.next().transpose())? {
            f(&key, &value)?;
        }
        Ok(())
    }

    /// The last key (in key order) that starts with `prefix`, if any.
    pub(crate) fn last_key(&self, prefix: &[u8]) -> Result<Option<sled::IVec>> {
        let mut iter = self.call("read", || Ok(self.db.scan_prefix(prefix).keys()))?;
        self.call("read", || iter.next_back().transpose())
    }

    /// Hands the bytes a dropped handle of `id` did not flush to the next handle.
    pub(crate) fn carry_unflushed(&self, id: &DocumentId, bytes: usize) {
        let mut unflushed = lock(&self.unflushed);
        let carried = unflushed.entry(id.clone()).or_default();
        *carried = carried.saturating_add(bytes);
    }

    /// Takes the bytes dropped handles of `id` did not flush (0 when none).
    pub(crate) fn take_unflushed(&self, id: &DocumentId) -> usize {
        lock(&self.unflushed).remove(id).unwrap_or(0)
    }

    /// Records whether a handle of `id` holds writes of a document not yet in sled.
    pub(crate) fn mark_unwritten(&self, id: &DocumentId, unwritten: bool) {
        let mut set = lock(&self.unwritten);
        if unwritten {
            set.insert(id.clone());
        } else {
            set.remove(id);
        }
    }

    /// The documents that exist only in their handles' held writes.
    pub(crate) fn unwritten(&self) -> BTreeSet<DocumentId> {
        lock(&self.unwritten).clone()
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, StoreManifest> {
        lock(&self.writer)
    }

    /// Applies `batch` atomically with the next store manifest: the sequence number
    /// advanced, and the document tally changed by `documents`. A failure poisons the
    /// store: sled's errors are fail-stop.
    pub(crate) fn commit(
        &self,
        mut batch: sled::Batch,
        documents: impl FnOnce(&mut Tally) -> Result<()>,
    ) -> Result<()> {
        let mut writer = lock(&self.writer);
        self.check_poisoned()?;
        let mut next = *writer;
        next.seq += 1;
        documents(&mut next.documents)?;
        batch.insert(STORE_KEY, layout::frame(STORE_KEY, &next.encode()));
        self.call("write", || self.db.apply_batch(batch))
            .inspect_err(|e| self.poison(e))?;
        *writer = next;
        Ok(())
    }

    /// Makes every batch applied so far durable (see the crate docs), and returns the
    /// bytes sled wrote. A failure poisons the store.
    pub(crate) fn flush_durable(&self) -> Result<usize> {
        self.check_poisoned()?;
        let mut durable = lock(&self.durable);
        let seq = lock(&self.writer).seq;
        let result = self.flush_locked(&mut durable, seq);
        result.inspect_err(|e| self.poison(e))
    }

    fn flush_locked(&self, durable: &mut Durable, seq: u64) -> Result<usize> {
        #[cfg(test)]
        if self
            .fail_next_flush
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let e = std::io::Error::other("injected fsync failure");
            return Err(Error::io("sync", self.path.join("db"), e));
        }
        let written = self.call("flush", || self.db.flush())?;
        durable.sync(&self.path)?;
        durable.mark.advance(seq)?;
        Ok(written)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
