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
//! | `meta` | `key text` | `('format', 'persister-postgres')`, `('format_version', '2')` |
//! | `documents` | `document bytea` | `data bytea` (the compacted document, `NULL` when none); a row for each stored document |
//! | `changes` | `(document bytea, actor bytea, seq int8)` | `value bytea` |
//! | `sync_states` | `(document bytea, peer bytea)` | `state bytea` |
//! | `leases` | `document bytea` | `token int8` (the fencing token), `holder text` (`pid N on HOST (instance T)`, T the time the process opened its first store, in seconds since 1970), `expires_at timestamptz`, and the document's sizes while it has a row in `documents`: `changes_bytes`, `document_bytes`, `sync_state_bytes`, `change_count`, `sync_state_count` (`int8`) |
//!
//! A seq is stored as `int8` with its top bit flipped, so that `ORDER BY actor, seq`
//! orders changes by actor bytes, then unsigned seq (contract point 3). The sizes are
//! written in the same transaction as the data, into the lease's row, which every
//! flush updates anyway; they keep [`sizes`](persister_core::Persister::sizes) exact
//! and O(1) right after opening, and reads check what they find against them and fail
//! with [`Error::Corrupt`](persister_core::Error::Corrupt) on a mismatch.
//!
//! A schema whose `format_version` this build does not know is refused with
//! [`Error::UnsupportedFormat`](persister_core::Error::UnsupportedFormat) naming both
//! versions ([`FORMAT_VERSION`]). A schema of version 1, which kept the sizes in
//! `documents` and so wrote that row on every flush, is refused with
//! [`Error::MigrationNeeded`](persister_core::Error::MigrationNeeded) and left as it is,
//! unless opened with [`PostgresOptions::migrate_format`] (or `migrate_format=true` in
//! the URL, the way from the command line): that open migrates it in
//! place, in one transaction that only one process runs. The sizes move into the lease
//! rows, and the columns are dropped from `documents`, so that a process of an older
//! build still running fails its next flush or open with the server's error (its
//! unflushed writes are lost, as with any failed flush) rather than write or read sizes
//! the other builds do not. So stop every process of an older build first, then open
//! once with the option. The migration needs the role that owns the tables, and waits
//! at most 10 s for the tables' locks (a long transaction on them makes it fail; open
//! again).
//!
//! A whole store moves to another schema of its database with [`PostgresStore::rename`],
//! in one transaction, so that other sessions see it at its old place or whole at its
//! new one: build a new store in a schema of its own, check it, then rename it into
//! place (the `persister` command's `copy` and `import` do, so that a killed run leaves
//! the destination as it was). [`PostgresStore::destroy`] drops a store's tables and
//! schema and nothing else. Both refuse a store another process has a document of open,
//! and [`url_with_schema`] and [`schema_in`] write and read the schema of a URL.
//!
//! # Writes, flushes and round trips
//!
//! A handle holds its writes in memory (reads merge them with what the server holds)
//! until [`flush`](persister_core::Persister::flush), which writes them all with **one
//! statement**, so one round trip and one transaction (a handle holding more than 64 MiB
//! is written by several statements of at most 64 MiB each in one transaction, each
//! parameter far below the server's 1 GiB limit for a message): data-modifying `WITH` clauses
//! over arrays (`unnest`) delete and upsert every change and sync state, write the
//! document's row where it is new or compacted, renew the lease with the document's
//! sizes, and turn `synchronous_commit` on for
//! that commit (`set_config(.., true)`) whatever the session or server default, unless
//! it is `remote_apply`, which is kept: the setting is only ever raised, never lowered
//! (see [Replication](#replication-which-server-settings-give-which-guarantee)). `flush`
//! returns once the server reports the commit durable, and returns the payload bytes of
//! the batches it wrote. An [`apply`](persister_core::Persister::apply) costs no round
//! trip when it appends changes above the highest stored seq of actors already seen;
//! overwrites and sync states cost one lookup per batch (sync-state lengths are then
//! remembered). A read of a sync state, like a listing of the peers, gets every peer of
//! the document with the length of its state (one row a peer, the state asked for
//! alone with its bytes), so that their count and bytes are checked against the
//! sizes: its cost grows with the number of peers.
//!
//! A handle holds everything it was given until its next flush: flush on a policy
//! ([`AutoFlush`](persister_core::AutoFlush)) that bounds the memory this takes.
//!
//! The statements are prepared once per connection and planned once
//! (`plan_cache_mode = force_generic_plan` for the store's sessions, where the server
//! knows the setting): their plans do not depend on the values. Every statement
//! reaches its rows by primary key, and the sessions turn sequential scans off
//! (`enable_seqscan = off`), so that a plan made while the tables are small (the first
//! flushes of a new store, before the server has statistics) does not scan a whole
//! table on every execution as the store grows. A store keeps up to
//! [`PostgresOptions::max_connections`] connections; handles borrow one per operation,
//! so many open documents share a few connections.
//!
//! # Group commit
//!
//! A server that holds many documents and acknowledges each edit once it is durable
//! flushes many handles at once from many threads. PostgreSQL merges the WAL syncs of
//! concurrent commits, but each commit still costs a transaction, a statement and a
//! round trip of its own. So concurrent flushes of different handles of one store
//! (different threads, one [`PostgresStore`] or its clones) share one statement, one
//! transaction and one commit, as `persister-redb` does: a flushing handle hands its
//! held writes to the store's queue. If no commit is running it leads: it takes
//! everything queued at that moment and writes it with one statement (the flush
//! statement above, whose arrays carry every document of the group, each row tagged
//! with its document), committed with `synchronous_commit` on. Flushes that arrive
//! while a commit runs wait for it to end (or for a second group, below); one of them
//! then leads the next group with all of them. Nothing waits for company (no timers):
//! a lone flush commits at once, with the one statement it always took. Each `flush`
//! returns once the commit carrying its own writes is durable, and every document
//! stays at a prefix of its batches, since the group's transaction commits whole or not
//! at all.
//!
//! Up to [`PostgresOptions::concurrent_commits`] groups (2 by default) commit at once,
//! each on a connection of its own: a second group starts beside a running one once as
//! many flushes wait as the running one carries, so that one group's statement runs
//! while the other's commit waits for the server's WAL sync, and groups stay as large
//! as the load makes them. Two groups in flight never carry the same document: a
//! handle flushes through `&mut self` and is the only one of its document (its lease),
//! so each document's flushes still commit one after the other, in order.
//!
//! The statement checks each document's lease exactly as a flush of that document
//! alone does (its token, its expiry by the server's clock, and the `expires_at` its
//! handle last wrote; see [leases](#one-writer-per-document-leases-and-fencing)), and
//! writes each document only if its own check passed: a document whose lease was lost
//! writes nothing and its handle gets
//! [`Error::LeaseLost`](persister_core::Error::LeaseLost), while the other documents of
//! the group commit and their handles go on. When the shared commit fails, every
//! handle it carried is poisoned and its `flush` returns an error: the leader's is the
//! error itself, the others' [`Error::Poisoned`](persister_core::Error::Poisoned)
//! naming it; when the connection was lost while committing, the outcome is unknown
//! for the whole group (all of it or none of it is found after reopening). A conflict
//! (40001, 40P01) rolls the whole statement back; it is run again for the whole group.
//!
//! [`Store::flush_documents`](persister_core::Store::flush_documents) commits the held
//! writes of every handle given in one transaction (with whatever other flushes are
//! queued): the store-wide flush for an application that flushes on a timer or at
//! shutdown. A group whose values pass 64 MiB is written by several statements inside
//! one explicit transaction (`BEGIN` .. `COMMIT`), which keeps each array far below the
//! server's 1 GiB limit for one value.
//!
//! `persister-bench`'s row 8 (`--rows 8 --only postgres`: 1,000 stored documents, 16
//! threads each inserting one 100-byte change into one of its documents and flushing
//! it; PostgreSQL 15 on the same machine, fsync and synchronous commits on, 2 cores
//! shared by the writers and the server), in two runs of every column: 19.7 k and
//! 19.0 k acknowledged flushes per second, flush p50 0.73 and 0.77 ms, p99 1.72 and
//! 1.75 ms, 4.22x and 4.11x the server's own single-row commit rate measured in the
//! same run (3.58x to 4.31x, median 4.1x, over the 8 runs of 10 s that day, these two
//! included). About 6.7 flushes share each commit, two commits in flight, and each
//! commit has a WAL sync of its own: a flush waits for its group's statement (about
//! 0.19 ms of the server's time for such a group), the other group's sync and its own,
//! with a third of the two cores idle; see `BENCHMARKS.md` for where the time goes.
//!
//! # Opening
//!
//! [`PostgresStore::open`] takes a `postgres://` URL or a `key=value` connection
//! string. Two of its options are the store's own, taken out before the driver sees
//! the rest:
//!
//! | option | value |
//! |---|---|
//! | `schema` | the schema ([`PostgresOptions::schema`]): 1 to 63 lowercase ASCII letters, digits and `_`, not starting with a digit |
//! | `migrate_format` | `true` or `false`, written so ([`PostgresOptions::migrate_format`]; see *Tables*) |
//!
//! The others are the `postgres` driver's: `host`, `hostaddr`, `port`, `user`,
//! `password`, `dbname`, `options`, `application_name`, `sslmode`, `sslnegotiation`,
//! `connect_timeout`, `tcp_user_timeout`, `keepalives`, `keepalives_idle`,
//! `keepalives_interval`, `keepalives_retries`, `target_session_attrs`,
//! `channel_binding` and `load_balance_hosts`, as libpq reads them.
//!
//! The store reads them more strictly than the driver, which would silently open
//! something else than written; each of these is refused with
//! [`Error::InvalidInput`](persister_core::Error::InvalidInput) naming the option, and
//! nothing is opened or created:
//! - an option given more than once (`?schema=a&schema=b`, or `dbname` both as the
//!   URL's path and as an option), but `host`, `hostaddr` and `port`: those list the
//!   hosts the driver tries in turn (`?host=a&host=b` is `?host=a,b`), and the ports
//!   must be one for all hosts or one per host;
//! - an option neither the store nor the driver knows, or a value the driver refuses
//!   (the message names the option, the value given, and the options there are);
//! - `connect_timeout`, `tcp_user_timeout`, `keepalives_idle` or
//!   `keepalives_interval` under 1 second, which the driver ignores;
//! - text that a connection string holds past where the driver stops reading.
//!
//! No message shows the password.
//!
//! The first open
//! creates the schema and its tables in one transaction; later ones check the format
//! record. Opening a document takes its lease
//! and reads its row and sizes: two round
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
//! With a synchronous standby (`persister-bench --only postgres --rows 2`, both servers
//! on the same machine and disk, interleaved): flushes of one change cost 1.6x to 2.6x
//! those on one node in four runs (for example 402 against 250 flushes per second, p99
//! 12.2 ms against 16.5 ms); see `BENCHMARKS.md` in the repository.
//!
//! Counted by the server (`pg_stat_statements`, in the tests): 200 changes applied in
//! 200 batches and flushed 10 times take 13 statements: 10 flushes, and taking the
//! lease, reading the document's row and sizes and releasing the lease.
//!
//! # Several hosts and failover
//!
//! A URL may name several hosts, and should then ask for the primary:
//! `postgres://user@h1:5432,h2:5432/db?target_session_attrs=read-write`, or
//! `host=h1,h2 port=5432,5432 target_session_attrs=read-write`. The driver tries them in
//! turn for each new connection and keeps the first that accepts writes, so after a
//! failover (the standby promoted by Patroni, pg_auto_failover or an operator) the
//! store's next connections reach the new primary; a standby not yet promoted is
//! skipped.
//!
//! A TCP connection counts as lost once the server's side stays silent for
//! [`PostgresOptions::network_timeout`] (30 s by default: unacknowledged data, or
//! unanswered keepalive probes), as across a network partition or after the server's
//! machine vanished without closing it; without that, a flush would wait as long as
//! the operating system keeps such a connection, hours on Linux.
//!
//! A connection found lost is dropped, with the store's other idle connections (they
//! most likely went to the same server), and the next operation opens a new one. An
//! idle connection taken again after 200 ms or more is first checked with an empty
//! query, so that a flush after a failover is not sent on a connection to a server
//! that is gone. A read or a lease renewal whose connection is lost is retried once on
//! a new connection; a flush never: its outcome is unknown, the flush returns an error
//! and the handle is poisoned ([`Error::Poisoned`](persister_core::Error::Poisoned)).
//! Drop it and open the document again, on the new primary: with a synchronous standby
//! it holds every acknowledged flush, and all of the unknown one or none of it. Handles
//! that were not flushing when the primary died go on writing on the new primary.
//!
//! # Replication: which server settings give which guarantee
//!
//! `flush` returns when the server says the commit is durable, and what durable means
//! is the server's configuration. The backend turns `synchronous_commit` on for every
//! commit that writes the store (flushes, taking or renewing a lease, removing a
//! document, [moving](PostgresStore::rename) or [dropping](PostgresStore::destroy) a
//! store), or keeps `remote_apply` when that is the session's setting; it never lowers
//! it, and nothing but the release of a lease is written with `synchronous_commit =
//! off` or `local` (a release a crash loses leaves the lease to expire on its own).
//!
//! | server settings | `flush` returns once the commit is | survives | loses or stops |
//! |---|---|---|---|
//! | one node, `fsync = on` | in the WAL on the node's disk | the server killed or crashed, the machine losing power | the node's disk or machine lost for good: every flush since the last backup; writes stop until the node is back |
//! | primary and a synchronous standby: `synchronous_standby_names = 'standby1'` (or `'*'`, `'FIRST 1 (s1, s2)'`) | in the WAL on the primary's disk and on the standby's disk (`synchronous_commit = on`, what the backend sets) | the primary lost for good, the standby promoted: no acknowledged flush lost (tested: 20 failovers in every test run, 0 lost) | both nodes lost at once; while the standby is down, every flush waits until it is back (or another synchronous standby is named): availability is traded for durability |
//! | the same with `synchronous_commit = remote_apply` (for the role, database or URL: `options='-c synchronous_commit=remote_apply'`) | as above, and applied on the standby | as above, and reads on the standby see every acknowledged flush at once (tested) | as above |
//! | quorum: `synchronous_standby_names = 'ANY 2 (s1, s2, s3)'` | on the primary's disk and on the disks of any 2 of the 3 standbys | the primary and any one standby lost together, provided the standby promoted is one that has every acknowledged commit (the one with the most WAL; Patroni and pg_auto_failover pick it) | more standbys down than the quorum allows: flushes wait |
//! | an asynchronous standby (`synchronous_standby_names` empty) | on the primary's disk only | the primary restarting on its own disk | **a failover loses the flushes acknowledged shortly before it** (what the standby had not received yet): the asynchronous failover test prints how many. Every document is still at a prefix of its batches, and a handle whose acknowledged flush was lost refuses to write on top of it (see below); reopen the documents |
//!
//! PostgreSQL itself stops waiting for the standby when the client connection is lost,
//! the session is terminated, or the statement is cancelled (`pg_cancel_backend`,
//! `statement_timeout`): the commit is then in the primary's WAL but perhaps not on the
//! standby. A lost connection or a terminated session is an unknown outcome; so is a
//! cancelled wait, which the server reports only in a warning (raised by its function
//! `SyncRepWaitForLSN`, whatever the language of its messages), which the store watches
//! for: the flush returns an error and the handle is poisoned. A removal, move or drop
//! whose wait was cancelled returns an error too: it is done on the primary, perhaps
//! not on the standby, so do it again. Do not promote a standby without its
//! synchronous commits, and rebuild a failed primary (`pg_basebackup`, `pg_rewind`)
//! rather than start it again as a primary.
//!
//! # What survives what
//!
//! | event | what you get after reopening |
//! |---|---|
//! | the client process is killed | every flush that returned `Ok`; nothing after the last flush (the handle's writes were only in its memory) |
//! | the handle is dropped without `flush` | the same: unflushed writes are discarded, nothing flushed is lost |
//! | the server crashes or is killed, the machine loses power | every flush that returned `Ok` (PostgreSQL's WAL, synced at commit), provided the server's `fsync` is on and the disk honours it |
//! | the connection is lost while a flush commits | unknown outcome: the flush returns an error and the handle is poisoned ([`Error::Poisoned`](persister_core::Error::Poisoned)), as is every other handle whose flush shared that commit; reopening the documents shows all of that commit or none of it, never part |
//! | the primary dies and a standby is promoted | with a synchronous standby: every flush that returned `Ok`, and all or none of a flush in flight (whose handle is poisoned); with an asynchronous one, see [Replication](#replication-which-server-settings-give-which-guarantee) |
//! | another transaction conflicts (SQLSTATE 40001, 40P01) | the server rolled the statement back (for every document of its group); it is run again (up to 8 times), then the error is returned to every flush it carried |
//!
//! A failed flush always poisons the handle: drop it and open the document again.
//!
//! # One writer per document: leases and fencing
//!
//! Several stores, in several processes on several machines, may open one schema at
//! once; each document is held by one handle at a time. Opening a document takes its
//! lease in one statement: a row of `leases` is inserted, or taken over only if its
//! `expires_at` is past by the server's clock, and its `token` grows. A second
//! opener, in any process, gets [`Error::Locked`](persister_core::Error::Locked) at
//! once, naming the document, the holder (`pid N on HOST (instance T)`) and how long
//! the lease still runs; in the same store it gets
//! [`Error::DocumentInUse`](persister_core::Error::DocumentInUse). A new token is the
//! server's clock in milliseconds since 1970, or the previous token plus one when that
//! is larger.
//!
//! Every flush renews the lease in the statement that writes it (shared with the
//! other documents of a [group commit](#group-commit), each document checked on its
//! own), and writes only if the row still has this handle's token and has not expired: the fencing check is inside the write
//! transaction, and the row lock it takes makes a concurrent taker wait for the commit
//! (after which the lease is no longer expired). A handle whose lease expired, or was
//! taken over, can never write again: its flush writes nothing and returns
//! [`Error::LeaseLost`](persister_core::Error::LeaseLost) (and so does every later
//! call); reopen the document. Its reads check the token too, in the statement that
//! reads: once another holder took the document over (or it was removed), a read
//! returns `LeaseLost` rather than the new holder's data as if it were its own.
//! Removing a document takes its lease (only when it is free) and then deletes the
//! document's rows in a second statement of the same transaction, which sees every
//! flush that committed before the lease was taken, even one that was still running
//! when the lease expired.
//! Tokens are never reused (lease rows are kept, released leases are only marked
//! expired), so a token once superseded never matches again.
//!
//! Lease rows are tables like the data, so they replicate with it: after a failover a
//! lease in force still holds the document on the new primary, its holder goes on
//! writing there, and a handle whose lease expired meanwhile can write nothing (tested
//! on a promoted standby). Every flush and renewal also checks that the lease row's
//! `expires_at` is not older than the one this handle last wrote: an older one means
//! the server lost an acknowledged write of this handle (an asynchronous standby
//! promoted without it), and the handle is refused as if its lease were lost rather
//! than write on top of the gap. A token taken on a primary just before an
//! asynchronous failover can be lost with it; since tokens follow the server's clock,
//! the new primary does not issue it again unless the two servers' clocks differ by
//! more than the failover took.
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
//! are retried once on a new connection, flushes never (their outcome is unknown); see
//! [Several hosts and failover](#several-hosts-and-failover).
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
//! process takes the document over; and failover, on a primary with a standby made with
//! `pg_basebackup -R` (Unix sockets, two ports, one two-host URL): a workload of four
//! documents whose primary is killed at random moments, the standby promoted and the
//! old primary rebuilt as the new standby, 20 times per run (`PERSISTER_PG_FAILOVERS`
//! for more), with 0 acknowledged flushes lost under synchronous replication and every
//! document at a prefix of its batches; the same with asynchronous replication, which
//! prints what it lost; leases and fencing across a promotion; `remote_apply` kept for
//! flushes; group commit: 12 threads flushing 48 documents with a group made to form
//! (the server counts fewer flush statements than flushes), a shared commit whose
//! connection the server terminates (every handle it carried is poisoned, none of its
//! writes is found), and a document whose lease was taken over inside a shared commit
//! (only its handle fails). The design
//! keeps to what CockroachDB and YugabyteDB also offer: no advisory locks (leases are
//! rows), serialization failures (40001, which CockroachDB reports often under
//! contention) retried inside the backend, and a SQL subset of `INSERT .. ON CONFLICT ..
//! DO UPDATE`, data-modifying `WITH`, `unnest` of several arrays, `set_config`, `bytea`,
//! `int8`, `timestamptz`, `now()` and `current_setting`. The one exception is the
//! migration from format version 1, a PL/pgSQL `DO` block that changes tables and then
//! updates the columns it added, in one transaction. Not tested here: CockroachDB and
//! YugabyteDB themselves (on CockroachDB, `synchronous_commit` is accepted and ignored:
//! every commit is replicated durably), TLS against a real server, failover managers
//! (Patroni, pg_auto_failover) and quorum commit (`ANY n`), and clients on another
//! machine than the servers.

mod error;
mod group;
mod location;
mod options;
mod persister;
mod pool;
mod relocate;
mod shared;
mod sql;
mod store;

pub use error::PgError;
pub use options::PostgresOptions;
pub use persister::PostgresPersister;
pub use relocate::{migrate_format_in, schema_in, url_with_schema};
pub use sql::FORMAT_VERSION;
pub use store::PostgresStore;
