//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Backend;

/// Keeps Automerge and Yjs documents on disk: a demo, and the tools to inspect, check, compact
/// and move stores.
#[derive(Debug, Parser)]
#[command(
    name = "persister",
    version,
    after_help = "A STORE is a redb file, a sled directory, an fs directory or a PostgreSQL URL (postgres://USER@HOST/DB?schema=NAME); its backend is detected from the path or URL (--backend forces one).\n\
A DOC is a document id: text as is, or 0x and hex bytes, as `persister ls` shows it.\n\
Progress shows on a terminal; PERSISTER_PROGRESS=lines prints it as lines instead.\n\n\
Exit codes: 0 success, 1 error, 2 bad usage (a malformed document id too), 3 damaged or unreadable data found, \
4 --skip-damaged left out damaged documents (the rest was saved), 130 interrupted (Ctrl-C)."
)]
pub struct Cli {
    /// Print the report as JSON on stdout (progress and errors stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Edit a document on a real store: type, flush, compact, reopen, check; run it
    /// again to continue the same document.
    Demo(DemoArgs),

    /// List the documents of a store with their sizes.
    Ls(StoreArgs),

    /// Show one document: sizes, actors, peers, format version, and what its CRDT loads
    /// (automerge for an Automerge document, yrs for a Yjs one).
    Info {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// The document id (text, or 0x and hex bytes).
        doc: String,
    },

    /// Read every document in full and load it with its CRDT (automerge, or yrs for a
    /// Yjs document); exit 3 naming each damaged document.
    ///
    /// The store is opened read-only: nothing of it is written, not even the crash
    /// recovery an application's open would finish. A sled store is read through a
    /// copy in a temporary directory (set TMPDIR to choose where), because opening a
    /// damaged sled store can erase data.
    Verify(StoreArgs),

    /// Compact every document (or one): store the whole document and drop the changes
    /// it covers. Writes to the store: run `persister verify` first if in doubt.
    Compact {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Only this document (text, or 0x and hex bytes).
        doc: Option<String>,
    },

    /// Migrate a store written by an older build (redb layout 2, fs version 2,
    /// PostgreSQL version 1) to the format version this build writes (redb layout 3, fs
    /// version 3, PostgreSQL version 2), in place; a store of the current version is
    /// left as it is.
    ///
    /// Stores of an older version are otherwise read and written as they are, so the
    /// builds that wrote them still open them; after the migration those builds refuse
    /// the store. Stop every program of an older build that uses the store first. A
    /// URL's `migrate_format` option is ignored: this command decides.
    Migrate(StoreArgs),

    /// Copy every document of a store into a new store of any backend (the way off
    /// sled). DST must not exist; on failure nothing is left there.
    ///
    /// The new store is built beside it as `.NAME.partial-*` and renamed into place
    /// when complete, so a failure or Ctrl-C leaves nothing at DST; a run that is
    /// killed leaves the `.NAME.partial-*` path, which may be deleted. On
    /// PostgreSQL it is built in a schema `NAME_partial_*` beside the destination's
    /// (the role needs the right to create schemas) and moved into place in one
    /// transaction; a killed run leaves that schema, which may be dropped.
    Copy {
        /// The store to copy.
        src: PathBuf,
        /// The new store.
        dst: PathBuf,
        /// The backend of the new store.
        #[arg(long, value_enum, default_value_t = Backend::default_for_new())]
        backend: Backend,
        /// The backend of SRC, if detection gets it wrong.
        #[arg(long, value_enum)]
        from_backend: Option<Backend>,
        /// Leave out documents that cannot be read (and name them) instead of failing:
        /// the way to save what a damaged store still holds. Exits 4 when it left any
        /// out.
        #[arg(long)]
        skip_damaged: bool,
    },

    /// Write every document of a store to a portable export file. FILE must not exist.
    ///
    /// The new file is built beside it as `.NAME.partial-*` and renamed into place
    /// when complete, so a failure or Ctrl-C leaves nothing at FILE; a run that is
    /// killed leaves the `.NAME.partial-*` path, which may be deleted.
    Export {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// The new export file.
        file: PathBuf,
        /// Leave out documents that cannot be read (and name them) instead of failing.
        /// Exits 4 when it left any out.
        #[arg(long)]
        skip_damaged: bool,
    },

    /// Make a new store from an export file. STORE must not exist; on failure nothing
    /// is left there.
    ///
    /// The new store is built beside it as `.NAME.partial-*` and renamed into place
    /// when complete, so a failure or Ctrl-C leaves nothing at STORE; a run that is
    /// killed leaves the `.NAME.partial-*` path, which may be deleted. On
    /// PostgreSQL it is built in a schema `NAME_partial_*` beside the destination's
    /// (the role needs the right to create schemas) and moved into place in one
    /// transaction; a killed run leaves that schema, which may be dropped.
    Import {
        /// The export file.
        file: PathBuf,
        /// The new store.
        store: PathBuf,
        /// The backend of the new store.
        #[arg(long, value_enum, default_value_t = Backend::default_for_new())]
        backend: Backend,
    },
}

/// An existing store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store: a redb file, a sled directory, an fs directory or a `postgres://`
    /// URL.
    pub store: PathBuf,
    /// Its backend, if detection gets it wrong.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

/// Options of `persister demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The directory holding the demo's stores (one per backend).
    #[arg(long, default_value = "persister-demo")]
    pub dir: PathBuf,
    /// The backend to run on.
    #[arg(long, value_enum, default_value_t = Backend::default_for_new())]
    pub backend: Backend,
    /// Edits in this session (keystrokes that change the text; with --trace, trace
    /// transactions).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub edits: u64,
    /// Flush after every N writes to the store: each edit is one, and so is each
    /// compaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_every: u64,
    /// Replay a recorded editing trace instead of generated typing: a sequential trace
    /// in the editing-traces JSON format (startContent, txns, endContent), .json or
    /// .json.gz. Each trace has its own document; each run continues where the last
    /// stopped.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// The CRDT of the demo's document: an Automerge text, or a Yjs text (yrs). Each
    /// has documents of its own, so both can run in the same directory.
    #[arg(long, value_enum, default_value_t = Crdt::Automerge)]
    pub crdt: Crdt,
}

/// The CRDT a demo document is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Crdt {
    /// Automerge, through `persister-automerge`.
    Automerge,
    /// Yjs, through `persister-yrs` (yrs).
    Yjs,
}

impl std::fmt::Display for Crdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Automerge => "Automerge",
            Self::Yjs => "Yjs",
        })
    }
}
