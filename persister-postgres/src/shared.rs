//! What a store and all its handles share: where the server is, the statements, the
//! connections, and the documents open in this store.

use std::path::PathBuf;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persister_core::{DocumentId, Error, OpenDocuments, Result};

use crate::PostgresOptions;
use crate::error::{from_pg, is_connection_lost, is_retryable};
use crate::group::Committer;
use crate::location::Location;
use crate::pool::{Conn, Pool};
use crate::sql::{FORMAT_NAME, FORMAT_VERSION, Q, Sql};

/// What a format error calls a store of this backend.
const SCHEMA: &str = "persister-postgres schema";

/// How many times a statement the server rolled back for a conflict (40001, 40P01) is
/// run again before the error is returned.
const CONFLICT_RETRIES: u32 = 8;

#[derive(Debug)]
pub(crate) struct Shared {
    pub location: Location,
    pub sql: Sql,
    pub options: PostgresOptions,
    pub pool: Pool,
    pub open: OpenDocuments,
    /// The queue of flushes waiting to share a commit (see `group.rs`).
    pub committer: Committer,
    /// Written into the lease rows this store takes, and shown to whoever finds a
    /// document locked: `pid N on HOST (instance T)`, see [`this_holder`].
    pub holder: String,
    /// The place of the store in messages: the URL without password, and the schema.
    pub place: String,
    /// The first failure that poisoned a handle of the store (a failed flush, a lost
    /// lease), which [`close`](crate::PostgresStore::close) reports.
    failed: Mutex<Option<String>>,
    #[cfg(feature = "fault-injection")]
    pub fail_next_flush: AtomicBool,
    /// The payload bytes a flush statement carries at most, when a test set it lower
    /// than `STATEMENT_BYTES` (0: not set).
    #[cfg(feature = "fault-injection")]
    pub statement_bytes: std::sync::atomic::AtomicUsize,
}

impl Shared {
    pub fn new(location: Location, options: PostgresOptions) -> Self {
        let sql = Sql::new(&options.schema);
        let place = format!("{} schema {}", location.description, options.schema);
        let commits = options.concurrent_commits.min(options.max_connections);
        Self {
            pool: Pool::new(options.max_connections),
            holder: this_holder(),
            location,
            sql,
            options,
            open: OpenDocuments::new(),
            committer: Committer::with_leaders(commits),
            place,
            failed: Mutex::default(),
            #[cfg(feature = "fault-injection")]
            fail_next_flush: AtomicBool::new(false),
            #[cfg(feature = "fault-injection")]
            statement_bytes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Notes that a handle of document `id` was poisoned for `reason`: the store's
    /// close reports the first such failure.
    pub fn note_failed(&self, id: &DocumentId, reason: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.get_or_insert_with(|| format!("document {id}: {reason}"));
    }

    /// The first failure noted by [`note_failed`](Self::note_failed), as the error a
    /// checked close reports.
    pub fn check_not_failed(&self) -> Result<()> {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        match &*failed {
            Some(reason) => Err(Error::Poisoned {
                reason: format!("a handle of the store at {} failed, {reason}", self.place),
            }),
            None => Ok(()),
        }
    }

    /// The place of document `id` in messages.
    pub fn document_place(&self, id: &DocumentId) -> String {
        format!("{}, document {id}", self.place)
    }

    /// The lease duration in milliseconds, as the statements take it.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.options.lease_duration.as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs `f` on a connection of the pool. A statement the server rolled back for a
    /// conflict is run again; with `reconnect`, so is one whose connection was lost,
    /// once, on a new connection (only for statements whose repetition is harmless).
    pub fn run<T>(
        &self,
        reconnect: bool,
        mut f: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> Result<std::result::Result<T, postgres::Error>> {
        let mut conflicts = 0;
        let mut reconnected = false;
        loop {
            let mut conn = self.pool.get(&self.location)?;
            match f(&mut conn) {
                Ok(value) => return Ok(Ok(value)),
                Err(err) if is_retryable(&err) && conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    // Let the other transaction finish before trying again.
                    std::thread::sleep(Duration::from_millis(1 << conflicts.min(6)));
                }
                Err(err) if is_connection_lost(&err) => {
                    conn.discard();
                    self.pool.discard_idle();
                    if !reconnect || reconnected {
                        return Ok(Err(err));
                    }
                    reconnected = true;
                }
                Err(err) => return Ok(Err(err)),
            }
        }
    }

    /// [`Shared::run`] for reads, with the error named after `action` at `place`.
    pub fn read<T>(
        &self,
        action: &str,
        place: &str,
        f: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        self.run(true, f)?
            .map_err(|err| from_pg(&err, action, place, &self.location.secret))
    }

    /// The error of a failed statement doing `action` at `place`.
    pub fn error(&self, err: &postgres::Error, action: &str, place: &str) -> Error {
        from_pg(err, action, place, &self.location.secret)
    }

    /// `Locked` for document `id`, saying who holds it and for how long, when known.
    pub fn locked(&self, conn: &mut Conn, id: &DocumentId) -> Error {
        let place = self.document_place(id);
        let held = conn
            .query(&self.sql, Q::LeaseHolder, &[&id.as_bytes()])
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| {
                Some((
                    row.try_get::<_, String>(0).ok()?,
                    row.try_get::<_, f64>(1).ok()?,
                ))
            });
        let by = match held {
            Some((holder, left)) => format!(" (leased by {holder}, {left:.1} s left)"),
            None => String::new(),
        };
        Error::Locked {
            path: PathBuf::from(format!("{place}{by}")),
        }
    }

    /// Creates the schema's tables when they are missing, checks the format version of
    /// an existing one, and migrates one of version 1 to this build's when the options
    /// ask for it.
    pub fn prepare_schema(&self) -> Result<()> {
        let mut found = self.format_version()?;
        if found == 1 {
            if !self.options.migrate_format {
                return Err(Error::MigrationNeeded {
                    what: SCHEMA,
                    path: PathBuf::from(&self.place),
                    found,
                    supported: FORMAT_VERSION,
                    how: "stop every process of an older build, then open the store once with PostgresOptions::migrate_format(true), or with migrate_format=true added to its URL",
                });
            }
            self.migrate()?;
            found = self.format_version()?;
        }
        if found == FORMAT_VERSION {
            Ok(())
        } else {
            Err(Error::UnsupportedFormat {
                what: SCHEMA,
                path: PathBuf::from(&self.place),
                found,
                supported: FORMAT_VERSION,
            })
        }
    }

    /// Migrates a store of format version 1 in place (see `MIGRATE_1_TO_2` in `sql.rs`);
    /// a store another process migrated meanwhile is left as it is.
    fn migrate(&self) -> Result<()> {
        let place = &self.place;
        let migrated = self.run(false, |conn| {
            conn.client().batch_execute(self.sql.migrate())
        })?;
        migrated.map_err(|err| self.error(&err, "migrate to format version 2", place))
    }

    /// Creates the schema's tables when they are missing, and returns the format
    /// version of the store.
    fn format_version(&self) -> Result<u32> {
        let place = &self.place;
        let schema = self.sql.schema();
        let mut tables = self.read("read the tables of", place, |conn| {
            let rows = conn.client().query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&schema],
            )?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<std::result::Result<Vec<_>, _>>()
        })?;
        if !tables.iter().any(|t| t == "meta") {
            let ours = ["documents", "changes", "sync_states", "leases"];
            if tables.iter().any(|t| ours.contains(&t.as_str())) {
                return Err(self.not_a_store());
            }
            if !self.options.create_if_missing {
                return Err(Error::NotAStore {
                    what: "a persister-postgres store (the schema has none of its tables)",
                    path: PathBuf::from(&self.place),
                });
            }
            // Two processes may create the schema at once: the loser of the race sees a
            // duplicate-object error and finds the tables made by the winner.
            let created = self.run(false, |conn| {
                let created = conn.client().batch_execute(self.sql.create());
                if created.is_err() {
                    // Leaves no failed transaction open on a connection going back to the pool.
                    let _ = conn.client().batch_execute("ROLLBACK");
                }
                created
            })?;
            if let Err(err) = created {
                let duplicate = matches!(
                    err.code().map(|c| c.code()),
                    Some("23505" | "42P06" | "42P07" | "42710")
                );
                if !duplicate {
                    return Err(self.error(&err, "create the tables of", place));
                }
            }
            tables.push("meta".into());
        }
        let meta = self.read("read the format of", place, |conn| {
            let rows = conn.query(&self.sql, Q::Meta, &[])?;
            rows.iter()
                .map(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?)))
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
        })?;
        let value = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if value("format") != Some(FORMAT_NAME) {
            return Err(self.not_a_store());
        }
        let version = value("format_version").ok_or_else(|| self.not_a_store())?;
        version.parse::<u32>().map_err(|_| {
            Error::corrupt(
                format!(
                    "the format record's format_version is {version:?}, a version this build (format version {FORMAT_VERSION}) does not know"
                ),
                &self.place,
                None,
            )
        })
    }

    fn not_a_store(&self) -> Error {
        Error::NotAStore {
            what: "a persister-postgres store (its tables exist, but not its format record)",
            path: PathBuf::from(&self.place),
        }
    }
}

/// How this process names itself in the lease rows it writes: `pid N on HOST
/// (instance T)`, T the time this process first named itself (seconds and nanoseconds
/// since 1970), so that another process with the same id and host name (the first
/// process of two containers sharing a host name, say) is never taken for this one.
pub(crate) fn this_holder() -> String {
    static HOLDER: Mutex<Option<(u32, String)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    match &*holder {
        // A forked child has a pid of its own, so names itself anew.
        Some((named, name)) if *named == pid => name.clone(),
        _ => {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let name = format!(
                "pid {pid} on {} (instance {}.{:09})",
                hostname(),
                since.as_secs(),
                since.subsec_nanos()
            );
            *holder = Some((pid, name.clone()));
            name
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".to_string())
}
