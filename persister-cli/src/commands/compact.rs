//! `persister compact STORE [DOC]`: store each document whole and drop the changes it
//! covers, with the CRDT that wrote it (automerge, or yrs for a Yjs document).

use persister_automerge::PersistentDoc;
use persister_core::{Persister, StoredSizes};
use persister_yrs::PersistentYDoc;
use serde::Serialize;

use super::{IdJson, carry_automerge_header, plural, read_only_options, yrs_read_only_options};
use crate::cli::StoreArgs;
use crate::output::{print_json, say, table, thousands};
use crate::{Access, Backend, CliError, OpenStore, parse_document_id};

#[derive(Serialize)]
struct Report {
    store: String,
    backend: Backend,
    documents: Vec<Compacted>,
}

#[derive(Serialize)]
struct Compacted {
    #[serde(flatten)]
    id: IdJson,
    /// Whether it was compacted: a document without changes is left alone.
    compacted: bool,
    before: StoredSizes,
    after: StoredSizes,
}

pub(crate) fn run(args: &StoreArgs, doc: Option<&str>, json: bool) -> Result<(), CliError> {
    // A malformed id is bad usage, found before the store is opened.
    let id = doc.map(parse_document_id).transpose()?;
    // A read-write open makes a store where there is none: compact must not.
    let backend = OpenStore::backend_of(&args.store, args.backend)?;
    OpenStore::check_there(&args.store, backend, args.backend)?;
    let store = OpenStore::existing(&args.store, args.backend, Access::Write)?;
    if let Some(version) = super::samod_layout(&store)? {
        return Err(CliError::new(
            format!(
                "{} is a persister-samod store (layout version {version}): samod compacts its documents itself",
                persister_backends::shown(&args.store)
            ),
            "let the application's samod repo compact them; `persister verify` checks them",
        ));
    }
    let ids = match id {
        Some(id) => {
            if !store.contains(&id)? {
                return Err(CliError::new(
                    format!(
                        "{} has no document \"{id}\"",
                        persister_backends::shown(&args.store)
                    ),
                    "`persister ls STORE` lists its documents; a binary id is written 0x and its hex bytes",
                ));
            }
            vec![id]
        }
        None => store.list()?,
    };
    let mut documents = Vec::new();
    let bar = crate::output::progress(ids.len() as u64, "compacting");
    for id in ids {
        let persister = store.open_document(&id)?.persister;
        let before = persister.sizes();
        let mut compacted = false;
        let after = if before.change_count == 0 {
            before
        } else {
            let in_doc = |e: CliError| e.context(format!("document {id}"));
            let automerge = {
                let document = persister.get_document().map_err(|e| in_doc(e.into()))?;
                let changes = persister
                    .get_change_entries()
                    .map_err(|e| in_doc(e.into()))?;
                carry_automerge_header(document.iter().chain(changes.iter().map(|(_, _, v)| v)))
            };
            // Loading first refuses a damaged document before anything is written.
            let persister = if automerge {
                let mut loaded = PersistentDoc::load_with(persister, read_only_options())
                    .map_err(|e| in_doc(e.into()))?;
                loaded.compact().map_err(|e| in_doc(e.into()))?;
                loaded.close().map_err(|e| in_doc(e.into()))?
            } else {
                let mut loaded = PersistentYDoc::load_with(persister, yrs_read_only_options())
                    .map_err(|e| in_doc(e.into()))?;
                loaded.compact().map_err(|e| in_doc(e.into()))?;
                loaded.close().map_err(|e| in_doc(e.into()))?
            };
            compacted = true;
            persister.sizes()
        };
        documents.push(Compacted {
            id: (&id).into(),
            compacted,
            before,
            after,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let backend = store.backend();
    // Checked: a store that cannot be released cleanly is not reported compacted.
    store.close()?;
    let report = Report {
        store: persister_backends::shown(&args.store),
        backend,
        documents,
    };
    if json {
        return print_json(&report);
    }
    let done = report.documents.iter().filter(|d| d.compacted).count() as u64;
    say(&format!(
        "compacted {} of {} in {} store {}",
        done,
        plural(report.documents.len() as u64, "document", "documents"),
        report.backend,
        report.store
    ));
    let rows: Vec<Vec<String>> = report
        .documents
        .iter()
        .map(|d| {
            vec![
                d.id.id.clone(),
                format!(
                    "{} -> {}",
                    thousands(d.before.change_count),
                    thousands(d.after.change_count)
                ),
                format!(
                    "{} -> {}",
                    thousands(d.before.total_bytes()),
                    thousands(d.after.total_bytes())
                ),
            ]
        })
        .collect();
    if !rows.is_empty() {
        say("");
        say(&table(&["document", "changes", "bytes"], "lrr", &rows));
    }
    Ok(())
}
