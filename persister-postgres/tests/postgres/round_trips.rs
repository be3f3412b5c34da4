//! Round trips, counted by the server (`pg_stat_statements`): a flush is one statement,
//! and appending changes sends none.

use persister_core::{Persister, Store};
use persister_postgres::PostgresOptions;

use crate::child::writer_batch;
use crate::cluster::{Server, admin, fresh_store, server};

#[test]
fn a_flush_is_one_statement_and_appends_send_none() -> Result<(), String> {
    let url = server().url();
    let mut client = admin(&url).map_err(|e| e.to_string())?;
    if let Err(e) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements") {
        if matches!(server(), Server::Url(_)) {
            println!(
                "skipped: the round-trip count needs pg_stat_statements on PERSISTER_POSTGRES_URL's server ({e})"
            );
            return Ok(());
        }
        return Err(format!("pg_stat_statements: {e}"));
    }
    let (store, schema) = fresh_store(PostgresOptions::default()).map_err(|e| e.to_string())?;
    let mut p = store
        .open_document(&"doc".into())
        .map_err(|e| e.to_string())?;
    let (changes, flushes) = (200u64, 10u64);
    for k in 1..=changes {
        p.apply(writer_batch(k)).map_err(|e| e.to_string())?;
        if k % (changes / flushes) == 0 {
            p.flush().map_err(|e| e.to_string())?;
        }
    }
    drop(p);
    drop(store);
    // Every statement of the store names its schema; the format record's insert, made
    // once when the schema is created, is left out.
    let mut count = |extra: &str| -> Result<i64, String> {
        let query = format!(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE $1 AND query NOT LIKE '%.meta%' {extra}"
        );
        let pattern = format!("%\"{schema}\".%");
        let row = client
            .query_one(&query, &[&pattern])
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    };
    let total = count("")?;
    let flush_statements = count("AND query LIKE '%dc AS (%'")?;
    println!(
        "round trips: {changes} changes in {changes} batches and {flushes} flushes took {total} statements ({flush_statements} flushes; the rest open and close the document)"
    );
    assert_eq!(flush_statements, flushes as i64);
    // Taking the lease and reading the sizes record on open, releasing the lease on drop.
    assert_eq!(total - flush_statements, 3);
    Ok(())
}
