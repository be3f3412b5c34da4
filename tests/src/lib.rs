//! Cross-backend integration tests live in `tests/`. This crate's docs are the
//! README, so that its examples are compiled and run as doc tests.
#![doc = include_str!("../../README.md")]
