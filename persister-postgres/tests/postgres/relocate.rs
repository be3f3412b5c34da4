//! Moving a store to another schema and dropping one (`PostgresStore::rename`,
//! `PostgresStore::destroy`): whole or not at all, and never over data.

use persister_core::{ActorId, Batch, DocumentId, Error, Persister, Store};
use persister_postgres::{PostgresStore, url_with_schema};
use persister_reliability::Contents;

use crate::cluster::{admin, fresh_schema, server};
use crate::errors::test_error;

fn url(schema: &str) -> Result<String, Error> {
    url_with_schema(&server().url(), schema)
}

/// The object id of the schema of that name, if there is one: the same schema as long
/// as it is the same.
fn schema_oid(schema: &str) -> Result<Option<u32>, Error> {
    let mut client = admin(&server().url()).map_err(test_error)?;
    let row = client
        .query_opt(
            "SELECT oid FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .map_err(test_error)?;
    Ok(row.map(|row| row.get(0)))
}

/// Whether a schema of that name exists.
fn schema_exists(schema: &str) -> Result<bool, Error> {
    Ok(schema_oid(schema)?.is_some())
}

fn sql(text: &str) -> Result<(), Error> {
    admin(&server().url())
        .map_err(test_error)?
        .batch_execute(text)
        .map_err(test_error)
}

/// A store in a fresh schema holding three documents (changes, a compacted document,
/// a sync state), all closed; returns the schema and what each document reads.
fn written_store() -> Result<(String, Vec<(DocumentId, Contents)>), Error> {
    let schema = fresh_schema();
    let store = PostgresStore::open(&url(&schema)?)?;
    let actor = ActorId::new([7; 16]);
    let mut read = Vec::new();
    for n in 0..3u64 {
        let id = DocumentId::from(format!("doc {n}"));
        let mut doc = store.open_document(&id)?;
        let mut batch = Batch::new()
            .insert_change(actor.clone(), 1, vec![n as u8; 40])
            .insert_change(actor.clone(), 2, vec![0xee; 70])
            .set_sync_state(vec![n as u8; 16], b"peer state".to_vec());
        if n == 1 {
            batch = batch.set_document(b"compacted".to_vec());
        }
        doc.apply(batch)?;
        doc.flush()?;
        read.push((id, Contents::read(&doc)?));
        doc.close()?;
    }
    store.close()?;
    Ok((schema, read))
}

/// What the store at `schema` reads, document by document.
fn read_store(schema: &str) -> Result<Vec<(DocumentId, Contents)>, Error> {
    let store = PostgresStore::open(&url(schema)?)?;
    let mut read = Vec::new();
    for id in store.list_documents()? {
        let doc = store.open_document(&id)?;
        read.push((id, Contents::read(&doc)?));
        doc.close()?;
    }
    store.close()?;
    Ok(read)
}

/// A store moves whole: the new schema reads what the old one held, and the old one
/// is gone.
#[test]
fn a_store_moves_whole_to_another_schema() -> Result<(), Error> {
    let (from, written) = written_store()?;
    let to = fresh_schema();
    PostgresStore::rename(&url(&from)?, &to)?;
    assert!(!schema_exists(&from)?, "the old schema is left");
    assert_eq!(read_store(&to)?, written);
    // And back.
    PostgresStore::rename(&url(&to)?, &from)?;
    assert_eq!(read_store(&from)?, written);
    PostgresStore::destroy(&url(&from)?)?;
    Ok(())
}

/// A destination that does not exist, is an empty schema, or is a store with no
/// documents is taken; one holding documents or anything else is refused, and both
/// sides stay as they were.
#[test]
fn a_move_takes_only_an_empty_destination() -> Result<(), Error> {
    let (from, written) = written_store()?;
    let from_url = url(&from)?;

    // An empty schema takes the tables and stays itself (its owner, its privileges).
    let empty = fresh_schema();
    sql(&format!("CREATE SCHEMA \"{empty}\""))?;
    let oid = schema_oid(&empty)?;
    PostgresStore::rename(&from_url, &empty)?;
    assert_eq!(read_store(&empty)?, written);
    assert_eq!(schema_oid(&empty)?, oid, "the empty schema was replaced");
    assert!(!schema_exists(&from)?);
    PostgresStore::rename(&url(&empty)?, &from)?;

    // A store opened but never written (a lease row, no documents) is replaced.
    let unused = fresh_schema();
    let store = PostgresStore::open(&url(&unused)?)?;
    store.open_document(&"opened".into())?.close()?;
    store.close()?;
    let oid = schema_oid(&unused)?;
    PostgresStore::rename(&from_url, &unused)?;
    assert_eq!(read_store(&unused)?, written);
    assert_eq!(schema_oid(&unused)?, oid);
    PostgresStore::rename(&url(&unused)?, &from)?;

    // A store holding a document is not.
    let (full, full_written) = written_store()?;
    let refused = PostgresStore::rename(&from_url, &full);
    assert!(
        matches!(&refused, Err(Error::InvalidInput { reason, .. }) if reason.contains("holds documents")),
        "{refused:?}"
    );
    // Nor a schema holding a table of the user's.
    let other = fresh_schema();
    sql(&format!(
        "CREATE SCHEMA \"{other}\"; CREATE TABLE \"{other}\".mine (x int)"
    ))?;
    let refused = PostgresStore::rename(&from_url, &other);
    assert!(
        matches!(&refused, Err(Error::InvalidInput { reason, .. }) if reason.contains("mine")),
        "{refused:?}"
    );
    // Nor the same schema, nor a name that is not a plain identifier.
    for to in [from.as_str(), "x\"; DROP TABLE y; --", "Upper", ""] {
        let refused = PostgresStore::rename(&from_url, to);
        assert!(
            matches!(refused, Err(Error::InvalidInput { .. })),
            "{to:?}: {refused:?}"
        );
    }
    assert_eq!(read_store(&from)?, written);
    assert_eq!(read_store(&full)?, full_written);
    let mut client = admin(&server().url()).map_err(test_error)?;
    let kept: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{other}\".mine"), &[])
        .map_err(test_error)?
        .get(0);
    assert_eq!(kept, 0);
    for schema in [&from, &full] {
        PostgresStore::destroy(&url(schema)?)?;
    }
    sql(&format!("DROP SCHEMA \"{other}\" CASCADE"))?;
    Ok(())
}

/// Only a store moves: a schema that does not exist or holds other tables is not one.
#[test]
fn only_a_store_is_moved_or_dropped() -> Result<(), Error> {
    let missing = fresh_schema();
    let moved = PostgresStore::rename(&url(&missing)?, &fresh_schema());
    assert!(matches!(moved, Err(Error::NotAStore { .. })), "{moved:?}");
    // Dropping what is not there is done already.
    PostgresStore::destroy(&url(&missing)?)?;
    assert!(!schema_exists(&missing)?);

    let other = fresh_schema();
    sql(&format!(
        "CREATE SCHEMA \"{other}\"; CREATE TABLE \"{other}\".documents (x int)"
    ))?;
    let moved = PostgresStore::rename(&url(&other)?, &fresh_schema());
    assert!(matches!(moved, Err(Error::NotAStore { .. })), "{moved:?}");
    let dropped = PostgresStore::destroy(&url(&other)?);
    assert!(
        matches!(dropped, Err(Error::NotAStore { .. })),
        "{dropped:?}"
    );

    // A store with a table of the user's beside it is not dropped either.
    let (mixed, written) = written_store()?;
    sql(&format!("CREATE TABLE \"{mixed}\".notes (x int)"))?;
    let dropped = PostgresStore::destroy(&url(&mixed)?);
    assert!(
        matches!(&dropped, Err(Error::NotAStore { path, .. }) if path.to_string_lossy().contains("notes")),
        "{dropped:?}"
    );
    assert_eq!(read_store(&mixed)?, written);
    assert!(schema_exists(&other)?);

    sql(&format!(
        "DROP SCHEMA \"{other}\" CASCADE; DROP TABLE \"{mixed}\".notes"
    ))?;
    PostgresStore::destroy(&url(&mixed)?)?;
    assert!(!schema_exists(&mixed)?);
    Ok(())
}

/// A store with an open document is not moved, and neither is a destination store
/// with one: its holder would go on writing where nobody looks. Another process's
/// open document stops a drop; this process's own do not, and their handles fail.
#[test]
fn a_store_in_use_is_neither_moved_nor_dropped() -> Result<(), Error> {
    let (from, written) = written_store()?;
    let to = fresh_schema();
    // Another process's lease, as it writes one.
    let lease = |until: &str| {
        sql(&format!(
            "UPDATE \"{from}\".leases SET holder = 'pid 1 on another host', expires_at = {until}
             WHERE document = convert_to('doc 0', 'UTF8')"
        ))
    };
    lease("now() + interval '1 hour'")?;
    let moved = PostgresStore::rename(&url(&from)?, &to);
    assert!(matches!(moved, Err(Error::Locked { .. })), "{moved:?}");
    let dropped = PostgresStore::destroy(&url(&from)?);
    assert!(
        matches!(&dropped, Err(Error::Locked { path }) if path.to_string_lossy().contains("another host")),
        "{dropped:?}"
    );
    lease("now()")?;
    assert!(!schema_exists(&to)?);
    assert_eq!(read_store(&from)?, written);

    // A process with this one's id on a host of the same name (two containers' first
    // processes, say) is another process all the same.
    let store = PostgresStore::open(&url(&from)?)?;
    store.open_document(&"doc 1".into())?.close()?;
    let mut client = admin(&server().url()).map_err(test_error)?;
    let ours: String = client
        .query_one(
            &format!(
                "SELECT holder FROM \"{from}\".leases WHERE document = convert_to('doc 1', 'UTF8')"
            ),
            &[],
        )
        .map_err(test_error)?
        .get(0);
    let (same_name, _) = ours
        .split_once(" (instance ")
        .ok_or_else(|| test_error(format!("a holder without its instance: {ours}")))?;
    assert_eq!(
        same_name,
        format!("pid {} on {}", std::process::id(), hostname())
    );
    let twin = format!("{same_name} (instance 1.000000000)");
    client
        .execute(
            &format!(
                "UPDATE \"{from}\".leases SET holder = $1, expires_at = now() + interval '1 hour'
                 WHERE document = convert_to('doc 1', 'UTF8')"
            ),
            &[&twin],
        )
        .map_err(test_error)?;
    let dropped = PostgresStore::destroy(&url(&from)?);
    assert!(
        matches!(&dropped, Err(Error::Locked { path }) if path.to_string_lossy().contains(&twin)),
        "{dropped:?}"
    );
    sql(&format!(
        "UPDATE \"{from}\".leases SET expires_at = now() WHERE document = convert_to('doc 1', 'UTF8')"
    ))?;
    drop(store);
    assert_eq!(read_store(&from)?, written);

    // This process's open document stops a move too.
    let store = PostgresStore::open(&url(&from)?)?;
    let mut doc = store.open_document(&"doc 0".into())?;
    let moved = PostgresStore::rename(&url(&from)?, &to);
    assert!(matches!(moved, Err(Error::Locked { .. })), "{moved:?}");

    // A destination store without documents, but with one open.
    let (source, source_written) = written_store()?;
    let unused = fresh_schema();
    let other = PostgresStore::open(&url(&unused)?)?;
    let held = other.open_document(&"held".into())?;
    let moved = PostgresStore::rename(&url(&source)?, &unused);
    assert!(matches!(moved, Err(Error::Locked { .. })), "{moved:?}");
    held.close()?;
    other.close()?;
    PostgresStore::rename(&url(&source)?, &unused)?;
    assert_eq!(read_store(&unused)?, source_written);

    // But not a drop: the open handle fails from then on.
    PostgresStore::destroy(&url(&from)?)?;
    assert!(!schema_exists(&from)?);
    doc.set_document(b"too late".to_vec())?;
    assert!(
        doc.flush().is_err(),
        "a flush into a dropped store succeeded"
    );
    drop(doc);
    drop(store);
    PostgresStore::destroy(&url(&unused)?)?;
    assert!(!schema_exists(&unused)?);
    Ok(())
}

/// The host name this process names itself by in its leases.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The shared server as a `key=value` connection string, each value quoted.
fn connection_string() -> Result<String, Error> {
    let config: postgres::Config = server().url().parse().map_err(test_error)?;
    let quoted = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        parts.push(format!("host={}", quoted(&host)));
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quoted(user)));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={}", quoted(dbname)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quoted(&String::from_utf8_lossy(password))
        ));
    }
    Ok(parts.join(" "))
}

/// In a connection string, a quoted value that reads like an option is part of that
/// value: the store is the one the string's own `schema` names, and a drop takes that
/// one and leaves the other alone.
#[test]
fn a_quoted_value_of_a_connection_string_names_no_store() -> Result<(), Error> {
    let (kept, before) = written_store()?;
    let gone = fresh_schema();
    PostgresStore::open(&url(&gone)?)?.close()?;
    let string = format!(
        "{}  schema={gone} application_name='drop  schema={kept} now'",
        connection_string()?
    );
    assert_eq!(persister_postgres::schema_in(&string)?, Some(gone.clone()));
    // The rest of the string reaches the driver as written, quotes and spaces too.
    let store = PostgresStore::open(&string)?;
    let mut client = admin(&server().url()).map_err(test_error)?;
    let names: Vec<String> = client
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'drop %'",
            &[],
        )
        .map_err(test_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        names.contains(&format!("drop  schema={kept} now")),
        "{names:?}"
    );
    store.close()?;
    PostgresStore::destroy(&string)?;
    assert!(!schema_exists(&gone)?);
    assert_eq!(read_store(&kept)?, before);
    Ok(())
}

/// `url` with one more option, whether it is a URL or a connection string.
fn with_option(url: &str, option: &str) -> String {
    match url.starts_with("postgres") && url.contains("://") {
        true => format!("{url}&{option}"),
        false => format!("{url} {option}"),
    }
}

/// A URL that carries `migrate_format`, as stores are opened with, moves and drops
/// its store as it opens it.
#[test]
fn a_url_with_migrate_format_moves_and_drops_its_store() -> Result<(), Error> {
    let (from, before) = written_store()?;
    let to = fresh_schema();
    for option in ["true", "false"] {
        let with = |schema: &str| -> Result<String, Error> {
            Ok(with_option(
                &url(schema)?,
                &format!("migrate_format={option}"),
            ))
        };
        let (from, to) = match option {
            "true" => (from.as_str(), to.as_str()),
            _ => (to.as_str(), from.as_str()),
        };
        PostgresStore::rename(&with(from)?, to)?;
        assert!(!schema_exists(from)?, "{option}");
        assert_eq!(read_store(to)?, before, "{option}");
    }
    PostgresStore::destroy(&with_option(&url(&from)?, "migrate_format=true"))?;
    assert!(!schema_exists(&from)?);
    Ok(())
}
