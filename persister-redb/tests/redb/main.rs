//! The tests of persister-redb, in one binary: the conformance suite on a plain file
//! and on a fault-injecting backend, I/O faults, and simulated crashes at every I/O
//! call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod conformance;
mod corruption;
mod crash;
mod faults;
mod pending;
mod store;
mod workload;
