//! Row 9, a large store: many documents of a few changes each. A server that starts
//! opens the store, lists its documents and opens the one a client asks for; none of
//! that should cost more as the store grows (beyond the list itself). Each measurement
//! runs in a child process, so its peak resident memory is its own.

use std::path::Path;
use std::process::Command;

use persister_core::{ActorId, DocumentId, DynPersister, Persister, Store};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::clock::Stopwatch;
use crate::columns::{Column, Location};
use crate::results::Cell;

/// The hidden subcommand the benchmark re-executes itself with.
pub const SUBCOMMAND: &str = "many-open";

/// Changes per document.
const CHANGES: usize = 10;
/// Bytes per change.
const CHANGE_LEN: usize = 100;
/// Documents opened and read after the first, for the median.
pub const READS: usize = 20;
/// Documents written, then flushed together, while the store is made.
const CHUNK: usize = 1_000;
/// Threads flushing a chunk's documents at once while the store is made: concurrent
/// flushes share syncs (group commit on redb, the journal on fs), which makes a store
/// of 100,000 documents in minutes rather than the better part of an hour.
const MAKE_THREADS: usize = 16;

/// The store sizes of row 9, smallest first.
pub fn sizes(quick: bool) -> Vec<usize> {
    if quick {
        vec![20, 200]
    } else {
        vec![10_000, 100_000]
    }
}

/// What the child measured in a store of `documents` documents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManySample {
    /// Documents in the store.
    pub documents: usize,
    /// Opening the store, ms (wall).
    pub open_ms: f64,
    /// Listing every document, ms (wall).
    pub list_ms: f64,
    /// Opening the first document and reading its changes, ms (wall).
    pub first_doc_ms: f64,
    /// Opening one more document and reading its changes, ms (wall): the median over
    /// [`READS`] documents.
    pub doc_ms: f64,
    /// Peak resident memory after opening the store, less the process's before, KiB:
    /// what opening the store costs, before anything is listed.
    pub open_kib: u64,
    /// The heap the list of documents itself takes (the `Vec` and every id's bytes,
    /// each rounded up to the allocator's 16-byte granule, with its 8-byte header),
    /// KiB: what `list_kib` may add to `open_kib` for the list alone.
    pub list_own_kib: u64,
    /// Peak resident memory after listing, less the process's before, KiB.
    pub list_kib: u64,
    /// Peak resident memory after reading the document, less the process's before, KiB.
    pub doc_kib: u64,
}

/// Row 9 for one column: a sample per size.
#[derive(Clone, Debug, Serialize)]
pub struct Many {
    /// One per size, smallest first.
    pub samples: Vec<ManySample>,
    /// The largest store's time to open and read one document over the smallest's.
    pub doc_ratio: f64,
}

/// The id of document `d`.
fn id(d: usize) -> DocumentId {
    DocumentId::from(format!("doc-{d:06}").as_str())
}

/// Runs row 9 for `column`, with one new store per size under `dir`; `keep` keeps the
/// stores (`dir/<documents>`), to measure them again with the child's subcommand.
pub fn run(quick: bool, column: Column, dir: &Path, keep: bool) -> Cell<Many> {
    match column {
        Column::Memory => Cell::NotApplicable("lives in the process: nothing to open".into()),
        Column::Peer => Cell::NotApplicable("has no store of many documents to list".into()),
        _ => Cell::from_result(measure(quick, column, dir, keep)),
    }
}

fn measure(quick: bool, column: Column, dir: &Path, keep: bool) -> Result<Many> {
    let mut samples = Vec::new();
    for documents in sizes(quick) {
        let store_dir = dir.join(format!("{documents}"));
        std::fs::create_dir_all(&store_dir)?;
        make(column, &store_dir, documents)?;
        samples.push(spawn(column, &store_dir, documents)?);
        if !keep {
            std::fs::remove_dir_all(&store_dir)?;
        }
    }
    let ms = |s: Option<&ManySample>| s.map_or(0.0, |s| s.doc_ms);
    let doc_ratio = ms(samples.last()) / ms(samples.first());
    Ok(Many { samples, doc_ratio })
}

/// Makes a store of `documents` documents of [`CHANGES`] changes each, untimed.
fn make(column: Column, dir: &Path, documents: usize) -> Result<()> {
    let store = column.open_store(&Location::Dir(dir.to_owned()))?;
    let value = vec![0x3c; CHANGE_LEN];
    let mut first = 0;
    while first < documents {
        let end = (first + CHUNK).min(documents);
        let mut docs: Vec<DynPersister> = Vec::with_capacity(end - first);
        for d in first..end {
            let mut doc = store.open_document(&id(d))?;
            let actor = ActorId::new((d as u128).to_be_bytes());
            doc.insert_changes(
                (1..=CHANGES as u64)
                    .map(|seq| (actor.clone(), seq, value.clone()))
                    .collect(),
            )?;
            docs.push(doc);
        }
        let per_thread = docs.len().div_ceil(MAKE_THREADS);
        let flushed: Vec<Result<()>> = std::thread::scope(|scope| {
            let threads: Vec<_> = docs
                .chunks_mut(per_thread)
                .map(|chunk| {
                    scope.spawn(move || -> Result<()> {
                        for doc in chunk {
                            doc.flush()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err("a flush thread panicked".into()))
                })
                .collect()
        });
        for result in flushed {
            result?;
        }
        for doc in docs {
            doc.close()?;
        }
        first = end;
    }
    drop(store);
    Ok(())
}

fn spawn(column: Column, dir: &Path, documents: usize) -> Result<ManySample> {
    let output = Command::new(std::env::current_exe()?)
        .args([SUBCOMMAND, "--column", column.name(), "--dir"])
        .arg(dir)
        .args(["--documents", &documents.to_string()])
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "the child process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)
        .map_err(|e| format!("the child process printed {line:?}: {e}"))?)
}

/// The child's side: opens the store, lists it, opens and reads the middle document,
/// checks what it found and prints a [`ManySample`].
pub fn child(column: Column, dir: &Path, documents: usize) -> Result<()> {
    let baseline = crate::rows::load::vm_hwm_kib()?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let watch = Stopwatch::start();
    let store = column.open_store(&Location::Dir(dir.to_owned()))?;
    let opened = watch.lap();
    let open_kib = crate::rows::load::vm_hwm_kib()?;
    let listed_ids = store.list_documents()?;
    let listed = watch.lap();
    let mut first_ms = 0.0;
    let list_kib = crate::rows::load::vm_hwm_kib()?;
    if listed_ids.len() != documents {
        return Err(format!("listed {} documents, not {documents}", listed_ids.len()).into());
    }
    // The first document opened pays for whatever the store loads lazily; the median
    // of the next ones is the steady cost of opening one document.
    let mut times = Vec::with_capacity(READS);
    for i in 0..=READS {
        let before = watch.lap();
        let doc = store.open_document(&id((documents / 2 + i * 7919) % documents))?;
        let changes = doc.get_changes()?;
        let read = watch.lap();
        if changes.len() != CHANGES || changes.iter().any(|c| c.len() != CHANGE_LEN) {
            return Err(format!("a document read back {} changes", changes.len()).into());
        }
        if i > 0 {
            times.push(ms((read - before).wall));
        } else {
            first_ms = ms((read - before).wall);
        }
    }
    let doc_kib = crate::rows::load::vm_hwm_kib()?;
    let granule = |bytes: usize| (bytes + 8).div_ceil(16).max(2) * 16;
    let list_own = granule(listed_ids.capacity() * std::mem::size_of::<DocumentId>())
        + listed_ids
            .iter()
            .map(|id| granule(id.as_bytes().len()))
            .sum::<usize>();
    drop(listed_ids);
    drop(store);
    let sample = ManySample {
        documents,
        open_ms: ms(opened.wall),
        list_ms: ms((listed - opened).wall),
        first_doc_ms: first_ms,
        doc_ms: crate::rows::median(times),
        open_kib: open_kib.saturating_sub(baseline),
        list_own_kib: (list_own / 1024) as u64,
        list_kib: list_kib.saturating_sub(baseline),
        doc_kib: doc_kib.saturating_sub(baseline),
    };
    println!("{}", serde_json::to_string(&sample)?);
    Ok(())
}
