//! `persister ls` and `persister info`.

use persister_core::{Persister, Store};

use crate::support::{
    TestResult, backends, damage_log, make_fs_store_version_2, make_store, named, open_store,
    persister, snapshot_files, store_path,
};

#[test]
fn ls_lists_every_document_with_its_sizes_on_every_backend() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        let dumps = make_store(backend, &path)?;
        let store = path.to_str().unwrap();

        let text = persister(["ls", store])?.expect(0);
        assert!(
            text.stdout
                .starts_with(&format!("{} store {store}: 3 documents", backend.name())),
            "{}",
            text.stdout
        );
        // Binary ids are shown as 0x and hex, as DocumentId displays them.
        for id in ["notes", "0xff0001", "a/../b"] {
            assert!(text.stdout.contains(id), "{id}: {}", text.stdout);
        }

        let json = persister(["ls", "--json", store])?.expect(0).json()?;
        assert_eq!(json["backend"], backend.name());
        let listed = json["documents"].as_array().unwrap();
        assert_eq!(listed.len(), dumps.len());
        for (doc, dump) in listed.iter().zip(&dumps) {
            assert_eq!(doc["id_hex"], dump.id.to_hex());
            let sizes = dump.sizes();
            assert_eq!(doc["sizes"]["changes"], sizes.changes);
            assert_eq!(doc["sizes"]["document"], sizes.document);
            assert_eq!(doc["sizes"]["change_count"], sizes.change_count);
            assert_eq!(doc["sizes"]["sync_state_count"], sizes.sync_state_count);
        }
    }
    Ok(())
}

#[test]
fn info_shows_sizes_actors_peers_version_and_what_automerge_loads() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        let dumps = make_store(backend, &path)?;
        let store = path.to_str().unwrap();
        let notes = dumps.iter().find(|d| d.id == "notes".into()).unwrap();

        let text = persister(["info", store, "notes"])?.expect(0);
        for expected in [
            "document      notes".to_string(),
            format!(
                "{} store, format version {}",
                backend.name(),
                backend.format_version()
            ),
            "peer laptop".into(),
            "automerge     loads:".into(),
        ] {
            assert!(
                text.stdout.contains(&expected),
                "{expected}: {}",
                text.stdout
            );
        }

        let json = persister(["info", "--json", store, "notes"])?
            .expect(0)
            .json()?;
        assert_eq!(json["format_version"], backend.format_version());
        assert_eq!(json["sizes"]["change_count"], notes.changes.len());
        assert_eq!(json["has_document"], true);
        assert_eq!(json["peers"][0]["id"], "laptop");
        assert_eq!(json["actors"].as_array().unwrap().len(), 1);
        // 1 object + 9 words, all in the history whether compacted or not.
        assert_eq!(json["loads"]["crdt"], "automerge");
        assert_eq!(json["loads"]["changes"], 10);

        // A binary id, given as 0x and hex.
        let json = persister(["info", "--json", store, "0xff0001"])?
            .expect(0)
            .json()?;
        assert_eq!(json["id"], "0xff0001");
        assert_eq!(json["has_document"], false);
        assert_eq!(json["loads"]["changes"], 6);
    }
    Ok(())
}

#[test]
fn info_on_a_missing_document_or_a_bad_id_explains() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = store_path(dir.path(), crate::support::named("redb"));
    make_store(crate::support::named("redb"), &path)?;
    let store = path.to_str().unwrap();
    let missing = persister(["info", store, "nope"])?.expect(1);
    missing.expect_error_lines();
    assert!(
        missing.stderr.contains("has no document \"nope\""),
        "{}",
        missing.stderr
    );
    // The empty id is named too, as `0x` (no bytes), which reads back as it.
    let empty = persister(["info", store, ""])?.expect(1);
    assert!(
        empty.stderr.contains("has no document \"0x\""),
        "{}",
        empty.stderr
    );
    let bad = persister(["info", store, "0xf"])?.expect(2);
    bad.expect_error_lines();
    // A text id that starts with 0x is written in hex.
    persister(["info", store, "0x612f2e2e2f62"])?.expect(0);
    Ok(())
}

#[test]
fn paths_that_are_not_stores_are_explained() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.redb");
    let run = persister(["ls", missing.to_str().unwrap()])?.expect(1);
    run.expect_error_lines();
    assert!(run.stderr.contains("there is no store"), "{}", run.stderr);
    assert!(!missing.exists(), "ls created a store");

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello")?;
    let run = persister(["ls", file.to_str().unwrap()])?.expect(1);
    assert!(run.stderr.contains("not a redb store"), "{}", run.stderr);
    let run = persister(["ls", dir.path().to_str().unwrap()])?.expect(1);
    assert!(
        run.stderr.contains("neither a sled store nor an fs store"),
        "{}",
        run.stderr
    );
    // Forcing a backend on a file of another kind fails cleanly too, names the path,
    // and creates nothing.
    for backend in ["redb", "sled", "fs"] {
        let run = persister(["ls", "--backend", backend, file.to_str().unwrap()])?;
        assert_ne!(run.code, 0, "{backend}: {}", run.stderr);
        run.expect_error_lines();
        assert!(
            run.stderr.contains("notes.txt"),
            "{backend}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("File exists"),
            "{backend}: {}",
            run.stderr
        );
        assert_eq!(std::fs::read(&file)?, b"hello");
    }
    // A read-only command never makes a store of an empty directory.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty)?;
    for backend in ["sled", "fs"] {
        let run = persister(["ls", "--backend", backend, empty.to_str().unwrap()])?;
        assert_ne!(run.code, 0, "{backend}: {}", run.stdout);
        assert_eq!(
            std::fs::read_dir(&empty)?.count(),
            0,
            "{backend} wrote into it"
        );
    }
    Ok(())
}

#[test]
fn ls_on_an_export_file_says_to_import_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &store)?;
    let file = dir.path().join("backup.pst");
    persister(["export", store.to_str().unwrap(), file.to_str().unwrap()])?.expect(0);
    for command in ["ls", "verify"] {
        let run = persister([command, file.to_str().unwrap()])?.expect(1);
        run.expect_error_lines();
        assert!(
            run.stderr.contains(&format!(
                "{} is a persister export file, not a store",
                file.display()
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("persister import {}", file.display())),
            "{}",
            run.stderr
        );
    }
    Ok(())
}

#[test]
fn ls_on_a_store_whose_only_document_is_damaged_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("one");
    {
        let store = open_store(named("fs"), &path)?;
        let mut doc = store.open_document(&"only".into())?;
        doc.set_document(b"a document".to_vec())?;
        doc.flush()?;
    }
    damage_log(&path, &"only".into())?;
    let run = persister(["ls", path.to_str().unwrap()])?.expect(3);
    assert!(
        run.stdout.starts_with(&format!(
            "fs store {}: 1 document, damaged\n",
            path.display()
        )),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("0 bytes"), "{}", run.stdout);
    assert!(run.stdout.contains("DAMAGED  only"), "{}", run.stdout);
    run.expect_error_lines();
    let json = persister(["ls", "--json", path.to_str().unwrap()])?
        .expect(3)
        .json()?;
    assert!(json["documents"][0]["problem"].is_string(), "{json}");
    Ok(())
}

/// `info` on a document its CRDT cannot load prints what it found and exits 3, as
/// `verify` does for it: never exit code 0 over damage.
#[test]
fn info_on_a_document_that_does_not_load_exits_3_after_its_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.redb");
    {
        let store = open_store(named("redb"), &path)?;
        let mut doc = store.open_document(&"bad".into())?;
        // No CRDT loads it: neither Automerge's header nor a Yjs update.
        doc.insert_changes(vec![(persister_core::ActorId::new([1]), 1, vec![0xff; 9])])?;
        doc.flush()?;
        drop(doc);
        store.close()?;
    }
    let store = path.to_str().ok_or("path")?;
    persister(["verify", store])?.expect(3);
    let run = persister(["info", store, "bad"])?.expect(3);
    assert!(run.stdout.contains("CANNOT LOAD"), "{}", run.stdout);
    run.expect_error_lines();
    assert!(run.stderr.contains("document bad"), "{}", run.stderr);
    let json = persister(["info", "--json", store, "bad"])?
        .expect(3)
        .json()?;
    assert!(json["load_error"].is_string(), "{json}");
    assert_eq!(json["sizes"]["change_count"], 1, "{json}");
    Ok(())
}

#[test]
fn ls_info_and_compact_show_progress_counting_every_document() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = store_path(dir.path(), named("sled"));
    make_store(named("sled"), &path)?;
    let store = path.to_str().unwrap();
    let lines = [("PERSISTER_PROGRESS", "lines")];
    let ls = crate::support::run_with(None, &lines, ["ls", store])?.expect(0);
    for line in [
        "copying the sled store: done",
        "listing: 0 of 3",
        "listing: done, 3 of 3",
    ] {
        assert!(
            ls.stderr.lines().any(|l| l == line),
            "{line}: {}",
            ls.stderr
        );
    }
    let info = crate::support::run_with(None, &lines, ["info", store, "notes"])?.expect(0);
    assert!(
        info.stderr
            .lines()
            .any(|l| l == "reading the document: done"),
        "{}",
        info.stderr
    );
    let compact = crate::support::run_with(None, &lines, ["compact", store])?.expect(0);
    assert!(
        compact
            .stderr
            .lines()
            .any(|l| l == "compacting: done, 3 of 3"),
        "{}",
        compact.stderr
    );
    Ok(())
}

#[test]
fn info_loads_a_yjs_document_with_yrs() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        crate::support::write_yjs(backend, &path, "ynotes", &["hello", " world"])?;
        let store = path.to_str().unwrap();

        let text = persister(["info", store, "ynotes"])?.expect(0);
        assert!(
            text.stdout.contains(
                "yjs           loads: 11 elements inserted by 1 client, from 2 stored updates"
            ),
            "{}",
            text.stdout
        );
        let json = persister(["info", "--json", store, "ynotes"])?
            .expect(0)
            .json()?;
        assert_eq!(json["loads"]["crdt"], "yjs", "{json}");
        assert_eq!(json["loads"]["updates"], 2);
        assert_eq!(json["loads"]["clients"], 1);
        assert_eq!(json["loads"]["clock"], 11);
        assert_eq!(json["loads"]["missing_updates"], false);
        assert_eq!(json["load_error"], serde_json::Value::Null);
    }
    Ok(())
}

/// `info` shows the version the store is of, not the one this build writes: an fs
/// store of version 2 that was not migrated is shown as version 2, and stays so.
#[test]
fn info_shows_the_version_of_an_older_store_as_it_is() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = named("fs");
    let path = store_path(dir.path(), backend);
    make_fs_store_version_2(&path)?;
    let before = snapshot_files(&path)?;
    assert!(backend.format_version() > 2);

    let store = path.to_str().unwrap();
    for _ in 0..2 {
        let text = persister(["info", store, "notes"])?.expect(0);
        assert!(
            text.stdout.contains("fs store, format version 2)"),
            "{}",
            text.stdout
        );
        let json = persister(["info", "--json", store, "notes"])?
            .expect(0)
            .json()?;
        assert_eq!(json["format_version"], 2);
    }
    assert!(snapshot_files(&path)? == before, "info wrote to the store");
    Ok(())
}
