//! Building a new store (for `copy` and `import`): whole and checked, or not at all.

use std::fs;
use std::path::Path;

use persister_core::{DocumentId, StoredSizes};

use super::ls::add;
use crate::place::Staging;
use crate::{Access, Backend, CliError, DocumentDump, OpenStore};

/// A store being built at a temporary path beside its destination.
pub(crate) struct NewStore {
    // Dropped before `staging`, which removes its temporary path: the store is closed
    // first, so that nothing it writes as it closes lands in a removed path.
    store: Option<OpenStore>,
    staging: Staging,
    backend: Backend,
    /// The document being written, until it is in `written`.
    current: Option<DocumentId>,
    /// Each document written, with the digest of what was written.
    written: Vec<(DocumentId, u32)>,
    total: StoredSizes,
}

impl NewStore {
    /// Starts a store of `backend` for `destination`, which must not exist (or be an
    /// empty directory, for a directory backend).
    pub(crate) fn create(destination: &Path, backend: Backend) -> Result<NewStore, CliError> {
        if let Some(refused) = crate::backend::refused_destination(destination, backend) {
            return Err(refused);
        }
        let staging = Staging::new(destination, backend.is_directory())?;
        let log = crate::place::redb_log_of(staging.destination());
        if backend.name() == "redb" && fs::symlink_metadata(&log).is_ok() {
            return Err(CliError::new(
                format!(
                    "{} exists, where a redb store at {} keeps its commit log",
                    log.display(),
                    destination.display()
                ),
                "remove it if it is left from a store that is gone, or choose another destination",
            ));
        }
        let store = staging.make(|path| OpenStore::create(path, backend))?;
        Ok(NewStore {
            store: Some(store),
            staging,
            backend,
            current: None,
            written: Vec::new(),
            total: StoredSizes::default(),
        })
    }

    /// Writes one document and makes it durable.
    pub(crate) fn add(&mut self, dump: DocumentDump) -> Result<(), CliError> {
        let id = dump.id.clone();
        let digest = dump.digest();
        let store = self.store.as_ref().ok_or_else(closed)?;
        let mut persister = store.open_document(&id)?.persister;
        let in_doc = |e| CliError::from(e).context(format!("writing document {id}"));
        // Only a document this command makes is removed if it fails: one that holds
        // data already is refused by `write_into` and left alone.
        if persister.sizes().is_empty() && persister.get_document().map_err(in_doc)?.is_none() {
            self.current = Some(id.clone());
        }
        let sizes = dump.write_into(&mut *persister).map_err(in_doc)?;
        persister.flush().map_err(in_doc)?;
        add(&mut self.total, &sizes);
        self.written.push((id, digest));
        self.current = None;
        Ok(())
    }

    /// Closes the store, reopens it and checks every document against what was
    /// written, then moves it into place. Returns the sizes of all documents.
    pub(crate) fn finish(mut self) -> Result<StoredSizes, CliError> {
        self.close_store()?;
        let backend = self.backend;
        let reopened = self
            .staging
            .make(|path| OpenStore::existing(path, Some(backend), Access::New))?;
        // Kept in `self` so that a failed check still undoes what was written in place.
        let reopened = &*self.store.insert(reopened);
        let ids = reopened.list()?;
        let expected: Vec<&DocumentId> = self.written.iter().map(|(id, _)| id).collect();
        if ids.iter().collect::<Vec<_>>() != expected {
            return Err(mismatch(
                self.staging.destination(),
                format!(
                    "it lists {} documents after {} were written",
                    ids.len(),
                    self.written.len()
                ),
            ));
        }
        for (id, digest) in &self.written {
            let (dump, _) = super::read_document(reopened, id)?;
            if dump.digest() != *digest {
                return Err(mismatch(
                    self.staging.destination(),
                    format!("document {id} reads back different from what was written"),
                ));
            }
        }
        self.close_store()?;
        let total = self.total;
        // Complete: nothing to undo from here on.
        self.written.clear();
        self.current = None;
        let staging = std::mem::replace(&mut self.staging, Staging::done());
        staging.commit()?;
        Ok(total)
    }

    /// Closes the store, checked: a failed checkpoint or flush is an error, not a store
    /// that looks complete.
    fn close_store(&mut self) -> Result<(), CliError> {
        match self.store.take() {
            Some(store) => store.close(),
            None => Ok(()),
        }
    }

    /// How many documents were written.
    pub(crate) fn documents(&self) -> usize {
        self.written.len()
    }
}

impl Drop for NewStore {
    /// A store written in place (a database whose backend cannot build it out of
    /// sight) that was not finished: removes what was written, so that a failed or
    /// half-done command does not leave a store that looks complete. (A temporary
    /// store, at a path or in a schema, is removed by its [`Staging`].)
    fn drop(&mut self) {
        if !self.staging.is_in_place() {
            return;
        }
        let Some(store) = &self.store else {
            return;
        };
        for id in self.written.iter().map(|(id, _)| id).chain(&self.current) {
            let _ = store.remove_document(id);
        }
    }
}

fn closed() -> CliError {
    CliError::new(
        "the new store was closed before every document was written",
        "this is a bug in persister: please report it",
    )
}

fn mismatch(destination: &Path, what: String) -> CliError {
    CliError::new(
        format!(
            "the new store for {} failed its check: {what}",
            persister_backends::shown(destination)
        ),
        "nothing was written to the destination; this is a bug in persister or its backend: please report it",
    )
}
