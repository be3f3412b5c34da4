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
