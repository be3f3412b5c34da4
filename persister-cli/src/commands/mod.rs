//! The commands that work on stores, one module each, and what they share.

pub(crate) mod compact;
pub(crate) mod copy;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod info;
pub(crate) mod ls;
mod new_store;
pub(crate) mod verify;

use automerge::ReadDoc;
use automerge::sync;
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DocumentId, MemoryPersister};
use serde::Serialize;

use crate::{CliError, DocumentDump, OpenStore};

/// A document id in JSON: as it displays, and its bytes in hex.
#[derive(Debug, Serialize)]
pub(crate) struct IdJson {
    id: String,
    id_hex: String,
}

impl From<&DocumentId> for IdJson {
    fn from(id: &DocumentId) -> Self {
        Self {
            id: id.to_string(),
            id_hex: id.to_hex(),
        }
    }
}

/// What automerge makes of a document.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Loaded {
    /// Changes in the document's history.
    pub changes: u64,
    /// Operations in the document.
    pub operations: u64,
    /// Actors of the history.
    pub actors: u64,
    /// Stored changes automerge could not apply (their dependencies are missing).
    pub orphaned_changes: usize,
}

/// Options that load a document without writing to its persister.
pub(crate) fn read_only_options() -> Options {
    Options::default()
        .with_compaction(CompactionTrigger::never())
        .with_flush(FlushPolicy::Manual)
}

/// Loads `dump` with automerge as an application would (`PersistentDoc::load`), and
/// decodes each sync state.
pub(crate) fn load_with_automerge(dump: DocumentDump) -> Result<Loaded, CliError> {
    for (peer, state) in &dump.sync_states {
        sync::State::decode(state).map_err(|e| {
            CliError::damaged(format!(
                "the stored sync state of peer {} is damaged: {e}",
                DocumentId::from(peer.clone())
            ))
        })?;
    }
    let mut memory = MemoryPersister::new();
    dump.write_into(&mut memory)?;
    let doc = PersistentDoc::load_with(memory, read_only_options())?;
    let stats = doc.doc().stats();
    Ok(Loaded {
        changes: stats.num_changes,
        operations: stats.num_ops,
        actors: stats.num_actors,
        orphaned_changes: doc.orphaned_changes(),
    })
}

/// Reads the whole of document `id` from `store`; also returns what opening it noted.
pub(crate) fn read_document(
    store: &OpenStore,
    id: &DocumentId,
) -> Result<(DocumentDump, Option<String>), CliError> {
    let opened = store.open_document(id)?;
    let dump = DocumentDump::read(id, &*opened.persister, store.opened_path())
        .map_err(|e| store.error(e).context(format!("document {id}")))?;
    Ok((dump, opened.note))
}

/// A document `--skip-damaged` left out, and why.
#[derive(Debug, Serialize)]
pub(crate) struct Skipped {
    #[serde(flatten)]
    id: IdJson,
    problem: String,
}

/// Reads every document of `ids` in turn and hands it to `f`. With `skip_damaged`, a
/// document that cannot be read because its data is damaged is left out and returned
/// in the list; any other failure stops.
pub(crate) fn each_document(
    store: &OpenStore,
    ids: &[DocumentId],
    skip_damaged: bool,
    what: &'static str,
    mut f: impl FnMut(DocumentDump) -> Result<(), CliError>,
) -> Result<Vec<Skipped>, CliError> {
    let bar = crate::output::progress(ids.len() as u64, what);
    let mut skipped = Vec::new();
    for id in ids {
        match read_document(store, id) {
            Ok((dump, _)) => f(dump)?,
            Err(e) if skip_damaged && e.code == crate::EXIT_DAMAGED => skipped.push(Skipped {
                id: id.into(),
                problem: problem_of(&e, id),
            }),
            Err(e) => return Err(e),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(skipped)
}

/// "3 documents", or "2 of 3 documents" when some were left out.
pub(crate) fn count_of(saved: usize, skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        plural(saved as u64, "document", "documents")
    } else {
        format!(
            "{} of {}",
            crate::output::thousands(saved as u64),
            plural((saved + skipped.len()) as u64, "document", "documents")
        )
    }
}

/// How a `--skip-damaged` command ends: `Ok` when it left nothing out, otherwise the
/// exit code [`EXIT_SKIPPED`](crate::EXIT_SKIPPED), naming what it left out of
/// `output`.
pub(crate) fn skipped_result(
    skipped: &[Skipped],
    saved: usize,
    output: &std::path::Path,
) -> Result<(), CliError> {
    if skipped.is_empty() {
        return Ok(());
    }
    Err(CliError {
        code: crate::EXIT_SKIPPED,
        ..CliError::new(
            format!(
                "left out {} of {}: {}",
                plural(
                    skipped.len() as u64,
                    "damaged document",
                    "damaged documents"
                ),
                skipped.len() + saved,
                skipped
                    .iter()
                    .map(|s| s.id.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{} saved in {}; the documents left out are still in the source, for repair or a backup",
                plural(saved as u64, "document is", "documents are"),
                output.display()
            ),
        )
    })
}

/// Prints the documents `--skip-damaged` left out.
pub(crate) fn say_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    crate::output::say(&format!(
        "left out {} that cannot be read:",
        plural(
            skipped.len() as u64,
            "damaged document",
            "damaged documents"
        )
    ));
    for s in skipped {
        crate::output::say(&format!("  {}  {}", s.id.id, s.problem));
    }
}

/// The cause of `e` without the "document ID: " in front, for reports that name the
/// document already.
pub(crate) fn problem_of(e: &CliError, id: &DocumentId) -> String {
    let prefix = format!("document {id}: ");
    e.cause
        .strip_prefix(&prefix)
        .unwrap_or(&e.cause)
        .to_string()
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        crate::output::thousands(n),
        if n == 1 { one } else { many }
    )
}
