//! Integration tests of `persister-automerge`, on every backend.
//!
//! By default the trace tests replay a prefix of each trace, so the suite stays quick
//! in a debug build; `PERSISTER_FULL_TRACE=1 cargo test --release -p
//! persister-automerge` replays them whole (in a debug build automerge's own
//! assertions make that take hours).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "automerge/support.rs"]
mod support;

#[path = "automerge/api.rs"]
mod api;
#[path = "automerge/behaviour.rs"]
mod behaviour;
#[path = "automerge/clownschool.rs"]
mod clownschool;
#[path = "automerge/crash.rs"]
mod crash;
#[path = "automerge/hostile.rs"]
mod hostile;
#[path = "automerge/limits.rs"]
mod limits;
#[path = "automerge/replay.rs"]
mod replay;
#[path = "automerge/sync.rs"]
mod sync;
