//! `copy_document` moves every byte between any two backends: the way off sled.

use persister_core::{ActorId, Batch, DocumentId, Persister, Result, copy_document};

use persister_testkit::Rng;

use crate::support::{Location, all, hostile_ids, named, some_bytes, store_contents};

/// Fills `store` with hostile ids, each holding changes, a document and sync states.
fn populate(location: &Location) -> Result<()> {
    let store = location.open()?;
    let mut rng = Rng::new(7);
    for (i, id) in hostile_ids().iter().enumerate() {
        let mut p = store.open_document(id)?;
        let mut batch = Batch::new();
        for n in 0..(i as u64 % 5 + 1) * 7 {
            let actor = ActorId::new(vec![(n % 3) as u8 + 1; 1 + (n % 4) as usize]);
            batch = batch.insert_change(actor, n * 300, some_bytes(&mut rng, 200));
        }
        if i % 3 != 0 {
            batch = batch.set_document(some_bytes(&mut rng, 5000));
        }
        for peer in 0..(i % 4) {
            batch = batch.set_sync_state(vec![peer as u8; peer + 1], some_bytes(&mut rng, 64));
        }
        if i % 5 == 0 {
            // An empty document value is data, not absence.
            batch = batch.set_document(Vec::new());
        }
        p.apply(batch)?;
        p.flush()?;
    }
    Ok(())
}

fn copy_store(src: &Location, dst: &Location) -> Result<()> {
    let (from, to) = (src.open()?, dst.open()?);
    for id in from.list_documents()? {
        let source = from.open_document(&id)?;
        let mut target = to.open_document(&id)?;
        copy_document(&*source, &mut *target)?;
        target.flush()?;
    }
    Ok(())
}

#[test]
fn copy_between_every_pair_of_backends_preserves_every_byte() -> Result<()> {
    for src_kind in all() {
        let src = Location::new(src_kind.clone());
        populate(&src)?;
        let expected = store_contents(&src.open()?)?;
        assert_eq!(expected.len(), hostile_ids().len());
        for dst_kind in all() {
            let dst = Location::new(dst_kind.clone());
            copy_store(&src, &dst)?;
            // Read back after reopening, so the copy is what the disk holds.
            let copied = store_contents(&dst.open()?)?;
            assert!(
                copied == expected,
                "copy {src_kind} -> {dst_kind} differs from the source"
            );
        }
    }
    Ok(())
}

#[test]
fn copy_chain_sled_redb_fs_memory_ends_where_it_started() -> Result<()> {
    let chain = ["sled", "redb", "fs", "memory", "sled"];
    let locations: Vec<Location> = chain.iter().map(|k| Location::new(named(k))).collect();
    populate(&locations[0])?;
    for pair in locations.windows(2) {
        copy_store(&pair[0], &pair[1])?;
    }
    let first = store_contents(&locations[0].open()?)?;
    let last = store_contents(&locations[chain.len() - 1].open()?)?;
    assert!(
        first == last,
        "a round trip through every backend changed the data"
    );
    Ok(())
}

#[test]
fn copy_into_a_non_empty_document_is_refused_and_changes_nothing() -> Result<()> {
    for kind in all() {
        let src = Location::new(named("memory"));
        populate(&src)?;
        let dst = Location::new(kind.clone());
        let to = dst.open()?;
        let id = DocumentId::from("1");
        let mut target = to.open_document(&id)?;
        target.set_document(b"keep me".to_vec())?;
        let from = src.open()?;
        let source = from.open_document(&id)?;
        assert!(copy_document(&*source, &mut *target).is_err(), "{kind}");
        assert_eq!(target.get_document()?, Some(b"keep me".to_vec()), "{kind}");
        assert_eq!(target.sizes().change_count, 0, "{kind}");
    }
    Ok(())
}
