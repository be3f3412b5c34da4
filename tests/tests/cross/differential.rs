//! Every backend, given the same writes, holds the same data with the same sizes.

use persister_core::{ActorId, Batch, DocumentId, Persister, Result, Store};

use persister_testkit::Rng;

use crate::support::{Location, all, some_bytes, store_contents};

/// A random batch over a small key space, so overwrites and removals hit.
fn random_batch(rng: &mut Rng) -> Batch {
    let mut batch = Batch::new();
    for _ in 0..rng.below(6) + 1 {
        let actor = ActorId::new(vec![rng.below(3) as u8 + 1; rng.index(3) + 1]);
        let seq = rng.below(20);
        batch = match rng.below(10) {
            0..=3 => batch.insert_change(actor, seq, some_bytes(rng, 300)),
            4..=5 => batch.remove_change(actor, seq),
            6 => batch.set_document(some_bytes(rng, 2000)),
            7..=8 => batch.set_sync_state(vec![rng.below(4) as u8], some_bytes(rng, 50)),
            _ => batch.remove_sync_state(vec![rng.below(4) as u8]),
        };
    }
    batch
}

#[test]
fn backends_agree_after_the_same_writes() -> Result<()> {
    let rounds: u64 = persister_testkit::env_count("PERSISTER_DIFF_ROUNDS", 300);
    let backends = all();
    let locations: Vec<Location> = backends.iter().cloned().map(Location::new).collect();
    let stores = locations
        .iter()
        .map(Location::open)
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<DocumentId> = ["1", "10", ""].into_iter().map(DocumentId::from).collect();
    let mut handles = Vec::new();
    for store in &stores {
        handles.push(
            ids.iter()
                .map(|id| store.open_document(id))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let mut rng = Rng::new(42);
    for round in 0..rounds {
        let doc = rng.index(ids.len());
        let batch = random_batch(&mut rng);
        for per_store in &mut handles {
            per_store[doc].apply(batch.clone())?;
        }
        if round % 25 == 0 {
            for per_store in &mut handles {
                per_store[doc].flush()?;
            }
        }
        let reference = handles[0][doc].sizes();
        for (i, per_store) in handles.iter().enumerate() {
            assert_eq!(
                per_store[doc].sizes(),
                reference,
                "{} round {round}",
                backends[i]
            );
        }
    }
    for per_store in &mut handles {
        for p in per_store.iter_mut() {
            p.flush()?;
        }
    }
    drop(handles);
    drop(stores);
    let reference = store_contents(&locations[0].open()?)?;
    for location in &locations[1..] {
        let other = store_contents(&location.open()?)?;
        assert!(
            other == reference,
            "{} differs from memory after reopen",
            location.kind
        );
    }
    Ok(())
}

#[test]
fn a_store_chosen_at_run_time_serves_every_backend() -> Result<()> {
    for kind in all() {
        let location = Location::new(kind.clone());
        let store = location.open()?;
        let mut doc = store.open_document(&"notes".into())?;
        doc.insert_changes(vec![(ActorId::new([1; 16]), 1, b"hello".to_vec())])?;
        assert!(doc.flush()? > 0, "{kind}");
        drop(doc);
        assert_eq!(store.list_documents()?, vec![DocumentId::from("notes")]);
        store.remove_document(&"notes".into())?;
        assert!(store.list_documents()?.is_empty(), "{kind}");
    }
    Ok(())
}
