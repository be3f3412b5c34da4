//! Runs [`Op`]s on a store and on the model side by side, comparing after every step.

use std::collections::BTreeMap;

use persister_core::{DynPersister, DynStore, Error, Persister, Store};

use crate::Location;
use crate::model::{Contents, StoreModel, list};
use crate::ops::{DOCUMENTS, Op, apply_single, document_id, with_bad_write};

/// A store under test, its open handles, and its model.
pub struct ModelRun {
    location: Location,
    store: Option<DynStore>,
    handles: BTreeMap<usize, DynPersister>,
    model: StoreModel,
}

impl ModelRun {
    /// Opens the store at `location`, which must be empty.
    pub fn new(location: Location) -> Result<Self, String> {
        let store = location
            .open()
            .map_err(|e| format!("opening the store: {e}"))?;
        Ok(Self {
            location,
            store: Some(store),
            handles: BTreeMap::new(),
            model: StoreModel::new(),
        })
    }

    /// The model.
    pub fn model(&self) -> &StoreModel {
        &self.model
    }

    fn store(&self) -> Result<&DynStore, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "the store is not open".to_string())
    }

    fn handle(&mut self, doc: usize) -> Result<&mut DynPersister, String> {
        if !self.handles.contains_key(&doc) {
            let id = document_id(doc);
            let p = self
                .store()?
                .open_document(&id)
                .map_err(|e| format!("opening document {id}: {e}"))?;
            self.handles.insert(doc, p);
        }
        self.handles
            .get_mut(&doc)
            .ok_or_else(|| "a handle vanished".to_string())
    }

    /// Applies `op` to the store and the model, then compares them.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.apply(op).map_err(|e| format!("{op:?}: {e}"))?;
        self.check().map_err(|e| format!("after {op:?}: {e}"))
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Apply { doc, batch } => {
                self.handle(*doc)?
                    .apply(batch.clone())
                    .map_err(|e| e.to_string())?;
                self.applied(*doc, op);
            }
            Op::Single { doc, write } => {
                apply_single(self.handle(*doc)?, write.clone()).map_err(|e| e.to_string())?;
                self.applied(*doc, op);
            }
            Op::Compact { doc, .. } => {
                if let Some((_, batch)) = op.batch() {
                    self.handle(*doc)?.apply(batch).map_err(|e| e.to_string())?;
                }
                self.applied(*doc, op);
            }
            Op::Refused {
                doc,
                batch,
                bad,
                at,
            } => {
                let p = self.handle(*doc)?;
                match p.apply(with_bad_write(batch, *bad, *at)) {
                    Ok(()) => return Err("a batch over a limit was accepted".into()),
                    Err(Error::TooLarge { .. } | Error::InvalidInput { .. }) => {}
                    Err(e) => return Err(format!("refused with the wrong error: {e}")),
                }
            }
            Op::Flush { doc } => {
                self.handle(*doc)?.flush().map_err(|e| e.to_string())?;
                self.model.doc_mut(*doc).durable();
            }
            Op::FlushAll => {
                for (doc, p) in &mut self.handles {
                    p.flush()
                        .map_err(|e| format!("flushing document {doc}: {e}"))?;
                    self.model.doc_mut(*doc).durable();
                }
            }
            Op::Reopen => self.reopen()?,
            Op::RemoveDocument { doc } => {
                self.handles.remove(doc);
                let id = document_id(*doc);
                self.store()?
                    .remove_document(&id)
                    .map_err(|e| format!("removing document {id}: {e}"))?;
                self.model.doc_mut(*doc).remove();
            }
        }
        Ok(())
    }

    fn applied(&mut self, doc: usize, op: &Op) {
        if let Some((_, batch)) = op.batch() {
            self.model.doc_mut(doc).apply(batch);
        }
    }

    /// Drops every handle and the store, opens it again, and adopts for each document
    /// the state it is found in, which must be one the model allows.
    pub fn reopen(&mut self) -> Result<(), String> {
        self.handles.clear();
        self.store = None;
        let store = self
            .location
            .open()
            .map_err(|e| format!("reopening the store: {e}"))?;
        self.model.adopt_store(&store)?;
        self.store = Some(store);
        Ok(())
    }

    /// Compares every document, its sizes, and the list of documents with the model.
    pub fn check(&mut self) -> Result<(), String> {
        for doc in 0..DOCUMENTS.len() {
            let expected = Contents::of(self.model.doc(doc).current());
            let found = Contents::read(self.handle(doc)?)
                .map_err(|e| format!("reading document {doc}: {e}"))?;
            if found != expected {
                return Err(format!(
                    "document {} differs: {}",
                    document_id(doc),
                    found.diff(&expected)
                ));
            }
        }
        let listed = list(self.store()?)?;
        let existing = self.model.existing();
        if listed != existing {
            return Err(format!(
                "list_documents gave {listed:?}, expected {existing:?}"
            ));
        }
        Ok(())
    }
}

/// Applies `op` to `p` as the workload child does, for ops that touch one handle.
pub fn apply_to_handle(p: &mut DynPersister, op: &Op) -> Result<(), Error> {
    match op {
        Op::Apply { batch, .. } => p.apply(batch.clone()),
        Op::Single { write, .. } => apply_single(p, write.clone()),
        Op::Compact { .. } => match op.batch() {
            Some((_, batch)) => p.apply(batch),
            None => Ok(()),
        },
        Op::Refused { batch, bad, at, .. } => match p.apply(with_bad_write(batch, *bad, *at)) {
            Ok(()) => Err(Error::InvalidInput {
                what: "batch",
                reason: "a batch over a limit was accepted".into(),
            }),
            Err(Error::TooLarge { .. } | Error::InvalidInput { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Op::Flush { .. } => p.flush().map(|_| ()),
        Op::FlushAll | Op::Reopen | Op::RemoveDocument { .. } => Ok(()),
    }
}
