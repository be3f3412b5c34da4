//! How a store is opened.

use std::time::Duration;

/// Options for [`PostgresStore::open_with`](crate::PostgresStore::open_with).
///
/// ```
/// use std::time::Duration;
/// use persister_postgres::PostgresOptions;
///
/// let options = PostgresOptions::default()
///     .schema("notes")
///     .lease_duration(Duration::from_secs(60))
///     .max_connections(4);
/// assert_eq!(options.schema, "notes");
/// assert_eq!(options.lease_renewal, Duration::from_secs(20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema holding the store's tables; created when missing. Default
    /// `"persister"`. Several stores can share a database under different schemas.
    ///
    /// A name is 1 to 63 characters, each a lowercase ASCII letter, a digit or `_`, not
    /// starting with a digit: it is the one identifier written into SQL text, so it is
    /// checked rather than quoted.
    pub schema: String,

    /// How long a document's lease lasts after it is taken or renewed. Default 30 s.
    ///
    /// A handle holds its document through a lease row; another process can take the
    /// document only once the lease has expired (by the server's clock). A handle whose
    /// lease expired can never write again, even if no one took the document: reopen the
    /// document to continue. Shorter leases let another process take over sooner after a
    /// holder dies; longer ones tolerate longer pauses (garbage collection, a stopped
    /// process, a slow network) of a live holder.
    ///
    /// At least 1 ms and at most [`MAX_LEASE`](PostgresOptions::MAX_LEASE):
    /// [`open_with`](crate::PostgresStore::open_with) refuses another with
    /// [`Error::InvalidInput`](persister_core::Error::InvalidInput) (a lease of no time
    /// would be over before its first flush, one longer than the server's dates reach
    /// could not be taken).
    pub lease_duration: Duration,

    /// How old a lease may be before a write renews it. Default a third of the lease
    /// duration (set again by [`lease_duration`](PostgresOptions::lease_duration)).
    ///
    /// Every flush renews the lease in its own transaction. An
    /// [`apply`](persister_core::Persister::apply) renews it (one round trip) when it
    /// was last renewed longer ago than this, so a handle that keeps writing keeps its
    /// document however rarely it flushes. A handle that neither writes nor flushes for
    /// a whole lease duration loses it: call
    /// [`PostgresPersister::renew_lease`](crate::PostgresPersister::renew_lease) from
    /// a timer to keep an idle document.
    pub lease_renewal: Duration,

    /// The most connections the store opens to the server; an operation that finds
    /// them all busy waits for one. Default 8.
    pub max_connections: usize,

    /// The most group commits that run at once, each on a connection of its own.
    /// Default 2; at most [`max_connections`](PostgresOptions::max_connections).
    ///
    /// Concurrent flushes of different handles share commits (see [group
    /// commit](crate#group-commit)). With 1, flushes that arrive while a group commits
    /// wait for it to end; with 2, a second group starts beside the running one once as
    /// many flushes wait as the running one carries, so that one group's statement runs
    /// while the other's commit waits for the server's WAL sync. More split the same
    /// flushes into smaller groups; 2 carried the most flushes per second in the
    /// benchmark (`BENCHMARKS.md`, row 8).
    pub concurrent_commits: usize,

    /// How long connecting to the server may take. Default 10 s; more than zero, or
    /// [`open_with`](crate::PostgresStore::open_with) refuses it with
    /// [`Error::InvalidInput`](persister_core::Error::InvalidInput) (no connection could
    /// be made, nor an idle one checked, in no time), even when the URL sets its own
    /// `connect_timeout`, which takes its place.
    pub connect_timeout: Duration,

    /// How long a TCP connection to the server may stay silent before it counts as
    /// lost. Default 30 s.
    ///
    /// A network partition, or a server machine gone without closing its connections,
    /// would otherwise leave a flush or a read waiting for as long as the operating
    /// system keeps the connection (15 minutes with data unacknowledged, over 2 hours
    /// idle, on Linux). The store sets `TCP_USER_TIMEOUT` to this (data sent but not
    /// acknowledged) and TCP keepalive (the first probe after half of it idle, then
    /// three more, one every sixth): the connection is then lost, a flush in flight is
    /// an unknown outcome (its handle poisoned), and a read is tried again on a new
    /// connection. The server's kernel answers the probes however long a statement
    /// runs, so this bounds no statement. Applies to TCP connections only; a URL that
    /// sets `tcp_user_timeout` keeps its own for that, and one that sets any of
    /// `keepalives`, `keepalives_idle`, `keepalives_interval`, `keepalives_retries`
    /// keeps its own keepalive settings. Counted in whole seconds, at least 2 (the
    /// probes' interval is then 1 s, the kernel's least).
    pub network_timeout: Duration,

    /// Whether opening creates the schema and its tables when they are missing.
    /// Default `true`; with `false`, opening a schema that holds no store fails with
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) and creates nothing (for
    /// tools that only look).
    pub create_if_missing: bool,

    /// Whether opening migrates a store of an older format version in place. Default
    /// `false`: such a store is refused with
    /// [`Error::MigrationNeeded`](persister_core::Error::MigrationNeeded) and nothing is
    /// changed. Stop every process of an older build first: the migration makes their
    /// flushes and opens fail (see the crate docs, *Tables*).
    pub migrate_format: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            schema: "persister".to_string(),
            lease_duration: lease,
            lease_renewal: lease / 3,
            max_connections: 8,
            concurrent_commits: 2,
            connect_timeout: Duration::from_secs(10),
            network_timeout: Duration::from_secs(30),
            create_if_missing: true,
            migrate_format: false,
        }
    }
}

impl PostgresOptions {
    /// The longest [`lease_duration`](PostgresOptions::lease_duration): 100 years,
    /// far inside the dates the server's `timestamptz` holds.
    pub const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

    /// Refuses options no store can work with, naming the option.
    pub(crate) fn check(&self) -> persister_core::Result<()> {
        let invalid = |reason: String| persister_core::Error::InvalidInput {
            what: "PostgresOptions",
            reason,
        };
        if self.lease_duration < Duration::from_millis(1) || self.lease_duration > Self::MAX_LEASE {
            return Err(invalid(format!(
                "lease_duration is {:?}: give at least 1 ms and at most {} days (a lease of no time ends before its first flush, and every flush of its handle would fail as if the lease were lost)",
                self.lease_duration,
                Self::MAX_LEASE.as_secs() / 86_400
            )));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid(
                "connect_timeout is 0: give more than zero (no connection can be made in no time)"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Sets [`PostgresOptions::schema`].
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`PostgresOptions::lease_duration`], and the renewal age to a third of it.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self.lease_renewal = duration / 3;
        self
    }

    /// Sets [`PostgresOptions::lease_renewal`].
    pub fn lease_renewal(mut self, age: Duration) -> Self {
        self.lease_renewal = age;
        self
    }

    /// Sets [`PostgresOptions::max_connections`] (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`PostgresOptions::concurrent_commits`] (at least 1; more than
    /// [`max_connections`](PostgresOptions::max_connections) run as that many).
    pub fn concurrent_commits(mut self, commits: usize) -> Self {
        self.concurrent_commits = commits.max(1);
        self
    }

    /// Sets [`PostgresOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`PostgresOptions::network_timeout`].
    pub fn network_timeout(mut self, timeout: Duration) -> Self {
        self.network_timeout = timeout;
        self
    }

    /// Sets [`PostgresOptions::create_if_missing`].
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Sets [`PostgresOptions::migrate_format`].
    pub fn migrate_format(mut self, migrate: bool) -> Self {
        self.migrate_format = migrate;
        self
    }
}
