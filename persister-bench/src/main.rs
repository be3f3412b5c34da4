//! Placeholder: filled by its own issue.
fn main() {}
