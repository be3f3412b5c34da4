//! A child process replaying a trace is killed (SIGKILL) at random points; the store
//! reloads to the text after a prefix of the trace that holds everything acknowledged.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use persister_core::{CompactionTrigger, DynStore, Error, FlushPolicy};
use persister_testkit::postgres::wait_until;
use persister_testkit::{KilledRun, run_and_kill};
use persister_yrs::{Options, PersistentYDoc};
use yrs::{Any, Map, Out, Transact};

use crate::support::{
    Doc, Location, TEXT, TestResult, apply_txn, backend_tests, doc_id, load_trace, open_doc,
    read_text, rng_from_env_or_clock,
};
use crate::support::{open_at, parse_backend};

/// Tells the test binary, re-executed, to act as the child: `backend,txns,path`.
const CHILD_ENV: &str = "PERSISTER_YRS_CRASH_CHILD";
/// The child flushes, then acknowledges, every this many transactions.
const FLUSH_EVERY: usize = 50;
/// Transactions of automerge-paper the children replay in all.
const TXNS: usize = 2_000;
/// Kills per backend.
const ROUNDS: usize = 4;
/// The map holding, in the same transaction as each trace transaction, how many trace
/// transactions the document holds.
const PROGRESS: &str = "progress";

/// Compacts often, so that kills also land inside compactions.
fn child_options() -> Options {
    Options::default()
        .with_flush(FlushPolicy::Manual)
        .with_compaction(CompactionTrigger {
            min_changes: 200,
            change_to_document_ratio: 0.5,
        })
}

/// How many trace transactions the document holds.
fn txns_held(doc: &Doc) -> TestResult<usize> {
    let progress = doc.doc().get_or_insert_map(PROGRESS);
    match progress.get(&doc.doc().transact(), "txns") {
        None => Ok(0),
        Some(Out::Any(Any::Number(n))) => {
            Ok(n.as_f64().ok_or("progress is not a number")? as usize)
        }
        Some(other) => Err(format!("progress is {other:?}").into()),
    }
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
    let text = doc.doc().get_or_insert_text(TEXT);
    let progress = doc.doc().get_or_insert_map(PROGRESS);
    let start = txns_held(&doc)?;
    let mut out = std::io::stdout().lock();
    // A line of its own: the harness has printed "test ... " without a newline.
    writeln!(out, "\nstart {start}")?;
    out.flush()?;
    for (i, txn) in trace.txns[start..txns].iter().enumerate() {
        let done = start + i + 1;
        doc.edit(|t| {
            apply_txn(t, &text, txn);
            progress.insert(t, "txns", done as f64);
        })?;
        if done.is_multiple_of(FLUSH_EVERY) {
            doc.flush()?;
            writeln!(out, "ack {done}")?;
            out.flush()?;
        }
    }
    doc.flush()?;
    writeln!(out, "ack {txns}")?;
    out.flush()?;
    Ok(())
}

/// Opens the document, waiting while a killed child's lease holds it (PostgreSQL: until
/// the lease runs out, [`LEASE`](crate::support::LEASE) after the child's last renewal).
fn open_when_free(store: &DynStore) -> TestResult<Doc> {
    let mut persister = None;
    wait_until("the killed child's lease to run out", || {
        match store.open_document(&doc_id()) {
            Ok(p) => persister = Some(p),
            Err(Error::Locked { .. }) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
        Ok(true)
    })?;
    let persister = persister.ok_or("not opened")?;
    Ok(PersistentYDoc::load_with(persister, Options::default())?)
}

backend_tests! {
    [redb, sled, fs, postgres]

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
            let doc = open_when_free(&store)?;
            let held = txns_held(&doc)?;
            assert!(held >= last_ack.max(start), "round {round}: {held} transactions held, but {last_ack} acknowledged and {start} at the start");
            assert!(held <= TXNS);
            assert_eq!(read_text(&doc), trace.text_after(held)?, "round {round}: the text is not the trace's after {held} transactions");
            println!("round {round}: killed={killed} after ack {last_ack}, reloaded {held} transactions");
        }
        assert!(kills > 0, "no child was killed");
        Ok(())
    }
}
