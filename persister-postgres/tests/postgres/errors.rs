//! Connections cut by the server, and passwords kept out of every message.

use persister_core::{Batch, DocumentState, Error, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_reliability::Contents;

use crate::child::writer_batch;
use crate::cluster::{admin, fresh_schema, server, wait_for};

/// `url` with an `application_name`, so the test can find its connections.
pub fn named(url: &str, name: &str) -> String {
    if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

pub fn test_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidInput {
        what: "test",
        reason: e.to_string(),
    }
}

/// Waits until a backend of `name` waits for a lock.
pub fn wait_lock_wait(client: &mut postgres::Client, name: &str) -> Result<(), Error> {
    wait_for("a backend to wait for a lock", || {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, i64>(0) == 1)
    })
    .map_err(test_error)
}

/// Terminates every backend of `name`, and waits until they are gone.
pub fn terminate(client: &mut postgres::Client, name: &str) -> Result<(), Error> {
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .map_err(test_error)?;
    wait_for("the terminated backends to go", || {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, i64>(0) == 0)
    })
    .map_err(test_error)
}

/// A connection terminated before an apply that must read: the apply reconnects and
/// works, and so does the flush.
#[test]
fn connection_terminated_before_apply_is_replaced() -> Result<(), Error> {
    let schema = fresh_schema();
    let name = format!("apply_{schema}");
    let url = named(&server().url(), &name);
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema))?;
    let mut p = store.open_document(&"doc".into())?;
    p.apply(writer_batch(1))?;
    p.apply(writer_batch(2))?;
    p.flush()?;
    let mut client = admin(&server().url()).map_err(test_error)?;
    terminate(&mut client, &name)?;
    // An overwrite of a stored change must look up its length: a read on a new
    // connection.
    p.apply(Batch::new().insert_change(
        persister_core::ActorId::new([7; 16]),
        1,
        b"again".to_vec(),
    ))?;
    assert!(p.flush()? > 0);
    drop(p);
    let p = store.open_document(&"doc".into())?;
    let changes = p.get_changes()?;
    assert_eq!(changes, vec![b"again".to_vec(), b"change 2".to_vec()]);
    assert_eq!(p.sizes().changes, 5 + 8);
    Ok(())
}

/// A connection terminated while a flush is in flight: the flush fails, the handle is
/// poisoned, and reopening shows all of that flush or none of it.
#[test]
fn connection_terminated_during_flush_poisons_and_leaves_all_or_nothing() -> Result<(), Error> {
    let schema = fresh_schema();
    let name = format!("flush_{schema}");
    let url = named(&server().url(), &name);
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))?;
    let mut p = store.open_document(&"doc".into())?;
    p.apply(writer_batch(1))?;
    p.flush()?;
    p.apply(writer_batch(2))?;
    // Hold the lease row, so that the flush waits inside its statement.
    let mut blocker = admin(&server().url()).map_err(test_error)?;
    let mut txn = blocker.transaction().map_err(test_error)?;
    txn.query(
        &format!("SELECT 1 FROM \"{schema}\".leases WHERE document = $1 FOR UPDATE"),
        &[&b"doc".as_slice()],
    )
    .map_err(test_error)?;
    let result = std::thread::scope(|scope| -> Result<Result<usize, Error>, Error> {
        let flushing = scope.spawn(|| p.flush());
        let mut client = admin(&server().url()).map_err(test_error)?;
        // The flush waits for the lease row.
        wait_lock_wait(&mut client, &name)?;
        terminate(&mut client, &name)?;
        flushing
            .join()
            .map_err(|_| test_error("the flush panicked"))
    })?;
    txn.rollback().map_err(test_error)?;
    assert!(
        result.is_err(),
        "a flush whose connection was terminated returned {result:?}"
    );
    assert!(matches!(
        p.apply(writer_batch(3)),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(p.flush(), Err(Error::Poisoned { .. })));
    drop(p);
    let p = store.open_document(&"doc".into())?;
    let found = Contents::read(&p)?;
    let mut one = DocumentState::new();
    one.apply(writer_batch(1));
    let mut two = one.clone();
    two.apply(writer_batch(2));
    assert!(
        found == Contents::of(Some(&one)) || found == Contents::of(Some(&two)),
        "{found:?}"
    );
    Ok(())
}

/// No error or description holds the password, whether the URL is refused, the server
/// refuses the login or the database, or a document is locked.
#[test]
fn passwords_never_appear_in_errors() -> Result<(), Error> {
    const PASSWORD: &str = "pw-Zq81-never-shown";
    let base = server().url();
    let with_password = |url: &str| {
        if url.contains("://") {
            url.replacen("://", &format!("://:{PASSWORD}@"), 1).replace(
                &format!(":{PASSWORD}@postgres@"),
                &format!("postgres:{PASSWORD}@"),
            )
        } else {
            format!("{url} password={PASSWORD}")
        }
    };
    let url = with_password(&base);
    let mut messages = Vec::new();
    // A database that does not exist.
    let missing = if url.contains("://") {
        format!("{url}_missing")
    } else {
        // In place of the string's own database: a second `dbname` would be refused
        // before the server is asked.
        let mut parts: Vec<&str> = url
            .split_whitespace()
            .filter(|part| !part.starts_with("dbname="))
            .collect();
        parts.push("dbname=no_such_database");
        parts.join(" ")
    };
    let err = PostgresStore::open(&missing)
        .err()
        .ok_or_else(|| test_error("opened a missing database"))?;
    assert!(
        matches!(err, Error::Backend { .. }),
        "not the server's refusal: {err}"
    );
    messages.push(format!("{err} {err:?}"));
    // A malformed URL holding the password.
    for bad in [
        format!("postgres://u:{PASSWORD}@host:notaport/db"),
        format!("host=/x port=nope password={PASSWORD}"),
    ] {
        let err = PostgresStore::open(&bad)
            .err()
            .ok_or_else(|| test_error("opened a malformed URL"))?;
        messages.push(format!("{err} {err:?}"));
    }
    // A locked document, and the store's description.
    let schema = fresh_schema();
    let one = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))?;
    let two = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema))?;
    let _held = one.open_document(&"doc".into())?;
    let err = two
        .open_document(&"doc".into())
        .err()
        .ok_or_else(|| test_error("a held document opened"))?;
    assert!(matches!(err, Error::Locked { .. }));
    messages.push(format!("{err} {err:?} {two:?} {}", two.description()));
    for message in &messages {
        assert!(
            !message.contains(PASSWORD),
            "the password appears in: {message}"
        );
    }
    Ok(())
}

/// `url` with `option` added, whether it is a URL or a connection string.
fn with_option(url: &str, option: &str) -> String {
    if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{option}")
    } else {
        format!("{url} {option}")
    }
}

/// Whether the shared server has a schema named `schema`.
fn schema_exists(schema: &str) -> Result<bool, Error> {
    let mut client = admin(&server().url()).map_err(test_error)?;
    let row = client
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .map_err(test_error)?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// A URL whose options are repeated, unknown or out of range is refused with
/// `InvalidInput` naming the option, and nothing is created; hosts, which the driver
/// tries in turn, may be given several times.
#[test]
fn a_url_with_a_repeated_unknown_or_bad_option_opens_nothing() -> Result<(), Error> {
    const PASSWORD: &str = "pw-Opt7-never-shown";
    let base = with_option(&server().url(), &format!("password={PASSWORD}"));
    let (a, b) = (fresh_schema(), fresh_schema());
    // `url` with `options` added, one by one.
    let with = |options: &[&str]| {
        options
            .iter()
            .fold(base.clone(), |url, option| with_option(&url, option))
    };
    let (schema_a, schema_b) = (format!("schema={a}"), format!("schema={b}"));
    for (url, names) in [
        (
            with(&[&schema_a, "sslmode=disable", &schema_b]),
            &["`schema`", a.as_str(), b.as_str()][..],
        ),
        (
            with(&[&schema_a, "migrate_format=true", "migrate_format=false"]),
            &["`migrate_format`"],
        ),
        (
            with(&["sslmode=disable", &schema_a, "sslmode=disable"]),
            &["`sslmode`"],
        ),
        (
            with(&[&schema_a, "bogus=1"]),
            &["`bogus`", "schema, migrate_format"],
        ),
        (
            with(&[&schema_a, "connect_timeout=0"]),
            &["`connect_timeout`", "at least 1"],
        ),
        (
            with(&[&schema_a, "migrate_format=TRUE"]),
            &["migrate_format", "\"TRUE\""],
        ),
        (with(&["schema=A"]), &["schema name", "\"A\""]),
    ] {
        let err = PostgresStore::open(&url).err().ok_or_else(|| {
            test_error(format!(
                "opened the URL that should be refused for {names:?}"
            ))
        })?;
        let message = err.to_string();
        assert!(
            matches!(err, Error::InvalidInput { .. }),
            "{url}: {message}"
        );
        for name in names {
            assert!(message.contains(name), "{name} is not in: {message}");
        }
        assert!(!message.contains(PASSWORD), "{message}");
    }
    assert!(
        !schema_exists(&a)? && !schema_exists(&b)?,
        "a schema was made"
    );
    // A host that does not answer, then the server: the second is tried.
    let hosts = if base.contains("://") {
        with_option(&base, "host=%2Fno%2Fsuch%2Fdir")
    } else {
        format!("host=/no/such/dir {base}")
    };
    let store = PostgresStore::open(&with_option(&hosts, &format!("schema={a}")))?;
    store.close()?;
    assert!(schema_exists(&a)?);
    Ok(())
}

/// With `create_if_missing(false)` (what tools that only look use), a schema holding
/// no store is refused and left as it was; a store that exists opens.
#[test]
fn opening_without_creating_refuses_an_empty_schema_and_creates_nothing() -> Result<(), Error> {
    let schema = fresh_schema();
    let looking = PostgresOptions::default()
        .schema(schema.clone())
        .create_if_missing(false);
    let refused = PostgresStore::open_with(&server().url(), looking.clone());
    assert!(
        matches!(&refused, Err(Error::NotAStore { what, .. }) if what.contains("none of its tables")),
        "{:?}",
        refused.err()
    );
    let mut client = admin(&server().url()).map_err(test_error)?;
    let count = |client: &mut postgres::Client| -> Result<i64, Error> {
        let row = client
            .query_one(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                &[&schema],
            )
            .map_err(test_error)?;
        Ok(row.get(0))
    };
    assert_eq!(count(&mut client)?, 0, "the schema was created");

    drop(PostgresStore::open_with(
        &server().url(),
        PostgresOptions::default().schema(schema.clone()),
    )?);
    assert_eq!(count(&mut client)?, 1);
    PostgresStore::open_with(&server().url(), looking)?;
    Ok(())
}
