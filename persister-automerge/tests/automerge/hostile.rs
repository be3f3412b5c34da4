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

/// Syncs `a` (peer id `b"a"`) and `b` (peer id `b"b"`) through encoded messages until
/// neither has anything to send; `Err` if that takes over 50 rounds.
fn sync_settles(
    a: &mut PersistentDoc<&mut MemoryPersister>,
    b: &mut PersistentDoc<&mut MemoryPersister>,
) -> Result<usize, String> {
    let transmit = |m: sync::Message| sync::Message::decode(&m.encode()).map_err(|e| e.to_string());
    for round in 0..50 {
        let mut quiet = true;
        if let Some(m) = a.generate_sync_message(b"b").map_err(|e| e.to_string())? {
            quiet = false;
            b.receive_sync_message(b"a", transmit(m)?)
                .map_err(|e| e.to_string())?;
        }
        if let Some(m) = b.generate_sync_message(b"a").map_err(|e| e.to_string())? {
            quiet = false;
            a.receive_sync_message(b"b", transmit(m)?)
                .map_err(|e| e.to_string())?;
        }
        if quiet {
            return Ok(round);
        }
    }
    Err("sync did not settle in 50 rounds".into())
}

/// A and B each make a change of their own, A's store holding `stored` as its sync
/// state for B; then they sync. `Err` when that neither fails nor converges.
fn sync_from_stored_state(stored: Vec<u8>) -> Result<(), String> {
    use automerge::{ROOT, transaction::Transactable};
    let mut pa = MemoryPersister::new();
    let mut pb = MemoryPersister::new();
    pa.set_sync_state(b"b".to_vec(), stored).expect("stored");
    let mut a = PersistentDoc::load(&mut pa).expect("loads");
    let mut b = PersistentDoc::load(&mut pb).expect("loads");
    a.edit(|d| d.put(ROOT, "from_a", 1)).expect("edit");
    b.edit(|d| d.put(ROOT, "from_b", 2)).expect("edit");
    if let Err(e) = a.generate_sync_message(b"b") {
        // An error naming the damaged state is a correct outcome.
        assert!(matches!(e, Error::CorruptSyncState { .. }), "{e:?}");
        return Ok(());
    }
    sync_settles(&mut a, &mut b)?;
    if a.heads() != b.heads() {
        return Err("A and B settled without converging".into());
    }
    Ok(())
}

#[test]
fn a_stored_sync_state_naming_heads_the_document_lacks_still_syncs() {
    use automerge::ChangeHash;
    // A valid encoding of a state whose shared heads A does not have: a damaged
    // state whose encoding stayed valid, or another peer's or document's state.
    let unknown = sync::State {
        shared_heads: vec![ChangeHash([7; 32])],
        ..sync::State::new()
    };
    let result = sync_from_stored_state(unknown.encode());
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn damaged_stored_sync_states_are_errors_or_still_sync() {
    let mut cases = vec![
        ("empty", Vec::new()),
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef]),
        ("cut", vec![0x43, 0x01, 7, 7]),
        ("no heads, trailing bytes", vec![0x43, 0x00, 1, 2, 3]),
    ];
    let mut many = vec![0x43, 0x02];
    many.extend_from_slice(&[9; 64]);
    cases.push(("two unknown heads", many));
    for (what, stored) in cases {
        let result = sync_from_stored_state(stored);
        assert!(result.is_ok(), "{what}: {result:?}");
    }
}

#[test]
fn an_emptied_stored_document_is_an_error_not_an_empty_document() {
    use automerge::{ROOT, ReadDoc, transaction::Transactable};
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p).expect("loads");
    doc.edit(|d| d.put(ROOT, "compacted", 1)).expect("edit");
    doc.compact().expect("compacts");
    doc.edit(|d| d.put(ROOT, "after", 2)).expect("edit");
    doc.flush().expect("flush");
    drop(doc);
    // The compacted document's bytes are lost: the value is stored, empty. PersistentDoc
    // never stores an empty document (automerge saves even an empty one as a chunk).
    p.set_document(Vec::new()).expect("set");
    match PersistentDoc::load(&mut p) {
        Err(_) => {}
        Ok(doc) => panic!(
            "loaded Ok without the compacted history: \"compacted\" is {:?}, {} stored change(s) orphaned",
            doc.doc().get(ROOT, "compacted").map(|v| v.is_some()),
            doc.orphaned_changes()
        ),
    }
}

#[test]
fn a_stored_sync_state_naming_heads_the_peer_lacks_still_syncs() {
    use automerge::{ROOT, transaction::Transactable};
    let mut pa = MemoryPersister::new();
    let mut pb = MemoryPersister::new();
    {
        let mut a = PersistentDoc::load(&mut pa).expect("loads");
        a.edit(|d| d.put(ROOT, "from_a", 1)).expect("edit");
        let heads = a.heads();
        let state = sync::State {
            shared_heads: heads,
            ..sync::State::new()
        };
        a.flush().expect("flush");
        drop(a);
        pa.set_sync_state(b"b".to_vec(), state.encode())
            .expect("stored");
    }
    let mut a = PersistentDoc::load(&mut pa).expect("loads");
    let mut b = PersistentDoc::load(&mut pb).expect("loads");
    b.edit(|d| d.put(ROOT, "from_b", 2)).expect("edit");
    let settled = sync_settles(&mut a, &mut b);
    assert!(settled.is_ok(), "{settled:?}");
    assert_eq!(a.heads(), b.heads());
}

#[test]
fn a_peer_s_bloom_filter_without_bits_is_refused_and_changes_nothing() {
    use automerge::{ChangeHash, ROOT, transaction::Transactable};
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p).expect("loads");
    doc.edit(|d| d.put(ROOT, "k", 1)).expect("edit");
    let heads = doc.heads();
    // Bloom filters automerge 0.12 decodes but cannot probe: one entry of zero bits
    // (it would divide by zero), and 4 billion probes (it would allocate 16 GiB).
    for filter in [
        &[1u8, 0, 1][..],
        &[1u8, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0x03],
    ] {
        let bloom = sync::BloomFilter::try_from(filter).expect("decodes");
        let mut message = AutoCommit::new()
            .sync()
            .generate_sync_message(&mut sync::State::new())
            .expect("a first message");
        message.heads = vec![ChangeHash([1; 32])];
        message.have = vec![sync::Have {
            last_sync: Vec::new(),
            bloom,
        }];
        let message = sync::Message::decode(&message.encode()).expect("decodes");
        let received = doc.receive_sync_message(b"peer", message);
        assert!(
            matches!(received, Err(Error::RefusedSyncMessage { .. })),
            "{filter:02x?}: {received:?}"
        );
        // Nothing changed, and the document answers the peer and takes edits.
        assert_eq!(doc.heads(), heads);
        doc.generate_sync_message(b"peer").expect("answers");
    }
    doc.edit(|d| d.put(ROOT, "k", 2)).expect("edit");
}

/// A change merged in an edit (here applied, as an application applies changes it
/// received another way) that makes automerge panic is `Error::Broken`, as a peer's
/// message is: the panic does not escape `edit`, nothing of it is written, and the
/// document refuses edits until it is loaded again. What was written before stays.
#[test]
fn a_change_that_makes_automerge_panic_in_an_edit_breaks_the_document() {
    use automerge::{ROOT, ReadDoc, transaction::Transactable};
    let mut p = MemoryPersister::new();
    let mut doc = PersistentDoc::load(&mut p).expect("an empty document loads");
    doc.edit(|d| d.put(ROOT, "before", 1)).expect("edit");
    let change = automerge::Change::try_from(&bytes(PANICS)[..]).expect("parses");
    let edit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.edit(|d| d.apply_changes(vec![change]))
    }));
    let Ok(edit) = edit else {
        panic!("automerge's panic escaped edit");
    };
    assert!(
        matches!(&edit, Err(Error::Broken { reason }) if reason.contains("panicked")),
        "{edit:?}"
    );
    let next = doc.edit(|d| d.put(ROOT, "after", 2));
    assert!(matches!(next, Err(Error::Broken { .. })), "{next:?}");
    doc.flush()
        .expect("flushing what was written before still works");
    drop(doc);
    assert_eq!(p.sizes().change_count, 1, "stored: {:?}", p.sizes());
    let doc = PersistentDoc::load(&mut p).expect("the store loads");
    assert!(doc.doc().get(ROOT, "before").expect("reads").is_some());
}
