//! Kill tests: a child process runs a deterministic workload and acknowledges each
//! flush; it is killed (SIGKILL) at random moments, and the reopened store must hold
//! every acknowledged write and, for each document, the state after a prefix of its
//! batches. `PERSISTER_KILLS` sets the kills per backend (100 by default),
//! `PERSISTER_SEED` the seed.

use persister_reliability::backend::named;
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
    kill_test(named("redb"), false);
}

/// redb checkpointing every few commits, killed.
#[test]
fn kill_redb_small_log() {
    kill_test(named(persister_reliability::REDB_SMALL_LOG), false);
}

#[test]
fn kill_sled() {
    kill_test(named("sled"), false);
}

#[test]
fn kill_fs() {
    kill_test(named("fs"), false);
}

/// Many threads flushing many documents of one store at once (group commit), killed at
/// random. `PERSISTER_CONCURRENT_KILLS` sets the kills per backend (10 by default).
fn concurrent_kill_test(backend: Backend) {
    use persister_reliability::concurrent::{Sizes, kill_cycles};
    let kills = env_count("PERSISTER_CONCURRENT_KILLS", 10);
    let seed = env_count("PERSISTER_SEED", 1);
    let root = persister_reliability::scratch_dir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_reliability-workload"));
    let sizes = Sizes {
        threads: 8,
        docs: 40,
    };
    match kill_cycles(exe, backend, root.path(), sizes, kills, seed) {
        Ok(report) => {
            println!("{backend} concurrent: {report:?}");
            assert_eq!(report.kills, kills);
            assert_eq!(report.documents_checked, kills * sizes.docs as u64);
            assert!(report.acks_checked > 0, "no flush was acknowledged");
        }
        Err(e) => {
            let kept = root.keep();
            panic!("{e} (stores kept under {})", kept.display());
        }
    }
}

#[test]
fn concurrent_kill_redb() {
    concurrent_kill_test(named("redb"));
}

#[test]
fn concurrent_kill_sled() {
    concurrent_kill_test(named("sled"));
}

#[test]
fn concurrent_kill_fs() {
    concurrent_kill_test(named("fs"));
}
