//! The in-place migration of stores of format version 1, whose rows are written here as
//! its builds wrote them.

use std::thread;

use persister_core::{ActorId, Batch, DocumentId, DocumentState, Error, Persister, Store};
use persister_postgres::{FORMAT_VERSION, PostgresOptions, PostgresStore};
use persister_reliability::Contents;

use crate::cluster::{admin, fresh_schema, server, wait_for, waiting_on_locks};
use crate::errors::test_error;

/// The tables of format version 1, as its builds created them (`S` is the schema).
const VERSION_1: &str = "
CREATE SCHEMA S;
CREATE TABLE S.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE S.documents (
    document bytea PRIMARY KEY,
    data bytea,
    changes_bytes int8 NOT NULL,
    document_bytes int8 NOT NULL,
    sync_state_bytes int8 NOT NULL,
    change_count int8 NOT NULL,
    sync_state_count int8 NOT NULL);
CREATE TABLE S.changes (
    document bytea NOT NULL,
    actor bytea NOT NULL,
    seq int8 NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (document, actor, seq));
CREATE TABLE S.sync_states (
    document bytea NOT NULL,
    peer bytea NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (document, peer));
CREATE TABLE S.leases (
    document bytea PRIMARY KEY,
    token int8 NOT NULL,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL);
INSERT INTO S.meta (key, value) VALUES ('format', 'persister-postgres'), ('format_version', '1');";

/// A stored seq: its top bit flipped, as `int8`.
fn seq_to_sql(seq: u64) -> i64 {
    i64::from_be_bytes((seq ^ (1 << 63)).to_be_bytes())
}

/// A document of a version-1 store, and whether it has a row in `leases` (every
/// document written by a version-1 build has one).
struct Stored<'a> {
    id: &'a str,
    state: &'a DocumentState,
    leased: bool,
}

/// Creates a store of format version 1 in `schema` holding `documents`, and a lease
/// row of its own for each id of `leased_only` (documents opened but never flushed).
fn version_1_store(
    schema: &str,
    documents: &[Stored<'_>],
    leased_only: &[&str],
) -> Result<(), Error> {
    let mut client = admin(&server().url()).map_err(test_error)?;
    let s = format!("\"{schema}\"");
    client
        .batch_execute(
            &VERSION_1
                .replace("S.", &format!("{s}."))
                .replace(" S;", &format!(" {s};")),
        )
        .map_err(test_error)?;
    let lease = format!(
        "INSERT INTO {s}.leases (document, token, holder, expires_at) VALUES ($1, 7, 'pid 1 on an old host', now() - interval '1 second')"
    );
    for stored in documents {
        let id = stored.id.as_bytes();
        let sizes = stored.state.sizes();
        let n = |v: u64| i64::try_from(v).map_err(test_error);
        client
            .execute(
                &format!("INSERT INTO {s}.documents VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &id,
                    &stored.state.document(),
                    &n(sizes.changes)?,
                    &n(sizes.document)?,
                    &n(sizes.sync_states)?,
                    &n(sizes.change_count)?,
                    &n(sizes.sync_state_count)?,
                ],
            )
            .map_err(test_error)?;
        for (actor, seq, value) in stored.state.changes() {
            client
                .execute(
                    &format!("INSERT INTO {s}.changes VALUES ($1, $2, $3, $4)"),
                    &[&id, &actor.as_bytes(), &seq_to_sql(seq), &value],
                )
                .map_err(test_error)?;
        }
        for (peer, state) in stored.state.sync_states() {
            client
                .execute(
                    &format!("INSERT INTO {s}.sync_states VALUES ($1, $2, $3)"),
                    &[&id, &peer, &state],
                )
                .map_err(test_error)?;
        }
        if stored.leased {
            client.execute(&lease, &[&id]).map_err(test_error)?;
        }
    }
    for id in leased_only {
        client
            .execute(&lease, &[&id.as_bytes()])
            .map_err(test_error)?;
    }
    Ok(())
}

/// The `format_version` a store's `meta` records.
fn recorded_version(schema: &str) -> Result<String, Error> {
    let mut client = admin(&server().url()).map_err(test_error)?;
    let row = client
        .query_one(
            &format!("SELECT value FROM \"{schema}\".meta WHERE key = 'format_version'"),
            &[],
        )
        .map_err(test_error)?;
    Ok(row.get(0))
}

/// Options that migrate the store in `schema`.
fn migrating(schema: &str) -> PostgresOptions {
    PostgresOptions::default()
        .schema(schema)
        .migrate_format(true)
}

/// Whether `documents` still has version 1's size columns.
fn has_version_1_columns(client: &mut postgres::Client, schema: &str) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'documents' AND column_name = 'changes_bytes'",
            &[&schema],
        )
        .map_err(test_error)?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// Checks that `id` reads as `state`, sizes included.
fn check(store: &PostgresStore, id: &str, state: &DocumentState) -> Result<(), Error> {
    let doc = store.open_document(&id.into())?;
    assert_eq!(Contents::read(&doc)?, Contents::of(Some(state)), "{id}");
    assert_eq!(doc.sizes(), state.sizes(), "{id}");
    Ok(())
}

/// A store of version 1 is refused, naming the way to migrate it, and left as it is,
/// unless the options ask for the migration; then every document reads as before with
/// the sizes it had, writes and removals work, and the columns a version-1 build reads
/// and writes are gone, so such a build still running fails rather than go on.
#[test]
fn a_store_of_version_1_is_migrated_in_place_and_reads_as_before() -> Result<(), Error> {
    let schema = fresh_schema();
    let (one, two) = (ActorId::new([1; 16]), ActorId::new([2; 16]));
    let mut a = DocumentState::new();
    a.apply(
        Batch::new()
            .insert_change(one.clone(), 1, b"a1".to_vec())
            .insert_change(one.clone(), 2, b"a2".to_vec())
            .insert_change(two.clone(), u64::MAX, b"last seq".to_vec())
            .set_document(b"compacted a".to_vec())
            .set_sync_state(b"peer".to_vec(), b"its state".to_vec()),
    );
    let mut b = DocumentState::new();
    b.apply(Batch::new().insert_change(two.clone(), 1, b"b1".to_vec()));
    let stored = [
        Stored {
            id: "a",
            state: &a,
            leased: true,
        },
        Stored {
            id: "b",
            state: &b,
            leased: false,
        },
    ];
    version_1_store(&schema, &stored, &["opened, never flushed"])?;
    let mut client = admin(&server().url()).map_err(test_error)?;

    for options in [
        PostgresOptions::default().schema(schema.clone()),
        // As the command line opens a store it only reads.
        PostgresOptions::default()
            .schema(schema.clone())
            .create_if_missing(false),
    ] {
        match PostgresStore::open_with(&server().url(), options) {
            Err(
                e @ Error::MigrationNeeded {
                    found: 1,
                    supported: FORMAT_VERSION,
                    ..
                },
            ) => assert!(e.to_string().contains("migrate_format(true)"), "{e}"),
            other => panic!("expected MigrationNeeded, got {other:?}"),
        }
        assert_eq!(recorded_version(&schema)?, "1");
        assert!(has_version_1_columns(&mut client, &schema)?);
    }

    // The URL's option, as the command line asks for the migration.
    let url = server().url();
    let with = |option: &str| {
        let join = match (url.contains("://"), url.contains('?')) {
            (false, _) => ' ',
            (true, false) => '?',
            (true, true) => '&',
        };
        format!("{url}{join}migrate_format={option}")
    };
    let options = || PostgresOptions::default().schema(schema.clone());
    let bad = PostgresStore::open_with(&with("yes"), options());
    assert!(matches!(bad, Err(Error::InvalidInput { .. })), "{bad:?}");
    let refused = PostgresStore::open_with(&with("false"), migrating(&schema));
    assert!(
        matches!(refused, Err(Error::MigrationNeeded { .. })),
        "{refused:?}"
    );
    assert_eq!(recorded_version(&schema)?, "1");
    let store = PostgresStore::open_with(&with("true"), options())?;
    assert_eq!(recorded_version(&schema)?, FORMAT_VERSION.to_string());
    assert_eq!(store.format_version(), Some(FORMAT_VERSION));
    assert!(!has_version_1_columns(&mut client, &schema)?);
    let ids: Vec<DocumentId> = vec!["a".into(), "b".into()];
    assert_eq!(store.list_documents()?, ids);
    check(&store, "a", &a)?;
    check(&store, "b", &b)?;
    check(&store, "opened, never flushed", &DocumentState::new())?;

    let old_column = client.query(
        &format!("SELECT changes_bytes FROM \"{schema}\".documents"),
        &[],
    );
    let code = old_column
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()));
    assert_eq!(code.as_deref(), Some("42703"), "undefined column");

    let more = Batch::new()
        .insert_change(one.clone(), 3, b"a3".to_vec())
        .set_sync_state(b"peer".to_vec(), b"its next state".to_vec());
    let mut doc = store.open_document(&"a".into())?;
    doc.apply(more.clone())?;
    doc.flush()?;
    drop(doc);
    a.apply(more);
    check(&store, "a", &a)?;

    store.remove_document(&"b".into())?;
    check(&store, "b", &DocumentState::new())?;
    let ids: Vec<DocumentId> = vec!["a".into()];
    assert_eq!(store.list_documents()?, ids);

    // A store of version 2 opens as it is, with the option or without.
    drop(store);
    let store = PostgresStore::open_with(&server().url(), migrating(&schema))?;
    check(&store, "a", &a)?;
    drop(store);
    let store =
        PostgresStore::open_with(&server().url(), PostgresOptions::default().schema(schema))?;
    check(&store, "a", &a)
}

/// The sizes in a lease's row are a record apart from the rows they count: a read that
/// finds other rows than they count fails with `Corrupt` rather than return them.
#[test]
fn a_read_that_disagrees_with_the_sizes_in_the_lease_row_is_corrupt() -> Result<(), Error> {
    let schema = fresh_schema();
    let store = PostgresStore::open_with(
        &server().url(),
        PostgresOptions::default().schema(schema.clone()),
    )?;
    let mut doc = store.open_document(&"a".into())?;
    let actor = ActorId::new([4; 16]);
    doc.apply(
        Batch::new()
            .insert_change(actor.clone(), 1, b"one".to_vec())
            .insert_change(actor, 2, b"two".to_vec()),
    )?;
    doc.flush()?;
    drop(doc);
    let mut client = admin(&server().url()).map_err(test_error)?;
    client
        .execute(
            &format!("DELETE FROM \"{schema}\".changes WHERE seq = (SELECT max(seq) FROM \"{schema}\".changes)"),
            &[],
        )
        .map_err(test_error)?;
    let doc = store.open_document(&"a".into())?;
    assert_eq!(doc.sizes().change_count, 2);
    let read = doc.get_change_entries();
    assert!(matches!(read, Err(Error::Corrupt { .. })), "{read:?}");
    Ok(())
}

/// Two stores migrating one store of version 1 at once: the first takes the format
/// record's row lock and waits for a table lock the test holds, the second waits for
/// the row lock; once the test lets go, the first migrates and the second finds version
/// 2 and leaves it. Both open, and the sizes are those of version 1, moved once.
#[test]
fn two_stores_migrating_at_once_migrate_once() -> Result<(), Error> {
    let schema = fresh_schema();
    let mut a = DocumentState::new();
    a.apply(Batch::new().insert_change(ActorId::new([5; 16]), 1, b"a1".to_vec()));
    let stored = [Stored {
        id: "a",
        state: &a,
        leased: true,
    }];
    version_1_store(&schema, &stored, &[])?;
    let url = server().url();
    let mut holder = admin(&url).map_err(test_error)?;
    let mut watcher = admin(&url).map_err(test_error)?;
    // The openers' migrations, which alter `leases`, waiting on a lock.
    let mut waiting = || waiting_on_locks(&mut watcher, &schema);
    let mut lock = holder.transaction().map_err(test_error)?;
    lock.batch_execute(&format!("LOCK TABLE \"{schema}\".leases IN SHARE MODE"))
        .map_err(test_error)?;
    let opened = thread::scope(|scope| -> Result<Vec<PostgresStore>, Error> {
        let open = || PostgresStore::open_with(&server().url(), migrating(&schema));
        let first = scope.spawn(open);
        wait_for("the first migration to wait for the table", || {
            Ok(waiting()? == 1)
        })
        .map_err(test_error)?;
        let second = scope.spawn(open);
        wait_for("the second migration to wait for the format record", || {
            Ok(waiting()? == 2)
        })
        .map_err(test_error)?;
        lock.commit().map_err(test_error)?;
        [first, second]
            .into_iter()
            .map(|h| h.join().expect("an opening thread panicked"))
            .collect()
    })?;
    for store in &opened {
        check(store, "a", &a)?;
    }
    assert_eq!(recorded_version(&schema)?, FORMAT_VERSION.to_string());
    Ok(())
}
