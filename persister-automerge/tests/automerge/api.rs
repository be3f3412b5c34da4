//! What an application sees of the API: which change an edit made, and how text
//! positions count.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, TextEncoding};
use persister_automerge::{Options, PersistentDoc};
use persister_core::{ActorId, Persister};

use crate::support::named;
use crate::support::{Location, TestResult, doc_id, open_doc};

#[test]
fn last_change_names_the_change_an_edit_stored() -> TestResult {
    let location = Location::new(&named("redb"))?;
    let store = location.open()?;
    let mut doc = open_doc(&store, Options::default())?;
    assert_eq!(doc.last_change(), None);

    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    let first = doc.last_change().ok_or("no change")?.clone();
    assert_eq!((first.seq, &first.actor), (1, doc.doc().get_actor()));
    assert_eq!(doc.heads(), vec![first.hash]);

    // Two commits in one edit: the last one is named.
    doc.edit(|d| {
        d.splice_text(&text, 0, 0, "a")?;
        d.commit_with(automerge::transaction::CommitOptions::default().with_message("a"));
        d.splice_text(&text, 1, 0, "b")
    })?;
    let third = doc.last_change().ok_or("no change")?.clone();
    assert_eq!(third.seq, 3);
    assert_eq!(doc.heads(), vec![third.hash]);

    // Changes merged from another document are not the edit's own: a merge alone
    // made no change.
    let mut other = AutoCommit::new();
    other.put(ROOT, "from", "elsewhere")?;
    doc.edit(|d| d.merge(&mut other).map(|_| ()))?;
    assert_eq!(doc.last_change(), None);

    // An edit that changes nothing made no change.
    doc.edit(|d| d.splice_text(&text, 2, 0, "c"))?;
    assert!(doc.last_change().is_some());
    doc.edit(|_| Ok(()))?;
    assert_eq!(doc.last_change(), None);

    // The named change is stored under its actor and seq, with its hash.
    let stored = doc.persister().get_change_entries()?;
    let key = ActorId::new(third.actor.to_bytes());
    let (_, _, bytes) = stored
        .iter()
        .find(|(actor, seq, _)| *actor == key && *seq == third.seq)
        .ok_or("the change is not stored under its actor and seq")?;
    let change = automerge::Change::try_from(bytes.as_slice())?;
    assert_eq!(change.hash(), third.hash);
    doc.close()?;

    // After a restart the acknowledged change is in the document.
    drop(store);
    let store = location.open()?;
    let doc = open_doc(&store, Options::default())?;
    assert!(doc.doc().clone().get_change_by_hash(&third.hash).is_some());
    Ok(())
}

#[test]
fn text_positions_count_code_points_by_default() -> TestResult {
    assert_eq!(
        Options::default().text_encoding,
        TextEncoding::UnicodeCodePoint
    );
    let location = Location::new(&named("memory"))?;
    let store = location.open()?;
    let mut doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    // 6 code points, 7 UTF-16 code units, 11 UTF-8 bytes.
    doc.edit(|d| d.splice_text(&text, 0, 0, "héllo😀"))?;
    assert_eq!(doc.doc().length(&text), 6);
    // Position 6 is the end in code points (in UTF-16 units it would split the emoji).
    doc.edit(|d| d.splice_text(&text, 6, 0, "!"))?;
    assert_eq!(doc.doc().text(&text)?, "héllo😀!");
    doc.close()?;

    // Loaded again with the default options, positions still count code points.
    let mut doc = PersistentDoc::load(store.open_document(&doc_id())?)?;
    assert_eq!(doc.doc().length(&text), 7);
    doc.edit(|d| d.splice_text(&text, 5, 1, ""))?;
    assert_eq!(doc.doc().text(&text)?, "héllo!");

    // Another count is one option away.
    let utf16 = Options::default().with_text_encoding(TextEncoding::Utf16CodeUnit);
    let doc = PersistentDoc::load_with(store.open_document(&"other".into())?, utf16)?;
    assert_eq!(doc.doc().text_encoding(), TextEncoding::Utf16CodeUnit);
    Ok(())
}
