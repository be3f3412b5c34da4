//! The reliability harness's tests: model-based, kill and corruption tests for every
//! backend, and replays of the fuzzers' crash fixtures. `RELIABILITY.md` at the
//! repository root says what each proves and how to run it longer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "reliability/corruption.rs"]
mod corruption;
#[path = "reliability/findings.rs"]
mod findings;
#[path = "reliability/fuzz_fixtures.rs"]
mod fuzz_fixtures;
#[path = "reliability/harness.rs"]
mod harness;
#[path = "reliability/kill.rs"]
mod kill;
#[path = "reliability/model.rs"]
mod model;
