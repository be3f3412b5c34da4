//! How a store opens sled.

use persister_core::{Error, Result};

/// Settings of a [`SledStore`](crate::SledStore), passed to
/// [`SledStore::open_with`](crate::SledStore::open_with).
///
/// ```
/// use persister_sled::SledOptions;
///
/// let mut options = SledOptions::default();
/// options.cache_capacity = 64 * 1024 * 1024;
/// assert_eq!(options.flush_every_ms, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SledOptions {
    /// How often sled's background thread writes its buffers and fsyncs the `db` file,
    /// in milliseconds (at least 1). `None` (the default) turns the thread off, so that nothing is
    /// synced behind the application's back: the application owns the fsync policy
    /// through [`flush`](persister_core::Persister::flush). Turning it on makes more
    /// data survive a crash, but [`flush`](persister_core::Persister::flush) remains the
    /// only call that promises anything (the thread does not sync sled's blob files).
    pub flush_every_ms: Option<u64>,
    /// The most memory sled's page cache may use, in bytes (sled's default, 1 GiB; at
    /// least 256).
    pub cache_capacity: u64,
    /// sled's "fast" mode (`sled::Mode::HighThroughput`): more write throughput, more
    /// space used. `false` (the default) is sled's `LowSpace` mode.
    pub high_throughput: bool,
    /// The most payload bytes (keys and values) a handle holds before it flushes them
    /// itself, which bounds its memory: those writes are then durable, and dropping the
    /// handle no longer discards them; a larger single batch is held whole. Default
    /// 16 MiB. sled's cost is per batch, not per byte.
    pub max_pending_bytes: usize,
    /// Whether [`SledStore::open`](crate::SledStore::open) first opens a copy of an
    /// existing store and opens the store itself only when the copy opened without
    /// damage. Default `true`.
    ///
    /// sled's recovery takes the first damaged message of its log for the torn tail of a
    /// crash and erases the log after it while it opens, before this crate can compare
    /// the store with its mark file and refuse it. With this on, that happens to a copy
    /// (made under `$TMPDIR`, and removed at once), and a damaged store is refused
    /// untouched. It costs a copy of the store's files and a second open on every open;
    /// turn it off only for stores too large to copy, accepting that opening a damaged
    /// one may erase data.
    pub check_copy_first: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            flush_every_ms: None,
            cache_capacity: 1024 * 1024 * 1024,
            high_throughput: false,
            max_pending_bytes: 16 * 1024 * 1024,
            check_copy_first: true,
        }
    }
}

impl SledOptions {
    /// The sled configuration, once the settings are checked (sled panics on a cache
    /// under 256 bytes, and spins on a flush interval of 0).
    pub(crate) fn config(&self, dir: &std::path::Path) -> Result<sled::Config> {
        if self.cache_capacity < 256 {
            return Err(Error::InvalidInput {
                what: "cache_capacity",
                reason: format!(
                    "{} bytes is less than sled's minimum of 256",
                    self.cache_capacity
                ),
            });
        }
        if self.flush_every_ms == Some(0) {
            return Err(Error::InvalidInput {
                what: "flush_every_ms",
                reason: "0 ms would make sled's flusher spin; use None to turn it off".into(),
            });
        }
        Ok(sled::Config::new()
            .path(dir)
            .flush_every_ms(self.flush_every_ms)
            .cache_capacity(self.cache_capacity)
            .mode(if self.high_throughput {
                sled::Mode::HighThroughput
            } else {
                sled::Mode::LowSpace
            }))
    }
}
