//! Integration tests of `persister-yrs`, on every backend.
//!
//! By default the trace tests replay a prefix of each trace, so the suite stays quick
//! in a debug build; `PERSISTER_FULL_TRACE=1 cargo test --release -p persister-yrs`
//! replays them whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod behaviour;
mod clownschool;
mod crash;
mod damage;
mod limits;
mod replay;
