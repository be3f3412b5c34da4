//! The server's errors as the workspace's [`Error`], with no password in any of them.

use std::fmt;

use persister_core::Error;
use postgres::error::SqlState;

/// An error of the server or of the connection to it, its message already cleared of
/// the password. It is the `source` of [`Error::Backend`].
#[derive(Debug)]
pub struct PgError {
    message: String,
    code: Option<String>,
}

impl PgError {
    /// The SQLSTATE code the server sent, if the error came from the server.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgError {}

/// What must never appear in a message: the password, when one was given.
#[derive(Clone, Default)]
pub(crate) struct Secret(Vec<String>);

impl Secret {
    /// Keeps `password` (as written in the URL, and as decoded) out of messages.
    pub fn new(password: Option<&[u8]>) -> Self {
        let mut secret = Self::default();
        secret.add(password);
        secret
    }

    pub fn add(&mut self, password: Option<&[u8]>) {
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            self.0.push(String::from_utf8_lossy(p).into_owned());
        }
    }

    /// `text` with every occurrence of the password replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for password in &self.0 {
            text = text.replace(password.as_str(), "********");
        }
        text
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The server's error while doing `action` ("read", "flush", ...) on `place`, as an
/// [`Error::Backend`] naming both.
pub(crate) fn from_pg(err: &postgres::Error, action: &str, place: &str, secret: &Secret) -> Error {
    let detail = match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        // The driver's message names the kind of failure ("error connecting to
        // server"); its cause says what happened ("Connection refused").
        None => match std::error::Error::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    };
    let mut message = format!("{action} on {place} failed: {detail}");
    if is_conversion(err) {
        message.push_str("; the table holds a value of another type than this backend writes: were the tables made or changed by something else?");
    } else if err.is_closed() || err.as_db_error().is_none() {
        message.push_str("; check that the server is running and reachable");
    }
    Error::backend(
        "postgres",
        PgError {
            message: secret.redact(&message),
            code: err.code().map(|c| c.code().to_string()),
        },
    )
}

/// A flush at `place` that failed for `detail` (not an error of the driver), as an
/// [`Error::Backend`].
pub(crate) fn flush_failed(place: &str, detail: &str) -> Error {
    failed("flush", place, detail)
}

/// Doing `action` at `place` failed for `detail` (not an error of the driver), as an
/// [`Error::Backend`].
pub(crate) fn failed(action: &str, place: &str, detail: &str) -> Error {
    Error::backend(
        "postgres",
        PgError {
            message: format!("{action} on {place} failed: {detail}"),
            code: None,
        },
    )
}

/// What an operation whose commit the server did not wait to replicate says: a
/// failover to a synchronous standby may undo it.
pub(crate) const UNREPLICATED: &str = "the server cancelled the commit's wait for synchronous replication; it is committed on the server but may not be on its synchronous standbys";

/// Whether the server rolled the statement back because of a conflict with another
/// transaction (SQLSTATE 40001 or 40P01): then nothing of it was done, and running it
/// again is safe.
pub(crate) fn is_retryable(err: &postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether the error leaves it unknown what the server did: the connection was lost, or
/// the server ended the session, while a statement was in flight.
pub(crate) fn is_connection_lost(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.as_db_error() {
        // The server reported a definite outcome, unless it was shutting the session
        // down (admin shutdown, crash shutdown, terminated backend).
        Some(db) => {
            matches!(db.code().code(), "57P01" | "57P02" | "57P03")
                || db.code().code().starts_with("08")
        }
        // A value that does not convert (a column of another type, an unexpected NULL)
        // is the client's own finding: the connection is fine.
        None if is_conversion(err) => false,
        // An I/O error or an unexpected message: the connection is gone.
        None => true,
    }
}

/// Whether the error is a value that did not convert to or from its Rust type, found
/// by the client (the driver offers no other way to tell than its message).
fn is_conversion(err: &postgres::Error) -> bool {
    if err.as_db_error().is_some() || err.is_closed() {
        return false;
    }
    let text = err.to_string();
    text.starts_with("error deserializing") || text.starts_with("error serializing")
}
