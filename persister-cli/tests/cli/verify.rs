//! `persister verify`, on sound and damaged stores.

use std::path::{Path, PathBuf};

use persister_cli::{Backend, DocumentDump};

use persister_core::{ActorId, Persister, Store};

use crate::support::{
    TestResult, backends, binary, flip_every, fs_log_path, make_store, named, open_store,
    persister, snapshot_files, store_path,
};

#[test]
fn a_sound_store_verifies_on_every_backend() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        let store = path.to_str().unwrap();
        let run = persister(["verify", store])?.expect(0);
        assert!(
            run.stdout.contains("3 of 3 documents sound, 0 damaged"),
            "{}",
            run.stdout
        );
        let json = persister(["verify", "--json", store])?.expect(0).json()?;
        assert_eq!(json["ok"], true);
        assert_eq!(json["documents"].as_array().unwrap().len(), 3);
    }
    Ok(())
}

#[test]
fn a_damaged_change_is_reported_naming_its_document() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        {
            // Bytes the backend stores faithfully, but that are no automerge change.
            let store = open_store(backend, &path)?;
            let mut doc = store.open_document(&"broken".into())?;
            doc.insert_changes(vec![(ActorId::new([7; 16]), 1, b"not a change".to_vec())])?;
            doc.flush()?;
        }
        let run = persister(["verify", path.to_str().unwrap()])?.expect(3);
        let damaged = damaged_lines(&run.stdout);
        assert_eq!(damaged.len(), 1, "{}", run.stdout);
        assert!(damaged[0].contains("broken"), "{}", run.stdout);
        assert!(damaged[0].contains("seq 1"), "{}", run.stdout);
        assert!(
            run.stdout.contains("3 of 4 documents sound, 1 damaged"),
            "{}",
            run.stdout
        );
        run.expect_error_lines();
        assert!(
            run.stderr.contains("failed verification: broken"),
            "{}",
            run.stderr
        );

        let json = persister(["verify", "--json", path.to_str().unwrap()])?
            .expect(3)
            .json()?;
        assert_eq!(json["ok"], false);
        assert_eq!(json["damaged"], 1);
        let broken = json["documents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "broken")
            .unwrap();
        assert!(
            broken["problem"].as_str().unwrap().contains("damaged"),
            "{broken}"
        );
    }
    Ok(())
}

#[test]
fn a_damaged_fs_log_is_reported_naming_its_document() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = store_path(dir.path(), named("fs"));
    make_store(named("fs"), &path)?;
    let log = fs_log_path(&path, &"notes".into())?;
    // Damage a record in the middle: flushed data, not a torn tail.
    let mut bytes = std::fs::read(&log)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&log, bytes)?;
    let before = snapshot_files(&path)?;

    let run = persister(["verify", path.to_str().unwrap()])?.expect(3);
    let damaged = damaged_lines(&run.stdout);
    assert_eq!(damaged.len(), 1, "{}", run.stdout);
    assert!(damaged[0].contains("notes"), "{}", run.stdout);
    assert!(run.stdout.contains("ok       0xff0001"), "{}", run.stdout);
    assert!(
        run.stderr.contains("failed verification: notes"),
        "{}",
        run.stderr
    );
    // Verifying changed nothing but the lock file.
    let after = snapshot_files(&path)?;
    assert_eq!(without_lock(before), without_lock(after));
    Ok(())
}

/// The lines of `verify`'s report that name a damaged document.
fn damaged_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.contains("DAMAGED")).collect()
}

fn without_lock(files: Vec<(PathBuf, Vec<u8>)>) -> Vec<(PathBuf, Vec<u8>)> {
    files
        .into_iter()
        .filter(|(p, _)| !p.ends_with("LOCK"))
        .collect()
}

/// The change the damage tests damage: the fourth of the binary-id document.
fn damaged_change(dumps: &[DocumentDump]) -> TestResult<&[u8]> {
    let document = dumps.iter().find(|d| d.id == binary()).ok_or("no doc")?;
    Ok(&document.changes[3].2)
}

/// A store of `backend` in `dir` with the bytes of one change flipped wherever the
/// engine wrote them (sled in its `db` file, redb in its one file); returns its path.
fn store_with_a_flipped_change(dir: &Path, backend: Backend) -> TestResult<PathBuf> {
    let path = store_path(dir, backend);
    let dumps = make_store(backend, &path)?;
    let change = damaged_change(&dumps)?;
    let file = if backend == named("sled") {
        path.join("db")
    } else {
        path.clone()
    };
    assert!(
        flip_every(&file, change)? > 0,
        "the change is not in {}",
        file.display()
    );
    Ok(path)
}

#[test]
fn a_damaged_sled_store_is_reported_and_left_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = store_with_a_flipped_change(dir.path(), named("sled"))?;
    let before = snapshot_files(&path)?;
    let run = persister(["verify", path.to_str().unwrap()])?.expect(3);
    run.expect_error_lines();
    assert!(run.stdout.contains("DAMAGED"), "{}", run.stdout);
    // verify read a copy: sled's recovery did not touch the original.
    assert_eq!(snapshot_files(&path)?, before);
    println!("verify: {}", run.stdout);
    // Nor does a command that writes: it opens the original only once a copy opened.
    let run = persister(["compact", path.to_str().unwrap()])?.expect(3);
    println!("compact: {}", run.stderr);
    assert_eq!(snapshot_files(&path)?, before);
    Ok(())
}

#[test]
fn a_damaged_redb_file_fails_verification_without_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = store_with_a_flipped_change(dir.path(), named("redb"))?;
    let run = persister(["verify", path.to_str().unwrap()])?.expect(3);
    run.expect_error_lines();
    assert!(run.stdout.contains("DAMAGED"), "{}", run.stdout);
    Ok(())
}

/// A store whose damage stops it from opening is damage (exit 3), and the hint does not
/// offer `copy --skip-damaged`, which could not open it either; a store with one damaged
/// document still gets that advice.
#[test]
fn a_store_that_does_not_open_is_damage_with_advice_that_can_work() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = named("redb");
    let path = store_path(dir.path(), backend);
    make_store(backend, &path)?;
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..100])?;
    let store = path.to_str().unwrap();
    for command in ["verify", "ls"] {
        let run = persister([command, store])?.expect(3);
        run.expect_error_lines();
        assert!(
            run.stderr.contains("no document of it can be read"),
            "{command}: {}",
            run.stderr
        );
    }
    let skipping = persister([
        "copy",
        "--skip-damaged",
        store,
        dir.path().join("saved.redb").to_str().unwrap(),
    ])?
    .expect(3);
    assert!(
        skipping.stderr.contains("no document of it can be read"),
        "{}",
        skipping.stderr
    );

    let one = store_path(dir.path(), named("fs"));
    make_store(named("fs"), &one)?;
    crate::support::damage_log(&one, &"notes".into())?;
    let run = persister(["verify", one.to_str().unwrap()])?.expect(3);
    assert!(
        run.stderr.contains("copy --skip-damaged STORE NEW"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// The pages of a change zeroed, as a lost write or a bad sector leaves them: redb's plain
/// read of such a page panics, so the read-only open `verify` makes checks every page
/// first, and leaves the file as it is.
#[test]
fn a_zeroed_redb_page_is_reported_without_a_panic_and_left_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = named("redb");
    let path = store_path(dir.path(), backend);
    let dumps = make_store(backend, &path)?;
    let change = damaged_change(&dumps)?;
    let mut bytes = std::fs::read(&path)?;
    // Every page that holds the change (copy-on-write leaves older copies in pages
    // since freed): the live one among them.
    let pages: Vec<usize> = bytes
        .windows(change.len())
        .enumerate()
        .filter(|(_, w)| *w == change)
        .map(|(at, _)| at / 4096 * 4096)
        .collect();
    assert!(!pages.is_empty(), "the change is not in the file");
    for page in pages {
        let end = (page + 4096).min(bytes.len());
        bytes[page..end].fill(0);
    }
    std::fs::write(&path, &bytes)?;
    let run = persister(["verify", path.to_str().unwrap()])?.expect(3);
    run.expect_error_lines();
    assert!(run.stdout.contains("DAMAGED"), "{}", run.stdout);
    let run = persister(["info", path.to_str().unwrap(), "0xff0001"])?.expect(3);
    run.expect_error_lines();
    assert_eq!(
        std::fs::read(&path)?,
        bytes,
        "verify or info changed the file"
    );
    Ok(())
}

#[test]
fn yjs_documents_are_verified_with_yrs() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        crate::support::write_yjs(backend, &path, "ynotes", &["hello", " world"])?;
        let store = path.to_str().unwrap();
        let run = persister(["verify", store])?.expect(0);
        assert!(
            run.stdout
                .contains("yrs loads 11 elements inserted by 1 client"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("4 of 4 documents sound, 0 damaged"),
            "{}",
            run.stdout
        );

        // An update whose dependencies are not stored: the second edit of a document
        // whose first edit was never stored.
        let orphan = {
            use yrs::{ReadTxn, Text, Transact};
            let doc = yrs::Doc::with_client_id(9);
            let text = doc.get_or_insert_text("text");
            text.insert(&mut doc.transact_mut(), 0, "lost");
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), 4, " and found");
            doc.transact().encode_state_as_update_v1(&before)
        };
        {
            let store = open_store(backend, &path)?;
            let mut doc = store.open_document(&"ynotes".into())?;
            doc.insert_changes(vec![(
                persister_yrs::actor_of(yrs::ClientID::new(9)),
                1,
                orphan,
            )])?;
            doc.close()?;
            store.close()?;
        }
        let run = persister(["verify", store])?.expect(3);
        let damaged = damaged_lines(&run.stdout);
        assert_eq!(damaged.len(), 1, "{}", run.stdout);
        assert!(damaged[0].contains("ynotes"), "{}", run.stdout);
        assert!(
            damaged[0].contains("updates they depend on are missing"),
            "{}",
            run.stdout
        );
        // `info` reports it too, and exits as `verify` does: loaded, but incomplete.
        let run = persister(["info", store, "ynotes"])?.expect(3);
        assert!(
            run.stderr.contains("is incomplete") && !run.stderr.contains("does not load"),
            "{}",
            run.stderr
        );
        let json = persister(["verify", "--json", store])?.expect(3).json()?;
        let ynotes = json["documents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "ynotes")
            .unwrap();
        assert_eq!(ynotes["loads"]["crdt"], "yjs", "{ynotes}");
        assert_eq!(ynotes["loads"]["missing_updates"], true, "{ynotes}");
    }
    Ok(())
}

#[test]
fn a_samod_store_verifies_and_is_not_compacted_behind_samod() -> TestResult {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};
    use persister_samod::acceptance::{block_on, key};
    use persister_samod::{Options, SamodStorage};
    use samod::storage::Storage;

    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        {
            // What a samod repo writes: incrementals under their hashes, a snapshot,
            // and a store-wide key.
            let storage = SamodStorage::on_store(open_store(backend, &path)?, Options::default())?;
            let mut doc = AutoCommit::new();
            for word in ["one", "two", "three"] {
                doc.put(ROOT, word, word)?;
                doc.commit();
                let change = doc.get_last_local_change().ok_or("no change")?;
                let hash = change.hash().to_string();
                block_on(storage.put(
                    key(&["notes", "incremental", &hash]),
                    change.raw_bytes().to_vec(),
                ));
            }
            block_on(storage.put(key(&["snapshotted", "snapshot", "h1"]), doc.save()));
            block_on(storage.put(key(&["storage-adapter-id"]), b"adapter".to_vec()));
            storage.close()?;
        }
        let store = path.to_str().unwrap();
        let run = persister(["verify", store])?.expect(0);
        assert!(
            run.stdout.contains("3 of 3 documents sound, 0 damaged"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("persister-samod's layout record, version 1"),
            "{}",
            run.stdout
        );
        let json = persister(["info", "--json", store, "notes"])?
            .expect(0)
            .json()?;
        assert_eq!(json["loads"]["crdt"], "automerge", "{json}");
        assert_eq!(json["loads"]["changes"], 3, "{json}");
        let json = persister(["info", "--json", store, "snapshotted"])?
            .expect(0)
            .json()?;
        assert_eq!(json["loads"]["changes"], 3, "{json}");

        let before = crate::support::read_store(backend, &path)?;
        let run = persister(["compact", store])?.expect(1);
        assert!(
            run.stderr.contains("samod compacts its documents itself"),
            "{}",
            run.stderr
        );
        let after = crate::support::read_store(backend, &path)?;
        assert!(before == after, "compact changed a samod store");
    }
    Ok(())
}

#[test]
fn a_samod_chunk_samod_would_skip_or_a_damaged_layout_entry_is_reported() -> TestResult {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};
    use persister_samod::acceptance::{block_on, key};
    use persister_samod::{Options, SamodStorage};
    use samod::storage::Storage;

    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "title", "kept")?;
        let snapshot = doc.save();
        {
            let storage = SamodStorage::on_store(open_store(backend, &path)?, Options::default())?;
            // Sound chunks kept as entries: a snapshot beside the newest, and a bundle
            // of changes under a name that is no change's hash.
            block_on(storage.put(key(&["sound", "snapshot", "h1"]), snapshot.clone()));
            block_on(storage.put(key(&["sound", "snapshot", "h2"]), snapshot.clone()));
            block_on(storage.put(key(&["sound", "incremental", "bundle"]), snapshot.clone()));
            // A snapshot whose bytes automerge refuses, moved beside the newest one.
            let mut damaged = snapshot.clone();
            let last = damaged.len() - 1;
            damaged[last] ^= 0x55;
            block_on(storage.put(key(&["spare", "snapshot", "h1"]), damaged));
            block_on(storage.put(key(&["spare", "snapshot", "h2"]), snapshot.clone()));
            // An incremental that is no automerge chunk at all.
            block_on(storage.put(key(&["garbage", "snapshot", "h1"]), snapshot.clone()));
            block_on(storage.put(
                key(&["garbage", "incremental", "h2"]),
                b"not automerge".to_vec(),
            ));
            block_on(storage.put(key(&["entry", "snapshot", "h1"]), snapshot.clone()));
            storage.close()?;
        }
        {
            // A sync-state entry the layout never writes.
            let store = open_store(backend, &path)?;
            let mut entry = store.open_document(&"entry".into())?;
            entry.apply(persister_core::Batch::new().set_sync_state(vec![0x7f], b"x".to_vec()))?;
            entry.flush()?;
            drop(entry);
            store.close()?;
        }
        let store = path.to_str().unwrap();
        let json = persister(["verify", "--json", store])?.expect(3).json()?;
        let verdict = |id: &str| {
            json["documents"]
                .as_array()
                .and_then(|docs| docs.iter().find(|d| d["id"] == id))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(verdict("sound")["ok"], true, "{json}");
        assert_eq!(verdict("/")["ok"], true, "{json}");
        for (id, problem) in [
            (
                "spare",
                "the samod key spare/snapshot/h1 of document spare does not load",
            ),
            (
                "garbage",
                "the samod key garbage/incremental/h2 of document garbage does not load",
            ),
            ("entry", "which persister-samod layout 1 does not write"),
        ] {
            let found = verdict(id);
            assert_eq!(found["ok"], false, "{id}: {json}");
            let text = found["problem"].as_str().unwrap_or_default();
            assert!(text.contains(problem), "{id}: {text}");
        }
        assert_eq!(json["damaged"], 3, "{json}");
    }
    Ok(())
}
