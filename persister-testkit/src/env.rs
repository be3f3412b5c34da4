//! Sizes of tests and harnesses from the environment, for long runs.

/// Reads a count from the environment variable `name`, or `default` when it is unset
/// or empty. Underscores are allowed as digit separators (`10_000`).
///
/// # Panics
///
/// When it is set to something that is not a count (`10k`, `-1`): a long run asked for
/// with a typo must not silently run at the default size.
pub fn env_count(name: &str, default: u64) -> u64 {
    let value = std::env::var(name).ok();
    parse_count(name, value.as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of [`env_count`]: `default` when `value` is `None` or blank, else the
/// count it spells, or an error naming `name`.
pub fn parse_count(name: &str, value: Option<&str>, default: u64) -> Result<u64, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) => v
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v:?} is not a count ({e}); unset it for {default}")),
    }
}
