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
