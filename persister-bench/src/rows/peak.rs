//! Row 6: the peak resident memory of loading every change, each load in its own child
//! process so that one column's peak cannot hide another's.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::columns::{Column, Location};
use crate::results::{Cell, Peak};

/// The hidden subcommand the benchmark re-executes itself with.
pub const SUBCOMMAND: &str = "peak-load";

/// What the child reports on its last line of output.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeakSample {
    /// VmHWM before opening the store, KiB.
    pub baseline_kib: u64,
    /// VmHWM after reading every change, KiB.
    pub peak_kib: u64,
    /// How many changes were read.
    pub changes: usize,
}

/// Runs row 6 for one column whose store is at `location`, in a child process.
pub fn run(column: Column, location: &Location, expected_changes: usize) -> Cell<Peak> {
    let Some(dir) = location.dir() else {
        return Cell::NotApplicable("the data never leaves the process".into());
    };
    Cell::from_result(spawn(column, dir, expected_changes))
}

fn spawn(column: Column, dir: &Path, expected_changes: usize) -> Result<Peak> {
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
    let sample: PeakSample = serde_json::from_str(line)
        .map_err(|e| format!("the child process printed {line:?}: {e}"))?;
    if sample.changes != expected_changes {
        return Err(format!(
            "the child read {} changes, not {expected_changes}",
            sample.changes
        )
        .into());
    }
    Ok(Peak {
        peak_mib: sample.peak_kib as f64 / 1024.0,
        baseline_mib: sample.baseline_kib as f64 / 1024.0,
    })
}

/// The child's side: opens the store, reads every change, and prints a [`PeakSample`].
pub fn child(column: Column, dir: &Path) -> Result<()> {
    let baseline_kib = vm_hwm_kib()?;
    let subject = column.open(&Location::Dir(dir.to_owned()))?;
    let changes = subject.get_changes()?;
    let peak_kib = vm_hwm_kib()?;
    let sample = PeakSample {
        baseline_kib,
        peak_kib,
        changes: changes.len(),
    };
    println!("{}", serde_json::to_string(&sample)?);
    Ok(())
}

/// This process's peak resident set size so far, from `/proc/self/status`.
fn vm_hwm_kib() -> Result<u64> {
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
