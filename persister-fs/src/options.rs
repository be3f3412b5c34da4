//! Options of an fs store.

use persister_core::{Error, Result};

/// How an [`FsStore`](crate::FsStore) reclaims space, and whether opening it migrates
/// its format.
///
/// A log only grows: an overwritten or removed value, or a superseded document, stays
/// in it as dead bytes. When a flush finds that the dead bytes have reached
/// `rewrite_dead_share` of a log of at least `rewrite_min_len` bytes, it writes the
/// live state into a new log instead of appending (a temporary file, `fdatasync`,
/// rename, directory sync), so a log stays within about `1 / (1 - share)` times its
/// live size. Dead bytes are every byte a rewrite would not write: superseded keys and
/// values and the framing of records.
///
/// ```
/// let options = persister_fs::FsOptions::default()
///     .with_rewrite_dead_share(0.75)
///     .with_rewrite_min_len(64 * 1024);
/// assert_eq!(options.rewrite_dead_share, 0.75);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FsOptions {
    /// The share of dead bytes, in `(0, 1]`, at which a flush rewrites a log. Default
    /// 0.5.
    pub rewrite_dead_share: f64,
    /// Logs smaller than this many bytes are never rewritten. Default 1 MiB.
    pub rewrite_min_len: u64,
    /// Whether a writable open makes a store of format version 2 version 3. Default
    /// `false`: the store is read and written as version 2, its new logs too (log format
    /// version 2, without the key), and stays readable by the builds that wrote it.
    ///
    /// With it, [`FsStore::open_with`](crate::FsStore::open_with) rewrites the store's
    /// marker (crash-safely); from then on its new and rewritten logs are of log format
    /// version 3, whose records carry the log's key, so that a stored value laid out as
    /// a record cannot make a crash read as damage (see [`format`](mod@crate::format)).
    /// Its logs of version 2 are read and appended to as they are until rewritten. A
    /// build of store format 2 then refuses the store with
    /// [`Error::UnsupportedFormat`]: close every process of an older build first.
    pub migrate_format: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            rewrite_dead_share: 0.5,
            rewrite_min_len: 1 << 20,
            migrate_format: false,
        }
    }
}

impl FsOptions {
    /// Sets [`rewrite_dead_share`](FsOptions::rewrite_dead_share).
    pub fn with_rewrite_dead_share(mut self, share: f64) -> Self {
        self.rewrite_dead_share = share;
        self
    }

    /// Sets [`rewrite_min_len`](FsOptions::rewrite_min_len).
    pub fn with_rewrite_min_len(mut self, len: u64) -> Self {
        self.rewrite_min_len = len;
        self
    }

    /// Sets [`migrate_format`](FsOptions::migrate_format).
    pub fn with_migrate_format(mut self, migrate: bool) -> Self {
        self.migrate_format = migrate;
        self
    }

    /// Checks that the share is in `(0, 1]`.
    pub(crate) fn validate(&self) -> Result<()> {
        let share = self.rewrite_dead_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(Error::InvalidInput {
                what: "fs options",
                reason: format!(
                    "rewrite_dead_share is {share}, but it must be above 0 and at most 1"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_must_be_in_the_unit_interval() {
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            let options = FsOptions::default().with_rewrite_dead_share(bad);
            assert!(
                matches!(options.validate(), Err(Error::InvalidInput { .. })),
                "{bad}"
            );
        }
        for good in [0.01, 0.5, 1.0] {
            assert!(
                FsOptions::default()
                    .with_rewrite_dead_share(good)
                    .validate()
                    .is_ok()
            );
        }
    }
}
