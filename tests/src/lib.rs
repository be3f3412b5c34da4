//! Cross-backend integration tests live in `tests/`.
