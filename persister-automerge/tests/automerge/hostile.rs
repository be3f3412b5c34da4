//! Changes and sync messages that pass automerge's checksums but not its consistency
//! checks: a hostile or buggy peer's, or a store's whose damage kept its checksums.
//! They are errors, never panics, and nothing of them is stored.

use automerge::AutoCommit;
use automerge::sync::{self, SyncDoc};
use persister_automerge::{Error, PersistentDoc};
use persister_core::{ActorId, MemoryPersister, Persister};

/// A valid one-operation change (actor `aa`, seq 1) with its start op moved from 1 to
/// 2 and its checksum recomputed: automerge panics applying it.
const PANICS: &str = "856f4a83c64e5d8a01410001aa01020000000a0104020411041305150534024204560457027002000102000001020100027f0000017e00027f0174000201027f0402017f00021661620300";

/// The same change with its column count changed from 10 to 1 and its checksum
/// recomputed: automerge applies it, but encodes it into other bytes with another hash.
const REENCODED: &str = "856f4a838cc92e0301410001aa0101000000010104020411041305150534024204560457027002000102000001020100027f0000017e00027f0174000201027f0402017f00021661620300";

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A sync message carrying `change`, as it arrives from the network.
fn message_with(change: Vec<u8>) -> sync::Message {
    let mut state = sync::State::new();
    let mut message = AutoCommit::new()
        .sync()
        .generate_sync_message(&mut state)
        .expect("a first message");
    message.changes = vec![change].into();
    sync::Message::decode(&message.encode()).expect("decodes")
}

/// Receiving `change` breaks the document and stores nothing; the document then
/// refuses edits and sync, and loads again, empty.
fn refused_from_a_peer(change: Vec<u8>, what: &str) {
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p).expect("an empty document loads");
    let received = doc.receive_sync_message(b"peer", message_with(change));
    assert!(
        matches!(&received, Err(Error::Broken { reason }) if reason.contains(what)),
        "{received:?}"
    );
    let edit = doc.edit(|d| {
        use automerge::{ROOT, transaction::Transactable};
        d.put(ROOT, "k", 1)
    });
    assert!(matches!(edit, Err(Error::Broken { .. })), "{edit:?}");
    assert!(matches!(
        doc.generate_sync_message(b"peer"),
        Err(Error::Broken { .. })
    ));
    assert!(matches!(doc.compact(), Err(Error::Broken { .. })));
    doc.flush()
        .expect("flushing what was queued before still works");
    drop(doc);
    assert!(p.sizes().is_empty(), "stored: {:?}", p.sizes());
    let mut doc = PersistentDoc::load(&mut p).expect("the store loads");
    assert!(doc.heads().is_empty());
}

#[test]
fn a_change_that_makes_automerge_panic_is_refused_from_a_peer() {
    refused_from_a_peer(bytes(PANICS), "panicked");
}

#[test]
fn a_change_automerge_would_store_under_another_hash_is_refused_from_a_peer() {
    refused_from_a_peer(bytes(REENCODED), "another hash");
}

#[test]
fn a_stored_change_that_makes_automerge_panic_is_an_error() -> Result<(), persister_core::Error> {
    let mut p = MemoryPersister::new();
    p.insert_changes(vec![(ActorId::new(vec![0xaa]), 1, bytes(PANICS))])?;
    let loaded = PersistentDoc::load(&mut p).err();
    assert!(
        matches!(&loaded, Some(Error::DamagedStore { reason }) if reason.contains("panicked")),
        "{loaded:?}"
    );
    Ok(())
}
