//! The store: one schema of one database.

use std::sync::Arc;
use std::time::Instant;

use persister_core::{DocumentId, Persister, Result, Store};

use crate::location::{Location, driver_url};
use crate::shared::Shared;
use crate::sql::{Q, check_schema_name};
use crate::{PostgresOptions, PostgresPersister};

/// Every document of one schema of a PostgreSQL database.
///
/// Many stores, in many processes on many machines, may open the same schema at once
/// and serve different documents: each document is held by one handle at a time through
/// a lease (see the [crate docs](crate#one-writer-per-document-leases-and-fencing)).
/// A store is `Send + Sync`; share it (by reference or in an `Arc`) to serve documents
/// from several threads. Clones share the connections, like an `Arc`.
///
/// Dropping a store closes its idle connections; [`PostgresStore::close`] does the same
/// and reports an error.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

impl PostgresStore {
    /// Opens the store at `url` with the default [`PostgresOptions`] (schema
    /// `persister`), creating its tables when they are missing.
    ///
    /// `url` is a `postgres://user[:password]@host[:port]/database[?options]` URL or a
    /// `key=value` connection string, as the `postgres` crate (and libpq) accept them:
    /// `host=/var/run/postgresql` for a Unix socket, `sslmode=require` for TLS (with the
    /// `tls` feature), and `schema=NAME` for the schema (see the crate docs, *Opening*,
    /// for every option).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](persister_core::Error::InvalidInput) for a malformed URL
    /// (an option given twice, an unknown option or a bad value, each named), schema
    /// name or option (a [`lease_duration`](PostgresOptions::lease_duration) or
    /// [`connect_timeout`](PostgresOptions::connect_timeout) out of its range),
    /// [`Error::Backend`](persister_core::Error::Backend) when the
    /// server cannot be reached or refuses the login,
    /// [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat) for a
    /// schema of another layout version,
    /// [`Error::MigrationNeeded`](persister_core::Error::MigrationNeeded) for one of
    /// layout version 1 opened without
    /// [`PostgresOptions::migrate_format`](crate::PostgresOptions::migrate_format), and
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) for a schema holding
    /// other tables of the same names. No message holds the password.
    pub fn open(url: &str) -> Result<PostgresStore> {
        Self::open_with(url, PostgresOptions::default())
    }

    /// Opens the store at `url` with `options`.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::open`].
    ///
    /// A `schema` option in the URL (`?schema=notes`, or `schema=notes` in a
    /// connection string) overrides [`PostgresOptions::schema`], and a
    /// `migrate_format` option (`true` or `false`) overrides
    /// [`PostgresOptions::migrate_format`]: the way to migrate a store from the command
    /// line.
    pub fn open_with(url: &str, mut options: PostgresOptions) -> Result<PostgresStore> {
        if let Some(schema) = crate::schema_in(url)? {
            options.schema = schema;
        }
        if let Some(migrate) = crate::migrate_format_in(url)? {
            options.migrate_format = migrate;
        }
        let url = driver_url(url)?;
        let url = url.as_str();
        check_schema_name(&options.schema)?;
        options.check()?;
        let location = Location::parse(url, options.connect_timeout, options.network_timeout)?;
        let shared = Shared::new(location, options);
        shared.prepare_schema()?;
        Ok(PostgresStore {
            shared: Arc::new(shared),
        })
    }

    /// Moves the store at `url` (its schema, as [`PostgresStore::open`] reads it) to the
    /// schema `to` of the same database, in one transaction: every other session sees
    /// the store at its old place or whole at its new one, never part of it. This is
    /// how a new store is built out of sight and then put in place (the `persister`
    /// command's `copy` and `import` build theirs in a temporary schema).
    ///
    /// `to` must not exist (the schema is then renamed, which needs the right to create
    /// schemas in the database), or be a schema without tables, views or sequences, or
    /// hold a store without documents (opened but never written, whose tables are
    /// dropped, with whatever was granted or defined on them): the tables then move
    /// into it, and it keeps its owner and privileges. The tables keep theirs, those
    /// of the role that built them: default privileges defined for the destination
    /// schema (`ALTER DEFAULT PRIVILEGES IN SCHEMA`) apply to tables created there,
    /// not to tables moved in, so grant what other roles need afterwards.
    /// No document of either store may be open (a lease that has not expired): close
    /// every handle first. Each lock is waited for at most 10 s.
    ///
    /// ```
    /// use persister_core::{Persister, Store};
    /// use persister_postgres::{PostgresStore, url_with_schema};
    ///
    /// # fn main() -> Result<(), persister_core::Error> {
    /// let Ok(url) = std::env::var("PERSISTER_POSTGRES_URL") else {
    ///     return Ok(()); // this example needs a server
    /// };
    /// let staging = url_with_schema(&url, "notes_new")?;
    /// let built = url_with_schema(&url, "notes")?;
    /// # let _ = PostgresStore::destroy(&staging);
    /// # let _ = PostgresStore::destroy(&built);
    /// let store = PostgresStore::open(&staging)?;
    /// let mut doc = store.open_document(&"todo".into())?;
    /// doc.set_document(b"buy milk".to_vec())?;
    /// doc.close()?; // flushes and releases the lease
    /// store.close()?;
    ///
    /// PostgresStore::rename(&staging, "notes")?;
    /// let store = PostgresStore::open(&built)?;
    /// assert_eq!(store.list_documents()?, vec!["todo".into()]);
    /// # drop(store);
    /// # PostgresStore::destroy(&built)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) when the schema of `url` holds no store (or other tables
    /// beside one's), [`Error::InvalidInput`](persister_core::Error::InvalidInput) for a malformed URL or schema name, the
    /// same schema, or a `to` that holds documents or anything but a store's tables,
    /// [`Error::Locked`](persister_core::Error::Locked) when a document of either store is open, and
    /// [`Error::Backend`](persister_core::Error::Backend) for the server's errors
    /// (a lock not granted in time, a role that may not rename the schema). On an
    /// error nothing was changed, unless the connection was lost while the transaction
    /// committed: then the store is either where it was or whole in `to`; or unless the
    /// server cancelled the commit's wait for its synchronous standbys (the error says
    /// so): then the store is whole in `to` on the server, perhaps not on the standbys.
    pub fn rename(url: &str, to: &str) -> Result<()> {
        crate::relocate::rename(url, to)
    }

    /// Drops the store at `url`: its five tables and its schema, in one transaction,
    /// and nothing else. A schema that does not exist is not an error (there is
    /// nothing to drop). Documents this process holds open do not stop it: their
    /// handles fail from then on, and nothing they held is stored. (A lease counts as
    /// this process's when its holder, `pid N on HOST (instance T)`, is this
    /// process's own, as every lease row names its holder.)
    ///
    /// # Errors
    ///
    /// [`Error::NotAStore`](persister_core::Error::NotAStore) when the schema holds anything else than a store's tables
    /// (it is left as it is: only a store is ever dropped), [`Error::Locked`](persister_core::Error::Locked) when
    /// another process has a document of the store open, [`Error::InvalidInput`](persister_core::Error::InvalidInput) for a malformed URL or
    /// schema name, and [`Error::Backend`](persister_core::Error::Backend) for the
    /// server's errors. On an error nothing was dropped (unless the connection was
    /// lost while the transaction committed: then all of it or nothing was; or unless
    /// the server cancelled the commit's wait for its synchronous standbys, as the error
    /// says: then all of it was, on the server, perhaps not on the standbys).
    pub fn destroy(url: &str) -> Result<()> {
        crate::relocate::destroy(url)
    }

    /// The store's URL without its password, and its schema, as messages name it.
    pub fn description(&self) -> &str {
        &self.shared.place
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.shared.options
    }

    /// Closes the store's idle connections and returns the first error. Handles still
    /// open keep working (on new connections); close them first for a checked
    /// shutdown.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](persister_core::Error::Backend) when closing a connection
    /// fails; [`Error::Poisoned`](persister_core::Error::Poisoned) when a handle of the
    /// store was poisoned since it was opened (a failed flush, a lost lease: writes the
    /// server may not hold), once the connections are closed.
    pub fn close(self) -> Result<()> {
        let closed = self.shared.pool.close_idle().map_err(|err| {
            self.shared
                .error(&err, "close the connections of", &self.shared.place)
        });
        closed.and(self.shared.check_not_failed())
    }

    /// Makes the next flush of any handle of this store fail as a connection lost
    /// while committing would: the flush's statement runs in a transaction whose
    /// connection is then closed, so the server rolls it back, and the handle is
    /// poisoned. For tests.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_flush(&self) {
        self.shared
            .fail_next_flush
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every flush statement carry at most `bytes` of payload (the writes of a
    /// handle holding more are split into several statements of one transaction, as
    /// they are past 64 MiB), so that tests cover the split with small writes.
    #[cfg(feature = "fault-injection")]
    pub fn set_statement_bytes(&self, bytes: usize) {
        self.shared
            .statement_bytes
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many handles' flushes wait for the commit running now to end, to share the
    /// next one (see the [crate docs](crate#group-commit)). For tests, which wait on it
    /// to make a group form.
    #[cfg(feature = "fault-injection")]
    pub fn waiting_flushes(&self) -> usize {
        self.shared.committer.waiting()
    }

    /// How many handles' flushes the store's commits have carried since it was opened
    /// (see the [crate docs](crate#group-commit)).
    pub fn group_commits(&self) -> persister_core::GroupCommits {
        self.shared.committer.counters()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The last store or handle closes the connections when it drops `Shared`; a
        // store dropped while handles live leaves them their connections.
        if Arc::strong_count(&self.shared) == 1 {
            let _ = self.shared.pool.close_idle();
        }
    }
}

impl Store for PostgresStore {
    type Persister = PostgresPersister;

    fn open_document(&self, id: &DocumentId) -> Result<PostgresPersister> {
        let claim = self.shared.open.claim(id)?;
        PostgresPersister::open(Arc::clone(&self.shared), claim)
    }

    /// Always [`FORMAT_VERSION`](crate::FORMAT_VERSION): a store of version 1 is
    /// refused, or migrated when the options ask for it, before it opens.
    fn format_version(&self) -> Option<u32> {
        Some(crate::FORMAT_VERSION)
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        let shared = &self.shared;
        shared.read("list the documents of", &shared.place, |conn| {
            let rows = conn.query(&shared.sql, Q::List, &[])?;
            rows.iter()
                .map(|row| Ok(DocumentId::from(row.try_get::<_, Vec<u8>>(0)?)))
                .collect()
        })
    }

    /// Commits the held writes of every handle of this store in `handles` in one
    /// transaction with one commit (and with whatever other flushes are running at the
    /// time, see the [crate docs](crate#group-commit)); handles of another store are
    /// flushed on their own. Each document's lease is checked as its own flush would
    /// check it: a handle whose lease was lost gets
    /// [`Error::LeaseLost`](persister_core::Error::LeaseLost) and the others commit. A
    /// failed commit poisons every handle it carried.
    fn flush_documents(&self, handles: &mut [&mut PostgresPersister]) -> Result<usize> {
        let started = Instant::now();
        let mut results = Vec::new();
        let mut carried = Vec::new();
        let mut jobs = Vec::new();
        for (index, handle) in handles.iter_mut().enumerate() {
            if !handle.is_of(&self.shared) {
                results.push(handle.flush());
                continue;
            }
            match handle.check_writable().map(|()| handle.take_job()) {
                Ok(Some(job)) => {
                    carried.push(index);
                    jobs.push(job);
                }
                Ok(None) => {}
                Err(err) => results.push(Err(err)),
            }
        }
        if !jobs.is_empty() {
            let outcomes = self.shared.commit_jobs(jobs);
            for (index, (job, outcome)) in carried.into_iter().zip(outcomes) {
                if let Some(handle) = handles.get_mut(index) {
                    results.push(handle.finish_job(job, outcome, started));
                }
            }
        }
        persister_core::sum_flushed(results)
    }

    fn close(self) -> Result<()> {
        self.shared.open.check_none_open()?;
        PostgresStore::close(self)
    }

    fn close_boxed(self: Box<Self>) -> Result<()> {
        Store::close(*self)
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        let _claim = self.shared.open.claim(id)?;
        let shared = &self.shared;
        let place = shared.document_place(id);
        let id_bytes = id.as_bytes();
        // A lost connection leaves the outcome unknown, but removing again is harmless.
        // Two statements in one transaction: the deletes run after the lease is taken,
        // with a snapshot of their own (see `REMOVE` in `sql.rs`).
        let removed = shared
            .run(true, |conn| {
                conn.take_unreplicated();
                conn.client()
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")?;
                let took = conn
                    .query(&shared.sql, Q::Remove, &[&id_bytes, &shared.holder])
                    .map(|rows| !rows.is_empty())
                    .and_then(|took| {
                        if took {
                            conn.query(&shared.sql, Q::RemoveData, &[&id_bytes])?;
                            conn.client().batch_execute("COMMIT")?;
                        } else {
                            conn.client().batch_execute("ROLLBACK")?;
                        }
                        Ok(took)
                    });
                match took {
                    // A failover to a synchronous standby may bring the document back.
                    Ok(true) if conn.take_unreplicated() => Ok(Some(crate::error::failed(
                        "remove",
                        &place,
                        crate::error::UNREPLICATED,
                    ))),
                    Ok(true) => Ok(None),
                    Ok(false) => Ok(Some(shared.locked(conn, id))),
                    Err(err) => {
                        if !crate::error::is_connection_lost(&err) {
                            // Leaves no failed transaction open on a pooled connection.
                            let _ = conn.client().batch_execute("ROLLBACK");
                        }
                        Err(err)
                    }
                }
            })?
            .map_err(|err| shared.error(&err, "remove", &place))?;
        match removed {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }
}
