//! `persister migrate`: a store an older build wrote becomes this build's version in
//! place and reads as before; a current store is left as it is.

use crate::support::{
    PgServer, TestResult, as_redb_layout_2, backends, make_fs_store_version_2, make_store, named,
    persister, read_store, snapshot_files, store_path,
};

/// An fs store of version 2 and a redb store of layout 2, as older builds leave them,
/// are migrated to this build's version, read exactly as before, and a second run has
/// nothing to do.
#[test]
fn older_stores_are_migrated_in_place_and_read_as_before() -> TestResult {
    let dir = tempfile::tempdir()?;
    for name in ["fs", "redb"] {
        let backend = named(name);
        let path = store_path(dir.path(), backend);
        let dumps = match name {
            "fs" => make_fs_store_version_2(&path)?,
            _ => {
                let dumps = make_store(backend, &path)?;
                as_redb_layout_2(&path)?;
                dumps
            }
        };
        let store = path.to_str().unwrap();
        let info = persister(["info", "--json", store, "notes"])?
            .expect(0)
            .json()?;
        assert_eq!(info["format_version"], 2, "{name}");

        let text = persister(["migrate", store])?.expect(0);
        let current = backend.format_version();
        assert!(
            text.stdout.contains(&format!(
                "migrated {name} store {store} from format version 2 to {current}"
            )),
            "{}",
            text.stdout
        );
        assert_eq!(read_store(backend, &path)?, dumps, "{name}");
        let info = persister(["info", "--json", store, "notes"])?
            .expect(0)
            .json()?;
        assert_eq!(info["format_version"], current, "{name}");

        let json = persister(["migrate", "--json", store])?.expect(0).json()?;
        assert_eq!(json["migrated"], false, "{name}");
        assert_eq!(json["from"], current, "{name}");
        assert_eq!(json["to"], current, "{name}");
    }
    Ok(())
}

/// A store of the current version is not written to: every file stays as it was.
#[test]
fn a_current_store_is_left_as_it_is() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        let before = snapshot_files(&path)?;
        let store = path.to_str().unwrap();
        let text = persister(["migrate", store])?.expect(0);
        assert!(
            text.stdout.contains(&format!(
                "{} store {store} is at format version {}: nothing to migrate",
                backend.name(),
                backend.format_version()
            )),
            "{}",
            text.stdout
        );
        assert!(
            snapshot_files(&path)? == before,
            "{}: the store was written to",
            backend.name()
        );
    }
    Ok(())
}

/// Nothing at the path is an error naming it, and nothing is created there.
#[test]
fn a_missing_store_is_an_error_and_nothing_is_made() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        let run = persister([
            "migrate",
            path.to_str().unwrap(),
            "--backend",
            backend.name(),
        ])?
        .expect(1);
        run.expect_error_lines();
        assert!(run.stderr.contains("there is no store"), "{}", run.stderr);
        assert!(!path.exists(), "{}", backend.name());
    }
    Ok(())
}

/// A PostgreSQL schema that holds no store is an error, and is not made: the version is
/// learnt by an open that creates nothing.
#[test]
fn a_missing_postgres_store_is_an_error_and_nothing_is_made() -> TestResult {
    let schema = format!("cli_migrate_{}", std::process::id());
    let Some((url, _cluster)) = persister_testkit::postgres::schema_server(&schema)? else {
        return Ok(());
    };
    let run = persister(["migrate", url.as_str()])?.expect(1);
    run.expect_error_lines();
    let registry = persister_backends::Registry::standard();
    let opened = registry
        .open(&url, persister_backends::Access::ReadOnly)
        .map(|_| ());
    assert!(opened.is_err(), "migrate made the store: {opened:?}");
    Ok(())
}

/// PostgreSQL stores of format version 1 are migrated and read as before, whatever the
/// URL's own `migrate_format` option says: the command decides. (A read-only open
/// refuses a URL asking for a migration, and a store opened with the option `false`
/// refuses to migrate.)
#[test]
fn postgres_stores_of_version_1_are_migrated_whatever_the_url_asks() -> TestResult {
    let schema = format!("cli_migrate_v1_{}", std::process::id());
    let Some((url, cluster)) = persister_testkit::postgres::schema_server(&schema)? else {
        return Ok(());
    };
    let mut server = PgServer::connect(&cluster)?;
    let postgres = named("postgres");
    let current = postgres.format_version();
    for (i, option) in ["", "&migrate_format=true", "&migrate_format=false"]
        .into_iter()
        .enumerate()
    {
        let store_schema = format!("{schema}_{i}");
        let store = url.replace(
            &format!("schema={schema}"),
            &format!("schema={store_schema}"),
        );
        assert_ne!(store, url);
        let dumps = make_store(postgres, std::path::Path::new(&store))?;
        server.as_version_1(&store_schema)?;
        let refused = persister(["ls", &store])?.expect(1);
        assert!(
            refused.stderr.contains("format version 1"),
            "{option}: {refused:?}"
        );

        let given = format!("{store}{option}");
        let json = persister(["migrate", "--json", &given])?.expect(0).json()?;
        assert_eq!(json["from"], 1, "{option}: {json}");
        assert_eq!(json["to"], current, "{option}: {json}");
        assert_eq!(json["migrated"], true, "{option}: {json}");
        assert_eq!(
            read_store(postgres, std::path::Path::new(&store))?,
            dumps,
            "{option}"
        );
        let again = persister(["migrate", "--json", &given])?.expect(0).json()?;
        assert_eq!(again["migrated"], false, "{option}: {again}");
        assert_eq!(again["from"], current, "{option}: {again}");
    }
    Ok(())
}
