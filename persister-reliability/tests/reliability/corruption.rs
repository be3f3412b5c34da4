//! The corruption sweep: a small store's files damaged one way at a time (bit flips,
//! truncations, zeroed 4 KiB blocks, zero-filled tails, 2^32-1 length fields), each
//! case opened and read in a child process with an address-space limit. Every read
//! must fail or return exactly the stored data; no panic, no abort, bounded memory.
//! `PERSISTER_CORRUPTION_CASES` sets the random cases per backend (200 by default).

use persister_reliability::backend::named;
use persister_reliability::corruption::{SweepConfig, SweepReport, sweep};
use persister_reliability::{Backend, env_count};

/// The child's address-space limit: an allocation from a length field of 2^32-1
/// bytes cannot fit, so it aborts the child and is counted.
const MEMORY_LIMIT_KIB: u64 = 3 * 1024 * 1024;
/// The most resident memory one case may peak at.
const MAX_PEAK_KIB: u64 = 512 * 1024;

fn sweep_backend(backend: Backend, exhaustive: u64) -> SweepReport {
    let config = SweepConfig {
        seed: env_count("PERSISTER_SEED", 1),
        random: env_count("PERSISTER_CORRUPTION_CASES", 200),
        exhaustive,
        memory_limit_kib: MEMORY_LIMIT_KIB,
    };
    let root = persister_reliability::scratch_dir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_reliability-workload"));
    let report = sweep(exe, backend, root.path(), &config).unwrap();
    println!(
        "{backend}: {} cases over {:?}: {:?}, peak {} KiB, engine panics caught by the backend {}",
        report.cases,
        report.files,
        report.verdicts,
        report.max_peak_kib,
        report.engine_panics_caught
    );
    for failure in &report.failures {
        println!("  {failure}");
    }
    assert!(report.cases > 0);
    assert!(
        report.max_peak_kib <= MAX_PEAK_KIB,
        "a case peaked at {} KiB",
        report.max_peak_kib
    );
    report
}

/// No case may lie, panic or abort.
fn assert_no_failure(report: &SweepReport) {
    for name in ["lie", "panic", "abort", "rollback"] {
        assert_eq!(report.count(name), 0, "{name}: {:#?}", report.failures);
    }
}

/// Files of at most this many bytes are also cut at every length and get 2^32-1 at
/// every offset (`PERSISTER_CORRUPTION_EXHAUSTIVE`, 2 KiB by default: the small
/// files of every store, and fs's logs of small documents).
fn exhaustive() -> u64 {
    env_count("PERSISTER_CORRUPTION_EXHAUSTIVE", 2048)
}

#[test]
fn corruption_redb() {
    assert_no_failure(&sweep_backend(named("redb"), exhaustive()));
}

#[test]
fn corruption_sled() {
    assert_no_failure(&sweep_backend(named("sled"), exhaustive()));
}

#[test]
fn corruption_fs() {
    assert_no_failure(&sweep_backend(named("fs"), exhaustive()));
}
