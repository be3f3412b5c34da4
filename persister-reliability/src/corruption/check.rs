//! Reading a damaged store, and the verdict.

use std::path::Path;

use persister_core::{DocumentState, Error, Persister, Store};

use super::expected_states;
use crate::model::{Contents, list};
use crate::ops::{DOCUMENTS, document_id};
use crate::{Backend, Location};

/// What one case came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every read returned exactly the stored data.
    Exact,
    /// Opening or some read failed; every read that succeeded was exact.
    Refused(String),
    /// The damage was at the tail, and some document read as an earlier state of its
    /// own (every other read exact or failed): an incomplete tail dropped on open.
    TailDropped(String),
    /// As `TailDropped`, but for damage away from the tail: a silent loss of flushed
    /// data, reported apart.
    Rollback(String),
    /// A read returned data that is neither an error nor the stored data.
    Lie(String),
}

impl Verdict {
    /// A one-word name.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Exact => "exact",
            Verdict::Refused(_) => "refused",
            Verdict::TailDropped(_) => "tail-dropped",
            Verdict::Rollback(_) => "rollback",
            Verdict::Lie(_) => "lie",
        }
    }

    /// What was seen.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Exact => "",
            Verdict::Refused(s)
            | Verdict::TailDropped(s)
            | Verdict::Rollback(s)
            | Verdict::Lie(s) => s,
        }
    }
}

/// Reads one thing: `Ok(true)` when exact, `Ok(false)` when wrong, `Err` when it failed.
fn exact<T: PartialEq>(found: Result<T, Error>, expected: &T) -> Result<bool, Error> {
    found.map(|found| found == *expected)
}

/// Opens the (damaged) store of `backend` in `dir`, for reading only when `read_only`
/// says so, and reads everything, comparing with [`expected_states`]. `tail` says
/// whether the damage touched only a tail.
pub fn check(backend: Backend, dir: &Path, tail: bool, read_only: bool) -> Verdict {
    let states = expected_states();
    let location = Location::new(backend, dir);
    let opened = match read_only {
        true => location.open_read_only(),
        false => location.open(),
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => return Verdict::Refused(format!("open: {e}")),
    };
    let mut errors = Vec::new();
    let mut earlier = Vec::new();
    let mut lies = Vec::new();
    // The state each document was found in, when it was read whole.
    let mut found_states: Vec<Option<Option<DocumentState>>> = vec![None; states.len()];
    for (doc, states) in states.iter().enumerate() {
        let id = document_id(doc);
        let p = match store.open_document(&id) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("open {id}: {e}"));
                continue;
            }
        };
        let last = states.last().cloned().flatten();
        let expected = Contents::of(last.as_ref());
        let peers: Vec<Vec<u8>> = expected
            .sync_states
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        let mut reads = vec![
            ("changes", exact(p.get_change_entries(), &expected.changes)),
            (
                "get_changes",
                exact(p.get_changes(), &expected.change_values),
            ),
            ("document", exact(p.get_document(), &expected.document)),
            ("peer ids", exact(p.get_peer_ids(), &peers)),
        ];
        for (peer, state) in &expected.sync_states {
            reads.push(("sync state", exact(p.get_sync_state(peer), state)));
        }
        let mut wrong = Vec::new();
        let mut failed = false;
        for (what, read) in reads {
            match read {
                Ok(true) => {}
                Ok(false) => wrong.push(format!("{id} {what} returned wrong data")),
                Err(e) => {
                    failed = true;
                    errors.push(format!("{id} {what}: {e}"));
                }
            }
        }
        if wrong.is_empty() && !failed {
            if p.sizes() == expected.sizes {
                found_states[doc] = Some(last);
            } else {
                wrong.push(format!(
                    "{id} sizes {:?}, expected {:?}",
                    p.sizes(),
                    expected.sizes
                ));
            }
        }
        if !wrong.is_empty() {
            // Wrong data is excused only if it is an earlier state of this document.
            let whole = Contents::read(&p).ok();
            let k = whole.and_then(|c| states.iter().position(|s| Contents::of(s.as_ref()) == c));
            match k {
                Some(k) if !failed => {
                    earlier.push(format!(
                        "{id} holds its state after {k} of its {} batches",
                        states.len() - 1
                    ));
                    found_states[doc] = Some(states[k].clone());
                }
                _ => lies.extend(wrong),
            }
        }
    }
    match list(&store) {
        Err(e) => errors.push(e),
        Ok(listed) => {
            let mut possible: Vec<_> = (0..states.len())
                .filter(|&d| match &found_states[d] {
                    Some(state) => state.is_some(),
                    None => states[d].last().is_some_and(Option::is_some),
                })
                .map(document_id)
                .collect();
            possible.sort();
            // A document that could not be read may or may not be listed.
            let unread: Vec<_> = (0..states.len())
                .filter(|&d| found_states[d].is_none())
                .map(document_id)
                .collect();
            // A log cut back to before its first batch may still name its document:
            // an existing, empty document, where the prefix says "absent".
            let emptied: Vec<_> = (0..states.len())
                .filter(|&d| matches!(found_states[d], Some(None)) && states[d].len() > 1)
                .map(document_id)
                .filter(|id| listed.contains(id))
                .collect();
            if !emptied.is_empty() {
                earlier.push(format!("{emptied:?} listed with no data left"));
            }
            let strip = |ids: &[persister_core::DocumentId]| -> Vec<persister_core::DocumentId> {
                ids.iter()
                    .filter(|id| !unread.contains(id) && !emptied.contains(id))
                    .cloned()
                    .collect()
            };
            if strip(&listed) != strip(&possible)
                || listed
                    .iter()
                    .any(|id| !(0..DOCUMENTS.len()).any(|d| document_id(d) == *id))
            {
                lies.push(format!(
                    "list_documents gave {listed:?}, expected {possible:?}"
                ));
            }
        }
    }
    if !lies.is_empty() {
        Verdict::Lie(lies.join("; "))
    } else if !earlier.is_empty() {
        let detail = earlier.join("; ");
        if tail {
            Verdict::TailDropped(detail)
        } else {
            Verdict::Rollback(detail)
        }
    } else if !errors.is_empty() {
        Verdict::Refused(errors.join("; "))
    } else {
        Verdict::Exact
    }
}
