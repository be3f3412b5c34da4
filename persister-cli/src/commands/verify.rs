//! `persister verify STORE`: read every document in full, load it with its CRDT
//! (automerge, or yrs for a Yjs document), and name every one that fails.

use persister_core::{DocumentId, StoredSizes};
use serde::Serialize;

use super::{IdJson, Loaded, load_document, plural, problem_of, read_document};
use crate::cli::StoreArgs;
use crate::error::EXIT_DAMAGED;
use crate::output::{print_json, progress, say, thousands};
use crate::{Access, Backend, CliError, OpenStore};

#[derive(Serialize)]
struct Report {
    store: String,
    backend: Option<Backend>,
    ok: bool,
    /// Why the store as a whole could not be read, if it could not.
    store_problem: Option<String>,
    documents: Vec<Verdict>,
    damaged: usize,
}

#[derive(Serialize)]
struct Verdict {
    #[serde(flatten)]
    id: IdJson,
    ok: bool,
    problem: Option<String>,
    note: Option<String>,
    sizes: Option<StoredSizes>,
    loads: Option<Loaded>,
}

pub(crate) fn run(args: &StoreArgs, json: bool) -> Result<(), CliError> {
    let path = persister_backends::shown(&args.store);
    let listed = OpenStore::existing(&args.store, args.backend, Access::Read)
        .and_then(|store| store.list().map(|ids| (store, ids)));
    let (store, ids) = match listed {
        Ok(opened) => opened,
        // Damage that keeps the store from opening or listing is the report.
        Err(e) if e.code == EXIT_DAMAGED => {
            let report = Report {
                store: path.clone(),
                backend: None,
                ok: false,
                store_problem: Some(e.cause.clone()),
                documents: Vec::new(),
                damaged: 0,
            };
            if json {
                print_json(&report)?;
            } else {
                say(&format!("DAMAGED store {path}: {}", e.cause));
            }
            return Err(CliError {
                advice: e.advice,
                ..CliError::damaged(format!(
                    "the store {path} cannot be read as a whole: {}",
                    e.cause
                ))
            });
        }
        Err(e) => return Err(e),
    };
    let samod = super::samod_layout(&store)?;
    let bar = progress(ids.len() as u64, "verifying");
    let mut documents = Vec::new();
    for id in &ids {
        documents.push(verify_document(&store, id, samod));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let damaged: Vec<&Verdict> = documents.iter().filter(|v| !v.ok).collect();
    let damaged_ids: Vec<String> = damaged.iter().map(|v| v.id.id.clone()).collect();
    let report = Report {
        store: path.clone(),
        backend: Some(store.backend()),
        ok: damaged.is_empty(),
        store_problem: None,
        damaged: damaged.len(),
        documents,
    };
    if json {
        print_json(&report)?;
    } else {
        print_text(&report, store.backend());
    }
    if damaged_ids.is_empty() {
        return Ok(());
    }
    Err(CliError::damaged(format!(
        "{} of {} in {path} failed verification: {}",
        damaged_ids.len(),
        plural(ids.len() as u64, "document", "documents"),
        damaged_ids.join(", ")
    )))
}

fn verify_document(store: &OpenStore, id: &DocumentId, samod: Option<u32>) -> Verdict {
    let mut verdict = Verdict {
        id: id.into(),
        ok: false,
        problem: None,
        note: None,
        sizes: None,
        loads: None,
    };
    let checked = read_document(store, id).and_then(|(dump, note)| {
        verdict.note = note;
        verdict.sizes = Some(dump.sizes());
        load_document(dump, samod)
    });
    match checked {
        Ok(loaded) => {
            verdict.problem = loaded.incomplete();
            verdict.ok = verdict.problem.is_none();
            verdict.loads = Some(loaded);
        }
        Err(e) => verdict.problem = Some(problem_of(&e, id)),
    }
    verdict
}

fn print_text(report: &Report, backend: Backend) {
    say(&format!(
        "verifying {backend} store {}: {}",
        report.store,
        plural(report.documents.len() as u64, "document", "documents")
    ));
    for v in &report.documents {
        let detail = match (&v.problem, &v.sizes, &v.loads) {
            (Some(problem), _, _) => problem.clone(),
            (None, Some(s), Some(l)) => format!(
                "{}, {}-byte document, {}; {}",
                plural(s.change_count, "change", "changes"),
                thousands(s.document),
                plural(s.sync_state_count, "sync state", "sync states"),
                l.summary(),
            ),
            _ => String::new(),
        };
        let status = if v.ok { "ok" } else { "DAMAGED" };
        say(&format!("  {status:<8} {}  {detail}", v.id.id));
        if let Some(note) = &v.note {
            say(&format!("           note: {note}"));
        }
    }
    let sound = report.documents.len() - report.damaged;
    say(&format!(
        "{sound} of {} sound, {} damaged",
        plural(report.documents.len() as u64, "document", "documents"),
        report.damaged
    ));
}
