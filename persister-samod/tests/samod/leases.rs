//! A store that leases documents (PostgreSQL): the storage never keeps a handle so
//! long that the store takes its lease back, so a document left idle is written again
//! without a failure.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use persister_backends::Access;
use persister_samod::acceptance::{block_on, key};
use persister_samod::{Event, Options, SamodStorage};
use persister_testkit::postgres::{Cluster, binaries, wait_until};
use samod::storage::Storage;

use crate::support::{Result, named};

const SCHEMA: &str = "samod_leases";

/// How many leases of the store are in force.
fn leases_held(cluster: &Cluster) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM {SCHEMA}.leases WHERE expires_at > now()");
    Ok(cluster.query(&sql)?.trim().parse()?)
}

/// A document idle for longer than its lease used to keep its handle (and the lease)
/// until the lease ran out: the next write through it then failed with `LeaseLost`,
/// counted as a failed flush (the whole store reopened, and under
/// `WhenUnusable::Exit { after_failures: 1 }` the process ended). The handle is now
/// closed, and the lease released, once it is `max_handle_age` old.
#[test]
fn an_idle_document_releases_its_lease_and_is_written_again_without_a_failure() -> Result {
    // A cluster of its own, even with PERSISTER_POSTGRES_URL set: the test expires
    // every lease of its schema by SQL.
    let Some(bin) = binaries() else {
        if std::env::var("PERSISTER_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            return Err(
                "PERSISTER_REQUIRE_POSTGRES=1, but initdb and pg_ctl are not installed".into(),
            );
        }
        println!("skipped: the lease test needs initdb and pg_ctl to run a cluster of its own");
        return Ok(());
    };
    let cluster = Cluster::start(&bin, &[])?;
    let url = cluster.uri(SCHEMA);
    let (tx, failures) = mpsc::channel();
    let options = Options::new()
        .max_handle_age(Duration::from_millis(200))
        .on_event(move |event| {
            if let Event::Failed { action, error, .. } = event {
                let _ = tx.send(format!("{action}: {error}"));
            }
        });
    let backend = named("postgres");
    let storage = SamodStorage::open_with(
        move || backend.open(PathBuf::from(&url), Access::ReadWrite),
        options,
    )?;
    block_on(storage.put(key(&["doc", "sync-state", "p"]), b"first".to_vec()));

    // The worker closes the handle once it is 200 ms old: its lease is released.
    wait_until("an idle handle to release its lease", || {
        leases_held(&cluster)
            .map(|held| held == 0)
            .map_err(|e| e.to_string())
    })?;
    // Every lease runs out, as after a long idle time.
    cluster.query(&format!(
        "UPDATE {SCHEMA}.leases SET expires_at = now() - interval '1 second'"
    ))?;
    block_on(storage.put(key(&["doc", "sync-state", "p"]), b"second".to_vec()));
    assert_eq!(
        block_on(storage.load(key(&["doc", "sync-state", "p"]))),
        Some(b"second".to_vec())
    );
    storage.close()?;
    let failed: Vec<String> = failures.try_iter().collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(storage.health().failures, 0);
    Ok(())
}
