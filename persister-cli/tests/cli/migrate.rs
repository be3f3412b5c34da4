//! `persister migrate`: a store an older build wrote becomes this build's version in
//! place and reads as before; a current store is left as it is.

use crate::support::{
    TestResult, as_fs_store_version_2, as_redb_layout_2, backends, make_store, named, persister,
    read_store, snapshot_files, store_path,
};

/// An fs store of version 2 and a redb store of layout 2, as older builds leave them,
/// are migrated to this build's version, read exactly as before, and a second run has
/// nothing to do.
#[test]
fn older_stores_are_migrated_in_place_and_read_as_before() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (name, make_old) in [
        (
            "fs",
            as_fs_store_version_2 as fn(&std::path::Path) -> TestResult,
        ),
        ("redb", as_redb_layout_2),
    ] {
        let backend = named(name);
        let path = store_path(dir.path(), backend);
        let dumps = make_store(backend, &path)?;
        make_old(&path)?;
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
        if backend.name() == "fs" {
            // The opening that learns the version writes the clean-close record anew
            // at most; the logs and the marker are untouched.
            let before = snapshot_files(&path)?;
            persister(["migrate", store])?.expect(0);
            let after = snapshot_files(&path)?;
            let logs = |files: &[(std::path::PathBuf, Vec<u8>)]| {
                files
                    .iter()
                    .filter(|(p, _)| !p.ends_with("CLOSED"))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert!(logs(&before) == logs(&after), "the fs store was written to");
        }
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
