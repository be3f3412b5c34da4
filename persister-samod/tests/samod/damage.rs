//! A damaged store: loading fails loudly (the hook, the health check, or the process
//! stops), and never gives samod an empty or partial document.

use std::sync::mpsc;

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use persister_core::{DocumentId, MemoryStore, Persister, Store};
use persister_samod::{Event, Options, SamodStorage, WhenUnusable};
use samod::Repo;

use crate::support::{Result, runtime, stopped_child};

const CHILD: &str = "PERSISTER_SAMOD_DAMAGE_CHILD";

/// A memory store holding a samod document one of whose changes is damaged.
fn damaged_store() -> Result<(MemoryStore, samod::DocumentId)> {
    let store = MemoryStore::new();
    let storage = SamodStorage::on_store(store.clone(), Options::new())?;
    let rt = runtime()?;
    let id = rt.block_on(async {
        let repo = Repo::build_tokio()
            .with_storage(storage.clone())
            .load()
            .await;
        let handle = repo.create(Automerge::new()).await?;
        for i in 0..3 {
            handle.with_document(|d| {
                let mut tx = d.transaction();
                tx.put(ROOT, format!("k{i}"), i)?;
                tx.commit();
                Ok::<_, automerge::AutomergeError>(())
            })?;
        }
        repo.stop().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(handle.document_id().clone())
    })?;
    drop(rt);
    storage.close()?;
    let mut doc = store.open_document(&DocumentId::from(id.to_string()))?;
    let (actor, seq, mut bytes) = doc
        .get_change_entries()?
        .into_iter()
        .next()
        .ok_or("no change stored")?;
    bytes.truncate(bytes.len() / 2);
    doc.insert_changes(vec![(actor, seq, bytes)])?;
    doc.flush()?;
    Ok((store, id))
}

#[test]
fn a_damaged_change_is_reported_and_the_document_never_loads_empty() -> Result {
    let (store, id) = damaged_store()?;
    let (tx, failures) = mpsc::channel();
    let options = Options::new().on_event(move |event| {
        if let Event::Failed {
            error, document, ..
        } = event
        {
            let _ = tx.send((DocumentId::clone(document), error.is_corrupt()));
        }
    });
    let storage = SamodStorage::on_store(store, options)?;
    let rt = runtime()?;
    rt.block_on(async {
        let repo = Repo::build_tokio().with_storage(storage.clone()).load().await;
        let find = repo.find(id.clone());
        let reported = tokio::task::spawn_blocking(move || {
            // Two failed attempts on this document, both for damage.
            (0..2).map(|_| failures.recv()).collect::<std::result::Result<Vec<_>, _>>()
        });
        tokio::select! {
            found = find => panic!("samod was answered from a damaged store: {:?}", found.map(|h| h.is_some())),
            reported = reported => {
                let reported = reported??;
                assert!(reported.iter().all(|(doc, corrupt)| *corrupt && doc.as_str() == Some(id.to_string().as_str())), "{reported:?}");
            }
        }
        let health = storage.health();
        assert!(!health.is_healthy());
        assert!(health.last_error.is_some_and(|e| e.contains("not an automerge change")));
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}

#[test]
fn with_exit_chosen_a_damaged_store_stops_the_process_with_a_message() -> Result {
    let stderr = stopped_child("damage::exit_child", CHILD)?;
    assert!(stderr.contains("not an automerge change"), "{stderr}");
    Ok(())
}

#[test]
#[ignore = "the child process of with_exit_chosen_a_damaged_store_stops_the_process_with_a_message"]
fn exit_child() -> Result {
    std::env::var(CHILD).map_err(
        |_| "run with_exit_chosen_a_damaged_store_stops_the_process_with_a_message instead",
    )?;
    let (store, id) = damaged_store()?;
    let options = Options::new().when_unusable(WhenUnusable::Exit { after_failures: 2 });
    let storage = SamodStorage::on_store(store, options)?;
    let rt = runtime()?;
    rt.block_on(async {
        let repo = Repo::build_tokio().with_storage(storage).load().await;
        let found = repo.find(id).await;
        Err(format!(
            "the process should have stopped, but find answered {:?}",
            found.map(|h| h.is_some())
        )
        .into())
    })
}
