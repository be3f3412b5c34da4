//! What the command prints when it fails: one line of cause, one of advice, and an exit
//! code.
//!
//! Exit codes, as `persister --help` and the README list them:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | error (the message says what happened and what to do) |
//! | 2 | bad usage: an unknown option, a missing argument, a malformed document id |
//! | 3 | damaged or unreadable data found |
//! | 4 | `--skip-damaged` left out damaged documents; everything else was saved |
//! | 130 | interrupted (Ctrl-C): set by the shell for a process ended by SIGINT |

use std::fmt;

use persister_core::Error as StoreError;

/// The exit code of a command that failed.
pub const EXIT_ERROR: u8 = 1;
/// The exit code of bad usage: what clap gives for a bad command line, and what a
/// malformed argument it cannot check (a document id) gives.
pub const EXIT_USAGE: u8 = 2;
/// The exit code when damaged or unreadable data was found.
pub const EXIT_DAMAGED: u8 = 3;
/// The exit code of `copy` or `export --skip-damaged` that left documents out: the
/// output is complete but for them.
pub const EXIT_SKIPPED: u8 = 4;
/// The exit status of a command interrupted with Ctrl-C (SIGINT): 128 + 2, as shells
/// report a process a signal ended. Nothing is left at the destination of `copy`,
/// `export` or `import`, only a `.NAME.partial-*` path beside it (see their help).
pub const EXIT_INTERRUPTED: u8 = 130;

/// What to do about damage, whichever command found it.
pub(crate) const DAMAGE_ADVICE: &str = "stop writing to this store: `persister verify` names every damaged document, and `persister copy --skip-damaged STORE NEW` saves the others to a new store (or restore a backup)";

/// The advice for a store whose damage stops it from opening or listing its documents.
pub(crate) const UNOPENABLE_ADVICE: &str = "the damage is in what opening or listing the store reads, so no document of it can be read, with or without `persister copy --skip-damaged`: unless the message says how to get past it, restore a backup";

/// A failure of a command, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// What went wrong, in one line.
    pub cause: String,
    /// What the user can do about it, in one line.
    pub advice: String,
    /// The exit code: [`EXIT_ERROR`], [`EXIT_USAGE`], [`EXIT_DAMAGED`] when data is
    /// damaged, or [`EXIT_SKIPPED`].
    pub code: u8,
}

impl CliError {
    /// A failure with its cause and advice.
    pub fn new(cause: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            cause: cause.into(),
            advice: advice.into(),
            code: EXIT_ERROR,
        }
    }

    /// A malformed argument: bad usage, exit code [`EXIT_USAGE`].
    pub fn usage(cause: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            ..Self::new(cause, advice)
        }
    }

    /// A failure because stored data is damaged.
    pub fn damaged(cause: impl Into<String>) -> Self {
        Self {
            code: EXIT_DAMAGED,
            ..Self::new(cause, DAMAGE_ADVICE)
        }
    }

    /// Puts `context` ("document notes") in front of the cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.cause = format!("{context}: {}", self.cause);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\nhint: {}", self.cause, self.advice)
    }
}

impl std::error::Error for CliError {}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io {
                action,
                path,
                source,
            } => Self::new(
                format!("cannot {action} {}: {source}", path.display()),
                "check that the path exists and is readable (and writable, for commands that write), and that the disk is not full",
            ),
            StoreError::Corrupt { what, path, offset } => Self::damaged(format!(
                "damaged data in {}{}: {what}",
                path.display(),
                offset.map(|o| format!(" at byte {o}")).unwrap_or_default()
            )),
            StoreError::UnsupportedFormat {
                what,
                path,
                found,
                supported,
            } => Self::new(
                format!(
                    "{} is {what} format version {found}, but this build reads only version {supported}",
                    path.display()
                ),
                format!("use a build of persister that reads version {found}"),
            ),
            StoreError::MigrationNeeded {
                what,
                path,
                found,
                supported,
                how: _,
            } => Self::new(
                format!(
                    "{} is {what} format version {found}, and this build reads version {supported} once the store is migrated",
                    path.display()
                ),
                "stop every program of an older build that uses the store, then run `persister migrate STORE`",
            ),
            StoreError::NotAStore { what, path } => Self::new(
                format!("{} is not {what}", path.display()),
                "check the path; if the backend was detected wrongly, pass --backend redb|sled|fs",
            ),
            StoreError::Locked { path } => Self::new(
                format!(
                    "the store at {} is locked: another process has it open",
                    path.display()
                ),
                "close the program that has the store open (or wait for it to exit), then run the command again",
            ),
            StoreError::Poisoned { reason } => Self::new(
                format!(
                    "making writes durable on disk failed ({reason}), so the store refuses further writes"
                ),
                "check the disk (space, errors) and run the command again; the store reopens at its last successful flush",
            ),
            StoreError::LeaseLost { reason } => Self::new(
                reason,
                "another program holds the document, or the server lost its writes: run the command again",
            ),
            StoreError::TooLarge { what, len, max } => Self::new(
                format!("{what} is {len} bytes, more than the maximum of {max}"),
                "nothing of it was written; the data cannot be stored by this version of persister",
            ),
            StoreError::InvalidInput { what, reason } => Self::new(
                format!("invalid {what}: {reason}"),
                "check the arguments (see `persister help`)",
            ),
            StoreError::NotFound { what } => Self::new(
                format!("{what} not found"),
                "check the name; `persister ls STORE` lists the documents of a store",
            ),
            StoreError::Backend { backend, source } => Self::new(
                format!("the {backend} engine failed: {source}"),
                match crate::backend::on_server(backend) {
                    // Most often the server is out of reach, or refused the login.
                    true => {
                        "check the URL, and that the server is running and reachable; if the message names damage, run `persister verify` on the store"
                    }
                    false => {
                        "run `persister verify` on the store; if it is damaged, copy out what still reads or restore a backup"
                    }
                },
            ),
            other => Self::new(other.to_string(), "see `persister help`"),
        }
    }
}

impl From<persister_automerge::Error> for CliError {
    fn from(e: persister_automerge::Error) -> Self {
        use persister_automerge::Error as E;
        match e {
            E::Persister(e) | E::FlushFailed(e) | E::Compaction(e) => e.into(),
            E::CorruptDocument(e) => {
                Self::damaged(format!("automerge cannot load the stored document: {e}"))
            }
            E::CorruptChange { actor, seq, reason } => Self::damaged(format!(
                "the stored change of actor {actor}, seq {seq}, is damaged: {reason}"
            )),
            E::InconsistentChanges(e) => Self::damaged(format!(
                "the stored changes cannot be applied together: {e}"
            )),
            E::CorruptSyncState { peer, source } => Self::damaged(format!(
                "the stored sync state of peer {} is damaged: {source}",
                persister_core::DocumentId::from(peer)
            )),
            E::Automerge(e) => Self::new(
                format!("automerge refused an operation: {e}"),
                "this is a bug in persister: please report it with the command that failed",
            ),
            other => Self::new(other.to_string(), "see `persister help`"),
        }
    }
}

impl From<persister_yrs::Error> for CliError {
    fn from(e: persister_yrs::Error) -> Self {
        use persister_yrs::Error as E;
        match e {
            E::Persister(e) | E::FlushFailed(e) | E::Compaction(e) => e.into(),
            E::CorruptDocument { reason } => {
                Self::damaged(format!("yrs cannot load the stored document: {reason}"))
            }
            E::CorruptUpdate { actor, seq, reason } => Self::damaged(format!(
                "the stored update of writer {actor}, seq {seq}, is damaged: {reason}"
            )),
            other => Self::new(
                format!("yrs refused an update: {other}"),
                "this is a bug in persister: please report it with the command that failed",
            ),
        }
    }
}

impl From<crate::export::Error> for CliError {
    fn from(e: crate::export::Error) -> Self {
        use crate::export::Error as E;
        match e {
            E::UnsupportedVersion { found, .. } => Self::new(
                e.to_string(),
                format!("use a build of persister that reads export format version {found}"),
            ),
            E::NotAnExport => Self::new(e.to_string(), "check the file name"),
            E::Io { .. } => Self::new(
                e.to_string(),
                "check that the path exists and is readable, and that the disk is not full",
            ),
            E::Invalid { .. } => Self::new(
                e.to_string(),
                "this is a bug in persister: please report it with the command that failed",
            ),
            _ => Self {
                advice: "the export file is damaged or incomplete: export the store again, or use another copy of the file".into(),
                ..Self::damaged(e.to_string())
            },
        }
    }
}

/// An I/O error with what was being done, and where.
pub(crate) fn io_error(action: &str, path: &std::path::Path, e: std::io::Error) -> CliError {
    CliError::new(
        format!("cannot {action} {}: {e}", path.display()),
        "check that the path exists and is writable, and that the disk is not full",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed flush of either CRDT reads as the store error under it, with the
    /// advice for that error: not "see `persister help`", not "a bug in persister".
    #[test]
    fn a_failed_flush_of_either_crdt_is_the_store_error_under_it() {
        let io = || {
            persister_core::Error::io(
                "sync",
                "/data/notes.redb",
                std::io::Error::other("no space"),
            )
        };
        let direct = CliError::from(io());
        for error in [
            CliError::from(persister_automerge::Error::FlushFailed(io())),
            CliError::from(persister_yrs::Error::FlushFailed(io())),
        ] {
            assert_eq!(
                (&error.cause, &error.advice),
                (&direct.cause, &direct.advice)
            );
            assert!(error.cause.contains("no space"), "{}", error.cause);
        }
    }
}
