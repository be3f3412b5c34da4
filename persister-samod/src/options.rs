//! What an application chooses, and what it is told: options, events and health.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use persister_core::{DocumentId, Error};
use samod::storage::StorageKey;

/// The longest wait [`Options::backoff`] and [`Options::max_handle_age`] take: a day. A
/// longer one would be a store never retried, and could overflow the clock's arithmetic.
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 60 * 60);

/// [`Options::max_handle_age`] by default: a third of `persister-postgres`'s default
/// lease, so a handle never outlives the lease it took.
const DEFAULT_MAX_HANDLE_AGE: Duration = Duration::from_secs(10);

/// What the storage does when the store stays unusable: writes keep failing, or a read
/// keeps finding damage.
///
/// The samod storage trait returns no errors, so the storage cannot report a failure to
/// the operation that met it. It never reports one as success (an absent key, a short
/// range, a completed put): the operation waits and is retried, and every failure goes
/// to the [hook](Options::on_event) and to [`health`](crate::SamodStorage::health).
/// This option decides how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenUnusable {
    /// Keep retrying, with a backoff that doubles from [`Options::backoff`] up to its
    /// maximum (the default).
    ///
    /// Chosen as the default because it loses nothing: every write not yet durable stays
    /// queued in memory and is written as soon as the store works again (a full disk
    /// freed, a network volume back), and samod carries on meanwhile. The application
    /// watches [`health`](crate::SamodStorage::health) or the hook to alert, or to stop
    /// taking edits.
    KeepRetrying,
    /// After this many failed attempts in a row on one document (or on opening the
    /// store), print what failed and why to standard error and end the process with
    /// exit code [`EXIT_CODE`](crate::EXIT_CODE). An operation that can never succeed
    /// ([`Event::Refused`]) ends the process at once, since no retry can store it, and
    /// so does a panic that ends the storage's worker thread (the hook's, say), since
    /// no operation completes after it.
    ///
    /// For services run by a supervisor that restarts them: a restart reopens the
    /// store, and a process that cannot store anything stops answering instead of
    /// hanging. Writes not yet acknowledged are lost with the process, as in any crash;
    /// nothing acknowledged is.
    Exit {
        /// Failed attempts in a row before exiting (at least 1).
        after_failures: u32,
    },
}

/// One thing the storage reports to the [hook](Options::on_event).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An operation failed; it stays queued and is retried after `retry_in`.
    Failed {
        /// The store's document the operation was on (`"/"` for the store itself).
        document: &'a DocumentId,
        /// What was being done: `"open"`, `"read"`, `"write"` or `"flush"`.
        action: &'static str,
        /// The store's error.
        error: &'a Error,
        /// Failed attempts in a row, this one included.
        attempt: u32,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// An operation can never succeed (a key or value over the store's limits). Its
    /// future never completes; the operations after it go on, unless the storage was
    /// told to end the process ([`WhenUnusable::Exit`]), which it then does. samod's
    /// `Repo::stop` waits for every storage future, so it then waits for ever; and a
    /// refused snapshot (a document whose saved form is over 256 MiB) is tried again
    /// by the next compaction samod starts, which under `Exit` ends the process again
    /// after each restart. The changes stay stored either way.
    Refused {
        /// The key.
        key: &'a StorageKey,
        /// Why.
        error: &'a Error,
    },
    /// A document that had failed works again.
    Recovered {
        /// The document.
        document: &'a DocumentId,
        /// Failed attempts before this success.
        after: u32,
    },
    /// A put or delete is durable; its future completes now.
    Durable {
        /// The key written or deleted.
        key: &'a StorageKey,
        /// Whether it was a delete.
        deleted: bool,
    },
}

/// A function told of every [`Event`], on the storage's worker thread: keep it short.
pub type Hook = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// How a [`SamodStorage`](crate::SamodStorage) behaves.
#[derive(Clone)]
pub struct Options {
    pub(crate) when_unusable: WhenUnusable,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_open_documents: usize,
    pub(crate) max_handle_age: Duration,
    pub(crate) hook: Option<Hook>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            when_unusable: WhenUnusable::KeepRetrying,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
            max_open_documents: 256,
            max_handle_age: DEFAULT_MAX_HANDLE_AGE,
            hook: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("when_unusable", &self.when_unusable)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_open_documents", &self.max_open_documents)
            .field("max_handle_age", &self.max_handle_age)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Options {
    /// The defaults: keep retrying, backoff from 10 ms to 5 s, 256 open documents, each
    /// closed after 10 s without a write.
    pub fn new() -> Self {
        Self::default()
    }

    /// What happens when the store stays unusable.
    pub fn when_unusable(mut self, choice: WhenUnusable) -> Self {
        self.when_unusable = choice;
        self
    }

    /// The wait before the first retry, and the most it grows to. Waits longer than a
    /// day are taken as a day.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first.min(MAX_BACKOFF);
        self.max_backoff = max.min(MAX_BACKOFF).max(self.backoff);
        self
    }

    /// How many documents' handles stay open between operations (at least 1). Fewer
    /// keeps fewer files open on the fs backend; more saves reopening.
    pub fn max_open_documents(mut self, count: usize) -> Self {
        self.max_open_documents = count.max(1);
        self
    }

    /// How long a document's handle stays open, at most, without flushing a write once
    /// its document has nothing queued: it is closed when this long has passed since it
    /// was opened or last flushed, and opened again by the next operation. A document
    /// written at least this often keeps its handle. Waits longer than a day are taken
    /// as a day.
    ///
    /// A store that leases documents to one handle at a time (`persister-postgres`,
    /// whose leases last 30 s unless configured otherwise) takes the lease back from a
    /// handle kept longer than the lease without a write, and the next write through it
    /// fails: keep this below the store's lease duration. Closing a handle also
    /// releases its document for other processes. It applies to every store: on a local
    /// one (redb, fs, sled), where a document opened again is read again, raise it (up
    /// to a day) when documents sit idle between bursts of writes and are slow to open.
    pub fn max_handle_age(mut self, age: Duration) -> Self {
        self.max_handle_age = age.min(MAX_BACKOFF);
        self
    }

    /// Calls `hook` with every [`Event`].
    pub fn on_event(mut self, hook: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }
}

/// What [`SamodStorage::health`](crate::SamodStorage::health) reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Documents whose last attempt failed (the store itself counts as `"/"`).
    pub failing: Vec<DocumentId>,
    /// The most recent error, as its message.
    pub last_error: Option<String>,
    /// Failed attempts since the storage started.
    pub failures: u64,
    /// Operations refused for good (see [`Event::Refused`]).
    pub refused: u64,
    /// Whether the storage was closed.
    pub closed: bool,
}

impl Health {
    /// Whether every document works and nothing was refused.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_empty() && self.refused == 0 && !self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait too long for the clock (`Duration::MAX` added to `Instant::now()` panics)
    /// is taken as a day, and the most stays at least the first.
    #[test]
    fn backoffs_are_at_most_a_day() {
        let options = Options::new().backoff(Duration::MAX, Duration::MAX);
        assert_eq!(
            (options.backoff, options.max_backoff),
            (MAX_BACKOFF, MAX_BACKOFF)
        );
        assert!(std::time::Instant::now().checked_add(MAX_BACKOFF).is_some());
        let options = Options::new().backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(options.max_backoff, Duration::from_secs(2));
        let options = Options::new().max_handle_age(Duration::MAX);
        assert_eq!(options.max_handle_age, MAX_BACKOFF);
    }
}
