//! `persister info STORE DOC`: one document in detail, and what its CRDT (automerge or
//! yrs) loads.

use persister_core::{DocumentId, StoredSizes};
use serde::Serialize;

use super::{IdJson, Loaded, load_document, plural, read_document};
use crate::cli::StoreArgs;
use crate::output::{print_json, say, thousands};
use crate::{Access, Backend, CliError, OpenStore, parse_document_id};

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    id: IdJson,
    store: String,
    backend: Backend,
    /// The store's format version as stored (an older store, not migrated, keeps its
    /// own); `None` for a store without one.
    format_version: Option<u32>,
    sizes: StoredSizes,
    total_bytes: u64,
    has_document: bool,
    actors: Vec<Actor>,
    peers: Vec<Peer>,
    /// What the document's CRDT (automerge or yrs) loads, or `None` and why neither can.
    loads: Option<Loaded>,
    load_error: Option<String>,
    note: Option<String>,
}

#[derive(Serialize)]
struct Actor {
    actor: String,
    changes: u64,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Peer {
    #[serde(flatten)]
    id: IdJson,
    bytes: u64,
}

pub(crate) fn run(args: &StoreArgs, doc: &str, json: bool) -> Result<(), CliError> {
    let id = parse_document_id(doc)?;
    let store = OpenStore::existing(&args.store, args.backend, Access::Read)?;
    if !store.contains(&id)? {
        return Err(CliError::new(
            format!(
                "{} has no document \"{id}\"",
                persister_backends::shown(&args.store)
            ),
            format!(
                "`persister ls {}` lists its documents; a binary id is written 0x and its hex bytes",
                persister_backends::shown(&args.store)
            ),
        ));
    }
    let reading = crate::output::spinner("reading the document");
    let samod = super::samod_layout(&store)?;
    let (dump, note) = read_document(&store, &id)?;
    let sizes = dump.sizes();
    let actors = dump
        .actors()
        .into_iter()
        .map(|a| Actor {
            actor: a.actor.to_string(),
            changes: a.changes,
            first_seq: a.first_seq,
            last_seq: a.last_seq,
            bytes: a.bytes,
        })
        .collect();
    let peers = dump
        .sync_states
        .iter()
        .map(|(peer, state)| Peer {
            id: (&DocumentId::from(peer.clone())).into(),
            bytes: state.len() as u64,
        })
        .collect();
    let has_document = dump.document.is_some();
    let (loads, load_error) = match load_document(dump, samod) {
        Ok(loaded) => (Some(loaded), None),
        Err(e) => (None, Some(e.cause)),
    };
    reading.finish_and_clear();
    let report = Report {
        id: (&id).into(),
        store: persister_backends::shown(&args.store),
        backend: store.backend(),
        format_version: store.format_version(),
        sizes,
        total_bytes: sizes.total_bytes(),
        has_document,
        actors,
        peers,
        loads,
        load_error,
        note,
    };
    if json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    // What `verify` calls damaged is damage here too: the report says what was found,
    // the exit code that it is not sound.
    let problem = match (&report.loads, &report.load_error) {
        (_, Some(cause)) => Some(("does not load", cause.clone())),
        (Some(loaded), None) => loaded.incomplete().map(|why| ("is incomplete", why)),
        (None, None) => None,
    };
    match problem {
        Some((what, problem)) => Err(CliError::damaged(format!(
            "document {} in {} {what}: {problem}",
            report.id.id, report.store
        ))),
        None => Ok(()),
    }
}

fn print_text(r: &Report) {
    let s = &r.sizes;
    say(&format!("document      {}", r.id.id));
    let version = r
        .format_version
        .map_or(String::new(), |v| format!(", format version {v}"));
    say(&format!(
        "store         {} ({} store{version})",
        r.store, r.backend
    ));
    say(&format!(
        "changes       {} ({} bytes) from {}",
        thousands(s.change_count),
        thousands(s.changes),
        plural(r.actors.len() as u64, "actor", "actors")
    ));
    for a in &r.actors {
        say(&format!(
            "  actor {}  seq {}..={}  {}  {} bytes",
            a.actor,
            a.first_seq,
            a.last_seq,
            plural(a.changes, "change", "changes"),
            thousands(a.bytes)
        ));
    }
    if r.has_document {
        say(&format!("compacted     {} bytes", thousands(s.document)));
    } else {
        say("compacted     none");
    }
    say(&format!(
        "sync states   {} ({} bytes)",
        thousands(s.sync_state_count),
        thousands(s.sync_states)
    ));
    for p in &r.peers {
        say(&format!("  peer {}  {} bytes", p.id.id, thousands(p.bytes)));
    }
    say(&format!("total         {} bytes", thousands(r.total_bytes)));
    match (&r.loads, &r.load_error) {
        (Some(l), _) => {
            let mut line = format!("{:<13} loads: {}", l.crdt(), l.details());
            if let Some(incomplete) = l.incomplete() {
                line.push_str(&format!("; {incomplete}"));
            }
            say(&line);
        }
        (None, e) => say(&format!(
            "crdt          CANNOT LOAD: {}",
            e.as_deref().unwrap_or("unknown")
        )),
    }
    if let Some(note) = &r.note {
        say(&format!("note          {note}"));
    }
}
