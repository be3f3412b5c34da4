//! What the disk itself can do, on the file system the backends write to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::Result;
use crate::data::SplitMix64;

/// Appends of `len` bytes, each followed by `fdatasync`, `count` times to a new file
/// in `dir`: the rate no persister that syncs every write can beat.
pub fn fdatasync_per_s(dir: &Path, count: usize, len: usize) -> Result<f64> {
    let path = dir.join("limit-fdatasync");
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let mut record = vec![0; len];
    SplitMix64::new(1).fill(&mut record);
    let start = Instant::now();
    for _ in 0..count {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(count as f64 / seconds)
}

/// Writes `total` bytes in 1 MiB writes to a new file in `dir`, then `fdatasync`:
/// the sequential bandwidth, in MB/s (10^6 bytes), a bulk load cannot beat.
pub fn sequential_write_mb_s(dir: &Path, total: usize) -> Result<f64> {
    const CHUNK: usize = 1 << 20;
    let path = dir.join("limit-sequential");
    let mut file = File::create_new(&path)?;
    let mut chunk = vec![0; CHUNK];
    SplitMix64::new(2).fill(&mut chunk);
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        let len = CHUNK.min(total - written);
        file.write_all(&chunk[..len])?;
        written += len;
    }
    file.sync_data()?;
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(written as f64 / 1e6 / seconds)
}
