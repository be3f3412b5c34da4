//! A damaged store fails to load, loudly; it never loads as an empty or partial
//! document.

use persister_core::{Batch, MemoryStore, Persister, Store};
use persister_yrs::{Error, Options, PersistentYDoc};
use yrs::Text;

use crate::support::named;
use crate::support::{Location, TEXT, TestResult, doc_id, open_doc, read_text};

/// A document whose first update holds `marker`, followed by more updates, each
/// flushed: damage to the first is not a torn tail. Returns the text.
fn write_some(location: &Location, marker: &str) -> TestResult<String> {
    let store = location.open()?;
    let mut doc = open_doc(&store, Options::default())?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, marker))?;
    for word in [" one", " two", " three"] {
        doc.edit(|t| text.push(t, word))?;
    }
    doc.flush()?;
    Ok(read_text(&doc))
}

#[test]
fn damaged_values_are_errors_naming_what_is_damaged() -> TestResult {
    let store = MemoryStore::new();
    let location_text = {
        let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
        let text = doc.doc().get_or_insert_text(TEXT);
        doc.edit(|t| text.insert(t, 0, "abc"))?;
        doc.edit(|t| text.insert(t, 3, "def"))?;
        doc.flush()?;
        read_text(&doc)
    };
    assert_eq!(location_text, "abcdef");
    let mut p = store.open_document(&doc_id())?;
    let entries = p.get_change_entries()?;
    let (actor, seq, bytes) = entries.last().cloned().ok_or("no update")?;

    // A truncated update, and an empty one.
    for damaged in [
        bytes[..bytes.len() - 1].to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
        Vec::new(),
    ] {
        p.insert_changes(vec![(actor.clone(), seq, damaged.clone())])?;
        let loaded = PersistentYDoc::load(&mut p);
        assert!(
            matches!(&loaded, Err(Error::CorruptUpdate { seq: s, .. }) if *s == seq),
            "{damaged:?}: {:?}",
            loaded.err()
        );
    }
    p.insert_changes(vec![(actor.clone(), seq, bytes.clone())])?;

    // A document that is not a Yjs update, and an empty one: never an empty document.
    for damaged in [b"not a yjs update".to_vec(), Vec::new()] {
        p.apply(Batch::new().set_document(damaged.clone()))?;
        let loaded = PersistentYDoc::load(&mut p);
        assert!(
            matches!(&loaded, Err(Error::CorruptDocument { .. })),
            "{damaged:?}: {:?}",
            loaded.err()
        );
        assert!(
            loaded
                .err()
                .is_some_and(|e| e.to_string().contains("restore a backup"))
        );
    }
    Ok(())
}

/// Bytes of the fs store's files are damaged where the text of an update that is not
/// the last one lives: the backend's checksums turn that into an error, on open or on
/// load. (A damaged last record is indistinguishable from a torn write, which the
/// backend may drop and report.)
#[test]
fn damaged_fs_store_fails_to_load() -> TestResult {
    let marker = "MARKER-7f3a";
    let location = Location::new(&named("fs"))?;
    write_some(&location, marker)?;
    let mut damaged = 0;
    for entry in walk(&location.path())? {
        let mut bytes = std::fs::read(&entry)?;
        if let Some(at) = bytes
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
        {
            bytes[at + 3] ^= 0x01;
            std::fs::write(&entry, bytes)?;
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the text was not found in the store's files");
    let loaded = location
        .open()
        .map_err(|e| e.to_string())
        .and_then(|store| {
            open_doc(&store, Options::default())
                .map(|d| read_text(&d))
                .map_err(|e| e.to_string())
        });
    assert!(loaded.is_err(), "a damaged store loaded: {loaded:?}");
    Ok(())
}

fn walk(dir: &std::path::Path) -> TestResult<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// A large stored document (applied on a thread of its own while the updates are read)
/// loads whole, and its damage or an update's is the same error as for a small one.
#[test]
fn a_large_document_loads_whole_and_its_damage_is_an_error() -> TestResult {
    let store = MemoryStore::new();
    let expected = {
        let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
        let text = doc.doc().get_or_insert_text(TEXT);
        let line = "a line of the large document, long enough to add up quickly\n";
        doc.edit(|t| text.insert(t, 0, &line.repeat(2_000)))?;
        doc.compact()?;
        for i in 0..300 {
            doc.edit(|t| text.insert(t, i * 3, "xyz"))?;
        }
        doc.flush()?;
        read_text(&doc)
    };
    let mut p = store.open_document(&doc_id())?;
    let document = p.get_document()?.ok_or("no document")?;
    assert!(document.len() >= 64 * 1024, "{} bytes", document.len());
    assert_eq!(p.sizes().change_count, 300);
    assert_eq!(read_text(&PersistentYDoc::load(&mut p)?), expected);

    let (actor, seq, update) = p.get_change_entries()?.swap_remove(150);
    p.insert_changes(vec![(
        actor.clone(),
        seq,
        update[..update.len() / 2].to_vec(),
    )])?;
    let loaded = PersistentYDoc::load(&mut p);
    assert!(
        matches!(&loaded, Err(Error::CorruptUpdate { seq: s, .. }) if *s == seq),
        "{:?}",
        loaded.err()
    );
    p.insert_changes(vec![(actor, seq, update)])?;

    p.apply(Batch::new().set_document(document[..document.len() / 2].to_vec()))?;
    let loaded = PersistentYDoc::load(&mut p);
    assert!(
        matches!(&loaded, Err(Error::CorruptDocument { .. })),
        "{:?}",
        loaded.err()
    );
    Ok(())
}

/// The number of damaged updates [`damaged_updates_are_errors_never_panics`] tries:
/// `PERSISTER_YRS_MUTATIONS`, or 5,000.
fn mutations() -> u64 {
    persister_testkit::env_count("PERSISTER_YRS_MUTATIONS", 5_000)
}

/// A valid update of a few edits, as a peer would send it and a store would hold it.
fn valid_update() -> TestResult<Vec<u8>> {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "hello"))?;
    doc.edit(|t| text.insert(t, 5, " world"))?;
    doc.edit(|t| text.remove_range(t, 0, 2))?;
    let mut peer = PersistentYDoc::load(store.open_document(&"peer".into())?)?;
    let peer_text = peer.doc().get_or_insert_text(TEXT);
    peer.edit(|t| peer_text.insert(t, 0, "from a peer"))?;
    peer.edit(|t| peer_text.remove_range(t, 4, 3))?;
    doc.apply_update(&peer.encode_state()?)?;
    Ok(doc.encode_state()?)
}

/// What a damaged update does, as a peer's update and as a stored one: an error or a
/// loaded document, never a panic.
fn try_damaged(update: &[u8]) -> Result<(), String> {
    let run = || -> TestResult {
        let store = MemoryStore::new();
        let mut doc = PersistentYDoc::load(store.open_document(&"peer".into())?)?;
        let _ = doc.apply_update(update);
        let mut p = store.open_document(&"stored".into())?;
        p.insert_changes(vec![(
            persister_core::ActorId::from(vec![1]),
            1,
            update.to_vec(),
        )])?;
        let _ = PersistentYDoc::load(&mut p);
        p.apply(Batch::new().set_document(update.to_vec()))?;
        p.remove_changes(vec![(&persister_core::ActorId::from(vec![1]), 1)])?;
        let _ = PersistentYDoc::load(&mut p);
        Ok(())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("panicked on {}", hex(update))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn damaged_updates_are_errors_never_panics() -> TestResult {
    let valid = valid_update()?;
    let mut rng = crate::support::rng_from_env_or_clock();
    for _ in 0..mutations() {
        let mut update = valid.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.index(update.len());
            // Bytes that make a varint longer and larger come up often: lengths and
            // clocks near the limits are what a decoder must bound.
            update[at] = match rng.below(4) {
                0 => 0xff,
                1 => 0x8f,
                _ => rng.below(256) as u8,
            };
        }
        try_damaged(&update)?;
    }
    Ok(())
}

/// Reads a LEB128 varint at `at`, returning it and the offset after it.
fn read_varint(bytes: &[u8], mut at: usize) -> TestResult<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(at).ok_or("a varint runs past the end")?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err("a varint longer than 64 bits".into())
}

/// A valid update of one client and one block, "hello" (5 clocks long), with the
/// block's clock moved to `u32::MAX - 1`: decoding it adds 5 past the largest clock.
fn update_past_the_largest_clock() -> TestResult<Vec<u8>> {
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
    let text = doc.doc().get_or_insert_text(TEXT);
    doc.edit(|t| text.insert(t, 0, "hello"))?;
    let valid = doc.encode_state()?;
    // v1: clients, then per client: blocks, client id, first clock, the blocks.
    let (clients, at) = read_varint(&valid, 0)?;
    let (blocks, at) = read_varint(&valid, at)?;
    let (_client, at) = read_varint(&valid, at)?;
    let (clock, after) = read_varint(&valid, at)?;
    assert_eq!((clients, blocks, clock), (1, 1, 0), "{}", hex(&valid));
    let mut update = valid[..at].to_vec();
    update.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]); // u32::MAX - 1
    update.extend_from_slice(&valid[after..]);
    Ok(update)
}

#[test]
fn an_update_past_the_largest_clock_is_an_error_from_a_peer_and_in_a_store() -> TestResult {
    let update = update_past_the_largest_clock()?;
    let store = MemoryStore::new();
    let mut doc = PersistentYDoc::load(store.open_document(&"peer".into())?)?;
    let applied = doc.apply_update(&update);
    assert!(
        matches!(&applied, Err(Error::InvalidUpdate { reason }) if reason.contains("clock")),
        "{applied:?}"
    );
    assert_eq!(read_text(&doc), "", "nothing of it was applied");

    let mut p = store.open_document(&"stored".into())?;
    let actor = persister_core::ActorId::from(vec![1]);
    p.insert_changes(vec![(actor.clone(), 7, update.clone())])?;
    let loaded = PersistentYDoc::load(&mut p).err();
    assert!(
        matches!(&loaded, Some(Error::CorruptUpdate { seq: 7, .. })),
        "{loaded:?}"
    );
    p.apply(Batch::new().remove_change(actor, 7).set_document(update))?;
    let loaded = PersistentYDoc::load(&mut p).err();
    assert!(
        matches!(&loaded, Some(Error::CorruptDocument { .. })),
        "{loaded:?}"
    );
    Ok(())
}

/// Two updates found by mutating valid ones, which yrs 0.28 decodes and then breaks on:
/// the first leaves pending updates that yrs panics merging as it encodes the state;
/// the second makes it panic as it integrates it (with overflow checks).
pub const LEAVES_PENDING: &str = "0203020004010474657674017081020002840202067220746578740a010004010474657874026865810101038401040620776f726c642101036d6170016b012801036d6170016e017d2a2701036d617005696e6e6572012800010d0178017c3fc000000801036172720177016187010f00a2010f0102010302030b0111011b010102";
/// See [`LEAVES_PENDING`].
pub const PANICS_APPLYING: &str = "0203020004010474657874017081020002840202067246746578740a020004010474657874026865810101038401040620776f726c642101036d6170016b012801036d6170016e017d2a2701036d617005696e6e6572012800010d0178017c3fc000000801036172720177016187010f0041010f0102010302030b01110102010151";

pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// A peer's update that breaks yrs is refused with nothing of it written: the document
/// says it is unusable and refuses more work, what was written before flushes and loads
/// again; an update that is accepted leaves a document that encodes, compacts and loads.
/// Stored, such an update is an error or a document on load, never a panic.
#[test]
fn updates_that_break_yrs_are_refused_and_leave_the_store_whole() -> TestResult {
    for (name, hex) in [
        ("leaves pending", LEAVES_PENDING),
        ("panics applying", PANICS_APPLYING),
    ] {
        let update = unhex(hex);
        let store = MemoryStore::new();
        let mut doc = PersistentYDoc::load(store.open_document(&doc_id())?)?;
        let text = doc.doc().get_or_insert_text(TEXT);
        doc.edit(|t| text.insert(t, 0, "precious"))?;
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.apply_update(&update)))
                .map_err(|_| format!("{name}: apply_update panicked"))?;
        match &applied {
            Err(Error::Broken { reason }) => {
                assert!(reason.contains("nothing of it was written"), "{reason}");
                let edit = doc.edit(|t| text.insert(t, 0, "more"));
                assert!(
                    matches!(edit, Err(Error::Broken { .. })),
                    "{name}: {edit:?}"
                );
                assert!(matches!(doc.encode_state(), Err(Error::Broken { .. })));
                assert!(matches!(doc.compact(), Err(Error::Broken { .. })));
                let answer = doc.receive_sync_message(yrs::sync::SyncMessage::SyncStep1(
                    yrs::StateVector::default(),
                ));
                assert!(matches!(answer, Err(Error::Broken { .. })), "{name}");
            }
            Ok(()) | Err(Error::InvalidUpdate { .. }) => {
                doc.encode_state()?;
                doc.compact()?;
            }
            other => panic!("{name}: {other:?}"),
        }
        if name == "leaves pending" {
            assert!(
                matches!(applied, Err(Error::Broken { .. })),
                "{name}: {applied:?}"
            );
        }
        doc.flush()?;
        drop(doc);
        let again = PersistentYDoc::load(store.open_document(&doc_id())?)?;
        assert!(
            read_text(&again).contains("precious"),
            "{name}: {}",
            read_text(&again)
        );

        let mut p = store.open_document(&"stored".into())?;
        p.insert_changes(vec![(persister_core::ActorId::from(vec![1]), 1, update)])?;
        // Loaded, it is an error, or a document that encodes (and so compacts and
        // syncs): never one that loads and then breaks on first use.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            PersistentYDoc::load(&mut p).map(|loaded| loaded.encode_state().map(|_| ()))
        }))
        .map_err(|_| format!("{name}: a load of it, stored, panicked"))?;
        assert!(
            matches!(
                loaded,
                Err(Error::CorruptDocument { .. } | Error::CorruptUpdate { .. }) | Ok(Ok(()))
            ),
            "{name}: {loaded:?}"
        );
    }
    Ok(())
}
