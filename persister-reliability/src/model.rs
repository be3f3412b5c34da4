//! The model every backend is compared with: [`DocumentState`]s, and for each
//! document the states it may be found in after a reopen or a crash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use persister_core::{
    Batch, ChangeEntry, DocumentId, DocumentState, Error, Persister, Store, StoredSizes,
};

use crate::ops::{DOCUMENTS, document_id};

/// Everything a document holds, as read through the trait, with its sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// `get_change_entries`.
    pub changes: Vec<ChangeEntry>,
    /// `get_changes`.
    pub change_values: Vec<Vec<u8>>,
    /// `get_document`.
    pub document: Option<Vec<u8>>,
    /// `get_peer_ids`, each with its `get_sync_state`.
    pub sync_states: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `sizes`.
    pub sizes: StoredSizes,
}

impl Contents {
    /// What a document in `state` must read as (an absent document reads as empty).
    pub fn of(state: Option<&DocumentState>) -> Self {
        let Some(state) = state else {
            return Self::default();
        };
        Self {
            changes: state
                .changes()
                .map(|(a, s, v)| (a.clone(), s, v.to_vec()))
                .collect(),
            change_values: state.changes().map(|(_, _, v)| v.to_vec()).collect(),
            document: state.document().map(<[u8]>::to_vec),
            sync_states: state
                .sync_states()
                .map(|(p, s)| (p.to_vec(), Some(s.to_vec())))
                .collect(),
            sizes: state.sizes(),
        }
    }

    /// Reads everything `p` holds.
    pub fn read<P: Persister<Error = Error> + ?Sized>(p: &P) -> Result<Self, Error> {
        let sizes = p.sizes();
        let mut sync_states = Vec::new();
        for peer in p.get_peer_ids()? {
            let state = p.get_sync_state(&peer)?;
            sync_states.push((peer, state));
        }
        Ok(Self {
            changes: p.get_change_entries()?,
            change_values: p.get_changes()?,
            document: p.get_document()?,
            sync_states,
            sizes,
        })
    }

    /// A short description of how `self` (found) differs from `expected`.
    pub fn diff(&self, expected: &Self) -> String {
        let mut out = String::new();
        if self.changes != expected.changes {
            let keys = |c: &[ChangeEntry]| -> Vec<String> {
                c.iter()
                    .map(|(a, s, v)| format!("{a}/{s}:{}b", v.len()))
                    .collect()
            };
            let _ = write!(
                out,
                "changes {:?} expected {:?}; ",
                keys(&self.changes),
                keys(&expected.changes)
            );
        }
        if self.change_values != expected.change_values {
            out.push_str("get_changes differs; ");
        }
        if self.document != expected.document {
            let len = |d: &Option<Vec<u8>>| d.as_ref().map(Vec::len);
            let _ = write!(
                out,
                "document {:?} bytes expected {:?}; ",
                len(&self.document),
                len(&expected.document)
            );
        }
        if self.sync_states != expected.sync_states {
            let _ = write!(
                out,
                "sync states {:?} expected {:?}; ",
                self.sync_states, expected.sync_states
            );
        }
        if self.sizes != expected.sizes {
            let _ = write!(out, "sizes {:?} expected {:?}", self.sizes, expected.sizes);
        }
        out
    }
}

/// One document of the model: the states it may be found in after a reopen or a
/// crash. The first is the state at its last flush (or durable removal); the last is
/// its current state; `None` means it does not exist.
#[derive(Clone, Debug)]
pub struct DocModel {
    candidates: Vec<Option<DocumentState>>,
}

impl Default for DocModel {
    fn default() -> Self {
        Self {
            candidates: vec![None],
        }
    }
}

impl DocModel {
    /// The current state.
    pub fn current(&self) -> Option<&DocumentState> {
        self.candidates.last().and_then(Option::as_ref)
    }

    /// The state at its last flush or durable removal.
    pub fn durable_state(&self) -> Option<&DocumentState> {
        self.candidates.first().and_then(Option::as_ref)
    }

    /// How many states it may be found in.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// A batch applied successfully. An empty batch changes nothing (it does not even
    /// create the document).
    pub fn apply(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.current().cloned().unwrap_or_default();
        state.apply(batch);
        self.candidates.push(Some(state));
    }

    /// A flush returned `Ok`: the current state is the only one possible.
    pub fn durable(&mut self) {
        let len = self.candidates.len();
        self.candidates.drain(..len - 1);
    }

    /// The document was removed, durably.
    pub fn remove(&mut self) {
        self.candidates = vec![None];
    }

    /// The document may have been removed (the removal had begun when the process
    /// died).
    pub fn remove_maybe(&mut self) {
        self.candidates.push(None);
    }

    /// Finds the candidate that matches what was read after a reopen or crash, and
    /// makes it the only state possible. `listed` says whether `list_documents`
    /// listed the document.
    pub fn adopt(&mut self, found: &Contents, listed: bool) -> Result<(), String> {
        let position = self
            .candidates
            .iter()
            .rposition(|c| c.is_some() == listed && Contents::of(c.as_ref()) == *found);
        match position {
            Some(i) => {
                let state = self.candidates.swap_remove(i);
                self.candidates = vec![state];
                Ok(())
            }
            None => {
                let latest = self.candidates.last().cloned().flatten();
                let first = self.candidates.first().cloned().flatten();
                Err(format!(
                    "found a state that is none of the {} allowed (listed: {listed}); \
                     against the durable one: {}; against the latest: {}",
                    self.candidates.len(),
                    found.diff(&Contents::of(first.as_ref())),
                    found.diff(&Contents::of(latest.as_ref())),
                ))
            }
        }
    }
}

/// The model of a whole store: one [`DocModel`] per document of [`DOCUMENTS`].
#[derive(Clone, Debug)]
pub struct StoreModel {
    docs: Vec<DocModel>,
}

impl Default for StoreModel {
    fn default() -> Self {
        Self {
            docs: vec![DocModel::default(); DOCUMENTS.len()],
        }
    }
}

impl StoreModel {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Document `doc`'s model.
    pub fn doc(&self, doc: usize) -> &DocModel {
        &self.docs[doc]
    }

    /// Document `doc`'s model, to change.
    pub fn doc_mut(&mut self, doc: usize) -> &mut DocModel {
        &mut self.docs[doc]
    }

    /// Every document is durable in its current state.
    pub fn durable(&mut self) {
        self.docs.iter_mut().for_each(DocModel::durable);
    }

    /// The ids of the documents that exist now.
    pub fn existing(&self) -> Vec<DocumentId> {
        let mut ids: Vec<DocumentId> = (0..self.docs.len())
            .filter(|&d| self.docs[d].current().is_some())
            .map(document_id)
            .collect();
        ids.sort();
        ids
    }

    /// Reads every document of a freshly (re)opened `store` and adopts, for each, the
    /// candidate state it matches; fails if one matches none.
    pub fn adopt_store<S: Store + ?Sized>(&mut self, store: &S) -> Result<(), String> {
        let listed = list(store)?;
        for (doc, model) in self.docs.iter_mut().enumerate() {
            let id = document_id(doc);
            let p = store
                .open_document(&id)
                .map_err(|e| format!("opening document {id}: {e}"))?;
            let found = Contents::read(&p).map_err(|e| format!("reading document {id}: {e}"))?;
            model
                .adopt(&found, listed.contains(&id))
                .map_err(|e| format!("document {id}: {e}"))?;
        }
        let existing = self.existing();
        if listed != existing {
            return Err(format!(
                "list_documents gave {listed:?}, expected {existing:?}"
            ));
        }
        Ok(())
    }
}

/// `list_documents`, sorted check included.
pub fn list<S: Store + ?Sized>(store: &S) -> Result<Vec<DocumentId>, String> {
    let listed = store
        .list_documents()
        .map_err(|e| format!("list_documents: {e}"))?;
    if !listed.is_sorted() {
        return Err(format!("list_documents is not sorted: {listed:?}"));
    }
    Ok(listed)
}

/// The exact contents of every existing document of a store.
pub type Snapshot = BTreeMap<DocumentId, DocumentState>;
