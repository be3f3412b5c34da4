//! The commands that work on stores, one module each, and what they share.

pub(crate) mod compact;
pub(crate) mod copy;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod info;
pub(crate) mod ls;
pub(crate) mod migrate;
mod new_store;
pub(crate) mod verify;

use automerge::ReadDoc;
use automerge::sync;
use persister_automerge::{CompactionTrigger, FlushPolicy, Options, PersistentDoc};
use persister_core::{DocumentId, MemoryPersister};
use serde::Serialize;
use yrs::{ReadTxn, Transact};

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

/// What a CRDT makes of a document: Automerge's or Yjs's statistics, whichever
/// recognised it.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "crdt", rename_all = "lowercase")]
pub(crate) enum Loaded {
    /// Nothing is stored: no change, no compacted document, no sync state.
    Empty,
    /// An Automerge document, loaded with automerge.
    Automerge(AutomergeLoaded),
    /// A Yjs document, loaded with yrs.
    Yjs(YjsLoaded),
    /// The reserved document of a persister-samod store: its layout record and the
    /// samod keys that belong to no document.
    #[serde(rename = "samod-layout")]
    SamodLayout(SamodLayout),
}

/// The reserved document of a persister-samod store.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct SamodLayout {
    /// The layout version its record names.
    pub version: u32,
    /// Samod keys of fewer than two components (`["storage-adapter-id"]`) kept there.
    pub keys: u64,
}

/// What automerge makes of a document.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct AutomergeLoaded {
    /// Changes in the document's history.
    pub changes: u64,
    /// Operations in the document.
    pub operations: u64,
    /// Actors of the history.
    pub actors: u64,
    /// Stored changes automerge could not apply (their dependencies are missing).
    pub orphaned_changes: usize,
}

/// What yrs makes of a document.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct YjsLoaded {
    /// Stored updates (the document's changes).
    pub updates: u64,
    /// Clients in the document's state vector.
    pub clients: u64,
    /// The sum of the state vector's clocks: every element ever inserted.
    pub clock: u64,
    /// Whether some stored updates wait for updates that are not stored (yrs holds
    /// them pending).
    pub missing_updates: bool,
}

impl Loaded {
    /// The CRDT's name, as `info` and `verify` print it.
    pub(crate) fn crdt(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Automerge(_) => "automerge",
            Self::Yjs(_) => "yjs",
            Self::SamodLayout(_) => "samod-layout",
        }
    }

    /// Why the loaded document is incomplete, if it is: stored changes or updates that
    /// wait for others that are missing.
    pub(crate) fn incomplete(&self) -> Option<String> {
        match self {
            Self::Automerge(l) if l.orphaned_changes > 0 => Some(format!(
                "{} stored changes cannot be applied: changes they depend on are missing",
                l.orphaned_changes
            )),
            Self::Yjs(l) if l.missing_updates => Some(
                "some stored updates cannot be applied: updates they depend on are missing".into(),
            ),
            _ => None,
        }
    }

    /// What it loads, without the CRDT's name: "12 changes in its history, ...".
    pub(crate) fn details(&self) -> String {
        match self {
            Self::Empty => "nothing is stored".into(),
            Self::Automerge(l) => format!(
                "{} in its history, {}, {}",
                plural(l.changes, "change", "changes"),
                plural(l.operations, "operation", "operations"),
                plural(l.actors, "actor", "actors")
            ),
            Self::Yjs(l) => format!(
                "{} inserted by {}, from {}",
                plural(l.clock, "element", "elements"),
                plural(l.clients, "client", "clients"),
                plural(l.updates, "stored update", "stored updates")
            ),
            Self::SamodLayout(l) => format!(
                "persister-samod's layout record, version {}, and {}",
                l.version,
                plural(l.keys, "store-wide samod key", "store-wide samod keys")
            ),
        }
    }

    /// "automerge loads 12 changes in its history, ...", "yrs loads ...", "empty".
    pub(crate) fn summary(&self) -> String {
        match self {
            Self::Empty => "empty".into(),
            Self::Automerge(_) => format!("automerge loads {}", self.details()),
            Self::Yjs(_) => format!("yrs loads {}", self.details()),
            Self::SamodLayout(_) => self.details(),
        }
    }
}

/// The first bytes of every Automerge chunk (a change, a compressed change, a
/// document): Yjs updates have no such header, so these bytes tell the two apart.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Whether any of `values` starts with Automerge's chunk header: then the document is
/// Automerge's; otherwise, Yjs's.
pub(crate) fn carry_automerge_header<'a>(values: impl IntoIterator<Item = &'a Vec<u8>>) -> bool {
    values
        .into_iter()
        .any(|value| value.starts_with(&AUTOMERGE_MAGIC))
}

/// Options that load a Yjs document without writing to its persister.
pub(crate) fn yrs_read_only_options() -> persister_yrs::Options {
    persister_yrs::Options::default()
        .with_compaction(CompactionTrigger::never())
        .with_flush(FlushPolicy::Manual)
}

/// Options that load a document without writing to its persister.
pub(crate) fn read_only_options() -> Options {
    Options::default()
        .with_compaction(CompactionTrigger::never())
        .with_flush(FlushPolicy::Manual)
}

/// The layout version of a persister-samod store (its reserved document holds a
/// layout record), or `None` for any other store.
pub(crate) fn samod_layout(store: &OpenStore) -> Result<Option<u32>, CliError> {
    let layout = DocumentId::from(persister_samod::LAYOUT_DOCUMENT);
    if !store.contains(&layout)? {
        return Ok(None);
    }
    let opened = store.open_document(&layout)?;
    let record = opened
        .persister
        .get_sync_state(persister_samod::LAYOUT_RECORD)
        .map_err(|e| store.error(e).context(format!("document {layout}")))?;
    Ok(record.as_deref().and_then(persister_samod::layout_version))
}

/// Loads `dump` as an application would, with the CRDT that wrote it: automerge
/// (`PersistentDoc::load`, and each sync state decoded) when its compacted document or
/// any change carries Automerge's header, otherwise yrs (`PersistentYDoc::load`). A
/// document neither loads is an error saying what each made of it.
///
/// In a persister-samod store (`samod` is its layout version) every document is
/// Automerge's, its sync-state entries are the layout's (not sync states), an empty
/// document slot is no document, and the reserved document is the layout's own.
pub(crate) fn load_document(dump: DocumentDump, samod: Option<u32>) -> Result<Loaded, CliError> {
    if let Some(version) = samod {
        let check = check_samod_document(&dump)?;
        if dump.id == DocumentId::from(persister_samod::LAYOUT_DOCUMENT) {
            return Ok(Loaded::SamodLayout(SamodLayout {
                version,
                keys: check.other_keys + check.chunks_in_entries,
            }));
        }
        let mut dump = dump;
        dump.sync_states.clear();
        if dump.document.as_ref().is_some_and(Vec::is_empty) {
            dump.document = None;
        }
        if dump.document.is_none() && dump.changes.is_empty() {
            return Ok(Loaded::Empty);
        }
        return load_with_automerge(dump).map(Loaded::Automerge);
    }
    if dump.document.is_none() && dump.changes.is_empty() && dump.sync_states.is_empty() {
        return Ok(Loaded::Empty);
    }
    let values = dump
        .document
        .iter()
        .chain(dump.changes.iter().map(|(_, _, v)| v));
    if carry_automerge_header(values) || (dump.document.is_none() && dump.changes.is_empty()) {
        return load_with_automerge(dump).map(Loaded::Automerge);
    }
    load_with_yrs(dump).map(Loaded::Yjs).map_err(|e| {
        CliError::damaged(format!(
            "neither automerge nor yrs can load it: no stored value carries Automerge's header, and {}",
            e.cause
        ))
    })
}

/// Checks what samod would load from a document of a persister-samod store beyond its
/// changes and its slot: the layout's entries, and each snapshot or incremental stored
/// as one (samod skips a chunk that fails to load, with only a warning in its log).
fn check_samod_document(dump: &DocumentDump) -> Result<persister_samod::DocumentCheck, CliError> {
    let mut memory = MemoryPersister::new();
    dump.clone().write_into(&mut memory)?;
    persister_samod::check_document(&dump.id, &memory)
        .map_err(|e| CliError::damaged(format!("its samod layout is damaged: {e}")))
}

/// Loads `dump` with automerge (`PersistentDoc::load`), and decodes each sync state.
fn load_with_automerge(dump: DocumentDump) -> Result<AutomergeLoaded, CliError> {
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
    Ok(AutomergeLoaded {
        changes: stats.num_changes,
        operations: stats.num_ops,
        actors: stats.num_actors,
        orphaned_changes: doc.orphaned_changes(),
    })
}

/// Loads `dump` with yrs (`PersistentYDoc::load`). Yjs keeps no sync state per peer, so
/// a stored one is reported.
fn load_with_yrs(dump: DocumentDump) -> Result<YjsLoaded, CliError> {
    if let Some((peer, _)) = dump.sync_states.first() {
        return Err(CliError::damaged(format!(
            "yrs stores no sync state, yet one is stored for peer {}",
            DocumentId::from(peer.clone())
        )));
    }
    let updates = dump.changes.len() as u64;
    let mut memory = MemoryPersister::new();
    dump.write_into(&mut memory)?;
    let doc = persister_yrs::PersistentYDoc::load_with(memory, yrs_read_only_options())?;
    let txn = doc.doc().transact();
    let state = txn.state_vector();
    Ok(YjsLoaded {
        updates,
        clients: state.len() as u64,
        clock: state.iter().map(|(_, clock)| u64::from(*clock)).sum(),
        missing_updates: txn.has_missing_updates(),
    })
}

/// Reads the whole of document `id` from `store`; also returns what opening it noted.
pub(crate) fn read_document(
    store: &OpenStore,
    id: &DocumentId,
) -> Result<(DocumentDump, Option<String>), CliError> {
    let opened = store.open_document(id)?;
    // Named without a URL's password, in case it is damage.
    let shown = persister_backends::shown(store.opened_path());
    let dump = DocumentDump::read(id, &*opened.persister, std::path::Path::new(&shown))
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
/// `output` (a URL without its password).
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
                persister_backends::shown(output)
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
