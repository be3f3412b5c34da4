//! The corruption sweep: damage a small store's files one way at a time and check
//! that every read returns an error or exactly the stored data.
//!
//! The store ([`build`]) holds a few documents written in flushed batches. Each case
//! copies it, applies one [`Mutation`] to one file, opens the copy and reads every
//! document ([`check`]). Each read must fail or return exactly what was stored;
//! `sizes` must be exact whenever every read succeeded. One relief, from the contract:
//! a backend may drop an incomplete tail on open, so after a truncation, a zeroed
//! tail, or damage within what one torn write could reach ([`tail_start`]: the sector
//! where an fs log's last record begins, another file's last 4 KiB), a document may
//! instead hold the state after an earlier batch of its own
//! ([`Verdict::TailDropped`]); elsewhere that is a [`Verdict::Rollback`], reported
//! apart. [`sweep`] runs the cases in child processes and tallies them.

mod check;
mod mutation;
mod store;
mod sweep;

pub use check::{Verdict, check};
pub use mutation::{BLOCK, Mutation, fs_length_fields, mutations, tail_start};
pub use store::{
    REMOVED_DOCUMENT, build, content_batches, copy_tree, expected_states, store_files,
};
pub use sweep::{
    SweepConfig, SweepReport, peak_rss_kib, reset_peak_rss, run_case, sweep, sweep_child,
};
