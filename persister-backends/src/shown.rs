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

/// A URL without the password of its user part. The PostgreSQL driver ends the user
/// part at the first `@`; when that `@` comes before any `/` or `?` and no other `@`
/// follows before the query, every reading agrees and the password is hidden up to
/// it. Otherwise (a password written with a raw `@`, `/` or `?`, which the store
/// refuses) it is hidden up to the URL's last `@`, which covers every reading and may
/// hide more than the password, never less.
fn without_user_password(text: &str, scheme: &str) -> String {
    let rest = text[scheme.len() + 1..].trim_start_matches('/');
    let query = rest.find('?').unwrap_or(rest.len());
    let end = match rest.find('@') {
        None => return text.to_string(),
        Some(first)
            if !rest[..first].contains(['/', '?']) && !rest[first + 1..query].contains('@') =>
        {
            first
        }
        Some(_) => rest.rfind('@').unwrap_or(0),
    };
    let prefix = &text[..text.len() - rest.len()];
    match rest[..end].split_once(':') {
        Some((user, _)) => format!("{prefix}{user}:{HIDDEN}@{}", &rest[end + 1..]),
        None => text.to_string(),
    }
}

/// `text` with the value of every `password` option hidden: `password=VALUE` in a
/// URL's query (up to the next `&`) or a connection string (`password = VALUE`, up to
/// the next whitespace, or a quoted `'VALUE'` with its `\` escapes). The key is
/// compared as the driver reads it: without case, and with its `%` escapes decoded
/// (`pass%77ord`).
fn without_password_options(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let before = rest[..eq].trim_end();
        let key_start = before
            .rfind(|c: char| c.is_whitespace() || matches!(c, '&' | '?'))
            .map_or(0, |at| at + 1);
        let value = rest[eq + 1..].trim_start();
        if !is_password_key(&before[key_start..]) {
            out.push_str(&rest[..=eq]);
            rest = &rest[eq + 1..];
            continue;
        }
        out.push_str(&rest[..rest.len() - value.len()]);
        out.push_str(HIDDEN);
        rest = &value[value_len(value)..];
    }
    out.push_str(rest);
    out
}

/// Whether `key`, its `%` escapes decoded, is `password` in any case.
fn is_password_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| key.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded.eq_ignore_ascii_case(b"password")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn show(text: &str) -> String {
        shown(Path::new(text))
    }

    #[test]
    fn no_reading_of_a_url_leaves_a_piece_of_its_password() {
        for (url, password) in [
            ("postgres://app:Pw7a@Zq81@db/notes", ["Pw7a", "Zq81"]),
            (
                "postgres://app:Pw7a@Zq/81@127.0.0.1:1/notes",
                ["Pw7a", "Zq/81"],
            ),
            ("postgresql://app:Pw7a?Zq@db/notes", ["Pw7a", "Zq@"]),
        ] {
            let shown = show(url);
            for piece in password {
                assert!(!shown.contains(piece), "{url}: {shown}");
            }
            assert!(
                shown.starts_with("postgres") && shown.contains("app:"),
                "{shown}"
            );
        }
        // Options: any case, `%` escapes, a connection string's quoted value.
        for (text, secret) in [
            (
                "postgres://db/notes?sslmode=disable&PassWord=s3cret&schema=a",
                "s3cret",
            ),
            ("postgres://db/notes?pass%77ord=s3cret", "s3cret"),
            ("host=db password = 'a b\\' s3cret' user=u", "s3cret"),
            ("host=db password=s3cret user=u", "s3cret"),
        ] {
            let shown = show(text);
            assert!(!shown.contains(secret), "{text}: {shown}");
            assert!(shown.contains("db"), "{shown}");
        }
        assert!(show("host=db password=s3cret user=u").ends_with(" user=u"));
        assert!(show("postgres://db/n?password=x&schema=a").ends_with("&schema=a"));
        // A well-formed URL keeps its host and database in sight.
        let shown = show("postgres://u:s3cret@db/notes?application_name=a@b");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("@db/notes?application_name=a@b"), "{shown}");
        // A path is a path, whatever it holds.
        assert_eq!(show("./a:b@c.redb"), "./a:b@c.redb");
    }
}
