//! The rows of the table, one module per group of rows that share their stores.

pub mod bare;
pub mod flush;
pub mod ingest;
pub mod load;
pub mod many;
pub mod replay;
pub mod replication;
pub mod server;
pub mod trace;
pub mod yjs;
pub mod yjs_peer;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Result;

/// Bytes allocated on disk (`du`) and the apparent length of every file under `path`.
pub fn disk_usage(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_file() {
        return Ok((meta.blocks() * 512, meta.len()));
    }
    let (mut allocated, mut apparent) = (0, 0);
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let (a, b) = disk_usage(&entry?.path())?;
            allocated += a;
            apparent += b;
        }
    }
    Ok((allocated, apparent))
}

/// The median of `samples` (0 when there is none).
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if !samples.len().is_multiple_of(2) {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn disk_usage_adds_up_a_tree() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("a"), [0; 10])?;
        std::fs::write(dir.path().join("sub/b"), [0; 5])?;
        let (allocated, apparent) = disk_usage(dir.path())?;
        assert_eq!(apparent, 15);
        assert!(allocated >= 15);
        Ok(())
    }
}
