//! Cross-backend integration tests: what must hold between backends, not within one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod copy;
mod differential;
mod faults;
mod lock;
mod space;
mod support;
mod upgrade;
