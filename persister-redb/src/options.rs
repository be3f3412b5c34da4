//! How a store is opened.

/// Options for [`RedbStore::open_with`](crate::RedbStore::open_with).
///
/// ```
/// use persister_redb::RedbOptions;
///
/// let options = RedbOptions::default()
///     .verify_on_open(true)
///     .cache_size(64 * 1024 * 1024)
///     .max_pending_bytes(8 * 1024 * 1024);
/// assert_eq!(options.cache_size, 64 * 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedbOptions {
    /// Whether opening verifies the checksum of every page of the file (redb's
    /// integrity check) before trusting it. Default `true`.
    ///
    /// With it, a file damaged outside redb fails to open with
    /// [`Error::Corrupt`](persister_core::Error::Corrupt); without it, opening is faster
    /// on large files, but reading a damaged page may return wrong data or panic inside
    /// redb. Turn it off only for files you trust, such as one this process wrote
    /// moments ago.
    ///
    /// The check is redb's repair, which ends in a commit. A file redb closed cleanly is
    /// checked with the check's writes kept in memory, through a cache of at most 4 MiB
    /// (so it does not fill the store's cache), then opened without it: one sync, as an
    /// open without verifying makes. A file a crash left is checked and repaired in
    /// place, with redb's few syncs, through a cache of at most 4 MiB when it is
    /// larger than that. Either way the check reads every page once.
    pub verify_on_open: bool,

    /// The most memory redb's page cache may use, in bytes. Default 1 GiB (redb's
    /// default); memory is taken only as pages are read.
    pub cache_size: usize,

    /// The most payload bytes (keys and values) a handle holds before it flushes them
    /// itself, which bounds its memory: those writes are then durable, and dropping the
    /// handle no longer discards them; a larger single batch is held whole. Default
    /// 16 MiB.
    pub max_pending_bytes: usize,

    /// How long the [commit log](crate#the-commit-log) may grow, in bytes, before a
    /// commit checkpoints it: one durable redb commit writes what it holds into the file
    /// and the log starts again empty. A larger log makes checkpoints rarer and a
    /// reopen after a crash longer (it replays the log). Default 8 MiB.
    pub checkpoint_log_bytes: u64,

    /// Whether a writable open makes a store of layout 2 (whose commit log's records
    /// carry no key) layout 3. Default `false`: the store is read and written as layout
    /// 2, with log format version 1, and stays readable by the builds that wrote it.
    ///
    /// With it, [`RedbStore::open_with`](crate::RedbStore::open_with) replays the log
    /// if the store was not closed cleanly, then rewrites the `"log"` entry and the
    /// `format_version` in one durable commit; from then on its logs' records carry a
    /// key, so that a stored value laid out as a record cannot make a crash read as
    /// damage (see [The commit log](crate#the-commit-log)). A build of layout 2 then
    /// refuses the store with
    /// [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat): close
    /// every process of an older build first. Stores of layout 1 and 3 are not changed.
    pub migrate_format: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            verify_on_open: true,
            cache_size: 1024 * 1024 * 1024,
            max_pending_bytes: 16 * 1024 * 1024,
            checkpoint_log_bytes: 8 * 1024 * 1024,
            migrate_format: false,
        }
    }
}

impl RedbOptions {
    /// Sets [`RedbOptions::verify_on_open`].
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Sets [`RedbOptions::cache_size`].
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Sets [`RedbOptions::max_pending_bytes`].
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }

    /// Sets [`RedbOptions::checkpoint_log_bytes`].
    pub fn checkpoint_log_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_log_bytes = bytes;
        self
    }

    /// Sets [`RedbOptions::migrate_format`].
    pub fn migrate_format(mut self, migrate: bool) -> Self {
        self.migrate_format = migrate;
        self
    }
}
