//! Deterministic helpers shared by the workspace's tests, benchmarks, reliability
//! harness and demo, so that each of them is a pure function of its seed.
//!
//! This crate is not published: the published crates use it only as a
//! dev-dependency.

mod rng;

pub use rng::Rng;
