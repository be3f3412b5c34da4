//! Rows 10 and 11: samod repos on persister-samod (redb and fs stores) against samod's own
//! `TokioFilesystemStorage`, in the same run and on the same disk.
//!
//! Row 10 edits the automerge-paper trace through a samod repo (one `with_document`
//! transaction per trace transaction, then `Repo::stop`, which returns once every put
//! completed) and measures the time and the bytes on disk at the end. Row 11 is a cold
//! start: a store of many small documents (untimed to make), then, timed, open the
//! storage, load a repo and `find` every document.
//!
//! persister-samod completes a put only once it is flushed (fsync); samod's
//! `TokioFilesystemStorage` writes each key to its own file with `tokio::fs::write`
//! and never syncs, so the comparison gives it the advantage of no durability.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc};
use persister_samod::{Options, SamodStorage};
use samod::Repo;
use serde::Serialize;

use crate::Result;
use crate::results::Cell;
use crate::rows::{disk_usage, median};

/// The storages compared, in column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redb,
    Fs,
    Tokio,
}

const KINDS: [Kind; 3] = [Kind::Redb, Kind::Fs, Kind::Tokio];

impl Kind {
    /// The column of the storage's backend, if it is one of this workspace's.
    fn column(self) -> Option<crate::columns::Column> {
        match self {
            Kind::Redb => Some(crate::columns::Column::Redb),
            Kind::Fs => Some(crate::columns::Column::Fs),
            Kind::Tokio => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Redb => "persister-samod on redb",
            Kind::Fs => "persister-samod on fs",
            Kind::Tokio => "samod TokioFilesystemStorage",
        }
    }
}

/// The sizes of rows 10 and 11.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SamodConfig {
    /// Trace edits replayed (`None`: all of them).
    pub trace_edits: Option<usize>,
    /// Documents in the cold-start store.
    pub documents: usize,
    /// Edits made in each of them when making the store.
    pub edits_per_document: usize,
    /// Rounds, each measuring every storage once; the median is kept.
    pub rounds: usize,
}

impl SamodConfig {
    /// The sizes of a quick or a full run. A full run does one round unless
    /// `PERSISTER_SAMOD_BENCH_ROUNDS` says more: the full trace leaves hundreds of MB of
    /// small files in TokioFilesystemStorage's directory, and deleting them takes minutes.
    pub fn new(quick: bool) -> Self {
        let rounds = std::env::var("PERSISTER_SAMOD_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        if quick {
            Self {
                trace_edits: Some(3_000),
                documents: 100,
                edits_per_document: 5,
                rounds: 1,
            }
        } else {
            Self {
                trace_edits: None,
                documents: 1_000,
                edits_per_document: 5,
                rounds,
            }
        }
    }
}

/// Rows 10 and 11 for one storage.
#[derive(Clone, Debug, Serialize)]
pub struct SamodColumn {
    /// The storage.
    pub storage: &'static str,
    /// Row 10: seconds to edit the trace and stop the repo (median over rounds).
    pub trace_s: Cell<f64>,
    /// Row 10: bytes allocated on disk at the end.
    pub trace_disk_bytes: Cell<u64>,
    /// Row 11: seconds to open the storage, load the repo and find every document.
    pub cold_start_s: Cell<f64>,
}

/// Rows 10 and 11.
#[derive(Clone, Debug, Serialize)]
pub struct SamodReport {
    /// The sizes used.
    pub config: SamodConfig,
    /// Trace edits (transactions) replayed; 0 when the trace is absent.
    pub trace_transactions: usize,
    /// One entry per storage.
    pub columns: Vec<SamodColumn>,
}

impl SamodReport {
    /// Whether a storage failed a row.
    pub fn any_failed(&self) -> bool {
        self.columns
            .iter()
            .any(|c| c.trace_s.failed() || c.trace_disk_bytes.failed() || c.cold_start_s.failed())
    }
}

/// Runs rows 10 and 11 in `base`.
pub fn run(config: SamodConfig, base: &Path, progress: &dyn Fn(&str)) -> SamodReport {
    let trace = load_trace(config.trace_edits);
    let trace_transactions = trace.as_ref().ok().map_or(0, |t| t.txns.len());
    let mut trace_samples: Vec<Vec<Result<(f64, u64)>>> =
        KINDS.iter().map(|_| Vec::new()).collect();
    let mut cold_samples: Vec<Vec<Result<f64>>> = KINDS.iter().map(|_| Vec::new()).collect();
    for round in 0..config.rounds {
        for (i, kind) in KINDS.into_iter().enumerate() {
            let dir = base.join(format!("samod-{round}-{i}"));
            if let Ok(trace) = &trace {
                progress(&format!("row 10: samod trace, {}", kind.name()));
                trace_samples[i].push(trace_run(kind, &dir.join("trace"), trace));
            }
            progress(&format!("row 11: samod cold start, {}", kind.name()));
            cold_samples[i].push(cold_start(kind, &dir.join("cold"), &config));
            // Between rounds only: the base directory goes when the run ends, after the
            // table is printed (deleting TokioFilesystemStorage's files takes minutes).
            if round + 1 < config.rounds {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let columns = KINDS
        .into_iter()
        .zip(trace_samples.into_iter().zip(cold_samples))
        .map(|(kind, (traces, colds))| {
            let (trace_s, trace_disk_bytes) = match &trace {
                Err(reason) => (Cell::Skipped(reason.clone()), Cell::Skipped(reason.clone())),
                Ok(_) => match collect(traces) {
                    Ok(samples) => {
                        let disk = samples.last().map_or(0, |s| s.1);
                        (
                            Cell::Value(median(samples.iter().map(|s| s.0).collect())),
                            Cell::Value(disk),
                        )
                    }
                    Err(e) => (Cell::Failed(e.clone()), Cell::Failed(e)),
                },
            };
            let cold_start_s = match collect(colds) {
                Ok(samples) => Cell::Value(median(samples)),
                Err(e) => Cell::Failed(e),
            };
            SamodColumn {
                storage: kind.name(),
                trace_s,
                trace_disk_bytes,
                cold_start_s,
            }
        })
        .collect();
    SamodReport {
        config,
        trace_transactions,
        columns,
    }
}

fn collect<T>(samples: Vec<Result<T>>) -> std::result::Result<Vec<T>, String> {
    samples
        .into_iter()
        .map(|s| s.map_err(|e| e.to_string()))
        .collect()
}

/// The trace, cut to `edits` transactions; `Err` says why it is skipped.
fn load_trace(edits: Option<usize>) -> std::result::Result<persister_traces::Trace, String> {
    let path = persister_traces::find("automerge-paper")
        .ok_or_else(|| "trace automerge-paper not found".to_string())?;
    let mut trace = persister_traces::Trace::load(&path).map_err(|e| e.to_string())?;
    if let Some(edits) = edits {
        let end = trace
            .text_after(edits.min(trace.txns.len()))
            .map_err(|e| e.to_string())?;
        trace.txns.truncate(edits);
        trace.end_content = end;
    }
    Ok(trace)
}

/// A repo on `kind` in `dir`, with the storage to close after `stop`.
async fn open_repo(kind: Kind, dir: &Path) -> Result<(Repo, Option<SamodStorage>)> {
    let builder = Repo::build_tokio();
    Ok(match kind {
        Kind::Redb | Kind::Fs => {
            let backend = kind
                .column()
                .and_then(crate::columns::Column::backend)
                .ok_or("no backend entry for the storage")?;
            let path = backend
                .store_in(dir)
                .ok_or("the storage's backend keeps no store in a directory")?;
            let storage = SamodStorage::open_with(
                move || backend.open(&path, persister_backends::Access::ReadWrite),
                Options::new(),
            )?;
            (
                builder.with_storage(storage.clone()).load().await,
                Some(storage),
            )
        }
        Kind::Tokio => {
            let storage = samod::storage::TokioFilesystemStorage::new(dir.join("files"));
            (builder.with_storage(storage).load().await, None)
        }
    })
}

/// Stops the repo, then closes our storage, checked.
async fn close(repo: Repo, storage: Option<SamodStorage>) -> persister_core::Result<()> {
    repo.stop().await;
    drop(repo);
    match storage {
        Some(storage) => storage.close(),
        None => Ok(()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Row 10 for one storage: seconds, and bytes on disk at the end.
fn trace_run(kind: Kind, dir: &Path, trace: &persister_traces::Trace) -> Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let rt = runtime()?;
    let seconds = rt.block_on(async {
        let start = Instant::now();
        let (repo, storage) = open_repo(kind, dir).await?;
        let handle = repo.create(Automerge::new()).await?;
        let text = handle.with_document(|d| {
            let mut tx = d.transaction();
            let text = tx.put_object(ROOT, "text", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, &trace.start_content)?;
            tx.commit();
            Ok::<_, automerge::AutomergeError>(text)
        })?;
        for txn in &trace.txns {
            handle.with_document(|d| {
                let mut tx = d.transaction();
                for patch in &txn.patches {
                    tx.splice_text(&text, patch.pos(), patch.delete() as isize, patch.insert())?;
                }
                tx.commit();
                Ok::<_, automerge::AutomergeError>(())
            })?;
        }
        let typed = handle.with_document(|d| d.text(&text))?;
        close(repo, storage).await?;
        let seconds = start.elapsed().as_secs_f64();
        if typed != trace.end_content {
            return Err("the text typed through samod differs from the trace's".into());
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(seconds)
    })?;
    drop(rt);
    Ok((seconds, disk_usage(dir)?.0))
}

/// Row 11 for one storage: makes the store (untimed), then times opening it and finding
/// every document.
fn cold_start(kind: Kind, dir: &Path, config: &SamodConfig) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let rt = runtime()?;
    let ids = rt.block_on(async {
        let (repo, storage) = open_repo(kind, dir).await?;
        let mut ids = Vec::new();
        for d in 0..config.documents {
            let handle = repo.create(Automerge::new()).await?;
            for e in 0..config.edits_per_document {
                handle.with_document(|doc| {
                    let mut tx = doc.transaction();
                    tx.put(
                        ROOT,
                        format!("field {e}"),
                        format!("document {d}, edit {e}"),
                    )?;
                    tx.commit();
                    Ok::<_, automerge::AutomergeError>(())
                })?;
            }
            ids.push(handle.document_id().clone());
        }
        close(repo, storage).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(ids)
    })?;
    drop(rt);
    let rt = runtime()?;
    rt.block_on(async {
        let start = Instant::now();
        let (repo, storage) = open_repo(kind, dir).await?;
        let found = futures::future::join_all(ids.iter().map(|id| repo.find(id.clone()))).await;
        let seconds = start.elapsed().as_secs_f64();
        for handle in found {
            let handle = handle?.ok_or("a document was not found")?;
            let fields = handle.with_document(|d| d.length(ROOT));
            if fields != config.edits_per_document {
                return Err(format!(
                    "a document has {fields} fields, not {}",
                    config.edits_per_document
                )
                .into());
            }
        }
        close(repo, storage).await?;
        Ok(seconds)
    })
}

/// Rows 10 and 11 as markdown: a table with a column per storage, ratios to
/// `TokioFilesystemStorage`, and the targets.
pub fn markdown(report: &SamodReport) -> String {
    let mut out = String::new();
    let c = &report.config;
    let _ = writeln!(
        out,
        "\nsamod repos (rows 10, 11): persister-samod acknowledges a put once it is flushed (fsync); \
         TokioFilesystemStorage never syncs. Median of {} round(s), wall time.\n",
        c.rounds
    );
    let header: Vec<&str> = report.columns.iter().map(|col| col.storage).collect();
    let _ = writeln!(out, "| row | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len()));
    let tokio = report
        .columns
        .iter()
        .find(|col| col.storage == Kind::Tokio.name());
    let ratio = |value: Option<f64>, base: Option<f64>| match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!(" ({:.2}x)", v / b),
        _ => String::new(),
    };
    let cells = |f: &dyn Fn(&SamodColumn) -> String| {
        report.columns.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    let _ = writeln!(
        out,
        "| 10. automerge-paper trace, {} transactions through a samod repo, then stop: s (x Tokio) | {} |",
        report.trace_transactions,
        cells(&|col| show(&col.trace_s, |v| format!(
            "{v:.2}{}",
            ratio(Some(*v), tokio.and_then(|t| t.trace_s.value().copied()))
        )))
    );
    let _ = writeln!(
        out,
        "| 10. bytes on disk at the end (x Tokio) | {} |",
        cells(&|col| show(&col.trace_disk_bytes, |v| format!(
            "{}{}",
            v,
            ratio(
                Some(*v as f64),
                tokio.and_then(|t| t.trace_disk_bytes.value().map(|b| *b as f64))
            )
        )))
    );
    let _ = writeln!(
        out,
        "| 11. cold start: open and find {} documents: s (x Tokio) | {} |",
        c.documents,
        cells(&|col| show(&col.cold_start_s, |v| format!(
            "{v:.3}{}",
            ratio(
                Some(*v),
                tokio.and_then(|t| t.cold_start_s.value().copied())
            )
        )))
    );
    for (target, holds) in targets(report) {
        let _ = writeln!(out, "- {}: {target}", if holds { "met" } else { "MISSED" });
    }
    out
}

/// The targets of rows 10 and 11: trace time at most 1.0x Tokio's, cold start faster,
/// on redb and on fs. Empty when a figure is missing.
pub fn targets(report: &SamodReport) -> Vec<(String, bool)> {
    let tokio = report
        .columns
        .iter()
        .find(|col| col.storage == Kind::Tokio.name());
    let mut out = Vec::new();
    for col in report
        .columns
        .iter()
        .filter(|col| col.storage != Kind::Tokio.name())
    {
        if let (Some(v), Some(b)) = (col.trace_s.value(), tokio.and_then(|t| t.trace_s.value())) {
            out.push((
                format!(
                    "{}: trace at most 1.0x TokioFilesystemStorage's time ({:.2}x)",
                    col.storage,
                    v / b
                ),
                v <= b,
            ));
        }
        if let (Some(v), Some(b)) = (
            col.cold_start_s.value(),
            tokio.and_then(|t| t.cold_start_s.value()),
        ) {
            out.push((
                format!(
                    "{}: cold start faster than TokioFilesystemStorage ({:.2}x)",
                    col.storage,
                    v / b
                ),
                v < b,
            ));
        }
    }
    out
}

fn show<T>(cell: &Cell<T>, f: impl Fn(&T) -> String) -> String {
    match cell {
        Cell::Value(v) => f(v),
        Cell::Skipped(why) | Cell::NotApplicable(why) => format!("skipped: {why}"),
        Cell::Failed(why) => format!("FAILED: {why}"),
    }
}
