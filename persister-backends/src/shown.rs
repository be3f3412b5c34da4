//! A location as messages and `Debug` show it: a path as it is, a URL or connection
//! string without its password.

use std::path::Path;

/// What replaces a password.
const HIDDEN: &str = "********";

/// The scheme of `location` when it is written as a URL (`scheme:/...`, the scheme two
/// or more of ASCII letters, digits, `+`, `-` and `.`, starting with a letter), rather
/// than as a path.
pub(crate) fn url_scheme(location: &Path) -> Option<String> {
    let text = location.to_string_lossy();
    let (scheme, rest) = text.split_once(':')?;
    let is_scheme = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (is_scheme && rest.starts_with('/')).then(|| scheme.to_string())
}

/// `location` as messages show it: a path as it is; a URL without the password of its
/// user part, nor the value of any `password` option (of a URL or a connection string).
///
/// Every message of this crate shows a location this way; a program that prints a
/// location it was given can too.
///
/// ```
/// use std::path::Path;
///
/// let url = Path::new("postgres://app:s3cret@db.example/notes?password=s3cret");
/// let text = persister_backends::shown(url);
/// assert!(!text.contains("s3cret"));
/// assert!(text.starts_with("postgres://app:"));
/// assert_eq!(persister_backends::shown(Path::new("notes.redb")), "notes.redb");
/// ```
pub fn shown(location: &Path) -> String {
    let text = location.to_string_lossy();
    let text = match url_scheme(location) {
        Some(scheme) => without_user_password(&text, &scheme),
        None => text.into_owned(),
    };
    without_password_options(&text)
}

/// A URL without the password of its user part. The user part is read both as the
/// PostgreSQL driver reads it (up to the first `@`) and as a URL's authority is (up to
/// the last `@` before the first `/` or `?`): whichever is longer is hidden, so that
/// no reading leaves a piece of the password in sight.
fn without_user_password(text: &str, scheme: &str) -> String {
    let rest = text[scheme.len() + 1..].trim_start_matches('/');
    let first_at = rest.find('@');
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let end = first_at.max(authority.rfind('@'));
    let Some(end) = end else {
        return text.to_string();
    };
    let prefix = &text[..text.len() - rest.len()];
    match rest[..end].split_once(':') {
        Some((user, _)) => format!("{prefix}{user}:{HIDDEN}@{}", &rest[end + 1..]),
        None => text.to_string(),
    }
}

/// `text` with the value of every `password` option hidden: `password=VALUE` in a
/// URL's query (up to the next `&`) or a connection string (`password = VALUE`, up to
/// the next whitespace, or a quoted `'VALUE'` with its `\` escapes).
fn without_password_options(text: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find(KEY) {
        let after_key = &rest[at + KEY.len()..];
        let spaced = after_key.trim_start();
        let Some(value) = spaced.strip_prefix('=') else {
            out.push_str(&rest[..at + KEY.len()]);
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        let len = value_len(value);
        out.push_str(&rest[..rest.len() - value.len()]);
        out.push_str(HIDDEN);
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

/// The length in bytes of the option value `value` starts with.
fn value_len(value: &str) -> usize {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 2,
                _ => {}
            }
        }
        return value.len();
    }
    value
        .find(|c: char| c.is_whitespace() || c == '&')
        .unwrap_or(value.len())
}
