//! The server killed (`pg_ctl stop -m immediate`) at random moments of a workload and
//! started again: every flushed batch is there, every document at a prefix of its
//! batches.

use std::sync::mpsc;
use std::time::Duration;

use persister_core::{DocumentId, DocumentState, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_reliability::{Contents, Rng, env_count};

use crate::child::writer_batch;
use crate::cluster::{Cluster, TEST_SETTINGS, binaries, fresh_schema, skip};
use crate::processes::wait_leases_expired;

const DOCS: usize = 3;

/// The state of a document after its batches 1 to `n`.
fn model(n: u64) -> DocumentState {
    let mut state = DocumentState::new();
    for k in 1..=n {
        state.apply(writer_batch(k));
    }
    state
}

#[test]
fn server_killed_at_random_moments_loses_no_flushed_batch() -> Result<(), String> {
    // The shared server cannot be stopped under the other tests: this test makes its own.
    let Some(bin) = binaries() else {
        if std::env::var_os("PERSISTER_POSTGRES_URL").is_some()
            && std::env::var("PERSISTER_REQUIRE_POSTGRES").as_deref() != Ok("1")
        {
            println!(
                "skipped: the server-crash test needs initdb and pg_ctl to run a server it can kill"
            );
            return Ok(());
        }
        skip("the server-crash test needs initdb and pg_ctl to run a server it can kill");
    };
    let crashes = env_count("PERSISTER_PG_CRASHES", 5);
    let mut rng = Rng::new(env_count("PERSISTER_PG_SEED", 0xc4a5_4000));
    let cluster = Cluster::start(&bin, TEST_SETTINGS)?;
    let url = cluster.url();
    let schema = fresh_schema();
    let options = PostgresOptions::default()
        .schema(schema.clone())
        .lease_duration(Duration::from_millis(300));
    let ids: Vec<DocumentId> = (0..DOCS)
        .map(|d| DocumentId::from(format!("doc {d}")))
        .collect();
    // The last batch acknowledged for each document, and the last found.
    let mut acked = [0u64; DOCS];
    let mut found = [0u64; DOCS];
    let (mut flushes, mut failed_flushes) = (0u64, 0u64);
    for crash in 0..crashes {
        let store = PostgresStore::open_with(&url, options.clone()).map_err(|e| e.to_string())?;
        let mut handles = Vec::new();
        for id in &ids {
            handles.push(store.open_document(id).map_err(|e| e.to_string())?);
        }
        let target = 1 + rng.below(40);
        let (tx, rx) = mpsc::channel::<()>();
        let cluster_ref = &cluster;
        std::thread::scope(|scope| -> Result<(), String> {
            let killer = scope.spawn(move || {
                // Kills the server once the workload has made `target` flushes, while it
                // goes on writing.
                let _ = rx.recv();
                cluster_ref.crash()
            });
            let mut next = found.map(|n| n + 1);
            let mut done = 0;
            'work: loop {
                for (d, p) in handles.iter_mut().enumerate() {
                    let k = next[d];
                    if p.apply(writer_batch(k)).is_err() {
                        break 'work;
                    }
                    match p.flush() {
                        Ok(_) => {
                            acked[d] = k;
                            next[d] = k + 1;
                            flushes += 1;
                            done += 1;
                            if done == target {
                                let _ = tx.send(());
                            }
                        }
                        Err(_) => {
                            failed_flushes += 1;
                            break 'work;
                        }
                    }
                }
            }
            let _ = tx.send(());
            killer
                .join()
                .map_err(|_| "the killer panicked".to_string())?
        })?;
        drop(handles);
        drop(store);
        cluster.start_server()?;
        wait_leases_expired(&url, &schema)?;
        let store = PostgresStore::open_with(&url, options.clone()).map_err(|e| e.to_string())?;
        for (d, id) in ids.iter().enumerate() {
            let p = store.open_document(id).map_err(|e| e.to_string())?;
            let last = match p.get_sync_state(b"last").map_err(|e| e.to_string())? {
                Some(bytes) => String::from_utf8_lossy(&bytes)
                    .parse::<u64>()
                    .map_err(|e| e.to_string())?,
                None => 0,
            };
            assert!(
                last >= acked[d],
                "crash {crash}: {id} is at batch {last}, but batch {} was acknowledged",
                acked[d]
            );
            let contents = Contents::read(&p).map_err(|e| e.to_string())?;
            assert!(
                contents == Contents::of(Some(&model(last))) || last == 0,
                "crash {crash}: {id} is not at a prefix of its batches"
            );
            assert_eq!(p.sizes(), model(last).sizes(), "crash {crash}: {id}");
            found[d] = last;
        }
    }
    let checked: u64 = found.iter().sum();
    println!(
        "server crash test: {crashes} server kills, {flushes} flushes acknowledged, {failed_flushes} flushes failed by a kill, {checked} batches checked in place after the last restart"
    );
    drop(cluster);
    Ok(())
}
