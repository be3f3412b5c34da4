//! The `persister` command: a demo of the persister on a real store, and the tools to
//! look into a store, check it, compact it and move it between backends.
//!
//! The binary (`src/main.rs`) only parses the command line and calls [`run`]; the
//! commands live in this library so that tests and fuzz targets can reach their parts,
//! chiefly the [`export`] format.
//!
//! | command | what |
//! |---|---|
//! | `persister demo` | edits an Automerge text (`--crdt yjs`: a Yjs text) on a store, flushes, compacts, reopens and checks; continues the same document when run again |
//! | `persister ls STORE` | the documents with their sizes |
//! | `persister info STORE DOC` | one document: sizes, actors, peers, format version, what its CRDT loads |
//! | `persister verify STORE` | reads every document in full and loads it with its CRDT (in a samod store, also every chunk samod would load and the layout's entries, see `persister_samod::check_document`); exit code 3 and a report naming each damaged document |
//! | `persister compact STORE [DOC]` | compacts every document, or one |
//! | `persister migrate STORE` | brings a store an older build wrote to this build's format version, in place |
//! | `persister copy SRC DST` | every document into a new store of any backend |
//! | `persister export STORE FILE`, `persister import FILE STORE` | a portable dump ([`export`]) |
//!
//! A document is Automerge's when its compacted document or any change starts with
//! Automerge's chunk header, and is then loaded with automerge; otherwise it is loaded
//! as Yjs with yrs (`persister-yrs`), and one that neither loads is reported damaged.
//! A store written through `persister-samod` (its reserved document `/` holds the
//! layout record) is read with that layout: its documents are Automerge's, and
//! `compact` leaves them to samod.
//!
//! The backend of an existing store is detected from its path ([`Backend::detect`]);
//! a new store (`copy`, `import`) is redb unless `--backend` says otherwise. New
//! stores and files are built under a temporary name beside the destination and
//! renamed into place once complete and checked, so a failure leaves nothing behind.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage, 3 damaged data found, 4
//! `--skip-damaged` left documents out, 130 interrupted ([`EXIT_ERROR`],
//! [`EXIT_USAGE`], [`EXIT_DAMAGED`], [`EXIT_SKIPPED`], [`EXIT_INTERRUPTED`]).

mod backend;
pub mod cli;
mod commands;
mod demo;
mod dump;
mod error;
pub mod export;
mod ids;
mod output;
mod place;

pub use backend::{Access, Backend, OpenStore, OpenedDocument, disk_usage};
pub use cli::{Cli, Crdt};
pub use dump::{ActorSummary, DocumentDump};
pub use error::{CliError, EXIT_DAMAGED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_SKIPPED, EXIT_USAGE};
pub use ids::parse_document_id;

use cli::Command;

/// Runs a parsed command line. On failure the error says what happened and what to do,
/// and carries the exit code.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let result = run_command(cli);
    // A report lost on its way out fails a command that otherwise succeeded; a
    // command that failed keeps its own error and exit code.
    let printed = output::stdout_result();
    result.and(printed)
}

fn run_command(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::Demo(args) => demo::run(&args, json),
        Command::Ls(store) => commands::ls::run(&store, json),
        Command::Info { store, doc } => commands::info::run(&store, &doc, json),
        Command::Verify(store) => commands::verify::run(&store, json),
        Command::Compact { store, doc } => commands::compact::run(&store, doc.as_deref(), json),
        Command::Migrate(store) => commands::migrate::run(&store, json),
        Command::Copy {
            src,
            dst,
            backend,
            from_backend,
            skip_damaged,
        } => commands::copy::run(&src, from_backend, &dst, backend, skip_damaged, json),
        Command::Export {
            store,
            file,
            skip_damaged,
        } => commands::export::run(&store, &file, skip_damaged, json),
        Command::Import {
            file,
            store,
            backend,
        } => commands::import::run(&file, &store, backend, json),
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal is ending the process: the command then must not exit on its own
/// (an error it meets is the signal's doing), so that the signal handler's clean-up
/// finishes and the process ends by the signal.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Makes SIGINT and SIGTERM remove what the command made outside its destination (the
/// copy a read-only sled store is read through, a destination's `.NAME.partial-*`)
/// before the process ends by the signal as it would have without this (a shell
/// reports SIGINT as exit status 130).
pub fn clean_up_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            persister_core::scratch::remove_all();
            place::remove_partials();
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    });
}
