//! Leases in one process: expiry by the server's clock, renewal, stores side by side,
//! and the format version.

use std::time::Duration;

use persister_core::{Error, Persister, Store};
use persister_postgres::{FORMAT_VERSION, PostgresOptions, PostgresStore};

use crate::cluster::{admin, fresh_store, server, wait_for};

/// Waits until the lease row of `document` has expired by the server's clock.
pub fn wait_lease_expired(schema: &str, document: &[u8]) -> Result<(), Error> {
    let test = |e: String| Error::InvalidInput {
        what: "test",
        reason: e,
    };
    let mut client = admin(&server().url()).map_err(|e| test(e.to_string()))?;
    let query = format!("SELECT expires_at <= now() FROM \"{schema}\".leases WHERE document = $1");
    wait_for("the lease to expire", || {
        let row = client
            .query_one(&query, &[&document])
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, bool>(0))
    })
    .map_err(test)
}

/// A handle whose lease expired can never write again, even when no one took it.
#[test]
fn expired_lease_refuses_every_later_write() -> Result<(), Error> {
    let options = PostgresOptions::default().lease_duration(Duration::from_millis(200));
    let (store, schema) = fresh_store(options)?;
    let mut p = store.open_document(&"short".into())?;
    p.set_document(b"kept".to_vec())?;
    p.flush()?;
    wait_lease_expired(&schema, b"short")?;
    // Applying renews a lease older than its renewal age: refused, as is the flush.
    let refused = p.set_document(b"late".to_vec());
    assert!(
        matches!(&refused, Err(Error::LeaseLost { reason }) if reason.contains("lease")),
        "{refused:?}"
    );
    assert!(matches!(p.flush(), Err(Error::LeaseLost { .. })));
    drop(p);
    let p = store.open_document(&"short".into())?;
    assert_eq!(p.get_document()?, Some(b"kept".to_vec()));
    Ok(())
}

/// A flush refused by the fencing check writes nothing, even of a batch applied while
/// the lease still held.
#[test]
fn flush_after_the_lease_was_taken_over_writes_nothing() -> Result<(), Error> {
    let options = PostgresOptions::default()
        .lease_duration(Duration::from_millis(200))
        .lease_renewal(Duration::from_secs(3600));
    let (store, schema) = fresh_store(options.clone())?;
    let mut p = store.open_document(&"doc".into())?;
    p.set_sync_state(b"peer".to_vec(), b"one".to_vec())?;
    p.flush()?;
    p.set_sync_state(b"peer".to_vec(), b"two".to_vec())?;
    wait_lease_expired(&schema, b"doc")?;
    let other = PostgresStore::open_with(&server().url(), options.schema(schema))?;
    let q = other.open_document(&"doc".into())?;
    assert!(q.lease_token() > p.lease_token());
    let refused = p.flush();
    assert!(
        matches!(&refused, Err(Error::LeaseLost { reason }) if reason.contains("lease")),
        "{refused:?}"
    );
    assert_eq!(q.get_sync_state(b"peer")?, Some(b"one".to_vec()));
    Ok(())
}

/// Renewing keeps the lease; two stores of one schema in one process lock each other
/// out as two processes would; closing releases at once.
#[test]
fn renewal_keeps_the_lease_and_close_releases_it() -> Result<(), Error> {
    let (store, schema) = fresh_store(PostgresOptions::default())?;
    let other =
        PostgresStore::open_with(&server().url(), PostgresOptions::default().schema(schema))?;
    let mut p = store.open_document(&"doc".into())?;
    p.renew_lease()?;
    p.set_document(b"x".to_vec())?;
    assert!(matches!(
        other.open_document(&"doc".into()),
        Err(Error::Locked { .. })
    ));
    p.close()?;
    let q = other.open_document(&"doc".into())?;
    assert_eq!(q.get_document()?, Some(b"x".to_vec()));
    Ok(())
}

/// A schema of another format version is refused, naming both versions.
#[test]
fn unknown_format_version_is_refused_naming_both() -> Result<(), Error> {
    let (store, schema) = fresh_store(PostgresOptions::default())?;
    drop(store);
    let mut client = admin(&server().url()).map_err(|e| Error::backend("postgres", e))?;
    client
        .execute(
            &format!("UPDATE \"{schema}\".meta SET value = '99' WHERE key = 'format_version'"),
            &[],
        )
        .map_err(|e| Error::backend("postgres", e))?;
    match PostgresStore::open_with(&server().url(), PostgresOptions::default().schema(schema)) {
        Err(
            e @ Error::UnsupportedFormat {
                found: 99,
                supported,
                ..
            },
        ) => {
            assert_eq!(supported, FORMAT_VERSION);
            let message = e.to_string();
            assert!(
                message.contains("99") && message.contains(&FORMAT_VERSION.to_string()),
                "{message}"
            );
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    Ok(())
}

/// A lease of no time, one longer than the server's dates reach, and a connect timeout
/// of zero are refused at open, naming the option. A lease of 0 ms once opened a store
/// whose every flush failed with `LeaseLost` (the lease was over before it was
/// checked), and one of `Duration::MAX` a lease the server cannot write.
#[test]
fn options_no_store_can_work_with_are_refused_at_open() -> Result<(), Error> {
    let lease = |d| PostgresOptions::default().lease_duration(d);
    let refused = [
        ("lease_duration", lease(Duration::ZERO)),
        ("lease_duration", lease(Duration::from_micros(999))),
        ("lease_duration", lease(Duration::MAX)),
        (
            "lease_duration",
            lease(PostgresOptions::MAX_LEASE + Duration::from_millis(1)),
        ),
        (
            "connect_timeout",
            PostgresOptions::default().connect_timeout(Duration::ZERO),
        ),
    ];
    for (option, options) in refused {
        match fresh_store(options.clone()) {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains(option), "{options:?}: {reason}");
            }
            Ok((store, schema)) => {
                let flushed = store.open_document(&"doc".into()).and_then(|mut p| {
                    p.set_document(b"x".to_vec())?;
                    p.flush()
                });
                panic!(
                    "{options:?} opened schema {schema}, whose first flush returned {flushed:?}"
                );
            }
            Err(other) => panic!("{options:?}: {other:?}"),
        }
    }
    // The bounds themselves are taken, and the longest lease works.
    drop(fresh_store(lease(Duration::from_millis(1)))?);
    let (store, _) = fresh_store(lease(PostgresOptions::MAX_LEASE))?;
    let mut p = store.open_document(&"doc".into())?;
    p.set_document(b"kept".to_vec())?;
    assert!(p.flush()? > 0);
    Ok(())
}
