//! Building a new store (for `copy` and `import`): whole and checked, or not at all.

use std::path::Path;

use persister_core::{DocumentId, StoredSizes};

use super::ls::add;
use crate::place::Staging;
use crate::{Access, Backend, CliError, DocumentDump, OpenStore};

/// A store being built at a temporary path beside its destination.
pub(crate) struct NewStore {
    staging: Staging,
    store: OpenStore,
    backend: Backend,
    /// Each document written, with the digest of what was written.
    written: Vec<(DocumentId, u32)>,
    total: StoredSizes,
}

impl NewStore {
    /// Starts a store of `backend` for `destination`, which must not exist (or be an
    /// empty directory, for a directory backend).
    pub(crate) fn create(destination: &Path, backend: Backend) -> Result<NewStore, CliError> {
        let staging = Staging::new(destination, backend.is_directory())?;
        let store = staging.make(|path| OpenStore::create(path, backend))?;
        Ok(NewStore {
            staging,
            store,
            backend,
            written: Vec::new(),
            total: StoredSizes::default(),
        })
    }

    /// Writes one document and makes it durable.
    pub(crate) fn add(&mut self, dump: DocumentDump) -> Result<(), CliError> {
        let id = dump.id.clone();
        let digest = dump.digest();
        let mut persister = self.store.open_document(&id)?.persister;
        let in_doc = |e| CliError::from(e).context(format!("writing document {id}"));
        let sizes = dump.write_into(&mut *persister).map_err(in_doc)?;
        persister.flush().map_err(in_doc)?;
        add(&mut self.total, &sizes);
        self.written.push((id, digest));
        Ok(())
    }

    /// Closes the store, reopens it and checks every document against what was
    /// written, then moves it into place. Returns the sizes of all documents.
    pub(crate) fn finish(self) -> Result<StoredSizes, CliError> {
        let NewStore {
            staging,
            store,
            backend,
            written,
            total,
        } = self;
        drop(store);
        let reopened =
            staging.make(|path| OpenStore::existing(path, Some(backend), Access::New))?;
        let ids = reopened.list()?;
        let expected: Vec<&DocumentId> = written.iter().map(|(id, _)| id).collect();
        if ids.iter().collect::<Vec<_>>() != expected {
            return Err(mismatch(
                staging.destination(),
                format!(
                    "it lists {} documents after {} were written",
                    ids.len(),
                    written.len()
                ),
            ));
        }
        for (id, digest) in &written {
            let (dump, _) = super::read_document(&reopened, id)?;
            if dump.digest() != *digest {
                return Err(mismatch(
                    staging.destination(),
                    format!("document {id} reads back different from what was written"),
                ));
            }
        }
        drop(reopened);
        staging.commit()?;
        Ok(total)
    }

    /// How many documents were written.
    pub(crate) fn documents(&self) -> usize {
        self.written.len()
    }
}

fn mismatch(destination: &Path, what: String) -> CliError {
    CliError::new(
        format!(
            "the new store for {} failed its check: {what}",
            destination.display()
        ),
        "nothing was written to the destination; this is a bug in persister or its backend: please report it",
    )
}
