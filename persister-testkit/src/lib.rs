//! Deterministic helpers shared by the workspace's tests, benchmarks, reliability
//! harness and demo, so that each of them is a pure function of its seed, and
//! [`Contents`], a document read back whole to compare with a model or another store,
//! and a throwaway PostgreSQL cluster ([`postgres::Cluster`]).
//!
//! This crate is not published: the published crates use it only as a
//! dev-dependency.

mod contents;
pub mod postgres;
mod rng;

pub use contents::Contents;
pub use rng::Rng;
