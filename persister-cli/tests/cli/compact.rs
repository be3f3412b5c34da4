//! `persister compact`.

use crate::support::{
    TestResult, backends, make_store, named, notes_text, persister, read_store, store_path,
};

#[test]
fn compact_drops_every_change_and_keeps_the_text() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        let before = make_store(backend, &path)?;
        let text = notes_text(backend, &path)?;
        let store = path.to_str().unwrap();

        let json = persister(["compact", "--json", store])?.expect(0).json()?;
        let docs = json["documents"].as_array().unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs.iter().all(|d| d["compacted"] == true), "{json}");
        assert!(
            docs.iter().all(|d| d["after"]["change_count"] == 0),
            "{json}"
        );

        let after = read_store(backend, &path)?;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(old.id, new.id);
            assert!(new.changes.is_empty() && new.document.is_some());
            // Sync states are not the compaction's business.
            assert_eq!(old.sync_states, new.sync_states);
        }
        assert_eq!(notes_text(backend, &path)?, text);
        persister(["verify", store])?.expect(0);

        // Again: nothing left to compact.
        let run = persister(["compact", store])?.expect(0);
        assert!(
            run.stdout.starts_with("compacted 0 of 3 documents"),
            "{}",
            run.stdout
        );
    }
    Ok(())
}

#[test]
fn compact_one_document_by_its_binary_id() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = named("redb");
    let path = store_path(dir.path(), backend);
    let before = make_store(backend, &path)?;
    let run = persister(["compact", path.to_str().unwrap(), "0xff0001"])?.expect(0);
    assert!(
        run.stdout.starts_with("compacted 1 of 1 document"),
        "{}",
        run.stdout
    );
    let after = read_store(backend, &path)?;
    for (old, new) in before.iter().zip(&after) {
        if new.id == vec![0xff, 0x00, 0x01].into() {
            assert!(new.changes.is_empty());
        } else {
            assert_eq!(old, new, "another document was touched");
        }
    }
    persister(["compact", path.to_str().unwrap(), "missing"])?
        .expect(1)
        .expect_error_lines();
    Ok(())
}

#[test]
fn a_yjs_document_is_compacted_with_yrs() -> TestResult {
    use yrs::{GetString, Transact};
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        crate::support::write_yjs(backend, &path, "ynotes", &["one", " two", " three"])?;
        let json = persister(["compact", "--json", path.to_str().unwrap(), "ynotes"])?
            .expect(0)
            .json()?;
        let compacted = &json["documents"][0];
        assert_eq!(compacted["compacted"], true, "{json}");
        assert_eq!(compacted["before"]["change_count"], 3, "{json}");
        assert_eq!(compacted["after"]["change_count"], 0, "{json}");
        assert!(
            compacted["after"]["document"].as_u64().unwrap() > 0,
            "{json}"
        );

        let store = crate::support::open_store(backend, &path)?;
        let doc = persister_yrs::PersistentYDoc::load(store.open_document(&"ynotes".into())?)?;
        let text = doc.doc().get_or_insert_text("text");
        assert_eq!(text.get_string(&doc.doc().transact()), "one two three");
    }
    Ok(())
}

/// `compact` works on a store that exists: on an empty directory (with `--backend`)
/// or a PostgreSQL schema without a store it makes none, and fails rather than report
/// "compacted 0 of 0 documents".
#[test]
fn compact_makes_no_store_where_there_is_none() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in ["fs", "sled"] {
        let empty = dir.path().join(format!("empty-{backend}"));
        std::fs::create_dir(&empty)?;
        let run = persister(["compact", "--backend", backend, empty.to_str().unwrap()])?.expect(1);
        run.expect_error_lines();
        assert!(run.stderr.contains("empty directory"), "{}", run.stderr);
        assert_eq!(
            std::fs::read_dir(&empty)?.count(),
            0,
            "{backend}: compact wrote into the empty directory"
        );
    }
    use persister_testkit::postgres::schema_server;
    let schema = format!("cli_compact_{}", std::process::id());
    let Some((url, cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    // With `migrate_format=true` too, which a read-only open refuses before it looks,
    // in a URL and in a connection string.
    let migrating = format!("{url}&migrate_format=true");
    for url in [&url, &migrating] {
        let run = persister(["compact", url])?.expect(1);
        assert!(run.stderr.contains("none of its tables"), "{}", run.stderr);
    }
    if let Some(cluster) = &cluster {
        let connection = format!("{} schema={schema} migrate_format=true", cluster.url());
        let run = persister(["compact", "--backend", "postgres", &connection])?.expect(1);
        assert!(run.stderr.contains("none of its tables"), "{}", run.stderr);
    }
    // Nothing was made there: a look still finds no store.
    let run = persister(["ls", &url])?.expect(1);
    assert!(run.stderr.contains("none of its tables"), "{}", run.stderr);
    Ok(())
}
