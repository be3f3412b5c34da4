//! The [`Persister`](persister_core::Persister) backend on PostgreSQL: many processes,
//! on many machines, serve different documents of one database.
//!
//! # Example
//!
//! ```
//! use persister_core::{ActorId, Batch, Persister, Store};
//! use persister_postgres::PostgresStore;
//!
//! # fn main() -> Result<(), persister_core::Error> {
//! // postgres://user:password@host/database, or host=/var/run/postgresql for a socket.
//! let Ok(url) = std::env::var("PERSISTER_POSTGRES_URL") else {
//!     return Ok(()); // this example needs a server
//! };
//! let store = PostgresStore::open(&url)?; // creates the tables in schema `persister`
//! # store.remove_document(&"example notes".into())?;
//! let mut doc = store.open_document(&"example notes".into())?; // takes the lease
//!
//! let actor = ActorId::new([0xab; 16]);
//! doc.insert_changes(vec![(actor.clone(), 1, b"change 1".to_vec())])?;
//! doc.insert_changes(vec![(actor.clone(), 2, b"change 2".to_vec())])?;
//! assert_eq!(doc.get_changes()?.len(), 2); // visible before the flush
//! assert!(doc.flush()? > 0); // one transaction, committed durably
//!
//! // Compaction is one batch: the document and the removal of what it covers.
//! doc.apply(Batch::new().set_document(b"compacted".to_vec()).remove_change(actor.clone(), 1).remove_change(actor, 2))?;
//! doc.close()?; // flushes and releases the lease
//!
//! let doc = store.open_document(&"example notes".into())?;
//! assert_eq!(doc.get_document()?, Some(b"compacted".to_vec()));
//! assert_eq!(doc.sizes().change_count, 0); // exact at once, without reading the changes
//! # drop(doc);
//! # store.remove_document(&"example notes".into())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Tables
//!
//! A store is one schema ([`PostgresOptions::schema`], default `persister`) with five
//! tables, created by the first open. Document ids, actor ids and peer ids are `bytea`,
//! compared byte by byte, so documents are exactly isolated whatever their ids hold; every
//! value travels as a statement parameter, never as SQL text.
//!
//! | table | key | columns |
//! |---|---|---|
//! | `meta` | `key text` | `('format', 'persister-postgres')`, `('format_version', '1')` |
//! | `documents` | `document bytea` | `data bytea` (the compacted document, `NULL` when none), and the sizes: `changes_bytes`, `document_bytes`, `sync_state_bytes`, `change_count`, `sync_state_count` (`int8`) |
//! | `changes` | `(document bytea, actor bytea, seq int8)` | `value bytea` |
//! | `sync_states` | `(document bytea, peer bytea)` | `state bytea` |
//! | `leases` | `document bytea` | `token int8` (the fencing token), `holder text` (`pid N on HOST`), `expires_at timestamptz` |
//!
//! A seq is stored as `int8` with its top bit flipped, so that `ORDER BY actor, seq`
//! orders changes by actor bytes, then unsigned seq (contract point 3). The sizes
//! record is written in the same transaction as the data, which keeps
//! [`sizes`](persister_core::Persister::sizes) exact and O(1) right after opening; reads
//! check what they find against it and fail with
//! [`Error::Corrupt`](persister_core::Error::Corrupt) on a mismatch. A schema whose
//! `format_version` this build does not know is refused with
//! [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat) naming both
//! versions ([`FORMAT_VERSION`]); nothing is migrated.
//!
//! # Writes, flushes and round trips
//!
//! A handle holds its writes in memory (reads merge them with what the server holds)
//! until [`flush`](persister_core::Persister::flush), which writes them all with **one
//! statement**, so one round trip and one transaction: data-modifying `WITH` clauses
//! over arrays (`unnest`) delete and upsert every change and sync state, upsert the
//! document and its sizes record, renew the lease, and turn `synchronous_commit` on for
//! that commit (`set_config(.., true)`) whatever the session or server default. `flush`
//! returns once the server reports the commit durable, and returns the payload bytes of
//! the batches it wrote. An [`apply`](persister_core::Persister::apply) costs no round
//! trip when it appends changes above the highest stored seq of actors already seen;
//! overwrites and sync states cost one lookup per batch (sync-state lengths are then
//! remembered).
//!
//! A handle holds everything it was given until its next flush: flush on a policy
//! ([`AutoFlush`](persister_core::AutoFlush)) that bounds the memory this takes.
//!
//! The statements are prepared once per connection and planned once
//! (`plan_cache_mode = force_generic_plan` for the store's sessions, where the server
//! knows the setting): their plans do not depend on the values. A store keeps up to
//! [`PostgresOptions::max_connections`] connections; handles borrow one per operation,
//! so many open documents share a few connections.
//!
//! # Opening
//!
//! [`PostgresStore::open`] takes a `postgres://` URL or a `key=value` connection
//! string; a `schema` option in it (`?schema=notes`) picks the schema. The first open
//! creates the schema and its tables in one transaction; later ones check the format
//! record. Opening a document takes its lease and reads its sizes record: two round
//! trips, and nothing written that [`list_documents`](persister_core::Store::list_documents)
//! would see.
//!
//! # Speed
//!
//! One run of `persister-bench` (PostgreSQL 15 on the same machine, a Unix socket,
//! fsync and synchronous commits on): 223 flushes of one change per second, 0.85x the
//! server's own rate of single-row commits; a bulk insert of 100,000 changes at 58,000
//! changes per second (automerge-persistent-sled: 158,000); reopening and reading
//! 100,000 changes in 217 ms; the automerge-paper trace replayed with a flush every
//! 1,000 edits in 2.0x the time of the memory backend. Each change is a row, so bulk
//! writes cost the server a row insert (and a row delete at compaction) per change:
//! that, not the network, bounds rows 1 and 7.
//!
//! Counted by the server (`pg_stat_statements`, in the tests): 200 changes applied in
//! 200 batches and flushed 10 times take 13 statements: 10 flushes, and taking the
//! lease, reading the sizes record and releasing the lease.
//!
//! # Several hosts, lost connections
//!
//! The URL goes to the `postgres` driver as it is, so several hosts
//! (`host=h1,h2 target_session_attrs=read-write`) are tried in turn for each new
//! connection. A connection found lost is dropped and the next operation opens a new
//! one; a read or a lease renewal whose connection is lost is retried once on a new
//! connection, a flush never (its outcome is unknown: the handle is poisoned, and
//! reopening the document shows whether it committed). Failover to a standby is not
//! tested here.
//!
//! # What survives what
//!
//! | event | what you get after reopening |
//! |---|---|
//! | the client process is killed | every flush that returned `Ok`; nothing after the last flush (the handle's writes were only in its memory) |
//! | the handle is dropped without `flush` | the same: unflushed writes are discarded, nothing flushed is lost |
//! | the server crashes or is killed, the machine loses power | every flush that returned `Ok` (PostgreSQL's WAL, synced at commit), provided the server's `fsync` is on and the disk honours it |
//! | the connection is lost while a flush commits | unknown outcome: the flush returns an error and the handle is poisoned ([`Error::Poisoned`](persister_core::Error::Poisoned)); reopening the document shows all of that flush or none of it, never part |
//! | another transaction conflicts (SQLSTATE 40001, 40P01) | the server rolled the statement back; it is run again (up to 8 times), then the error is returned |
//!
//! A failed flush always poisons the handle: drop it and open the document again.
//!
//! # One writer per document: leases and fencing
//!
//! Several stores, in several processes on several machines, may open one schema at
//! once; each document is held by one handle at a time. Opening a document takes its
//! lease in one statement: a row of `leases` is inserted, or taken over only if its
//! `expires_at` is past by the server's clock, and its `token` grows by one. A second
//! opener, in any process, gets [`Error::Locked`](persister_core::Error::Locked) at
//! once, naming the document, the holder (`pid N on HOST`) and how long the lease still
//! runs; in the same store it gets
//! [`Error::DocumentInUse`](persister_core::Error::DocumentInUse).
//!
//! Every flush renews the lease in its own statement, and writes only if the row still
//! has this handle's token and has not expired: the fencing check is inside the write
//! transaction, and the row lock it takes makes a concurrent taker wait for the commit
//! (after which the lease is no longer expired). A handle whose lease expired, or was
//! taken over, can never write again: its flush writes nothing and returns
//! [`Error::Poisoned`](persister_core::Error::Poisoned) saying so; reopen the document.
//! Tokens are never reused (lease rows are kept, released leases are only marked
//! expired), so a token once superseded never matches again.
//!
//! The pause case: a process stopped (SIGSTOP, a long garbage-collection pause, a
//! suspended VM) past its lease while another process takes the document over finds,
//! when it resumes, that its next flush is refused: the check runs on the server, by
//! the server's clock, at the moment of the write, so no client-side clock or timer is
//! trusted. A pause can never split a flush between its check and its writes, because
//! both are one statement.
//!
//! Options ([`PostgresOptions`]): [`lease_duration`](PostgresOptions::lease_duration)
//! (default 30 s) and [`lease_renewal`](PostgresOptions::lease_renewal) (default a third
//! of it: a write renews a lease older than this). A handle idle for longer than the
//! lease loses it; keep such a document with
//! [`PostgresPersister::renew_lease`] on a timer. Dropping or closing a handle releases
//! its lease at once.
//!
//! # Errors and passwords
//!
//! Errors of the server are [`Error::Backend`](persister_core::Error::Backend) naming
//! what was done on which store and document. No message holds the password: it is
//! removed from every error text, and descriptions of the store
//! ([`PostgresStore::description`]) are built from the URL without it. A lost
//! connection is replaced by a new one on the next operation; reads and lease renewals
//! are retried once on a new connection, flushes never (their outcome is unknown).
//!
//! # TLS
//!
//! With the `tls` feature, connections use OpenSSL (`postgres-openssl`) unless the URL
//! says `sslmode=disable`; `sslmode=prefer` (the default) falls back to a plain
//! connection, `sslmode=require` fails without TLS. The server's certificate is checked
//! against the system's trusted roots and the host name. Without the feature, a URL
//! with `sslmode=require` is refused with an error saying to enable it.
//!
//! # Tested, and distributed databases
//!
//! Tested on PostgreSQL 15.x on Linux, by the crate's tests against a throwaway
//! cluster: the conformance suite; the reliability harness's model test and its kill
//! test (a client process killed with SIGKILL mid-workload); the server killed with
//! `pg_ctl stop -m immediate` at random moments and restarted (on a server whose
//! default is `synchronous_commit = off`, so the test fails if a flush does not turn
//! it on); connections terminated by the server (`pg_terminate_backend`) before a read
//! and during a flush; two processes writing different documents at once; a document
//! held by another process; a holder stopped with SIGSTOP past its lease while another
//! process takes the document over. The design
//! keeps to what CockroachDB and YugabyteDB also offer: no advisory locks (leases are
//! rows), serialization failures (40001, which CockroachDB reports often under
//! contention) retried inside the backend, and a SQL subset of `INSERT .. ON CONFLICT ..
//! DO UPDATE`, data-modifying `WITH`, `unnest` of several arrays, `set_config`, `bytea`,
//! `int8`, `timestamptz` and `now()`. Not tested here: CockroachDB and YugabyteDB
//! themselves (on CockroachDB, `synchronous_commit` is accepted and ignored: every commit
//! is replicated durably), TLS against a real server, and failover between servers.

mod error;
mod location;
mod options;
mod persister;
mod pool;
mod shared;
mod sql;
mod store;

pub use error::PgError;
pub use options::PostgresOptions;
pub use persister::PostgresPersister;
pub use sql::FORMAT_VERSION;
pub use store::PostgresStore;
