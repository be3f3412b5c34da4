//! Moving a whole store to another schema, and dropping one: how a new store is built
//! out of sight under a temporary schema and then put in place in one transaction, or
//! discarded.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use persister_core::{Error, Result};
use postgres::Transaction;

use crate::PostgresOptions;
use crate::error::{UNREPLICATED, failed, from_pg};
use crate::location::{Location, driver_url, is_url, option_in, take_option, url_query_start};
use crate::shared::this_holder;
use crate::sql::{FORMAT_NAME, SYNC_ON, check_schema_name};

/// The tables of a store, which [`PostgresStore::destroy`](crate::PostgresStore::destroy)
/// drops and nothing else, in the order a flush takes their locks (so that locking them
/// all waits for a flush rather than deadlock with one of several statements).
const TABLES: [&str; 5] = ["leases", "changes", "documents", "sync_states", "meta"];

/// How long each lock is waited for.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '10s'";

/// `url` with its `schema` option set to `schema` (replacing the one it has), as a URL
/// (`?schema=`) or a connection string (` schema=`) like `url`.
///
/// # Errors
///
/// [`Error::InvalidInput`] when `schema` is not a schema name the store accepts (1 to
/// 63 lowercase ASCII letters, digits and `_`, not starting with a digit).
pub fn url_with_schema(url: &str, schema: &str) -> Result<String> {
    check_schema_name(schema)?;
    let (base, _) = take_option(url, "schema");
    Ok(if is_url(&base) {
        let sep = if url_query_start(&base).is_some() {
            '&'
        } else {
            '?'
        };
        format!("{base}{sep}schema={schema}")
    } else if base.is_empty() {
        format!("schema={schema}")
    } else {
        format!("{base} schema={schema}")
    })
}

/// The schema a store URL names with its `schema` option (`?schema=notes`, or
/// `schema=notes` in a connection string); `None` when it has none, and the store's
/// is then [`PostgresOptions::schema`].
///
/// # Errors
///
/// [`Error::InvalidInput`] when the option is not a schema name the store accepts, or
/// is given more than once (`?schema=a&schema=b`).
pub fn schema_in(url: &str) -> Result<Option<String>> {
    let schema = option_in(url, "schema")?;
    if let Some(schema) = &schema {
        check_schema_name(schema)?;
    }
    Ok(schema)
}

/// Whether a store URL asks for the migration of an older format with its
/// `migrate_format` option (`true` or `false`); `None` when it has none, and the store
/// follows [`PostgresOptions::migrate_format`].
///
/// # Errors
///
/// [`Error::InvalidInput`] when the option is neither `true` nor `false` (exactly so:
/// not `TRUE`, `yes` or `1`), or is given more than once.
pub fn migrate_format_in(url: &str) -> Result<Option<bool>> {
    option_in(url, "migrate_format")?
        .map(|migrate| {
            migrate.parse().map_err(|_| Error::InvalidInput {
                what: "migrate_format option of the URL",
                reason: format!("{migrate:?} is neither true nor false"),
            })
        })
        .transpose()
}

/// The server and schema `url` names, as [`PostgresStore::open`](crate::PostgresStore::open)
/// reads them, and the place messages name.
fn locate(url: &str) -> Result<(Location, String, String)> {
    let options = PostgresOptions::default();
    let schema = schema_in(url)?.unwrap_or(options.schema);
    let location = Location::parse(
        &driver_url(url)?,
        options.connect_timeout,
        options.network_timeout,
    )?;
    let place = format!("{} schema {schema}", location.description);
    Ok((location, schema, place))
}

/// Runs `work` in one transaction on a new connection to `location`, and commits it
/// durably, as a flush commits (`synchronous_commit` on, or `remote_apply` kept): an
/// error when the server cancelled the commit's wait for its synchronous standbys, since
/// a failover may then undo it.
fn in_transaction<T>(
    location: &Location,
    place: &str,
    action: &str,
    work: impl FnOnce(&mut Transaction<'_>) -> std::result::Result<Result<T>, postgres::Error>,
) -> Result<T> {
    let unreplicated = Arc::new(AtomicBool::new(false));
    let mut client = location.connect(&unreplicated)?;
    let pg = |err: postgres::Error| from_pg(&err, action, place, &location.secret);
    let mut tx = client.transaction().map_err(pg)?;
    tx.batch_execute(LOCK_TIMEOUT).map_err(pg)?;
    tx.batch_execute(&format!("SELECT {SYNC_ON}")).map_err(pg)?;
    // On an error, dropping the transaction rolls it back.
    let value = work(&mut tx).map_err(pg)??;
    tx.commit().map_err(pg)?;
    if unreplicated.load(Ordering::SeqCst) {
        return Err(failed(action, place, UNREPLICATED));
    }
    Ok(value)
}

/// What a schema holds.
enum Held {
    /// No schema of that name.
    Nothing,
    /// A schema without tables, views or sequences.
    EmptySchema,
    /// A store: the five tables (and their indexes) only, with the format record; its
    /// tables are then locked against every other transaction.
    Store,
    /// Anything else: named in messages.
    Other(String),
}

/// What `schema` holds, read in `tx`.
fn held(tx: &mut Transaction<'_>, schema: &str) -> std::result::Result<Held, postgres::Error> {
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )?
        .get(0);
    if !exists {
        return Ok(Held::Nothing);
    }
    // Indexes and TOAST tables belong to the tables; anything else is not a store's.
    let relations: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind NOT IN ('i', 'I', 't') ORDER BY 1",
            &[&schema],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if relations.is_empty() {
        return Ok(Held::EmptySchema);
    }
    let others: Vec<&str> = relations
        .iter()
        .map(String::as_str)
        .filter(|r| !TABLES.contains(r))
        .collect();
    if !others.is_empty() {
        return Ok(Held::Other(format!("its relations {}", others.join(", "))));
    }
    if relations.len() != TABLES.len() {
        return Ok(Held::Other(format!(
            "only some of a store's tables ({})",
            relations.join(", ")
        )));
    }
    // Locked before the format record is read, in a flush's order, so that two
    // transactions moving or dropping the same store wait for each other rather than
    // both read it and then deadlock taking it over.
    lock_tables(tx, schema)?;
    let format: Option<String> = tx
        .query_opt(
            &format!("SELECT value FROM \"{schema}\".meta WHERE key = 'format'"),
            &[],
        )?
        .map(|row| row.get(0));
    Ok(match format {
        Some(f) if f == FORMAT_NAME => Held::Store,
        _ => Held::Other("tables of a store's names without its format record".into()),
    })
}

/// Locks the store's tables in `schema` against every other transaction, in the order
/// of [`TABLES`] (taking a lock held already does nothing).
fn lock_tables(tx: &mut Transaction<'_>, schema: &str) -> std::result::Result<(), postgres::Error> {
    let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{schema}\".{t}")).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables.join(", ")
    ))
}

/// Whether the store in `schema`, whose tables [`held`] found and locked, holds a
/// document, and the holder of a lease that has not expired (other than `except`).
fn store_in_use(
    tx: &mut Transaction<'_>,
    schema: &str,
    except: &str,
) -> std::result::Result<(bool, Option<String>), postgres::Error> {
    let s = format!("\"{schema}\"");
    let documents: bool = tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.documents) OR EXISTS (SELECT 1 FROM {s}.changes)
                 OR EXISTS (SELECT 1 FROM {s}.sync_states)"
            ),
            &[],
        )?
        .get(0);
    let holder: Option<String> = tx
        .query_opt(
            &format!(
                "SELECT holder FROM {s}.leases WHERE expires_at > now() AND holder <> $1 LIMIT 1"
            ),
            &[&except],
        )?
        .map(|row| row.get(0));
    Ok((documents, holder))
}

/// Drops the store's tables in `schema`. RESTRICT: an object of the user's that
/// depends on a table (a view, a foreign key) makes the drop fail instead of going with
/// it.
fn drop_tables(tx: &mut Transaction<'_>, schema: &str) -> std::result::Result<(), postgres::Error> {
    let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{schema}\".{t}")).collect();
    tx.batch_execute(&format!("DROP TABLE {} RESTRICT", tables.join(", ")))
}

/// Drops the store's tables in `schema`, then the schema, which must then be empty.
fn drop_store_tables(
    tx: &mut Transaction<'_>,
    schema: &str,
) -> std::result::Result<(), postgres::Error> {
    drop_tables(tx, schema)?;
    tx.batch_execute(&format!("DROP SCHEMA \"{schema}\" RESTRICT"))
}

/// The error for a schema at `place` that holds no store, or more than one's tables.
fn not_a_store(place: &str, held: Held) -> Error {
    match held {
        Held::Other(what) => Error::NotAStore {
            what: "a persister-postgres store",
            path: PathBuf::from(format!("{place}, which holds {what}")),
        },
        _ => Error::NotAStore {
            what: "a persister-postgres store (the schema has none of its tables)",
            path: PathBuf::from(place),
        },
    }
}

fn in_use(place: &str, holder: &str) -> Error {
    Error::Locked {
        path: PathBuf::from(format!(
            "{place} (a document of it is open: leased by {holder})"
        )),
    }
}

/// See [`PostgresStore::rename`](crate::PostgresStore::rename).
pub(crate) fn rename(url: &str, to: &str) -> Result<()> {
    let (location, from, place) = locate(url)?;
    check_schema_name(to)?;
    let target = format!("{} schema {to}", location.description);
    if from == to {
        return Err(Error::InvalidInput {
            what: "schema to move a store to",
            reason: format!("{place} is already in schema {to}"),
        });
    }
    in_transaction(&location, &place, "move the store", |tx| {
        match held(tx, &from)? {
            Held::Store => {}
            other => return Ok(Err(not_a_store(&place, other))),
        }
        if let (_, Some(holder)) = store_in_use(tx, &from, "")? {
            return Ok(Err(in_use(&place, &holder)));
        }
        // A schema that exists keeps its owner and privileges: the tables move into
        // it. A new one is the old one renamed.
        let move_in = format!(
            "{}; DROP SCHEMA \"{from}\" RESTRICT",
            TABLES
                .map(|t| format!("ALTER TABLE \"{from}\".{t} SET SCHEMA \"{to}\""))
                .join("; ")
        );
        match held(tx, to)? {
            Held::Nothing => {
                tx.batch_execute(&format!("ALTER SCHEMA \"{from}\" RENAME TO \"{to}\""))?;
            }
            Held::EmptySchema => tx.batch_execute(&move_in)?,
            Held::Store => match store_in_use(tx, to, "")? {
                (true, _) => {
                    return Ok(Err(Error::InvalidInput {
                        what: "schema to move a store to",
                        reason: format!(
                            "{target} holds documents; the move never merges into or replaces a store that holds data"
                        ),
                    }));
                }
                (false, Some(holder)) => return Ok(Err(in_use(&target, &holder))),
                (false, None) => {
                    drop_tables(tx, to)?;
                    tx.batch_execute(&move_in)?;
                }
            },
            Held::Other(what) => {
                return Ok(Err(Error::InvalidInput {
                    what: "schema to move a store to",
                    reason: format!("{target} holds {what}"),
                }));
            }
        }
        Ok(Ok(()))
    })
}

/// See [`PostgresStore::destroy`](crate::PostgresStore::destroy).
pub(crate) fn destroy(url: &str) -> Result<()> {
    let (location, schema, place) = locate(url)?;
    in_transaction(&location, &place, "drop the store", |tx| {
        match held(tx, &schema)? {
            Held::Nothing => return Ok(Ok(())),
            Held::Store => {}
            other => return Ok(Err(not_a_store(&place, other))),
        }
        if let (_, Some(holder)) = store_in_use(tx, &schema, &this_holder())? {
            return Ok(Err(in_use(&place, &holder)));
        }
        drop_store_tables(tx, &schema)?;
        Ok(Ok(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_the_schema_in_its_own_form() -> Result<()> {
        let cases = [
            ("postgres://u@h/db", "postgres://u@h/db?schema=tmp_1"),
            (
                "postgres://u@h/db?schema=notes&sslmode=disable",
                "postgres://u@h/db?sslmode=disable&schema=tmp_1",
            ),
            ("host=/run/pg user=u", "host=/run/pg user=u schema=tmp_1"),
            ("host=/run/pg schema=notes", "host=/run/pg schema=tmp_1"),
        ];
        for (url, expected) in cases {
            assert_eq!(url_with_schema(url, "tmp_1")?, expected, "{url}");
            assert_eq!(schema_in(expected)?.as_deref(), Some("tmp_1"));
        }
        assert_eq!(schema_in("postgres://u@h/db")?, None);
        assert_eq!(
            migrate_format_in("postgres://u@h/db?migrate_format=true")?,
            Some(true)
        );
        assert_eq!(
            migrate_format_in("host=/run/pg migrate_format=false")?,
            Some(false)
        );
        assert_eq!(migrate_format_in("postgres://u@h/db?schema=s")?, None);
        assert!(migrate_format_in("postgres://u@h/db?migrate_format=yes").is_err());
        assert!(schema_in("postgres://u@h/db?schema=No").is_err());
        for hostile in ["", "Notes", "a;drop", "1a", "a\"b", &"a".repeat(64)] {
            assert!(
                matches!(
                    url_with_schema("postgres://u@h/db", hostile),
                    Err(Error::InvalidInput { .. })
                ),
                "{hostile:?}"
            );
        }
        Ok(())
    }
}
