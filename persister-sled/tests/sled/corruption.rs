//! Flipped bytes in sled's files: for many seeds, damage a copy of a flushed store and
//! reopen it. No panic may escape the API (sled's own panics on damaged files are
//! caught by the crate and returned as `Corrupt`), and every read fails or returns
//! exactly what was stored, never a part of it.
//!
//! Half the seeds also reset the mark file, as if no flush had been recorded, so that
//! the per-document manifests alone stand between sled's partial recovery and the
//! reader: then a read may return an older version of a document (the mark is what
//! rules that out), but still only a whole one, never a mix or a part.
//!
//! `PERSISTER_CORRUPTION_SEEDS` sets the number of seeds (default 300).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use persister_core::{Batch, DocumentId, DocumentState, Persister, Result, Store, Write};
use persister_sled::SledStore;

use persister_testkit::{Contents, Rng};

use crate::raw::{copy_dir, sample_document};
use persister_testkit::env_count;

/// What the damaged stores did.
#[derive(Debug, Default)]
struct Outcomes {
    open_failed: u64,
    some_read_failed: u64,
    all_reads_exact: u64,
    older_version: u64,
}

/// One document's states: after each of its batches, the last being what it holds.
pub(crate) struct Versions {
    /// The document.
    pub(crate) id: DocumentId,
    /// Its states, oldest first.
    pub(crate) states: Vec<DocumentState>,
}

/// Writes `docs` documents in several flushed batches each, so the log also holds
/// older versions of every page, and returns every version of each.
pub(crate) fn write_store(path: &Path, docs: u8) -> Result<Vec<Versions>> {
    let store = SledStore::open(path)?;
    let mut all = Vec::new();
    for tag in 0..docs {
        let id = DocumentId::from(format!("doc {tag}"));
        let mut p = store.open_document(&id)?;
        let mut state = sample_document(tag);
        p.apply(state.to_batch())?;
        p.flush()?;
        let mut states = vec![DocumentState::new(), state.clone()];
        for round in 0..4u8 {
            let batch: Batch = vec![
                Write::InsertChange {
                    actor: vec![tag, 0].into(),
                    seq: u64::from(round) + 10,
                    value: vec![round; 100 + usize::from(tag) * 30],
                },
                Write::RemoveChange {
                    actor: vec![tag].into(),
                    seq: u64::from(round) + 1,
                },
                Write::SetDocument(vec![round ^ tag; 2000 + usize::from(round)]),
                Write::SetSyncState {
                    peer: b"peer".to_vec(),
                    state: vec![round; 50],
                },
            ]
            .into();
            state.apply(batch.clone());
            p.apply(batch)?;
            p.flush()?;
            states.push(state.clone());
        }
        all.push(Versions { id, states });
    }
    Ok(all)
}

/// Opens the damaged store and reads everything. With `strict`, every successful read
/// must match the last version; otherwise all successful reads of a document must
/// match one and the same version of it.
fn check(path: &Path, docs: &[Versions], strict: bool, out: &mut Outcomes) {
    let store = match SledStore::open(path) {
        Ok(store) => store,
        Err(_) => {
            out.open_failed += 1;
            return;
        }
    };
    let (mut failed, mut older) = (false, false);
    match store.list_documents() {
        // Documents were written one after another: a prefix of them may survive.
        Ok(ids) if !strict => assert!(
            docs.iter().map(|d| &d.id).take(ids.len()).eq(ids.iter()),
            "list_documents returned {ids:?}"
        ),
        Ok(ids) => assert!(
            docs.iter().map(|d| &d.id).eq(ids.iter()),
            "list_documents returned {ids:?}"
        ),
        Err(_) => failed = true,
    }
    for doc in docs {
        let p = match store.open_document(&doc.id) {
            Ok(p) => p,
            Err(_) => {
                failed = true;
                continue;
            }
        };
        let first = if strict { doc.states.len() - 1 } else { 0 };
        let mut candidates: Vec<Contents> = doc.states[first..].iter().map(Contents::of).collect();
        let id = &doc.id;
        let mut narrow = |what: &str, keep: &dyn Fn(&Contents) -> bool| {
            candidates.retain(|c| keep(c));
            assert!(
                !candidates.is_empty(),
                "{id}: {what} match no version of the document"
            );
        };
        match p.get_change_entries() {
            Ok(changes) => narrow("changes", &|c| c.changes == changes),
            Err(_) => failed = true,
        }
        match p.get_document() {
            Ok(document) => narrow("document", &|c| c.document == document),
            Err(_) => failed = true,
        }
        match p.get_peer_ids() {
            Ok(peers) => narrow("peer ids", &|c| {
                c.sync_states.iter().map(|(peer, _)| peer).eq(peers.iter())
            }),
            Err(_) => failed = true,
        }
        for peer in [&b"peer"[..], b"", b"peer\0two", b"absent"] {
            match p.get_sync_state(peer) {
                Ok(state) => narrow("a sync state", &|c| {
                    let want = c.sync_states.iter().find(|(p, _)| p == peer);
                    want.map(|(_, s)| s) == state.as_ref()
                }),
                Err(_) => failed = true,
            }
        }
        let last = Contents::of(&doc.states[doc.states.len() - 1]);
        if !candidates.contains(&last) {
            older = true;
        }
        if !failed {
            let sizes = doc.states.iter().map(DocumentState::sizes);
            assert!(sizes.clone().any(|s| s == p.sizes()), "{id}: sizes");
        }
    }
    match (failed, older) {
        (true, _) => out.some_read_failed += 1,
        (false, true) => out.older_version += 1,
        (false, false) => out.all_reads_exact += 1,
    }
}

/// Flips 1 to 8 bytes of sled's files, mostly in the `db` file that holds the log: half
/// anywhere, half where bytes are not zero (sled's files are mostly empty segments).
pub(crate) fn damage(dir: &Path, rng: &mut Rng) {
    let mut files: Vec<_> = ["db", "conf"].iter().map(|f| dir.join(f)).collect();
    if let Ok(blobs) = std::fs::read_dir(dir.join("blobs")) {
        files.extend(blobs.map(|b| b.unwrap().path()));
    }
    for _ in 0..=rng.below(8) {
        let file = if rng.below(10) < 8 {
            &files[0]
        } else {
            &files[rng.index(files.len())]
        };
        let mut bytes = std::fs::read(file).unwrap();
        let used: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != 0).collect();
        if used.is_empty() {
            continue;
        }
        let offset = if rng.below(2) == 0 {
            rng.index(bytes.len())
        } else {
            used[rng.index(used.len())]
        };
        bytes[offset] ^= 1 + rng.below(255) as u8;
        std::fs::write(file, bytes).unwrap();
    }
}

/// A mark file saying that no batch was flushed (the format is in the crate docs).
fn reset_mark(dir: &Path) {
    let mut slot = b"PSLDMARK".to_vec();
    slot.extend_from_slice(&1u32.to_be_bytes());
    slot.extend_from_slice(&0u64.to_be_bytes());
    slot.extend_from_slice(&crc32c::crc32c(&slot).to_be_bytes());
    std::fs::write(dir.join("persister-sled.mark"), slot.repeat(2)).unwrap();
}

#[test]
fn flipped_bytes_never_yield_partial_data() -> Result<()> {
    let seeds = env_count("PERSISTER_CORRUPTION_SEEDS", 300);
    let root = tempfile::tempdir().expect("a temporary directory");
    let pristine = root.path().join("pristine");
    let docs = write_store(&pristine, 6)?;

    // Controls: an undamaged copy reads back exactly, with or without its mark.
    for strict in [true, false] {
        let control = root.path().join(format!("control-{strict}"));
        copy_dir(&pristine, &control);
        if !strict {
            reset_mark(&control);
        }
        let mut out = Outcomes::default();
        check(&control, &docs, strict, &mut out);
        assert_eq!(out.all_reads_exact, 1, "an undamaged copy: {out:?}");
    }

    let (mut with_mark, mut without_mark) = (Outcomes::default(), Outcomes::default());
    let mut escaped = Vec::new();
    for seed in 0..seeds {
        let dir = root.path().join(format!("seed-{seed}"));
        copy_dir(&pristine, &dir);
        let strict = seed.is_multiple_of(2);
        if !strict {
            reset_mark(&dir);
        }
        damage(&dir, &mut Rng::new(seed));
        let out = if strict {
            &mut with_mark
        } else {
            &mut without_mark
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&dir, &docs, strict, out))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            escaped.push(format!("seed {seed}: {message}"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("{seeds} damaged stores; with the mark: {with_mark:?}; without: {without_mark:?}");
    assert!(escaped.is_empty(), "wrong data or a panic: {escaped:#?}");
    assert_eq!(with_mark.older_version, 0);
    assert!(
        with_mark.open_failed + with_mark.some_read_failed > 0
            && without_mark.open_failed + without_mark.some_read_failed > 0,
        "no damage was detected"
    );
    Ok(())
}
