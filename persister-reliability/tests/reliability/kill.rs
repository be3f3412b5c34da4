//! Kill tests: a child process runs a deterministic workload and acknowledges each
//! flush; it is killed (SIGKILL) at random moments, and the reopened store must hold
//! every acknowledged write and, for each document, the state after a prefix of its
//! batches. `PERSISTER_KILLS` sets the kills per backend (100 by default),
//! `PERSISTER_SEED` the seed.

use persister_reliability::kill::kill_cycles;
use persister_reliability::{Backend, env_count};

fn kill_test(backend: Backend, payload_only: bool) {
    let kills = env_count("PERSISTER_KILLS", 100);
    let seed = env_count("PERSISTER_SEED", 1);
    let root = persister_reliability::scratch_dir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_reliability-workload"));
    match kill_cycles(exe, backend, root.path(), kills, seed, payload_only) {
        Ok(report) => {
            println!("{backend}: {report:?}");
            assert_eq!(report.kills, kills);
            assert!(
                report.acks_checked > 0,
                "no flush was acknowledged before a kill"
            );
        }
        Err(e) => {
            // Keep the store for inspection.
            let kept = root.keep();
            panic!("{e} (stores kept under {})", kept.display());
        }
    }
}

#[test]
fn kill_redb() {
    kill_test(Backend::Redb, false);
}

#[test]
fn kill_sled() {
    kill_test(Backend::Sled, false);
}

#[test]
fn kill_fs() {
    kill_test(Backend::Fs, false);
}
