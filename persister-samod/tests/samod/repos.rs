//! samod repos end to end: a client on redb and a server on fs, syncing in process,
//! edited on both sides, dropped and reopened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ROOT, ReadDoc};
use futures::StreamExt;
use persister_core::{DocumentId, Persister, Store};
use persister_samod::{Options, SamodStorage};
use samod::transport::channel::ChannelDialer;
use samod::{BackoffConfig, DocHandle, PeerId, Repo};

use crate::support::{Result, named, runtime, storage};

/// A document's root map, as text.
pub fn contents(doc: &Automerge) -> BTreeMap<String, String> {
    doc.keys(ROOT)
        .map(|k| {
            let value = doc
                .get(ROOT, &k)
                .ok()
                .flatten()
                .map(|(v, _)| v.to_string())
                .unwrap_or_default();
            (k, value)
        })
        .collect()
}

fn state(handle: &DocHandle) -> (Vec<ChangeHash>, BTreeMap<String, String>) {
    handle.with_document(|d| {
        let mut heads = d.get_heads();
        heads.sort();
        (heads, contents(d))
    })
}

fn edit(handle: &DocHandle, field: &str, value: &str) -> Result {
    handle.with_document(|d| {
        let mut tx = d.transaction();
        tx.put(ROOT, field, value)?;
        tx.commit();
        Ok(())
    })
}

/// Waits until both handles hold the same heads, woken by their change streams.
async fn converge(a: &DocHandle, b: &DocHandle) -> Result {
    let mut changes = futures::stream::select(a.changes(), b.changes());
    while state(a).0 != state(b).0 {
        tokio::time::timeout(Duration::from_secs(60), changes.next())
            .await
            .map_err(|_| "the repos did not converge within a minute")?;
    }
    Ok(())
}

async fn repo(storage: SamodStorage, peer: &str) -> Repo {
    Repo::build_tokio()
        .with_storage(storage)
        .with_peer_id(PeerId::from(peer))
        .load()
        .await
}

#[test]
fn a_client_on_redb_and_a_server_on_fs_sync_and_reopen_identical() -> Result {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let edits: usize = persister_testkit::env_count("PERSISTER_SAMOD_EDITS", 30) as usize;
    let (client_storage, server_storage) = (
        storage(&named("redb"), dir.path(), Options::new())?,
        storage(&named("fs"), dir.path(), Options::new())?,
    );
    let (ids, before) = rt.block_on(async {
        let client = repo(client_storage.clone(), "client").await;
        let server = repo(server_storage.clone(), "server").await;
        let acceptor = server.make_acceptor(url::Url::parse("channel://server")?)?;
        let dialer = client.dial(
            BackoffConfig::default(),
            Arc::new(ChannelDialer::new(acceptor)),
        )?;
        dialer.established().await?;

        let on_client = client.create(Automerge::new()).await?;
        let on_server = server.create(Automerge::new()).await?;
        let client_copy = client
            .find(on_server.document_id().clone())
            .await?
            .ok_or("client cannot find")?;
        let server_copy = server
            .find(on_client.document_id().clone())
            .await?
            .ok_or("server cannot find")?;
        // Both sides edit both documents, enough to make samod compact.
        for i in 0..edits {
            edit(&on_client, &format!("c{i}"), &format!("client {i}"))?;
            edit(&server_copy, &format!("s{i}"), &format!("server {i}"))?;
            edit(&on_server, &format!("s{i}"), &format!("server {i}"))?;
            edit(&client_copy, &format!("c{i}"), &format!("client {i}"))?;
        }
        converge(&on_client, &server_copy).await?;
        converge(&on_server, &client_copy).await?;
        let before = [state(&on_client), state(&on_server)];
        assert_eq!(before[0], state(&server_copy));
        assert_eq!(before[1], state(&client_copy));
        assert_eq!(before[0].1.len(), 2 * edits);
        client.stop().await;
        server.stop().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
            [
                on_client.document_id().clone(),
                on_server.document_id().clone(),
            ],
            before,
        ))
    })?;
    client_storage.close()?;
    server_storage.close()?;
    drop(rt);

    // Everything dropped: reopen each side alone and compare.
    let rt = runtime()?;
    for backend in [named("redb"), named("fs")] {
        let storage = storage(&backend, dir.path(), Options::new())?;
        rt.block_on(async {
            let repo = repo(storage.clone(), backend.name()).await;
            for (id, expected) in ids.iter().zip(&before) {
                let handle = repo.find(id.clone()).await?.ok_or("document lost")?;
                assert_eq!(
                    &state(&handle),
                    expected,
                    "{} after reopening",
                    backend.name()
                );
            }
            repo.stop().await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })?;
        storage.close()?;
    }

    // The store holds the documents as documents: slot plus changes load the same heads.
    let store = persister_redb::RedbStore::open(dir.path().join("redb"))?;
    for (id, expected) in ids.iter().zip(&before) {
        let p = store.open_document(&DocumentId::from(id.to_string()))?;
        let mut doc = match p.get_document()? {
            Some(bytes) if !bytes.is_empty() => Automerge::load(&bytes)?,
            _ => Automerge::new(),
        };
        for change in p.get_changes()? {
            doc.load_incremental(&change)?;
        }
        let mut heads = doc.get_heads();
        heads.sort();
        assert_eq!(heads, expected.0);
        assert!(
            p.sizes().document > 0,
            "samod compacted, so the slot holds a snapshot"
        );
    }
    Ok(())
}
