//! A child process replaying a trace is killed (SIGKILL) at random points; the store
//! reloads to the text after a prefix of the trace that holds everything acknowledged.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use automerge::ReadDoc;
use persister_core::{CompactionTrigger, FlushPolicy};
use persister_testkit::{KilledRun, run_and_kill};

use crate::support::{
    Location, TestResult, apply_txn, backend_tests, load_trace, open_doc, read_text,
    rng_from_env_or_clock, text_object, text_options,
};
use crate::support::{open_at, parse_backend};

/// Tells the test binary, re-executed, to act as the child: `backend,path,txns`.
const CHILD_ENV: &str = "PERSISTER_AUTOMERGE_CRASH_CHILD";
/// The child flushes, then acknowledges, every this many transactions.
const FLUSH_EVERY: usize = 50;
/// Transactions of automerge-paper the children replay in all.
const TXNS: usize = 2_000;
/// Kills per backend.
const ROUNDS: usize = 4;

/// Compacts often, so that kills also land inside compactions.
fn child_options() -> persister_automerge::Options {
    text_options()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger {
            min_changes: 200,
            change_to_document_ratio: 0.5,
        })
}

/// How many trace transactions a reloaded document holds: each is one change, after
/// the one that created the text object.
fn txns_held(doc: &automerge::AutoCommit) -> usize {
    (doc.stats().num_changes as usize).saturating_sub(1)
}

/// The child: resumes the replay where the store stands, flushes every
/// `FLUSH_EVERY` transactions and prints `ack <txns>` after each successful flush.
/// Ignored so that it runs only when a kill test starts it.
#[test]
#[ignore = "the child process of the kill tests, started by them"]
fn replay_child() -> TestResult {
    let spec = std::env::var(CHILD_ENV)?;
    let mut parts = spec.splitn(3, ',');
    let (Some(backend), Some(txns), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad {CHILD_ENV}: {spec}").into());
    };
    let backend = parse_backend(backend).ok_or("unknown backend")?;
    let txns: usize = txns.parse()?;
    let Some(trace) = load_trace("automerge-paper")? else {
        return Err("the parent found the trace, the child must too".into());
    };

    let store = open_at(&backend, std::path::Path::new(path))?;
    let mut doc = open_doc(&store, child_options())?;
    let text = text_object(&mut doc)?;
    let start = txns_held(doc.doc());
    let mut out = std::io::stdout().lock();
    // A line of its own: the harness has printed "test ... " without a newline.
    writeln!(out, "\nstart {start}")?;
    out.flush()?;
    for (i, txn) in trace.txns[start..txns].iter().enumerate() {
        doc.edit(|d| apply_txn(d, &text, txn))?;
        let done = start + i + 1;
        if done.is_multiple_of(FLUSH_EVERY) {
            doc.flush()?;
            writeln!(out, "ack {done}")?;
            out.flush()?;
        }
    }
    doc.close()?;
    writeln!(out, "ack {txns}")?;
    out.flush()?;
    Ok(())
}

backend_tests! {
    [redb, sled, fs]

    /// The memory backend keeps nothing across processes, so it has no case here.
    fn killed_replay_reloads_a_prefix_with_every_ack(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("automerge-paper")? else {
            return Ok(());
        };
        let location = Location::new(&backend)?;
        let mut rng = rng_from_env_or_clock();
        let mut kills = 0;
        for round in 0..ROUNDS {
            // Kill after a random number of acknowledgements, then a random extra delay,
            // so that the kill lands anywhere: in an edit, a flush or a compaction.
            let kill_after = rng.below((TXNS / FLUSH_EVERY / ROUNDS) as u64 + 1);
            let delay = Duration::from_micros(rng.below(20_000));
            let mut child = Command::new(std::env::current_exe()?);
            child
                .args(["--exact", "crash::replay_child", "--ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, format!("{},{TXNS},{}", backend.name(), location.path().display()));
            let KilledRun { start, last_ack, killed } = run_and_kill(&mut child, kill_after, delay)?;
            kills += usize::from(killed);

            let store = location.open()?;
            let doc = open_doc(&store, text_options())?;
            let held = txns_held(doc.doc());
            assert!(held >= last_ack.max(start), "round {round}: {held} transactions held, but {last_ack} acknowledged and {start} at the start");
            assert!(held <= TXNS);
            assert_eq!(doc.orphaned_changes(), 0, "round {round}: a change without its predecessor");
            let text = read_text(doc.doc())?.unwrap_or_default();
            assert_eq!(text, trace.text_after(held)?, "round {round}: the text is not the trace's after {held} transactions");
            println!("round {round}: killed={killed} after ack {last_ack}, reloaded {held} transactions");
        }
        assert!(kills > 0, "no child was killed");
        Ok(())
    }
}
