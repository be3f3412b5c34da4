//! Replays every crash fixture and seed of the fuzz targets (`fuzz/fixtures/<target>/`,
//! `fuzz/corpus-seeds/<target>/`) through the same functions the targets call, so
//! that a crash found once stays fixed without cargo-fuzz.

use std::path::PathBuf;

use persister_reliability::fuzzing;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["fixtures", "corpus-seeds"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let bytes = std::fs::read(&path).unwrap();
                inputs.push((path, bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Runs every input; the seeds must reach the reads (some document read whole), or
/// the target would only be fuzzing the error paths of opening. Inputs that
/// `current` says are of the format this build writes must each read a document
/// whole, and there must be one: seeds of an older format alone would leave the
/// current decoder to chance.
fn replay(target: &str, run: fn(&[u8]) -> usize, current: Option<fn(&[u8]) -> bool>) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seed or fixture for {target}");
    let mut whole = 0;
    let mut current_seeds = 0;
    for (path, bytes) in &inputs {
        let read = run(bytes);
        println!("{target}: {}: {read} documents read whole", path.display());
        whole += read;
        if let Some(current) = current
            && current(bytes)
        {
            current_seeds += 1;
            assert!(
                read > 0,
                "{}: a seed of the current format reads no document whole",
                path.display()
            );
        }
    }
    assert!(whole > 0, "no input of {target} read a document whole");
    if current.is_some() {
        assert!(
            current_seeds > 0,
            "no seed of {target} is of the current format"
        );
    }
}

/// Whether `bytes` start as an fs log of the version this build writes.
fn current_log(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PFSLOG\0\0")
        && bytes.get(8..12) == Some(&persister_fs::format::LOG_VERSION.to_le_bytes()[..])
}

#[test]
fn fuzz_fixtures_fs_log() {
    replay("fs_log", fuzzing::fs_log, Some(current_log));
}

#[test]
fn fuzz_fixtures_fs_dir() {
    // A store of the version this build writes: its marker and every log in it.
    fn current_store(bytes: &[u8]) -> bool {
        let files = fuzzing::split_files(bytes);
        files.iter().any(|(name, content)| {
            *name == "STORE"
                && content.get(8..12)
                    == Some(&persister_fs::format::STORE_VERSION.to_le_bytes()[..])
        }) && files
            .iter()
            .filter(|(name, _)| name.ends_with(".log"))
            .all(|(_, content)| current_log(content))
    }
    replay("fs_dir", fuzzing::fs_dir, Some(current_store));
}

#[test]
fn fuzz_fixtures_export() {
    use persister_cli::export::{decode, encode};
    replay(
        "export",
        |data| fuzzing::export_round_trip(data, decode, encode),
        None,
    );
}

/// The long id's log name of the `fs_dir` target is the one the fs backend gives it,
/// so that the target can reach the reads of a long id's log.
#[test]
fn fs_dir_names_the_long_ids_log() {
    use persister_core::{ActorId, Persister, Store};
    let dir = persister_reliability::scratch_dir().unwrap();
    let location = persister_reliability::Location::new(
        persister_reliability::backend::named("fs"),
        dir.path(),
    );
    let store = location.open().unwrap();
    let mut p = store.open_document(&fuzzing::long_id()).unwrap();
    p.insert_changes(vec![(ActorId::new([1]), 1, b"x".to_vec())])
        .unwrap();
    p.flush().unwrap();
    assert!(location.path().join(fuzzing::LONG_ID_LOG_NAME).is_file());
}
