//! `persister-bench`: every backend of the workspace side by side with
//! automerge-persistent-sled 0.4 (the library applications use today; for Yjs in row 7,
//! yrs-kvstore 0.3 on LMDB) and with what the disk itself can do, measured in one run
//! and printed as one markdown table (`--json` for machines).
//!
//! Absolute times drift from run to run on a shared machine; the ratios inside one run
//! are what count, so the rows interleave columns where they repeat, and the disk's
//! limits are measured in the same run, on the same file system as the stores.
//!
//! ```text
//! cargo run --release -p persister-bench            # the full run
//! cargo run -p persister-bench -- --quick           # a few seconds, as CI runs it
//! cargo run --release -p persister-bench -- --only fs,peer --rows 1,3 --json
//! ```

mod clock;
mod columns;
mod data;
mod limit;
mod peer;
mod pg;
mod report;
mod results;
mod rows;
mod samod;
mod targets;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::columns::Column;
use crate::results::{Cell, ColumnReport, Config, Limit, Report};

/// Every fallible step of the benchmark returns this.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Measures every persister backend, the peer and the disk in one run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Small sizes (2,000 changes, 50 flushes, 5,000 trace edits): a few seconds, to
    /// check that the benchmark still works.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON instead of a markdown table.
    #[arg(long)]
    json: bool,
    /// Only these columns (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Column>,
    /// Only these rows, 1 to 11 (comma-separated; 10 and 11, the samod rows, run
    /// together).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=11))]
    rows: Vec<u8>,
    /// Where to create the stores (default: the system's temporary directory). The
    /// disk's limits are measured there too.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the JSON results to this file, whatever is printed.
    #[arg(long, value_name = "PATH")]
    save_json: Option<PathBuf>,
    /// Keep the stores of rows 1, 4, 5 and 9 after the run, to inspect or profile them
    /// (on a server given with `PERSISTER_POSTGRES_URL`, every schema of the run, which
    /// is otherwise dropped).
    #[arg(long)]
    keep: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The child of rows 3 and 6: open a store, read every change, print the time taken
    /// and the peak memory.
    #[command(name = rows::load::SUBCOMMAND, hide = true)]
    Load {
        /// The column whose store it is.
        #[arg(long, value_enum)]
        column: Column,
        /// The store's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Row 9's child: open a store of many documents, list them, read one, print the
    /// times and the peak memory.
    #[command(name = rows::many::SUBCOMMAND, hide = true)]
    ManyOpen {
        /// The column whose store it is.
        #[arg(long, value_enum)]
        column: Column,
        /// The store's directory.
        #[arg(long)]
        dir: PathBuf,
        /// How many documents the store holds.
        #[arg(long)]
        documents: usize,
    },
    /// Row 7's child: replay the trace for one column, print the result.
    #[command(name = rows::trace::SUBCOMMAND, hide = true)]
    TraceRun {
        /// The column to replay on.
        #[arg(long, value_enum)]
        column: Column,
        /// A new directory for its store.
        #[arg(long)]
        dir: PathBuf,
        /// Replay only the first this many edits.
        #[arg(long)]
        edits: Option<usize>,
        /// Flush every this many edits.
        #[arg(long)]
        flush_every: usize,
    },
    /// Row 7 for Yjs's child: replay the trace once, on yrs in memory (no column) or
    /// through persister-yrs on a column, print the result.
    #[command(name = rows::yjs::SUBCOMMAND, hide = true)]
    YjsRun {
        /// The column to replay on; none for a plain `yrs::Doc` in memory; `peer` for
        /// yrs-kvstore on LMDB.
        #[arg(long, value_enum)]
        column: Option<Column>,
        /// With `--column peer`: the peer's yrs (0.19) in memory instead.
        #[arg(long)]
        in_memory: bool,
        /// A new directory for its store.
        #[arg(long)]
        dir: PathBuf,
        /// Replay only the first this many edits.
        #[arg(long)]
        edits: Option<usize>,
        /// Flush every this many edits.
        #[arg(long)]
        flush_every: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Load { column, dir }) => rows::load::child(*column, dir).map(|()| true),
        Some(Command::ManyOpen {
            column,
            dir,
            documents,
        }) => rows::many::child(*column, dir, *documents).map(|()| true),
        Some(Command::TraceRun {
            column,
            dir,
            edits,
            flush_every,
        }) => rows::replay::child(*column, dir, *edits, *flush_every).map(|()| true),
        Some(Command::YjsRun {
            column,
            in_memory,
            dir,
            edits,
            flush_every,
        }) => rows::yjs::child(*column, *in_memory, dir, *edits, *flush_every).map(|()| true),
        None => run(&cli),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("persister-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole run; `Ok(false)` when some column failed a row.
fn run(cli: &Cli) -> Result<bool> {
    let started = Instant::now();
    let config = if cli.quick {
        Config {
            changes: 2_000,
            batch: 1_000,
            small_changes: 200,
            flushes: 50,
            repeats: 1,
            sequential_bytes: 16 << 20,
            trace_edits: Some(5_000),
            trace_flush_every: 1_000,
            trace_timeout_s: 300,
            trace_rounds: 1,
        }
    } else {
        Config {
            changes: 100_000,
            batch: 1_000,
            small_changes: 10_000,
            flushes: 2_000,
            repeats: 5,
            sequential_bytes: 256 << 20,
            trace_edits: None,
            trace_flush_every: 1_000,
            trace_timeout_s: 900,
            trace_rounds: 3,
        }
    };
    let mut columns: Vec<Column> = if cli.only.is_empty() {
        Column::ALL.to_vec()
    } else {
        let only: BTreeSet<Column> = cli.only.iter().copied().collect();
        only.into_iter().collect()
    };
    if columns.contains(&Column::Postgres)
        && let Err(e) = pg::url()
    {
        eprintln!("postgres column skipped: {e}");
        columns.retain(|c| *c != Column::Postgres);
    }
    let wanted = |row: u8| cli.rows.is_empty() || cli.rows.contains(&row);
    let parent = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    let base = tempfile::Builder::new()
        .prefix("persister-bench-")
        .tempdir_in(&parent)?;
    let progress = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());

    let mut reports: Vec<ColumnReport> = columns
        .iter()
        .map(|c| ColumnReport::new(c.name()))
        .collect();
    let mut limit = Limit {
        fdatasync_per_s: None,
        fdatasync_samples: Vec::new(),
        sequential_write_mb_s: None,
    };

    progress("limit: sequential write");
    limit.sequential_write_mb_s = Some(Cell::from_result(limit::sequential_write_mb_s(
        base.path(),
        config.sequential_bytes,
    )));

    if [1, 3, 4, 5, 6].into_iter().any(wanted) {
        progress("rows 1, 4, 5: bulk insert, disk usage, sizes()");
        let (mut ingested, expected) = rows::ingest::run(&config, &columns, base.path());
        let stores: Vec<(Column, columns::Location)> = columns
            .iter()
            .filter_map(|c| Some((*c, ingested.get(c)?.large.clone()?)))
            .collect();
        let mut loaded = if wanted(3) || wanted(6) {
            progress("rows 3, 6: load every change in a new process");
            rows::load::run(&config, &stores, expected)
        } else {
            Default::default()
        };
        for (report, column) in reports.iter_mut().zip(&columns) {
            let Some(i) = ingested.remove(column) else {
                continue;
            };
            let (reload, peak) = loaded.remove(column).unwrap_or_else(|| {
                let reason = "no store: row 1 failed";
                (Cell::Skipped(reason.into()), Cell::Skipped(reason.into()))
            });
            report.insert = wanted(1).then_some(i.insert);
            report.reload = wanted(3).then_some(reload);
            report.disk = wanted(4).then_some(i.disk);
            report.sizes = wanted(5).then_some(i.sizes);
            report.peak = wanted(6).then_some(peak);
        }
    }

    if wanted(2) {
        for (report, column) in reports.iter_mut().zip(&columns) {
            progress(&format!("row 2: insert + flush, {column}"));
            let dir = base.path().join(format!("flush-{column}"));
            let (cell, raw) = rows::flush::run(&config, *column, &dir);
            limit.fdatasync_samples.extend(raw);
            report.flush = Some(cell);
            let _ = std::fs::remove_dir_all(&dir);
        }
    } else {
        progress("limit: fdatasync");
        match limit::fdatasync_per_s(base.path(), config.flushes, rows::flush::RAW_APPEND) {
            Ok(raw) => limit.fdatasync_samples.push(raw),
            Err(e) => eprintln!("limit: fdatasync failed: {e}"),
        }
    }
    let replication = (wanted(2) && columns.contains(&Column::Postgres)).then(|| {
        progress("row 2: postgres, one node and with a synchronous standby");
        rows::replication::run(&config)
    });
    if !limit.fdatasync_samples.is_empty() {
        limit.fdatasync_per_s = Some(rows::median(limit.fdatasync_samples.clone()));
    }

    let mut yjs = None;
    if wanted(7) {
        rows::trace::run_all(&config, &columns, &mut reports, base.path(), &progress);
        yjs = Some(
            match rows::yjs::run(
                &config,
                columns.contains(&Column::Peer),
                base.path(),
                &progress,
            ) {
                Ok(row) => Cell::Value(row),
                Err(reason) => Cell::Skipped(reason),
            },
        );
    }

    let mut bare = None;
    if wanted(8) {
        let server = rows::server::ServerConfig::new(cli.quick);
        for (report, column) in reports.iter_mut().zip(&columns) {
            progress(&format!("row 8: sync server, {column}"));
            let dir = base.path().join(format!("server-{column}"));
            report.server = Some(rows::server::run(&server, *column, &dir, base.path()));
            let _ = std::fs::remove_dir_all(&dir);
        }
        if columns.iter().any(|c| c.on_disk()) {
            progress("row 8: without a store, one file per document and one shared log");
            let dir = base.path().join("server-bare");
            bare = Some(rows::bare::run(&server, &dir, base.path()));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if wanted(9) {
        for (report, column) in reports.iter_mut().zip(&columns) {
            progress(&format!("row 9: a store of many documents, {column}"));
            let dir = base.path().join(format!("many-{column}"));
            report.many = Some(rows::many::run(cli.quick, *column, &dir, cli.keep));
            if !cli.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    if columns.contains(&Column::Postgres) && !cli.keep {
        match pg::drop_run_schemas(base.path()) {
            Ok(0) => {}
            Ok(1) => progress("postgres: dropped the run's schema"),
            Ok(n) => progress(&format!("postgres: dropped the run's {n} schemas")),
            Err(e) => eprintln!("postgres: the run's schemas were not dropped: {e}"),
        }
    }
    pg::forget_url();
    let samod = (wanted(10) || wanted(11))
        .then(|| samod::run(samod::SamodConfig::new(cli.quick), base.path(), &progress));

    let mut targets = targets::check(&reports);
    if let Some(Cell::Value(row)) = &yjs {
        targets.extend(rows::yjs::targets(row));
    }
    let failed = reports.iter().any(ColumnReport::any_failed)
        || samod.as_ref().is_some_and(samod::SamodReport::any_failed)
        || matches!(limit.sequential_write_mb_s, Some(Cell::Failed(_)))
        || matches!(replication, Some(Cell::Failed(_)))
        || bare.as_ref().is_some_and(rows::bare::Bare::any_failed)
        || matches!(&yjs, Some(Cell::Value(row))
            if row.columns.iter().any(|(_, c)| c.failed())
                || row.peer.as_ref().is_some_and(Cell::failed));
    let report = Report {
        mode: if cli.quick { "quick" } else { "full" },
        config,
        dir: parent.display().to_string(),
        peer: peer::NAME,
        limit,
        columns: reports,
        replication,
        bare,
        yjs,
        targets,
        samod,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &cli.save_json {
        std::fs::write(path, &json)?;
    }
    if cli.json {
        println!("{json}");
    } else {
        print!("{}", report::markdown(&report));
    }
    if cli.keep {
        if columns.contains(&Column::Postgres) && pg::on_users_server() {
            eprintln!(
                "postgres stores kept in the schemas named {}*",
                pg::run_prefix(base.path())
            );
        }
        eprintln!("stores kept in {}", base.keep().display());
    }
    Ok(!failed)
}
