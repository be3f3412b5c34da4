//! The tests of persister-redb, in one binary: the conformance suite on a plain file
//! and on a fault-injecting backend, I/O faults, simulated crashes at every I/O call,
//! damaged files, opening and locking, the commit log.
//!
//! `PERSISTER_FAULT_SCALE=n` makes the fault, crash and damage runs about `n` times
//! longer (default 1, sized for CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod closing;
mod conformance;
mod corruption;
mod crash;
mod faults;
mod group;
mod log;
mod pending;
mod store;
mod workload;
