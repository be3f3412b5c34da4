//! Tests of the harness itself: the model refuses what the contract forbids, so the
//! backend tests can fail.

use persister_core::{Batch, DocumentState};
use persister_reliability::ops::{Op, actor, workload};
use persister_reliability::{Contents, DocModel};

fn batch(n: u8) -> Batch {
    Batch::new()
        .insert_change(actor(0), u64::from(n), vec![n])
        .set_document(vec![n; 3])
}

fn state_after(batches: &[Batch]) -> DocumentState {
    let mut state = DocumentState::new();
    for b in batches {
        state.apply(b.clone());
    }
    state
}

#[test]
fn adopt_accepts_exactly_the_states_between_flush_and_latest() {
    let mut model = DocModel::default();
    model.apply(batch(1));
    model.durable();
    model.apply(batch(2));
    model.apply(batch(3));
    let (b1, b2, b3) = (batch(1), batch(2), batch(3));

    // Before the flush: refused.
    assert!(model.clone().adopt(&Contents::default(), false).is_err());
    // A gap (batch 3 without batch 2): refused.
    let gap = state_after(&[b1.clone(), b3.clone()]);
    assert!(
        model
            .clone()
            .adopt(&Contents::of(Some(&gap)), true)
            .is_err()
    );
    // Half a batch: refused.
    let mut half = state_after(std::slice::from_ref(&b1));
    half.apply(Batch::from(vec![b2.writes()[0].clone()]));
    assert!(
        model
            .clone()
            .adopt(&Contents::of(Some(&half)), true)
            .is_err()
    );
    // Right contents but listed wrongly: refused.
    let flushed = state_after(std::slice::from_ref(&b1));
    assert!(
        model
            .clone()
            .adopt(&Contents::of(Some(&flushed)), false)
            .is_err()
    );
    // Wrong sizes: refused.
    let mut lying = Contents::of(Some(&flushed));
    lying.sizes.changes += 1;
    assert!(model.clone().adopt(&lying, true).is_err());

    // Each prefix from the flush on: accepted, and then the only state allowed.
    for prefix in [
        vec![b1.clone()],
        vec![b1.clone(), b2.clone()],
        vec![b1, b2, b3],
    ] {
        let mut m = model.clone();
        let state = state_after(&prefix);
        assert!(m.adopt(&Contents::of(Some(&state)), true).is_ok());
        assert_eq!(m.candidates(), 1);
        assert_eq!(m.current(), Some(&state));
    }
}

#[test]
fn removal_is_durable_and_a_maybe_removal_is_a_candidate() {
    let mut model = DocModel::default();
    model.apply(batch(1));
    model.remove();
    assert!(
        model
            .clone()
            .adopt(&Contents::of(Some(&state_after(&[batch(1)]))), true)
            .is_err()
    );
    model.apply(batch(2));
    model.remove_maybe();
    assert!(model.clone().adopt(&Contents::default(), false).is_ok());
    assert!(
        model
            .clone()
            .adopt(&Contents::of(Some(&state_after(&[batch(2)]))), true)
            .is_ok()
    );
}

#[test]
fn workloads_are_deterministic_and_varied() {
    let a = workload(42, 200, 3);
    assert_eq!(a, workload(42, 200, 3));
    assert_ne!(a, workload(43, 200, 3));
    for kind in [
        |op: &Op| matches!(op, Op::Apply { .. }),
        |op: &Op| matches!(op, Op::Single { .. }),
        |op: &Op| matches!(op, Op::Compact { .. }),
        |op: &Op| matches!(op, Op::Refused { .. }),
        |op: &Op| matches!(op, Op::RemoveDocument { .. }),
        |op: &Op| matches!(op, Op::FlushAll),
    ] {
        assert!(
            a.iter().any(kind),
            "a 200-step workload lacks a kind of step"
        );
    }
}

#[test]
fn env_count_refuses_what_is_not_a_count() {
    use persister_reliability::parse_count;
    assert_eq!(parse_count("N", None, 7), Ok(7));
    assert_eq!(parse_count("N", Some(" "), 7), Ok(7));
    assert_eq!(parse_count("N", Some("10_000"), 7), Ok(10_000));
    for bad in ["10k", "-1", "1e4"] {
        let e = parse_count("PERSISTER_KILLS", Some(bad), 7).unwrap_err();
        assert!(e.contains("PERSISTER_KILLS") && e.contains(bad), "{e}");
    }
}

/// The kill test's checker, without the kill: an fs store written by the workload
/// child's own code, in this process, then checked as the kill test checks it.
mod kill_checker {
    use persister_core::{ActorId, Batch, Persister, Store};
    use persister_reliability::backend::named;
    use persister_reliability::kill::{ChildArgs, WORKLOAD_DOCS, WORKLOAD_LEN, replay, run_child};
    use persister_reliability::ops::{Op, document_id};
    use persister_reliability::{Location, StoreModel, workload};

    fn run(dir: &std::path::Path, seed: u64, len: usize, skip_step: Option<usize>) -> Vec<String> {
        let args = ChildArgs {
            backend: named("fs"),
            dir: dir.to_path_buf(),
            seed,
            len,
            docs: WORKLOAD_DOCS,
            payload_only: false,
            pause_at: None,
            skip_step,
        };
        let mut out = Vec::new();
        run_child(&args, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn check(dir: &std::path::Path, ops: &[Op], lines: &[String]) -> Result<(), String> {
        let mut model = StoreModel::new();
        replay(&mut model, ops, lines)?;
        let store = Location::new(named("fs"), dir)
            .open()
            .map_err(|e| e.to_string())?;
        model.adopt_store(&store)
    }

    /// A seed and a step of its workload that changes its document and is flushed by
    /// the next step, and that document.
    fn flushed_step() -> (u64, usize, usize) {
        for seed in 1..100 {
            let ops = workload(seed, WORKLOAD_LEN, WORKLOAD_DOCS);
            let mut model = StoreModel::new();
            for (j, op) in ops.iter().enumerate().take(WORKLOAD_LEN - 1) {
                if let Op::RemoveDocument { doc } = op {
                    model.doc_mut(*doc).remove();
                }
                let Some((doc, batch)) = op.batch() else {
                    continue;
                };
                let before = model.doc(doc).current().cloned();
                model.doc_mut(doc).apply(batch);
                if ops[j + 1] == Op::FlushAll && model.doc(doc).current() != before.as_ref() {
                    return (seed, j, doc);
                }
            }
        }
        panic!("no workload has a step flushed by the next one");
    }

    #[test]
    fn an_honest_run_passes() {
        let dir = persister_reliability::scratch_dir().unwrap();
        let ops = workload(3, WORKLOAD_LEN, WORKLOAD_DOCS);
        let lines = run(dir.path(), 3, WORKLOAD_LEN, None);
        check(dir.path(), &ops, &lines).unwrap();
    }

    /// A batch acknowledged by the flush after it but never written: the store holds
    /// one batch less than the model says was acknowledged.
    #[test]
    fn a_lost_acknowledged_batch_fails() {
        let (seed, step, doc) = flushed_step();
        let ops = workload(seed, step + 2, WORKLOAD_DOCS);
        let honest = persister_reliability::scratch_dir().unwrap();
        let lines = run(honest.path(), seed, step + 2, None);
        assert_eq!(lines.last().map(|l| l.starts_with("done")), Some(true));
        check(honest.path(), &ops, &lines).unwrap();

        let lying = persister_reliability::scratch_dir().unwrap();
        let lines = run(lying.path(), seed, step + 2, Some(step));
        let e = check(lying.path(), &ops, &lines).unwrap_err();
        assert!(e.contains(&format!("document {}", document_id(doc))), "{e}");
    }

    /// A flushed batch the workload never made: the store is at no prefix of the
    /// document's batches.
    #[test]
    fn a_batch_that_is_not_the_workloads_fails() {
        let dir = persister_reliability::scratch_dir().unwrap();
        let ops = workload(3, WORKLOAD_LEN, WORKLOAD_DOCS);
        let lines = run(dir.path(), 3, WORKLOAD_LEN, None);
        {
            let store = Location::new(named("fs"), dir.path()).open().unwrap();
            let mut p = store.open_document(&document_id(1)).unwrap();
            p.apply(Batch::new().insert_change(ActorId::new([9; 3]), 1, b"x".to_vec()))
                .unwrap();
            p.flush().unwrap();
        }
        let e = check(dir.path(), &ops, &lines).unwrap_err();
        assert!(e.contains(&format!("document {}", document_id(1))), "{e}");
    }
}

/// The concurrent kill test's checker, without the kill: a store written by the
/// concurrent child's own code, in this process, then damaged through the API.
mod concurrent_checker {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use persister_core::{Persister, Store};
    use persister_reliability::Location;
    use persister_reliability::backend::named;
    use persister_reliability::concurrent::{
        ConcurrentReport, Sizes, actor, batch_len, check_store, document, record, run_child, value,
    };

    const SIZES: Sizes = Sizes {
        threads: 2,
        docs: 4,
    };

    /// Runs the child to its end on a new fs store; returns it and the acknowledgements.
    fn written() -> (tempfile::TempDir, BTreeMap<usize, u64>) {
        let dir = persister_reliability::scratch_dir().unwrap();
        let store = Location::new(named("fs"), dir.path()).open().unwrap();
        let out = Mutex::new(Vec::new());
        run_child(&store, SIZES, 7, 30, &out).unwrap();
        drop(store);
        let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
        let mut acks = BTreeMap::new();
        for line in text.lines().filter(|l| *l != "done") {
            record(&mut acks, line).unwrap();
        }
        assert_eq!(acks.len(), SIZES.docs, "every document was flushed: {text}");
        (dir, acks)
    }

    fn check(dir: &tempfile::TempDir, acks: &BTreeMap<usize, u64>) -> Result<(), String> {
        let store = Location::new(named("fs"), dir.path()).open().unwrap();
        check_store(&store, SIZES.docs, acks, &mut ConcurrentReport::default())
    }

    fn held(dir: &tempfile::TempDir, d: usize) -> u64 {
        let store = Location::new(named("fs"), dir.path()).open().unwrap();
        let p = store.open_document(&document(d)).unwrap();
        p.get_change_entries().unwrap().len() as u64
    }

    #[test]
    fn an_honest_run_passes() {
        let (dir, acks) = written();
        let mut report = ConcurrentReport::default();
        let store = Location::new(named("fs"), dir.path()).open().unwrap();
        check_store(&store, SIZES.docs, &acks, &mut report).unwrap();
        assert_eq!(report.documents_checked, SIZES.docs as u64);
        assert_eq!(report.acks_checked, SIZES.docs as u64);
    }

    /// One change more acknowledged than the store holds.
    #[test]
    fn a_lost_acknowledged_change_fails() {
        let (dir, mut acks) = written();
        let n = held(&dir, 2);
        acks.insert(2, n + 1);
        let e = check(&dir, &acks).unwrap_err();
        assert!(
            e.contains("document 2") && e.contains("acknowledged"),
            "{e}"
        );
    }

    /// The first change of the next batch alone, when that batch has more: half a
    /// batch.
    #[test]
    fn half_a_batch_fails() {
        let (dir, acks) = written();
        let (d, n) = (0..SIZES.docs)
            .map(|d| (d, held(&dir, d)))
            .find(|&(d, n)| {
                let (mut end, mut batch) = (0, 0);
                while end < n {
                    end += batch_len(d, batch);
                    batch += 1;
                }
                batch_len(d, batch) > 1
            })
            .expect("a document whose next batch has more than one change");
        {
            let store = Location::new(named("fs"), dir.path()).open().unwrap();
            let mut p = store.open_document(&document(d)).unwrap();
            p.insert_changes(vec![(actor(d), n + 1, value(d, n + 1))])
                .unwrap();
            p.flush().unwrap();
        }
        let e = check(&dir, &acks).unwrap_err();
        assert!(
            e.contains(&format!("document {d}")) && e.contains("half"),
            "{e}"
        );
    }

    /// A change with other bytes than the workload wrote.
    #[test]
    fn wrong_bytes_fail() {
        let (dir, acks) = written();
        {
            let store = Location::new(named("fs"), dir.path()).open().unwrap();
            let mut p = store.open_document(&document(1)).unwrap();
            let mut bytes = value(1, 1);
            bytes[0] ^= 1;
            p.insert_changes(vec![(actor(1), 1, bytes)]).unwrap();
            p.flush().unwrap();
        }
        let e = check(&dir, &acks).unwrap_err();
        assert!(e.contains("document 1") && e.contains("change 0"), "{e}");
    }
}
