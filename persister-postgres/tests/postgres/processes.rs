//! Several processes on one database: killed clients, writers side by side, a document
//! held by another process, and a holder stopped past its lease.

use persister_core::{DocumentId, Error, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_reliability::kill::replay;
use persister_reliability::ops::workload_of;
use persister_reliability::{Contents, Rng, StoreModel, env_count};

use crate::child::{spawn, writer_batch};
use crate::cluster::{admin, fresh_schema, server, wait_for};

const LEN: usize = 120;
const DOCS: usize = 3;

fn child_vars(schema: &str, lease_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("PERSISTER_PG_URL", server().url()),
        ("PERSISTER_PG_SCHEMA", schema.to_string()),
        ("PERSISTER_PG_LEASE_MS", lease_ms.to_string()),
    ]
}

/// Waits until no lease of `schema` is in force, by the server's clock.
pub fn wait_leases_expired(url: &str, schema: &str) -> Result<(), String> {
    let mut client = admin(url).map_err(|e| e.to_string())?;
    let query = format!("SELECT count(*) FROM \"{schema}\".leases WHERE expires_at > now()");
    wait_for("the leases to expire", || {
        let row = client.query_one(&query, &[]).map_err(|e| e.to_string())?;
        Ok(row.get::<_, i64>(0) == 0)
    })
}

/// The reliability harness's kill test: a child runs a random workload and is killed
/// with SIGKILL after a random number of its lines; every document must then be in a
/// state the model allows (all acknowledged flushes, a prefix of the batches).
#[test]
fn killed_client_keeps_every_acknowledged_flush() -> Result<(), String> {
    let kills = env_count("PERSISTER_PG_KILLS", 4);
    let seed = env_count("PERSISTER_PG_SEED", 0x5eed_0015);
    let url = server().url();
    let schema = fresh_schema();
    let mut rng = Rng::new(seed);
    let mut model = StoreModel::new();
    let (mut killed, mut acks) = (0, 0);
    for cycle in 0..kills {
        let child_seed = rng.next_u64();
        let mut vars = child_vars(&schema, 500);
        vars.extend([
            ("PERSISTER_PG_SEED", child_seed.to_string()),
            ("PERSISTER_PG_LEN", LEN.to_string()),
            ("PERSISTER_PG_DOCS", DOCS.to_string()),
        ]);
        let mut child = spawn("workload", &vars)?;
        let kill_after = 1 + rng.index(LEN);
        let mut lines = Vec::new();
        while lines.len() < kill_after {
            match child.line()? {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        if child.child.kill().is_ok() {
            killed += 1;
        }
        lines.extend(child.rest()?);
        let _ = child.child.wait();
        if let Some(error) = lines.iter().find(|l| l.starts_with("error")) {
            return Err(format!("cycle {cycle}: the child failed: {error}"));
        }
        let lines: Vec<String> = lines.into_iter().filter(|l| l != "ready").collect();
        let ops = workload_of(child_seed, LEN, DOCS, false);
        acks += replay(&mut model, &ops, &lines).map_err(|e| format!("cycle {cycle}: {e}"))?;
        wait_leases_expired(&url, &schema)?;
        let store =
            PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))
                .map_err(|e| e.to_string())?;
        model
            .adopt_store(&store)
            .map_err(|e| format!("cycle {cycle} (child seed {child_seed}): {e}"))?;
    }
    println!(
        "postgres kill test: {kills} cycles, {killed} children killed, {acks} acknowledged flushes checked"
    );
    Ok(())
}

/// Two processes write different documents of one schema at once; nothing is lost.
#[test]
fn two_processes_write_different_documents_at_once() -> Result<(), String> {
    let schema = fresh_schema();
    let batches = env_count("PERSISTER_PG_BATCHES", 40);
    let docs = 3;
    let mut children = Vec::new();
    for prefix in ["left-", "right-"] {
        let mut vars = child_vars(&schema, 30_000);
        vars.extend([
            ("PERSISTER_PG_PREFIX", prefix.to_string()),
            ("PERSISTER_PG_DOCS", docs.to_string()),
            ("PERSISTER_PG_BATCHES", batches.to_string()),
        ]);
        children.push(spawn("writer", &vars)?);
    }
    for child in &mut children {
        let lines = child.rest()?;
        assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
        assert_eq!(lines.len() as u64, batches * docs + 1);
    }
    let store =
        PostgresStore::open_with(&server().url(), PostgresOptions::default().schema(schema))
            .map_err(|e| e.to_string())?;
    assert_eq!(store.list_documents().map_err(|e| e.to_string())?.len(), 6);
    for prefix in ["left-", "right-"] {
        for d in 0..docs {
            let p = store
                .open_document(&DocumentId::from(format!("{prefix}{d}")))
                .map_err(|e| e.to_string())?;
            let mut expected = persister_core::DocumentState::new();
            for k in 1..=batches {
                expected.apply(writer_batch(k));
            }
            let found = Contents::read(&p).map_err(|e| e.to_string())?;
            assert_eq!(found, Contents::of(Some(&expected)), "{prefix}{d}");
        }
    }
    println!(
        "two processes: {} batches each flushed and found",
        batches * docs
    );
    Ok(())
}

/// A document held by another process is `Locked` at once, naming the holder; when
/// that process exits, the document opens at once.
#[test]
fn document_held_by_another_process_is_locked_at_once() -> Result<(), String> {
    let schema = fresh_schema();
    let mut vars = child_vars(&schema, 30_000);
    vars.push(("PERSISTER_PG_DOC", "shared doc".into()));
    let mut holder = spawn("holder", &vars)?;
    assert_eq!(holder.line()?.as_deref(), Some("ready"));
    let store =
        PostgresStore::open_with(&server().url(), PostgresOptions::default().schema(schema))
            .map_err(|e| e.to_string())?;
    let id = DocumentId::from("shared doc");
    match store.open_document(&id) {
        Err(Error::Locked { path }) => {
            let path = path.display().to_string();
            assert!(
                path.contains("shared doc") && path.contains(&format!("pid {}", holder.child.id())),
                "{path}"
            );
        }
        other => return Err(format!("expected Locked, got {other:?}")),
    }
    assert!(matches!(
        store.remove_document(&id),
        Err(Error::Locked { .. })
    ));
    // The holder exits at the end of its input, releasing the lease as its handle drops.
    holder.stdin = None;
    assert_eq!(holder.rest()?, Vec::<String>::new());
    let p = store.open_document(&id).map_err(|e| e.to_string())?;
    assert_eq!(
        p.get_sync_state(b"last").map_err(|e| e.to_string())?,
        Some(b"1".to_vec())
    );
    Ok(())
}

/// A process stopped (SIGSTOP) past its lease while another takes the document over
/// writes nothing once resumed, and says so.
#[test]
fn holder_stopped_past_its_lease_writes_nothing_after_a_takeover() -> Result<(), String> {
    let schema = fresh_schema();
    let url = server().url();
    let mut vars = child_vars(&schema, 200);
    vars.push(("PERSISTER_PG_DOC", "contested".into()));
    let mut holder = spawn("holder", &vars)?;
    assert_eq!(holder.line()?.as_deref(), Some("ready"));
    holder.signal("STOP")?;
    wait_leases_expired(&url, &schema)?;
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))
        .map_err(|e| e.to_string())?;
    let mut p = store
        .open_document(&"contested".into())
        .map_err(|e| e.to_string())?;
    p.set_document(b"taken over".to_vec())
        .map_err(|e| e.to_string())?;
    p.flush().map_err(|e| e.to_string())?;
    holder.signal("CONT")?;
    holder.send("write")?;
    let result = holder.line()?.unwrap_or_default();
    assert!(
        result.starts_with("result err") && result.contains("lease"),
        "{result}"
    );
    // What the new holder sees: the first holder's flushed batch 1, its own document,
    // and nothing of the stopped holder's batch 2.
    let changes = p.get_change_entries().map_err(|e| e.to_string())?;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        p.get_sync_state(b"last").map_err(|e| e.to_string())?,
        Some(b"1".to_vec())
    );
    p.set_sync_state(b"after".to_vec(), b"ok".to_vec())
        .map_err(|e| e.to_string())?;
    assert!(p.flush().map_err(|e| e.to_string())? > 0);
    drop(holder);
    Ok(())
}
