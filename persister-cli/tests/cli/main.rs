//! Runs the built `persister` binary: every subcommand, damaged and locked stores, and
//! a copy across every backend and an export file that keeps every byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod compact;
mod demo;
mod inspect;
mod locations;
mod locked;
mod migrate;
mod readonly;
mod support;
mod transfer;
mod usage;
mod verify;
