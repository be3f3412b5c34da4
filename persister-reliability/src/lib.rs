//! The reliability harness: the same attacks on every backend of the workspace.
//!
//! - **Model-based tests** run random [`Op`]s on a store and on a [`StoreModel`] made
//!   of [`DocumentState`](persister_core::DocumentState)s, comparing contents and exact
//!   sizes after every step, with reopens that may lose unflushed batches but only a
//!   suffix of them ([`ModelRun`]).
//! - **Kill tests** run a deterministic [`workload`] in a child process (the
//!   `reliability-workload` binary), kill it at random moments, and check that the
//!   reopened store holds every acknowledged write and a prefix of the batches
//!   ([`kill`]).
//! - **The concurrent kill test** runs many writer threads on many documents of one
//!   store in a child process, flushing at random (some flushes shared, some through
//!   the store-wide flush), kills it, and checks every acknowledged flush survived and
//!   every document is at a prefix of its batches ([`concurrent`]).
//! - **The corruption sweep** damages a store's files in many ways and checks that
//!   every read returns an error or exactly the stored data ([`corruption`]).
//!
//! `RELIABILITY.md` at the repository root says how to run each longer.

pub mod backend;
pub mod concurrent;
pub mod corruption;
pub mod fuzzing;
pub mod kill;
mod model;
pub mod ops;
mod runner;

pub use backend::{Backend, Location, REDB_SMALL_LOG};
pub use model::{Contents, DocModel, Snapshot, StoreModel, list};
pub use ops::{Op, workload, workload_of};
pub use persister_testkit::{Rng, env_count, parse_count};
pub use runner::{ModelRun, apply_to_handle};

/// A fresh temporary directory for stores under test, removed when dropped.
///
/// It is made under `PERSISTER_TMPDIR` when set, else under `/dev/shm` when that is a
/// writable directory, else in the system's temporary directory. The tests simulate
/// process kills, which leave the page cache intact, so a memory file system proves
/// the same and spares them the disk's `fsync` latency.
pub fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("persister-reliability-");
        b
    };
    if let Some(dir) = std::env::var_os("PERSISTER_TMPDIR") {
        return builder.tempdir_in(dir);
    }
    match builder.tempdir_in("/dev/shm") {
        Ok(dir) => Ok(dir),
        Err(_) => builder.tempdir(),
    }
}
