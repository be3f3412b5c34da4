//! Deterministic helpers shared by the workspace's tests, benchmarks, reliability
//! harness and demo, so that each of them is a pure function of its seed, and
//! [`Contents`], a document read back whole to compare with a model or another store,
//! a throwaway PostgreSQL cluster ([`postgres::Cluster`]), and a child process killed
//! after some of its acknowledgements ([`run_and_kill`]), and the sizes of long runs
//! ([`env_count`]).
//!
//! This crate is not published: the published crates use it only as a
//! dev-dependency.

mod contents;
mod env;
mod killed;
pub mod postgres;
mod rng;

pub use contents::Contents;
pub use env::{env_count, parse_count};
pub use killed::{KilledRun, run_and_kill};
pub use rng::Rng;
