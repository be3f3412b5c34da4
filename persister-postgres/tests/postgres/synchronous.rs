//! Every commit that the store relies on once it returned is synchronous, whatever the
//! server's default, and none is acknowledged when the server cancelled its wait for
//! the synchronous standbys.
//!
//! A server of its own, whose default is `synchronous_commit = off`, is made to require
//! a synchronous standby that is not there: a synchronous commit then waits for it
//! (`wait_event = 'SyncRep'`) until the test cancels the wait, and an asynchronous one
//! returns at once.

use persister_core::{ActorId, DocumentId, Error, Persister, Store};
use persister_postgres::{PostgresStore, url_with_schema};

use crate::cluster::{Cluster, TEST_SETTINGS, admin, wait_for};
use crate::errors::{named, test_error};
use crate::findings::own_server_binaries;

/// How many backends of `name` wait for a synchronous standby.
fn waiting_for_standby(client: &mut postgres::Client, name: &str) -> Result<i64, String> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'SyncRep'",
            &[&name],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// Sets `synchronous_standby_names` and waits until new sessions see it.
fn require_standby(client: &mut postgres::Client, url: &str, names: &str) -> Result<(), Error> {
    client
        .batch_execute(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
        ))
        .map_err(test_error)?;
    client
        .batch_execute("SELECT pg_reload_conf()")
        .map_err(test_error)?;
    wait_for("the setting to be loaded", || {
        let mut fresh = admin(url).map_err(|e| e.to_string())?;
        let row = fresh
            .query_one("SHOW synchronous_standby_names", &[])
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, String>(0) == names)
    })
    .map_err(test_error)?;
    if names.is_empty() {
        return Ok(());
    }
    // Commits wait for the standby only once the server's checkpointer has read the
    // setting too: until a synchronous commit of a probe waits.
    wait_for("synchronous commits to wait for the standby", || {
        let probe = || -> Result<(), postgres::Error> {
            let mut c = url
                .parse::<postgres::Config>()?
                .application_name("sync_probe")
                .connect(postgres::NoTls)?;
            c.batch_execute("SET synchronous_commit = on")?;
            c.batch_execute("CREATE TEMP TABLE probe (x int)")
        };
        let (waited, _) = run_with_standby_missing(client, url, "sync_probe", probe)
            .map_err(|e| e.to_string())?;
        Ok(waited)
    })
    .map_err(test_error)
}

/// Runs `op` on a thread: whether its commit waited for the synchronous standby (the
/// wait is then cancelled, as `pg_cancel_backend` by an administrator does), and what
/// it returned.
fn run_with_standby_missing<T: Send>(
    client: &mut postgres::Client,
    url: &str,
    name: &str,
    op: impl FnOnce() -> T + Send,
) -> Result<(bool, T), Error> {
    std::thread::scope(|scope| {
        let running = scope.spawn(op);
        let mut waited = false;
        let seen = wait_for("the operation to end or to wait for the standby", || {
            if running.is_finished() {
                return Ok(true);
            }
            waited = waiting_for_standby(client, name)? > 0;
            Ok(waited)
        });
        if waited {
            client
                .query(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'SyncRep'",
                    &[&name],
                )
                .map_err(test_error)?;
        } else if seen.is_err() {
            // Whatever it waits for, let it end before reporting.
            require_standby(client, url, "")?;
        }
        let value = running
            .join()
            .map_err(|_| test_error("the operation panicked"))?;
        seen.map_err(test_error)?;
        Ok((waited, value))
    })
}

/// Renewing a lease, removing a document, and moving or dropping a store commit
/// synchronously (as flushes and taking a lease do): on a server whose default is
/// `synchronous_commit = off`, a renewal that a crash loses leaves the handle refused
/// as if the server had lost its writes, and a removal, move or drop that returned
/// `Ok` could be undone by a crash or a failover. A removal, move or drop whose wait
/// for the standby was cancelled is not acknowledged.
#[test]
fn lease_renewals_removals_moves_and_drops_commit_synchronously() -> Result<(), Error> {
    let Some(bin) = own_server_binaries("the synchronous-commit test") else {
        return Ok(());
    };
    let cluster = Cluster::start(&bin, TEST_SETTINGS).map_err(test_error)?;
    let name = "sync_commits";
    let url = named(&cluster.url(), name);
    let store = PostgresStore::open(&url)?;
    let actor = ActorId::new([1; 16]);
    let mut held = store.open_document(&"held".into())?;
    held.insert_changes(vec![(actor.clone(), 1, b"one".to_vec())])?;
    held.flush()?;
    let gone: DocumentId = "gone".into();
    let mut p = store.open_document(&gone)?;
    p.insert_changes(vec![(actor, 1, b"one".to_vec())])?;
    p.close()?;
    let moved = PostgresStore::open(&url_with_schema(&url, "moved")?)?;
    moved
        .open_document(&"doc".into())?
        .set_document(b"x".to_vec())?;
    moved.close()?;

    let mut client = admin(&cluster.url()).map_err(test_error)?;
    require_standby(&mut client, &cluster.url(), "standby1")?;

    let (waited, renewed) =
        run_with_standby_missing(&mut client, &url, name, || held.renew_lease())?;
    assert!(
        waited,
        "the lease renewal returned {renewed:?} without waiting for its commit to be synchronous"
    );

    let (waited, removed) =
        run_with_standby_missing(&mut client, &url, name, || store.remove_document(&gone))?;
    assert!(waited, "the removal returned {removed:?} without waiting");
    let message = match removed {
        Ok(()) => panic!("the removal returned Ok although no synchronous standby confirmed it"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("synchronous replication"), "{message}");

    let (waited, renamed) = run_with_standby_missing(&mut client, &url, name, || {
        PostgresStore::rename(&url_with_schema(&url, "moved")?, "renamed")
    })?;
    assert!(
        waited,
        "the move returned {renamed:?} without waiting for its commit to be synchronous"
    );
    assert!(
        renamed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("synchronous replication")),
        "{renamed:?}"
    );

    let (waited, dropped) = run_with_standby_missing(&mut client, &url, name, || {
        PostgresStore::destroy(&url_with_schema(&url, "renamed")?)
    })?;
    assert!(
        waited,
        "the drop returned {dropped:?} without waiting for its commit to be synchronous"
    );
    assert!(
        dropped
            .as_ref()
            .is_err_and(|e| e.to_string().contains("synchronous replication")),
        "{dropped:?}"
    );

    require_standby(&mut client, &cluster.url(), "")?;
    // The renewal whose wait was cancelled is on this server: the handle goes on.
    held.flush()?;
    drop(held);
    Ok(())
}
