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
/// the target would only be fuzzing the error paths of opening.
fn replay(target: &str, run: fn(&[u8]) -> usize) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seed or fixture for {target}");
    let mut whole = 0;
    for (path, bytes) in &inputs {
        let read = run(bytes);
        println!("{target}: {}: {read} documents read whole", path.display());
        whole += read;
    }
    assert!(whole > 0, "no input of {target} read a document whole");
}

#[test]
fn fuzz_fixtures_fs_log() {
    replay("fs_log", fuzzing::fs_log);
}

#[test]
fn fuzz_fixtures_fs_dir() {
    replay("fs_dir", fuzzing::fs_dir);
}

#[test]
fn fuzz_fixtures_export() {
    use persister_cli::export::{decode, encode};
    replay("export", |data| {
        fuzzing::export_round_trip(data, decode, encode)
    });
}
