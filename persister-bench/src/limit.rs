//! What the disk itself can do, on the file system the backends write to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use persister_testkit::Rng;

use crate::Result;
use crate::clock::{Lap, Stopwatch};

/// A file that grows by small appends, each made durable with `fdatasync`: what a
/// persister that syncs every write does at best.
pub struct RawLog {
    file: File,
    path: PathBuf,
    record: Vec<u8>,
}

impl RawLog {
    /// Creates the file `name` in `dir`; every append writes `len` bytes.
    pub fn create(dir: &Path, name: &str, len: usize) -> Result<Self> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut record = vec![0; len];
        Rng::new(1).fill(&mut record);
        Ok(Self { file, path, record })
    }

    /// Appends `count` records, each followed by `fdatasync`; returns the time taken.
    pub fn append_synced(&mut self, count: usize) -> Result<Lap> {
        let watch = Stopwatch::start();
        for _ in 0..count {
            self.file.write_all(&self.record)?;
            self.file.sync_data()?;
        }
        Ok(watch.lap())
    }

    /// Appends records, each followed by `fdatasync`, until `time` has passed (at least
    /// one); returns how many and the wall time they took.
    pub fn append_synced_for(&mut self, time: Duration) -> Result<(usize, Duration)> {
        crate::clock::repeat_for(time, || {
            self.file.write_all(&self.record)?;
            self.file.sync_data()?;
            Ok(())
        })
    }

    /// Removes the file.
    pub fn remove(self) -> Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)?;
        Ok(())
    }
}

/// Appends of `len` bytes, each followed by `fdatasync`, `count` times to a new file
/// in `dir`: the rate no persister that syncs every write can beat.
pub fn fdatasync_per_s(dir: &Path, count: usize, len: usize) -> Result<f64> {
    let mut log = RawLog::create(dir, "limit-fdatasync", len)?;
    let elapsed = log.append_synced(count)?;
    log.remove()?;
    Ok(count as f64 / elapsed.wall.as_secs_f64())
}

/// Writes `total` bytes in 1 MiB writes to a new file in `dir`, then `fdatasync`:
/// the sequential bandwidth, in MB/s (10^6 bytes), a bulk load cannot beat.
pub fn sequential_write_mb_s(dir: &Path, total: usize) -> Result<f64> {
    const CHUNK: usize = 1 << 20;
    let path = dir.join("limit-sequential");
    let mut file = File::create_new(&path)?;
    let mut chunk = vec![0; CHUNK];
    Rng::new(2).fill(&mut chunk);
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
