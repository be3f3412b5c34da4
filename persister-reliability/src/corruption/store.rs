//! The store the sweep damages, and what it holds.

use std::fs;
use std::path::{Path, PathBuf};

use persister_core::{Batch, DocumentState, Error, Persister, Store, Write};

use crate::ops::{DOCUMENTS, actor, document_id, peer};
use crate::{Backend, Location, Rng};

/// The batches the store is built from, in order: `(document, batch)`. Each is
/// flushed before the next; document 3 is then removed.
pub fn content_batches() -> Vec<(usize, Batch)> {
    let mut rng = Rng::new(0x5eed);
    let mut value = |len: usize| rng.bytes(len);
    let mut batches = Vec::new();
    for round in 0..3u64 {
        for doc in 0..4 {
            let mut batch = Batch::new();
            for a in 0..3 {
                // One value over a 4 KiB page, in one document only, so that the
                // other documents' logs stay small enough to damage at every offset.
                let len = if a == 2 && round == 1 && doc == 0 {
                    5000
                } else {
                    10 + a * 7
                };
                batch.push(Write::InsertChange {
                    actor: actor(a),
                    seq: round + 1,
                    value: value(len),
                });
            }
            batch.push(Write::SetSyncState {
                peer: peer(round as usize + doc),
                state: value(20),
            });
            if round == 2 {
                batch.push(Write::SetDocument(value(300)));
                batch.push(Write::RemoveChange {
                    actor: actor(0),
                    seq: 1,
                });
            }
            batches.push((doc, batch));
        }
    }
    batches
}

/// The document removed after the batches.
pub const REMOVED_DOCUMENT: usize = 3;

/// Builds the sweep's store in `dir`: every batch of [`content_batches`], each
/// flushed, then the removal of [`REMOVED_DOCUMENT`].
pub fn build(backend: Backend, dir: &Path) -> Result<(), Error> {
    let store = Location::new(backend, dir).open()?;
    for (doc, batch) in content_batches() {
        let mut p = store.open_document(&document_id(doc))?;
        p.apply(batch)?;
        p.flush()?;
    }
    store.remove_document(&document_id(REMOVED_DOCUMENT))
}

/// For each document, the states it held after each of its batches, first `None`
/// (absent). The last one is what the store holds.
pub fn expected_states() -> Vec<Vec<Option<DocumentState>>> {
    let mut states: Vec<Vec<Option<DocumentState>>> = vec![vec![None]; DOCUMENTS.len()];
    for (doc, batch) in content_batches() {
        let mut state = states[doc].last().cloned().flatten().unwrap_or_default();
        state.apply(batch);
        states[doc].push(Some(state));
    }
    states[REMOVED_DOCUMENT].push(None);
    states
}

/// Every regular file under `dir`, sorted, with its length.
pub fn store_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                files.push((rel, entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Copies the directory tree `from` to `to` (which must not exist).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
