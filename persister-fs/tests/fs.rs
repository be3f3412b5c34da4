//! Tests of the fs backend through its public API, on the real file system.
//!
//! The conformance suite and the simulated power-loss loops are unit tests of the
//! crate (`src/tests/`), because they run the store on internal I/O doubles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fs/close.rs"]
mod close;
#[path = "fs/common.rs"]
mod common;
#[path = "fs/damage.rs"]
mod damage;
#[path = "fs/layout.rs"]
mod layout;
#[path = "fs/lock.rs"]
mod lock;
#[path = "fs/readonly.rs"]
mod readonly;
#[path = "fs/recovery.rs"]
mod recovery;
#[path = "fs/space.rs"]
mod space;
