//! A persister that times its flushes, so the demo can show what durability costs.

use std::time::{Duration, Instant};

use persister_core::{Batch, ChangeEntry, Error, Persister, StoredSizes};

/// Wraps a persister and adds up the flushes that wrote something.
#[derive(Debug)]
pub(crate) struct Timed<P> {
    inner: P,
    pub(crate) flushes: u64,
    pub(crate) flush_time: Duration,
    pub(crate) flushed_bytes: u64,
}

impl<P> Timed<P> {
    pub(crate) fn new(inner: P) -> Self {
        Self {
            inner,
            flushes: 0,
            flush_time: Duration::ZERO,
            flushed_bytes: 0,
        }
    }
}

impl<P: Persister<Error = Error>> Persister for Timed<P> {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<(), Error> {
        self.inner.apply(batch)
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Error> {
        self.inner.get_change_entries()
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get_document()
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get_sync_state(peer_id)
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.inner.get_peer_ids()
    }

    fn sizes(&self) -> StoredSizes {
        self.inner.sizes()
    }

    fn flush(&mut self) -> Result<usize, Error> {
        let started = Instant::now();
        let written = self.inner.flush()?;
        if written > 0 {
            self.flushes += 1;
            self.flush_time += started.elapsed();
            self.flushed_bytes += written as u64;
        }
        Ok(written)
    }
}
