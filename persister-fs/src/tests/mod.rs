//! Tests that need the crate's internals: the conformance suite with injected fsync
//! failures, and the simulated power-loss loops.

mod conformance;
mod crash;
mod faults;
mod race;
mod workload;
