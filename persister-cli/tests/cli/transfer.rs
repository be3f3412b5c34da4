//! `persister copy`, `export` and `import`.

use crate::support::named;
use persister_core::{Persister, Store};

use crate::support::{
    PgServer, TestResult, damage_log, fs_log_path, interrupt_when, interrupt_when_made, make_store,
    names_in, open_store, persister, read_store, snapshot_files, store_path,
};

#[test]
fn sled_to_redb_to_fs_to_an_export_file_and_back_keeps_every_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_string();
    let original = make_store(named("sled"), &p("sled"))?;
    assert_eq!(original.len(), 3);

    let run = persister(["copy", &s("sled"), &s("a.redb")])?.expect(0);
    assert!(run.stdout.contains("copied 3 documents"), "{}", run.stdout);
    assert_eq!(read_store(named("redb"), &p("a.redb"))?, original);

    let json = persister([
        "copy",
        "--json",
        "--backend",
        "fs",
        &s("a.redb"),
        &s("b-fs"),
    ])?
    .expect(0)
    .json()?;
    assert_eq!(json["source_backend"], "redb");
    assert_eq!(json["documents"], 3);
    assert_eq!(read_store(named("fs"), &p("b-fs"))?, original);

    let run = persister(["export", &s("b-fs"), &s("dump.pst")])?.expect(0);
    assert!(
        run.stdout.contains("exported 3 documents"),
        "{}",
        run.stdout
    );
    assert_eq!(&std::fs::read(p("dump.pst"))?[..8], b"PSTEXPRT");

    for backend in [named("sled"), named("redb"), named("fs")] {
        let dst = format!("imported-{}", backend.name());
        persister([
            "import",
            "--backend",
            backend.name(),
            &s("dump.pst"),
            &s(&dst),
        ])?
        .expect(0);
        assert_eq!(
            read_store(backend, &p(&dst))?,
            original,
            "{}",
            backend.name()
        );
    }
    // The default backend of a new store is redb.
    let json = persister(["import", "--json", &s("dump.pst"), &s("default")])?
        .expect(0)
        .json()?;
    assert_eq!(
        (json["documents"].clone(), json["backend"].clone()),
        (3.into(), "redb".into())
    );
    assert!(persister_redb::is_redb_file(p("default")));
    // Nothing temporary is left anywhere.
    assert!(
        names_in(dir.path())?.iter().all(|n| !n.contains("partial")),
        "{:?}",
        names_in(dir.path())?
    );
    Ok(())
}

#[test]
fn an_emptied_document_is_copied_exported_and_imported_as_an_empty_document() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_string();
    for backend in [named("redb"), named("sled"), named("fs")] {
        let name = backend.name();
        let src = format!("{name}-src");
        {
            let store = open_store(backend, &p(&src))?;
            let mut doc = store.open_document(&"emptied".into())?;
            let actor = persister_core::ActorId::from(vec![1]);
            doc.insert_changes(vec![(actor.clone(), 1, b"c".to_vec())])?;
            doc.flush()?;
            doc.remove_changes(vec![(&actor, 1)])?;
            doc.close()?;
            let mut kept = store.open_document(&"kept".into())?;
            kept.set_document(b"doc".to_vec())?;
            kept.close()?;
        }
        let original = read_store(backend, &p(&src))?;
        assert_eq!(original.len(), 2, "{name}: the emptied document is listed");

        let copy = format!("{name}-copy");
        let run = persister(["copy", "--backend", name, &s(&src), &s(&copy)])?.expect(0);
        assert!(run.stdout.contains("copied 2 documents"), "{}", run.stdout);
        assert_eq!(read_store(backend, &p(&copy))?, original, "{name} copy");

        let dump = format!("{name}.pst");
        persister(["export", &s(&src), &s(&dump)])?.expect(0);
        let imported = format!("{name}-imported");
        persister(["import", "--backend", name, &s(&dump), &s(&imported)])?.expect(0);
        assert_eq!(
            read_store(backend, &p(&imported))?,
            original,
            "{name} import"
        );
    }
    Ok(())
}

#[test]
fn an_existing_destination_is_refused_and_left_as_it_was() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &src)?;
    let other = store_path(dir.path(), named("fs"));
    make_store(named("fs"), &other)?;
    let file = dir.path().join("taken.pst");
    std::fs::write(&file, "precious")?;
    let dump = dir.path().join("dump.pst");
    persister(["export", src.to_str().unwrap(), dump.to_str().unwrap()])?.expect(0);
    let before = snapshot_files(&other)?;
    let src = src.to_str().unwrap();
    for args in [
        vec!["copy", src, other.to_str().unwrap(), "--backend", "fs"],
        vec!["copy", src, file.to_str().unwrap()],
        vec!["export", src, file.to_str().unwrap()],
        vec!["import", dump.to_str().unwrap(), other.to_str().unwrap()],
    ] {
        let run = persister(&args)?.expect(1);
        run.expect_error_lines();
        assert!(
            run.stderr.contains("already exists"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read(&file)?, b"precious");
    assert_eq!(snapshot_files(&other)?, before);
    // An empty directory is fine for a directory backend.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty)?;
    persister(["copy", src, empty.to_str().unwrap(), "--backend", "sled"])?.expect(0);
    assert_eq!(read_store(named("sled"), &empty)?.len(), 3);
    Ok(())
}

#[test]
fn a_failed_copy_leaves_no_destination() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("fs"));
    let original = make_store(named("fs"), &src)?;
    // Damage the log of the binary-id document (it comes last, after two documents
    // were written to the new store): flushed records, not a torn tail.
    let log = fs_log_path(&src, &vec![0xff, 0x00, 0x01].into())?;
    let mut bytes = std::fs::read(&log)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&log, bytes)?;
    let names = names_in(dir.path())?;
    for backend in ["redb", "sled", "fs"] {
        let dst = dir.path().join(format!("copy-{backend}"));
        let run = persister([
            "copy",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--backend",
            backend,
        ])?
        .expect(3);
        run.expect_error_lines();
        assert!(run.stderr.contains("0xff0001"), "{}", run.stderr);
        assert!(!dst.exists());
        assert_eq!(names_in(dir.path())?, names, "something was left behind");
    }

    // --skip-damaged saves the rest, and names what it left out.
    let sound: Vec<_> = original
        .into_iter()
        .filter(|d| d.id != vec![0xff, 0x00, 0x01].into())
        .collect();
    let saved = dir.path().join("saved.redb");
    let run = persister([
        "copy",
        "--skip-damaged",
        src.to_str().unwrap(),
        saved.to_str().unwrap(),
    ])?
    .expect(4);
    assert!(
        run.stdout.contains("copied 2 of 3 documents"),
        "{}",
        run.stdout
    );
    run.expect_error_lines();
    assert!(
        run.stderr
            .contains("left out 1 damaged document of 3: 0xff0001"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("left out 1 damaged document"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  0xff0001  damaged data in"),
        "{}",
        run.stdout
    );
    assert_eq!(read_store(named("redb"), &saved)?, sound);

    let dump = dir.path().join("saved.pst");
    let json = persister([
        "export",
        "--json",
        "--skip-damaged",
        src.to_str().unwrap(),
        dump.to_str().unwrap(),
    ])?
    .expect(4)
    .json()?;
    assert_eq!(json["documents"], 2);
    assert_eq!(json["skipped"][0]["id"], "0xff0001");
    let imported = dir.path().join("imported");
    persister([
        "import",
        "--backend",
        "fs",
        dump.to_str().unwrap(),
        imported.to_str().unwrap(),
    ])?
    .expect(0);
    assert_eq!(read_store(named("fs"), &imported)?, sound);

    // ls lists what it can and names the damaged document.
    let run = persister(["ls", src.to_str().unwrap()])?.expect(3);
    assert!(run.stdout.contains("notes"), "{}", run.stdout);
    assert!(run.stdout.contains("DAMAGED  0xff0001"), "{}", run.stdout);
    run.expect_error_lines();
    Ok(())
}

#[test]
fn skip_damaged_that_saved_nothing_exits_4_and_counts_what_it_skipped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("one");
    {
        let store = open_store(named("fs"), &src)?;
        let mut doc = store.open_document(&"only".into())?;
        doc.set_document(b"a document".to_vec())?;
        doc.flush()?;
    }
    damage_log(&src, &"only".into())?;
    let saved = dir.path().join("saved.redb");
    let run = persister([
        "copy",
        "--skip-damaged",
        src.to_str().unwrap(),
        saved.to_str().unwrap(),
    ])?
    .expect(4);
    assert!(
        run.stdout.contains("copied 0 of 1 document "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("left out 1 damaged document"),
        "{}",
        run.stdout
    );
    run.expect_error_lines();
    assert!(read_store(named("redb"), &saved)?.is_empty());
    // Nothing left out: exit 0, as before.
    let sound = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &sound)?;
    let run = persister([
        "copy",
        "--skip-damaged",
        sound.to_str().unwrap(),
        dir.path().join("all.redb").to_str().unwrap(),
    ])?
    .expect(0);
    assert!(run.stdout.contains("copied 3 documents"), "{}", run.stdout);
    Ok(())
}

#[test]
fn a_damaged_or_foreign_export_file_imports_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &src)?;
    let dump = dir.path().join("dump.pst");
    persister(["export", src.to_str().unwrap(), dump.to_str().unwrap()])?.expect(0);
    let good = std::fs::read(&dump)?;
    let dst = dir.path().join("new.redb");
    let import = |bytes: &[u8]| -> TestResult<crate::support::Run> {
        let file = dir.path().join("bad.pst");
        std::fs::write(&file, bytes)?;
        let run = persister(["import", file.to_str().unwrap(), dst.to_str().unwrap()])?;
        std::fs::remove_file(&file)?;
        assert!(!dst.exists(), "a failed import left {}", dst.display());
        Ok(run)
    };
    let names = names_in(dir.path())?;

    // A flipped byte near the end: every document is written before the end record
    // shows the damage, and the whole new store is thrown away.
    let mut flipped = good.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 1;
    let run = import(&flipped)?.expect(3);
    run.expect_error_lines();
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);

    let run = import(&good[..good.len() - 10])?.expect(3);
    assert!(run.stderr.contains("ends at byte"), "{}", run.stderr);

    // Another version (its header's checksum sound): refused naming both.
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&2u32.to_be_bytes());
    let crc = crc32c::crc32c(&v2[..12]);
    v2[12..16].copy_from_slice(&crc.to_be_bytes());
    let run = import(&v2)?.expect(1);
    run.expect_error_lines();
    assert!(
        run.stderr.contains("version 2") && run.stderr.contains("only version 1"),
        "{}",
        run.stderr
    );
    // A flipped bit in the version: damage, not another version.
    let mut flipped = good.clone();
    flipped[11] ^= 2;
    let run = import(&flipped)?.expect(3);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);

    let run = import(b"redb\x1a\x0a\xa9\x0d\x0anot an export")?.expect(1);
    assert!(
        run.stderr.contains("not a persister export file"),
        "{}",
        run.stderr
    );
    assert_eq!(names_in(dir.path())?, names, "something was left behind");
    Ok(())
}

/// `copy` onto a PostgreSQL server and back: a redb store, copied to a schema of a
/// throwaway cluster (or of `PERSISTER_POSTGRES_URL`), listed and verified there, and
/// copied back into a new redb store, byte for byte.
#[test]
fn redb_to_postgres_to_redb_keeps_every_byte() -> TestResult {
    use persister_testkit::postgres::schema_server;
    let schema = format!("cli_copy_{}", std::process::id());
    let Some((url, _cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    // Looking at a schema that holds no store creates nothing there.
    let empty = url.replace(&schema, &format!("{schema}_empty"));
    for _ in 0..2 {
        let run = persister(["ls", &empty])?.expect(1);
        assert!(run.stderr.contains("none of its tables"), "{}", run.stderr);
    }
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_string();
    let original = make_store(named("redb"), &p("a.redb"))?;
    let run = persister(["copy", &s("a.redb"), &url])?.expect(0);
    assert!(run.stdout.contains("copied 3 documents"), "{}", run.stdout);
    let listed = persister(["ls", &url])?.expect(0);
    assert!(listed.stdout.contains("notes"), "{}", listed.stdout);
    persister(["verify", &url])?.expect(0);
    // The password of a URL is shown nowhere (the test cluster trusts local logins, so
    // any password opens it).
    // Its place is shown: `user:********@host`.
    if let Some((user, rest)) = url.split_once('@') {
        let with_password = format!("{user}:pw-Zq81-secret@{rest}");
        // As an option, with a raw `@` in it.
        let as_option = format!("{url}&password=pw-Zq81@secret-tail");
        for (location, place) in [
            (&with_password, format!("{user}:********@{rest}")),
            (&as_option, format!("{url}&password=********")),
        ] {
            for args in [vec!["ls"], vec!["info", "notes"], vec!["verify"]] {
                let mut args = args.clone();
                args.insert(1, location);
                let run = persister(&args)?.expect(0);
                let shown = format!("{}{}", run.stdout, run.stderr);
                for piece in ["pw-Zq81", "secret"] {
                    assert!(!shown.contains(piece), "{args:?}: {shown}");
                }
                assert!(run.stdout.contains(&place), "{args:?}: {place}: {shown}");
            }
        }
    }
    // A schema that holds documents is not a new store.
    persister(["copy", &s("a.redb"), &url])?.expect(1);
    persister(["copy", &url, &s("b.redb")])?.expect(0);
    assert_eq!(read_store(named("redb"), &p("b.redb"))?, original);
    Ok(())
}

/// Ctrl-C while `copy` writes its new store: the partial destination beside it is
/// removed before the process ends, for every backend that makes a file or directory.
#[test]
fn an_interrupted_copy_leaves_no_partial_destination() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    let dir = tempfile::tempdir()?;
    let src = large_redb_store(dir.path())?;
    for backend in ["redb", "fs", "sled"] {
        let out = dir.path().join(format!("out-{backend}"));
        std::fs::create_dir(&out)?;
        // Once its partial destination appears, press Ctrl-C.
        let (status, seen) = interrupt_when_made(
            Command::new(env!("CARGO_BIN_EXE_persister"))
                .args(["copy", "--backend", backend])
                .arg(&src)
                .arg(out.join("copy")),
            &out,
        )?;
        assert!(
            status.signal() == Some(2) || status.success(),
            "{backend}: ended by {status:?}"
        );
        let left = names_in(&out)?;
        if status.success() {
            println!("{backend}: the copy finished before the signal");
        }
        match status.success() {
            // Finished before the signal: the whole copy, nothing else.
            true => assert_eq!(left, ["copy"], "{backend}"),
            false => assert!(left.is_empty(), "{backend}: left {left:?}"),
        }
        assert!(
            seen,
            "{backend}: the copy ended before its destination appeared"
        );
    }
    Ok(())
}

/// an import that fails at the end of a damaged export file into a PostgreSQL
/// schema must leave the schema as it was (holding no store), as it does for a path.
#[test]
fn a_failed_import_into_postgres_leaves_the_schema_as_it_was() -> TestResult {
    use persister_testkit::postgres::schema_server;
    let schema = format!("cli_bad_import_{}", std::process::id());
    let Some((url, _cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &src)?;
    let dump = dir.path().join("dump.pst");
    persister(["export", src.to_str().unwrap(), dump.to_str().unwrap()])?.expect(0);
    let mut bytes = std::fs::read(&dump)?;
    // A flipped byte in the end record: every document comes before it.
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    let bad = dir.path().join("bad.pst");
    std::fs::write(&bad, bytes)?;
    let run = persister(["import", bad.to_str().unwrap(), &url])?.expect(3);
    run.expect_error_lines();
    // The schema holds no store: the import was built in a schema of its own, which
    // is gone too.
    let after = persister(["ls", &url])?.expect(1);
    assert!(
        after.stderr.contains("none of its tables"),
        "the failed import left a store in the schema:\n{after:?}\nimport said: {}",
        run.stderr
    );
    let mut server = PgServer::connect(&_cluster)?;
    assert_eq!(server.partial_schemas(&schema)?, Vec::<String>::new());
    // And the good file still imports there.
    persister(["import", dump.to_str().unwrap(), &url])?.expect(0);
    assert_eq!(
        read_store(named("redb"), &src)?.len(),
        3,
        "the source is whole"
    );
    let listed = persister(["ls", &url])?.expect(0);
    assert!(listed.stdout.contains(": 3 documents"), "{}", listed.stdout);
    Ok(())
}

/// A copy into PostgreSQL is built in a schema of its own and renamed into place
/// whole: Ctrl-C leaves neither a store at the destination nor the partial schema, and
/// a killed copy (SIGKILL, nothing cleans up) leaves the destination as it was, with
/// only the partial schema beside it, so that the same copy then succeeds.
#[test]
fn an_interrupted_or_killed_copy_into_postgres_leaves_the_destination_as_it_was() -> TestResult {
    use std::process::Command;

    use persister_testkit::postgres::schema_server;
    let schema = format!("cli_killed_copy_{}", std::process::id());
    let Some((url, cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    let mut server = PgServer::connect(&cluster)?;
    let dir = tempfile::tempdir()?;
    let src = large_redb_store(dir.path())?;
    let src = src.to_str().unwrap();
    for signal in ["-INT", "-KILL"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_persister"))
            .args(["copy", src, &url])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        // Once the partial store holds a document, and before the copy is done.
        let mut seen = None;
        while child.try_wait()?.is_none() {
            if let Some(partial) = server.partial_schemas(&schema)?.pop()
                && server.documents_in(&partial)? > 0
            {
                seen = Some(partial);
                break;
            }
            std::thread::yield_now();
        }
        let partial = seen.ok_or("the copy ended before its partial store held a document")?;
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        let status = child.wait()?;
        assert!(!status.success(), "{signal}: {status:?}");
        let ls = persister(["ls", &url])?.expect(1);
        assert!(ls.stderr.contains("none of its tables"), "{signal}: {ls:?}");
        let left = server.partial_schemas(&schema)?;
        match signal {
            "-INT" => assert!(left.is_empty(), "Ctrl-C left {left:?}"),
            _ => assert_eq!(left, [partial], "a killed copy leaves its partial schema"),
        }
    }
    // The same copy then succeeds beside the partial schema, which it leaves alone.
    let run = persister(["copy", src, &url])?.expect(0);
    assert!(run.stdout.contains("copied 40 documents"), "{}", run.stdout);
    let listed = persister(["ls", &url])?.expect(0);
    assert!(
        listed.stdout.contains(": 40 documents"),
        "{}",
        listed.stdout
    );
    assert_eq!(server.partial_schemas(&schema)?.len(), 1);
    // A destination that holds documents is refused before anything is built.
    let again = persister(["copy", src, &url])?.expect(1);
    assert!(
        again.stderr.contains("already holds documents"),
        "{}",
        again.stderr
    );
    assert_eq!(server.partial_schemas(&schema)?.len(), 1);
    // A schema made beforehand (by an administrator, with its own privileges) takes
    // the store's tables and stays the same schema.
    let made = format!("{schema}_made");
    server
        .0
        .batch_execute(&format!("CREATE SCHEMA \"{made}\""))?;
    let oid = |server: &mut PgServer| -> TestResult<u32> {
        Ok(server
            .0
            .query_one("SELECT oid FROM pg_namespace WHERE nspname = $1", &[&made])?
            .get(0))
    };
    let before = oid(&mut server)?;
    let made_url = url.replace(&format!("schema={schema}"), &format!("schema={made}"));
    assert_ne!(made_url, url);
    persister(["copy", src, &made_url])?.expect(0);
    assert_eq!(
        oid(&mut server)?,
        before,
        "the schema made beforehand was replaced"
    );
    let listed = persister(["ls", &made_url])?.expect(0);
    assert!(
        listed.stdout.contains(": 40 documents"),
        "{}",
        listed.stdout
    );
    Ok(())
}

/// Ctrl-C during a copy into a new redb store, once its commit log exists:
/// nothing may be left beside the destination (the handler removes the partial store
/// file, but its `<file>.log` is a second path).
#[test]
fn an_interrupted_copy_to_redb_leaves_no_commit_log_behind() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    let dir = tempfile::tempdir()?;
    let src = large_redb_store(dir.path())?;
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    // Once the new store's commit log exists, press Ctrl-C.
    let (status, seen) = interrupt_when(
        Command::new(env!("CARGO_BIN_EXE_persister"))
            .args(["copy", "--backend", "redb"])
            .arg(&src)
            .arg(out.join("copy")),
        || Ok(names_in(&out)?.iter().any(|n| n.ends_with(".log"))),
    )?;
    assert!(seen, "the copy ended before its commit log appeared");
    let left = names_in(&out)?;
    match status.success() {
        true => assert_eq!(left, ["copy"]),
        false => {
            assert_eq!(status.signal(), Some(2), "{status:?}");
            assert!(left.is_empty(), "an interrupted copy left {left:?}");
        }
    }
    Ok(())
}

/// a failed import leaves nothing behind whatever the new store's backend.
#[test]
fn a_failed_import_leaves_nothing_behind_for_every_backend() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("redb"));
    make_store(named("redb"), &src)?;
    let dump = dir.path().join("dump.pst");
    persister(["export", src.to_str().unwrap(), dump.to_str().unwrap()])?.expect(0);
    let mut bytes = std::fs::read(&dump)?;
    bytes.push(0);
    let bad = dir.path().join("bad.pst");
    std::fs::write(&bad, bytes)?;
    let names = names_in(dir.path())?;
    for backend in ["redb", "sled", "fs"] {
        let dst = dir.path().join(format!("new-{backend}"));
        let run = persister([
            "import",
            "--backend",
            backend,
            bad.to_str().unwrap(),
            dst.to_str().unwrap(),
        ])?
        .expect(3);
        run.expect_error_lines();
        assert!(
            run.stderr.contains("follow the end record"),
            "{}",
            run.stderr
        );
        assert_eq!(names_in(dir.path())?, names, "{backend}: left behind");
    }
    Ok(())
}

/// `<file>.log` beside a redb store is that store's commit log, which the
/// store's next write truncates: an export file (or a new store) made there is lost
/// once the application writes to the store again. The command must refuse that path
/// (or what it makes there must survive).
#[test]
fn an_export_onto_a_redb_store_s_commit_log_path_is_refused_or_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("a.redb");
    make_store(named("redb"), &src)?;
    let log = dir.path().join("a.redb.log");
    assert!(!log.exists(), "a store closed cleanly has no log");
    let run = persister(["export", src.to_str().unwrap(), log.to_str().unwrap()])?;
    if run.code != 0 {
        // Refused: fine.
        return Ok(());
    }
    let exported = std::fs::read(&log)?;
    // The application writes to its store again.
    {
        let store = open_store(named("redb"), &src)?;
        let mut doc = store.open_document(&"later".into())?;
        doc.set_document(b"x".to_vec())?;
        doc.close()?;
        store.close()?;
    }
    let now = std::fs::read(&log).unwrap_or_default();
    assert_eq!(
        now.len(),
        exported.len(),
        "the export file persister wrote (exit 0) was destroyed by the store's next write"
    );
    Ok(())
}

/// A redb store of 40 documents of 1 MiB each, large enough that copying it takes a
/// while.
fn large_redb_store(dir: &std::path::Path) -> TestResult<std::path::PathBuf> {
    let src = store_path(dir, named("redb"));
    let store = open_store(named("redb"), &src)?;
    for doc in 0..40u8 {
        let mut p = store.open_document(&format!("doc {doc}").into())?;
        for seq in 1..=4 {
            p.insert_changes(vec![(
                persister_core::ActorId::new([doc; 16]),
                seq,
                vec![doc; 256 * 1024],
            )])?;
        }
        p.close()?;
    }
    Ok(src)
}

/// A destination that would break a store, or that the command could not move its
/// result to, is refused before anything is built: a path inside a directory store
/// (whose directory holds only its own files), a file path ending in `/`, and a redb
/// store whose commit log's place is taken by another file.
#[test]
fn destinations_that_would_break_a_store_are_refused_before_anything_is_built() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src.redb");
    make_store(named("redb"), &src)?;
    let src = src.to_str().unwrap();
    for name in ["sled", "fs"] {
        let store = dir.path().join(name);
        make_store(named(name), &store)?;
        let before = snapshot_files(&store)?;
        let inside = |rest: &str| store.join(rest).to_str().unwrap().to_string();
        let sub = store.join("sub");
        std::fs::create_dir(&sub)?;
        for args in [
            ["export", src, &inside("x.export")],
            ["copy", src, &inside("inner.redb")],
            ["copy", src, &inside("sub/deeper.redb")],
        ] {
            let run = persister(args)?.expect(1);
            assert!(
                run.stderr
                    .contains(&format!("is inside the {name} store {}", store.display())),
                "{args:?}: {}",
                run.stderr
            );
        }
        std::fs::remove_dir(&sub)?;
        assert_eq!(snapshot_files(&store)?, before, "{name}");
        persister(["verify", store.to_str().unwrap()])?.expect(0);
        // A path through the store's directory that ends outside it is no such path.
        let beside = format!("{}/../beside-{name}.redb", store.display());
        persister(["copy", src, &beside])?.expect(0);
        assert!(dir.path().join(format!("beside-{name}.redb")).is_file());
    }

    for args in [
        ["copy", src, &format!("{}/new.redb/", dir.path().display())],
        [
            "export",
            src,
            &format!("{}/new.export/", dir.path().display()),
        ],
    ] {
        let run = persister(args)?.expect(1);
        assert!(
            run.stderr.contains("ends with `/`"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(!dir.path().join("new.redb").exists());
    assert!(!dir.path().join("new.export").exists());

    let log = dir.path().join("app.log");
    std::fs::write(&log, b"an application's log")?;
    let app = dir.path().join("app");
    let run = persister(["copy", src, app.to_str().unwrap(), "--backend", "redb"])?.expect(1);
    assert!(
        run.stderr
            .contains(&format!("{} exists, where a redb store", log.display())),
        "{}",
        run.stderr
    );
    assert!(!app.exists());
    assert_eq!(std::fs::read(&log)?, b"an application's log");
    // Another backend keeps no file beside its store.
    persister(["copy", src, app.to_str().unwrap(), "--backend", "fs"])?.expect(0);
    Ok(())
}

/// `copy --skip-damaged` into a PostgreSQL URL that holds a password names where the
/// saved documents are without that password: in its hint as in its report.
#[test]
fn skip_damaged_into_postgres_names_the_destination_without_its_password() -> TestResult {
    use persister_testkit::postgres::schema_server;
    let schema = format!("cli_skip_pw_{}", std::process::id());
    let Some((url, _cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    let Some((user, rest)) = url.split_once('@') else {
        return Ok(());
    };
    // The test cluster trusts local logins, so any password opens it.
    let with_password = format!("{user}:pw-Kx42-secret@{rest}");
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("two");
    {
        let store = open_store(named("fs"), &src)?;
        for id in ["bad", "good"] {
            let mut doc = store.open_document(&id.into())?;
            doc.set_document(b"a document".to_vec())?;
            doc.flush()?;
        }
    }
    damage_log(&src, &"bad".into())?;
    for json in [false, true] {
        let mut args = vec!["copy", "--skip-damaged"];
        if json {
            args.push("--json");
        }
        let src = src.to_str().unwrap();
        let target = with_password.replace(&schema, &format!("{schema}_{json}"));
        args.extend([src, target.as_str()]);
        let run = persister(&args)?.expect(4);
        run.expect_error_lines();
        let shown = format!("{}{}", run.stdout, run.stderr);
        assert!(shown.contains("left out 1 damaged document"), "{shown}");
        assert!(!shown.contains("pw-Kx42-secret"), "json {json}: {shown}");
    }
    Ok(())
}

/// A destination written with `/.` at its end names the directory before it: an empty
/// directory there takes a directory store, as it does written without `/.`; a file
/// store or an export file is refused there before anything is built, as with a `/`
/// at the end (rather than built whole and then failing to move into place).
#[test]
fn a_destination_ending_in_slash_dot_is_the_directory_it_names() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src.redb");
    make_store(named("redb"), &src)?;
    let src = src.to_str().unwrap();
    for backend in ["fs", "sled"] {
        let empty = dir.path().join(format!("empty-{backend}"));
        std::fs::create_dir(&empty)?;
        let dst = format!("{}/.", empty.display());
        let run = persister(["copy", src, &dst, "--backend", backend])?;
        let run = run.expect(0);
        assert!(run.stdout.contains("copied 3 documents"), "{}", run.stdout);
        assert_eq!(read_store(named(backend), &empty)?.len(), 3, "{backend}");
        let fresh = format!("{}/.", dir.path().join(format!("new-{backend}")).display());
        persister(["copy", src, &fresh, "--backend", backend])?.expect(0);
        assert_eq!(
            read_store(named(backend), &dir.path().join(format!("new-{backend}")))?.len(),
            3,
            "{backend}"
        );
    }
    let before = names_in(dir.path())?;
    for args in [
        ["copy", src, &format!("{}/new.redb/.", dir.path().display())],
        [
            "export",
            src,
            &format!("{}/new.pst/.", dir.path().display()),
        ],
    ] {
        let run = persister(args)?.expect(1);
        run.expect_error_lines();
        assert!(
            run.stderr.contains("names a directory"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(names_in(dir.path())?, before);
    Ok(())
}
