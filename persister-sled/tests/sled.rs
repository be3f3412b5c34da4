//! The tests of persister-sled, in one binary: the conformance suite, the store's own
//! behaviour, tampering and corruption detection, the kill test, and copying out.
//!
//! Some tests re-run this binary as a child process (see [`child`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sled/child.rs"]
mod child;
#[path = "sled/conformance.rs"]
mod conformance;
#[path = "sled/copy_out.rs"]
mod copy_out;
#[path = "sled/corruption.rs"]
mod corruption;
#[path = "sled/crash.rs"]
mod crash;
#[path = "sled/group.rs"]
mod group;
#[path = "sled/protect.rs"]
mod protect;
#[path = "sled/raw.rs"]
mod raw;
#[path = "sled/store.rs"]
mod store;
#[path = "sled/tamper.rs"]
mod tamper;
