//! Rows 3 and 6: loading every change as a program that starts does, each load in a
//! child process: its time to open the store and read every change, and its peak
//! resident memory. A fresh process per load means no column inherits another's heap
//! (freed blocks glibc has yet to consolidate, a page cache of sled's) and no column's
//! peak can hide another's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::clock::Stopwatch;
use crate::columns::{Column, Location};
use crate::data::digest;
use crate::results::{Cell, Config, Peak, Reload};
use crate::rows::median;

/// The hidden subcommand the benchmark re-executes itself with.
pub const SUBCOMMAND: &str = "load";

/// What one load measured; the child prints it as its last line of output.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadSample {
    /// Opening the store and the document, ms of own time (see `clock`).
    pub open_ms: f64,
    /// `get_changes`, ms of own time.
    pub read_ms: f64,
    /// Both, in wall time, ms.
    pub wall_ms: f64,
    /// VmHWM before opening the store, KiB; 0 for a load in this process.
    pub baseline_kib: u64,
    /// VmHWM after reading every change, KiB; 0 for a load in this process.
    pub peak_kib: u64,
    /// How many changes were read.
    pub changes: usize,
    /// Their [`digest`], in the order read.
    pub digest: u64,
}

/// What every load must return.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The number of changes.
    pub changes: usize,
    /// The digest of their values in `(actor, seq)` order.
    pub digest: u64,
}

/// Runs rows 3 and 6 on each column's store, `config.repeats` times interleaved across
/// columns; row 3 keeps the fastest load, row 6 the median peak.
pub fn run(
    config: &Config,
    stores: &[(Column, Location)],
    expected: Expected,
) -> BTreeMap<Column, (Cell<Reload>, Cell<Peak>)> {
    let mut samples: BTreeMap<Column, Vec<LoadSample>> = BTreeMap::new();
    let mut failed: BTreeMap<Column, String> = BTreeMap::new();
    for _ in 0..config.repeats.max(1) {
        for (column, location) in stores {
            if failed.contains_key(column) {
                continue;
            }
            match load_once(*column, location, expected) {
                Ok(sample) => samples.entry(*column).or_default().push(sample),
                Err(e) => {
                    failed.insert(*column, e.to_string());
                }
            }
        }
    }
    stores
        .iter()
        .map(|(column, location)| {
            if let Some(error) = failed.get(column) {
                let cells = (Cell::Failed(error.clone()), Cell::Failed(error.clone()));
                return (*column, cells);
            }
            let samples = samples.remove(column).unwrap_or_default();
            let totals: Vec<f64> = samples.iter().map(|s| s.open_ms + s.read_ms).collect();
            let walls: Vec<f64> = samples.iter().map(|s| s.wall_ms).collect();
            let peaks: Vec<f64> = samples.iter().map(|s| s.peak_kib as f64).collect();
            let baselines: Vec<f64> = samples.iter().map(|s| s.baseline_kib as f64).collect();
            let reload = samples
                .iter()
                .min_by(|a, b| (a.open_ms + a.read_ms).total_cmp(&(b.open_ms + b.read_ms)))
                .map(|best| Reload {
                    ms: best.open_ms + best.read_ms,
                    wall_ms: best.wall_ms,
                    open_ms: best.open_ms,
                    read_ms: best.read_ms,
                    samples: totals,
                    wall_samples: walls,
                });
            let reload = match reload {
                Some(reload) => Cell::Value(reload),
                None => Cell::Skipped("no load ran".into()),
            };
            let peak = match location {
                Location::Memory(_) => {
                    Cell::NotApplicable("the data never leaves the process".into())
                }
                Location::Dir(_) => Cell::Value(Peak {
                    peak_mib: median(peaks) / 1024.0,
                    baseline_mib: median(baselines) / 1024.0,
                }),
            };
            (*column, (reload, peak))
        })
        .collect()
}

/// One load, checked against what was written.
fn load_once(column: Column, location: &Location, expected: Expected) -> Result<LoadSample> {
    let sample = match location {
        Location::Dir(dir) => spawn(column, dir)?,
        // A memory store lives in this process: reopening it is opening a new handle.
        Location::Memory(_) => measure(column, location, 0)?,
    };
    if sample.changes != expected.changes {
        return Err(format!(
            "get_changes returned {} changes, not {}",
            sample.changes, expected.changes
        )
        .into());
    }
    if sample.digest != expected.digest {
        return Err("get_changes returned other bytes than were written".into());
    }
    Ok(sample)
}

fn spawn(column: Column, dir: &Path) -> Result<LoadSample> {
    let output = Command::new(std::env::current_exe()?)
        .args([SUBCOMMAND, "--column", column.name(), "--dir"])
        .arg(dir)
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

/// The child's side: opens the store, reads every change, and prints a [`LoadSample`].
pub fn child(column: Column, dir: &Path) -> Result<()> {
    let baseline_kib = vm_hwm_kib()?;
    let mut sample = measure(column, &Location::Dir(dir.to_owned()), baseline_kib)?;
    sample.peak_kib = vm_hwm_kib()?;
    println!("{}", serde_json::to_string(&sample)?);
    Ok(())
}

/// Opens the store at `location` and reads every change, timed.
fn measure(column: Column, location: &Location, baseline_kib: u64) -> Result<LoadSample> {
    let watch = Stopwatch::start();
    let subject = column.open(location)?;
    let opened = watch.lap();
    let values = subject.get_changes()?;
    let end = watch.lap();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok(LoadSample {
        open_ms: ms(opened.own),
        read_ms: ms((end - opened).own),
        wall_ms: ms(end.wall),
        baseline_kib,
        peak_kib: 0,
        changes: values.len(),
        digest: digest(values.iter().map(Vec::as_slice)),
    })
}

/// This process's peak resident set size so far, from `/proc/self/status`.
pub fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM line in /proc/self/status".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_peak() -> Result<()> {
        assert!(vm_hwm_kib()? > 0);
        Ok(())
    }
}
