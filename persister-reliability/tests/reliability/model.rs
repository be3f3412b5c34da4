//! Model-based tests: random sequences of operations on a backend and on the model,
//! compared after every step (contents, exact sizes, list of documents), with
//! reopens that must give, for each document, a state between its last flush and its
//! latest batch. `PERSISTER_MODEL_CASES` sets the number of cases (256 by default).

use persister_core::{Batch, Write};
use persister_reliability::backend::named;
use persister_reliability::ops::{ACTORS, BadWrite, DOCUMENTS, Op, PEERS, SEQS, actor, peer};
use persister_reliability::{Backend, Location, ModelRun, env_count};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Most steps in one case.
const MAX_STEPS: usize = 50;

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 4090..4200),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    let seq = || select(SEQS.to_vec());
    prop_oneof![
        5 => (0..ACTORS, seq(), value()).prop_map(|(a, seq, value)| Write::InsertChange {
            actor: actor(a),
            seq,
            value
        }),
        2 => (0..ACTORS, seq()).prop_map(|(a, seq)| Write::RemoveChange { actor: actor(a), seq }),
        1 => value().prop_map(Write::SetDocument),
        2 => (0..PEERS, value()).prop_map(|(p, state)| Write::SetSyncState { peer: peer(p), state }),
        1 => (0..PEERS).prop_map(|p| Write::RemoveSyncState { peer: peer(p) }),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    vec(write(), 0..6).prop_map(Batch::from)
}

fn op() -> impl Strategy<Value = Op> {
    let doc = || 0..DOCUMENTS.len();
    prop_oneof![
        6 => (doc(), batch()).prop_map(|(doc, batch)| Op::Apply { doc, batch }),
        3 => (doc(), write()).prop_map(|(doc, write)| Op::Single { doc, write }),
        1 => (doc(), batch(), select(BadWrite::ALL.to_vec()), 0..8usize)
            .prop_map(|(doc, batch, bad, at)| Op::Refused { doc, batch, bad, at }),
        1 => (doc(), value(), select(SEQS.to_vec()))
            .prop_map(|(doc, document, up_to)| Op::Compact { doc, document, up_to }),
        2 => doc().prop_map(|doc| Op::Flush { doc }),
        1 => Just(Op::FlushAll),
        2 => Just(Op::Reopen),
        1 => doc().prop_map(|doc| Op::RemoveDocument { doc }),
    ]
}

/// Runs the model-based test on `backend`; panics with the shrunk failing sequence.
fn model_test(backend: Backend) {
    let cases = env_count("PERSISTER_MODEL_CASES", 256);
    let config = Config {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let steps = std::cell::Cell::new(0u64);
    let result = runner.run(&vec(op(), 1..=MAX_STEPS), |ops| {
        let dir =
            persister_reliability::scratch_dir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut run =
            ModelRun::new(Location::new(backend, dir.path())).map_err(TestCaseError::fail)?;
        for op in &ops {
            run.step(op).map_err(TestCaseError::fail)?;
        }
        // Whatever was left unflushed, a last reopen must give an allowed state.
        run.reopen()
            .map_err(|e| TestCaseError::fail(format!("final reopen: {e}")))?;
        steps.set(steps.get() + ops.len() as u64);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{backend}: model-based test failed: {e}");
    }
    println!(
        "{backend}: {cases} model cases passed, {} steps in passing runs",
        steps.get()
    );
}

#[test]
fn model_memory() {
    model_test(named("memory"));
}

#[test]
fn model_redb() {
    model_test(named("redb"));
}

/// redb checkpointing every few commits: what waits to reach redb meets checkpoints,
/// removals and new documents in every case.
#[test]
fn model_redb_small_log() {
    model_test(named(persister_reliability::REDB_SMALL_LOG));
}

#[test]
fn model_sled() {
    model_test(named("sled"));
}

#[test]
fn model_fs() {
    model_test(named("fs"));
}
