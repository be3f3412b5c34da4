//! The conformance suite: one plain function per behaviour of the
//! [`Persister`] and [`Store`] contracts, and the
//! [`conformance_tests!`](crate::conformance_tests) macro that makes one `#[test]` of
//! each for a backend, so that no backend can skip a case.
//!
//! A backend provides a [`Fixture`]: a way to open (and, by opening again after a
//! drop, reopen) one store at a fresh location. Then, in its tests:
//!
//! ```ignore
//! struct MyFixture { dir: tempfile::TempDir }
//! impl persister_core::conformance::Fixture for MyFixture { /* ... */ }
//! persister_core::conformance_tests!(MyFixture::new());
//! ```
//!
//! Each case's name says the behaviour it checks; its doc names the point of the
//! contract. The cases panic (through `assert!`) on a broken promise and return `Err`
//! when the backend fails an operation that should have succeeded.

mod batches;
mod closing;
mod durability;
mod isolation;
mod reads;
mod sizes;

pub use batches::*;
pub use closing::*;
pub use durability::*;
pub use isolation::*;
pub use reads::*;
pub use sizes::*;

use crate::{ActorId, DocumentId, Persister, Result, Store};

/// One store at a fresh location, as a backend's tests make it.
pub trait Fixture {
    /// The backend's store.
    type Store: Store;

    /// Opens the store, creating it on the first call. Calling it again after the
    /// previous store and all its handles were dropped reopens the same store.
    fn open(&self) -> Result<Self::Store>;

    /// Arranges for the next flush of a handle of `store` to fail as a failed `fsync`
    /// would. Every backend must provide this (through a fault-injection switch or a
    /// storage double), so that the poisoning cases run everywhere: there is no way to
    /// skip them.
    fn fail_next_flush(&self, store: &Self::Store);
}

/// The names of every case, in the order of the macro. A test of this crate checks
/// that the macro instantiates exactly these.
pub const CASES: &[&str] = &[
    // reads
    "new_document_is_empty",
    "inserted_changes_are_read_back",
    "document_is_read_back",
    "sync_state_is_read_back",
    "unflushed_writes_are_visible",
    "empty_values_are_stored",
    "large_values_round_trip",
    "many_changes_round_trip",
    "change_entries_match_changes",
    // overwrite, remove, order
    "overwriting_a_change_replaces_it",
    "overwriting_the_document_replaces_it",
    "overwriting_a_sync_state_replaces_it",
    "removing_a_change_removes_only_it",
    "removing_absent_changes_is_not_an_error",
    "removing_flushed_runs_removes_exactly_them",
    "removing_sync_states_removes_only_them",
    "removing_absent_sync_states_is_not_an_error",
    "a_peer_without_state_reads_absent_beside_others",
    "changes_are_ordered_by_actor_then_seq",
    "peer_ids_are_exactly_those_given",
    // batches
    "batch_is_applied_whole",
    "batch_writes_apply_in_order",
    "empty_batch_is_a_no_op",
    "batch_with_value_over_maximum_applies_nothing",
    "batch_with_empty_actor_applies_nothing",
    "batch_with_actor_over_maximum_applies_nothing",
    "batch_with_peer_id_over_maximum_applies_nothing",
    "batch_over_maximum_applies_nothing",
    "insert_changes_is_all_or_nothing",
    "compaction_batch_replaces_changes_with_document",
    "refused_batch_leaves_stored_data_intact",
    // isolation and the store
    "ids_that_are_prefixes_are_isolated",
    "empty_id_is_isolated",
    "path_like_ids_are_isolated",
    "nul_and_non_utf8_ids_are_isolated",
    "ids_differing_in_case_are_isolated",
    "isolation_survives_reopen",
    "list_documents_lists_exactly_written_documents",
    "emptied_documents_stay_listed",
    "opening_a_document_writes_nothing",
    "remove_document_removes_all_its_data_only",
    "removed_document_stays_removed_after_reopen",
    "document_id_over_maximum_is_refused",
    "second_handle_on_a_document_is_refused",
    "documents_are_served_from_threads",
    // sizes
    "sizes_are_zero_when_empty",
    "sizes_count_every_part",
    "sizes_account_overwrites",
    "sizes_account_overwrites_of_flushed_changes",
    "sizes_never_drop_below_zero",
    "sizes_are_exact_after_reopen",
    "sizes_match_contents_after_reopen_without_flush",
    // durability and flush
    "flushed_writes_survive_reopen",
    "order_survives_reopen",
    "flush_with_nothing_pending_returns_zero",
    "flush_after_a_write_returns_bytes",
    "second_flush_returns_zero",
    "failed_flush_poisons_the_handle",
    "poison_clears_after_reopen",
    "flush_documents_makes_every_handle_durable",
    "failed_flush_documents_reports_every_handle_it_carried",
    // closing
    "dropped_handle_discards_unflushed_writes",
    "close_flushes_the_handle",
    "closed_store_reopens_at_once",
    "closing_a_store_after_a_failed_flush_reports_it",
    "closing_a_store_with_an_open_handle_is_refused",
    "closing_a_boxed_or_shared_store_is_checked",
    "clean_close_leaves_nothing_torn",
];

/// Expands to one `#[test]` per conformance case, each on a fresh fixture made by
/// evaluating `$fixture`, plus a test that the list is complete.
///
/// ```ignore
/// persister_core::conformance_tests!(MyFixture::new());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::__conformance_cases!(($fixture)
            new_document_is_empty,
            inserted_changes_are_read_back,
            document_is_read_back,
            sync_state_is_read_back,
            unflushed_writes_are_visible,
            empty_values_are_stored,
            large_values_round_trip,
            many_changes_round_trip,
            change_entries_match_changes,
            overwriting_a_change_replaces_it,
            overwriting_the_document_replaces_it,
            overwriting_a_sync_state_replaces_it,
            removing_a_change_removes_only_it,
            removing_absent_changes_is_not_an_error,
            removing_flushed_runs_removes_exactly_them,
            removing_sync_states_removes_only_them,
            removing_absent_sync_states_is_not_an_error,
            a_peer_without_state_reads_absent_beside_others,
            changes_are_ordered_by_actor_then_seq,
            peer_ids_are_exactly_those_given,
            batch_is_applied_whole,
            batch_writes_apply_in_order,
            empty_batch_is_a_no_op,
            batch_with_value_over_maximum_applies_nothing,
            batch_with_empty_actor_applies_nothing,
            batch_with_actor_over_maximum_applies_nothing,
            batch_with_peer_id_over_maximum_applies_nothing,
            batch_over_maximum_applies_nothing,
            insert_changes_is_all_or_nothing,
            compaction_batch_replaces_changes_with_document,
            refused_batch_leaves_stored_data_intact,
            ids_that_are_prefixes_are_isolated,
            empty_id_is_isolated,
            path_like_ids_are_isolated,
            nul_and_non_utf8_ids_are_isolated,
            ids_differing_in_case_are_isolated,
            isolation_survives_reopen,
            list_documents_lists_exactly_written_documents,
            emptied_documents_stay_listed,
            opening_a_document_writes_nothing,
            remove_document_removes_all_its_data_only,
            removed_document_stays_removed_after_reopen,
            document_id_over_maximum_is_refused,
            second_handle_on_a_document_is_refused,
            documents_are_served_from_threads,
            sizes_are_zero_when_empty,
            sizes_count_every_part,
            sizes_account_overwrites,
            sizes_account_overwrites_of_flushed_changes,
            sizes_never_drop_below_zero,
            sizes_are_exact_after_reopen,
            sizes_match_contents_after_reopen_without_flush,
            flushed_writes_survive_reopen,
            order_survives_reopen,
            flush_with_nothing_pending_returns_zero,
            flush_after_a_write_returns_bytes,
            second_flush_returns_zero,
            failed_flush_poisons_the_handle,
            poison_clears_after_reopen,
            flush_documents_makes_every_handle_durable,
            failed_flush_documents_reports_every_handle_it_carried,
            dropped_handle_discards_unflushed_writes,
            close_flushes_the_handle,
            closed_store_reopens_at_once,
            closing_a_store_after_a_failed_flush_reports_it,
            closing_a_store_with_an_open_handle_is_refused,
            closing_a_boxed_or_shared_store_is_checked,
            clean_close_leaves_nothing_torn,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (($fixture:expr) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() -> ::core::result::Result<(), $crate::Error> {
                $crate::conformance::$case(&$fixture)
            }
        )*

        #[test]
        fn conformance_suite_is_complete() {
            let instantiated: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(instantiated, $crate::conformance::CASES);
        }
    };
}

/// A 16-byte actor id made of `n`.
pub(crate) fn actor(n: u8) -> ActorId {
    ActorId::new([n; 16])
}

/// Drops `store` and opens it again.
pub(crate) fn reopen<F: Fixture>(fixture: &F, store: F::Store) -> Result<F::Store> {
    drop(store);
    fixture.open()
}

/// A handle of document `doc` in `store` that flushed one change (`b"flushed"`, actor
/// 1, seq 1), then had its next flush (of seq 2, `second`) fail as the fixture fails
/// one.
pub(crate) fn after_a_failed_flush<F: Fixture>(
    f: &F,
    store: &F::Store,
    second: &[u8],
) -> Result<<F::Store as Store>::Persister> {
    let mut p = open(store, "doc")?;
    p.insert_changes(vec![(actor(1), 1, b"flushed".to_vec())])?;
    p.flush()?;
    f.fail_next_flush(store);
    p.insert_changes(vec![(actor(1), 2, second.to_vec())])?;
    assert!(
        p.flush().is_err(),
        "the simulated flush failure was not reported"
    );
    Ok(p)
}

/// Opens `id` in `store`.
pub(crate) fn open<S: Store>(store: &S, id: &str) -> Result<S::Persister> {
    store.open_document(&DocumentId::from(id))
}

/// Everything a persister holds, read back through the trait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Contents {
    pub changes: Vec<(ActorId, u64, Vec<u8>)>,
    pub document: Option<Vec<u8>>,
    pub sync_states: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

pub(crate) fn contents<P: Persister<Error = crate::Error> + ?Sized>(p: &P) -> Result<Contents> {
    let mut sync_states = Vec::new();
    for peer in p.get_peer_ids()? {
        let state = p.get_sync_state(&peer)?;
        sync_states.push((peer, state));
    }
    Ok(Contents {
        changes: p.get_change_entries()?,
        document: p.get_document()?,
        sync_states,
    })
}
