//! A redb file opened for reading only, that redb may still write to: its writes land in
//! memory, over the file, which stays untouched.
//!
//! This is how [`RedbStore::open_read_only`](crate::RedbStore::open_read_only) reads a
//! file with the same checks as a writable open. redb checks a file's pages only in the
//! check a writable open makes ([`RedbOptions::verify_on_open`](crate::RedbOptions)):
//! its read-only open reads the file unchecked, and a damaged page then makes it panic
//! rather than fail. The check ends with a commit, a file that was not closed cleanly
//! must be repaired, and a commit log named open must be replayed: all of that writes,
//! and through an [`Overlay`] it writes to memory. What it holds is the little a repair
//! or a check writes (a few pages) and the pages the log's commits replayed touch
//! (about 1.5 times the log's length, which
//! [`RedbOptions::checkpoint_log_bytes`](crate::RedbOptions) bounds while the store
//! is open).
//!
//! Locking: the overlay holds a shared lock on the range of redb's lock space that every
//! redb handle of the file takes first, exclusive for a writer and shared for a reader,
//! so that a writer elsewhere excludes this open and this open excludes one, while
//! readers share the file. redb itself is told the overlay supports no locks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use persister_core::{Error, Result};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::error::from_redb;

/// The size of the blocks the overlay keeps: redb's page size, so that a page it writes
/// is one block.
const BLOCK: u64 = 4096;

/// Where redb's lock space starts: the byte at 2^62, beyond any file's data.
const LOCK_BASE: u64 = 1 << 62;

/// The range of redb's lock space that every handle of a file in redb's default
/// concurrency mode locks when it opens: from `LOCK_BASE + 1024` on (redb 5's active
/// transaction range), exclusive for a writer, shared for a read-only handle. Holding
/// it shared excludes every writer and no reader.
const OPEN_RANGE: (Bound<u64>, Bound<u64>) = (Bound::Included(LOCK_BASE + 1024), Bound::Unbounded);

/// The file, read-only and locked shared, with redb's writes kept in memory over it.
/// Clones share the file and the writes: a store verified through one open and read
/// through the next sees what the first wrote.
#[derive(Clone, Debug)]
pub(crate) struct Overlay {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    file: FileBackend,
    state: Mutex<State>,
}

impl Drop for Shared {
    /// Releases the lock before the file closes: a child process forked by another
    /// thread holds a copy of the descriptor until it execs, and with it the lock, so
    /// that a store closed here could not be opened again at once.
    fn drop(&mut self) {
        let _ = self.file.close();
    }
}

/// What redb wrote, and the length it set.
#[derive(Debug)]
struct State {
    /// The length redb sees.
    len: u64,
    /// How much of the file is still there to read where no block was written: the
    /// file's length, less what a shorter `set_len` cut (growing again reads zeros).
    file_len: u64,
    /// Blocks written, by index (offset / [`BLOCK`]), each [`BLOCK`] bytes.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    /// Opens the file at `path` for reading and takes the shared lock: fails with
    /// [`Error::Locked`] when a writer has it open.
    pub(crate) fn open(path: &Path) -> Result<Overlay> {
        let file = File::open(path).map_err(|err| Error::io("open", path, err))?;
        let file = FileBackend::new(file);
        let locked = file.try_lock_shared_range(OPEN_RANGE.0, OPEN_RANGE.1);
        match locked {
            Ok(true) | Err(redb::BackendError::Unsupported) => {}
            Ok(false) => {
                return Err(from_redb(
                    redb::DatabaseError::DatabaseAlreadyOpen,
                    "open",
                    path,
                ));
            }
            Err(err) => return Err(Error::io("lock", path, err.into())),
        }
        let len = file
            .len()
            .map_err(|err| Error::io("read", path, err.into()))?;
        Ok(Overlay {
            shared: Arc::new(Shared {
                file,
                state: Mutex::new(State {
                    len,
                    file_len: len,
                    blocks: HashMap::new(),
                }),
            }),
        })
    }

    /// `len` bytes at `offset` of the file as it is on disk, whatever redb wrote over
    /// it here (shorter at the file's end).
    pub(crate) fn original(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file_len = self.shared.file.len()?;
        let len = usize::try_from(file_len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        let mut out = vec![0; len];
        self.shared.file.read(offset, &mut out)?;
        Ok(out)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is whole between calls: each call changes it only after its reads.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `out.len()` bytes at `offset` of the file as it was before any write, with
    /// zeros beyond `file_len`.
    fn read_file(&self, file_len: u64, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let present = usize::try_from(file_len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(out.len());
        let (from_file, beyond) = out.split_at_mut(present);
        if !from_file.is_empty() {
            self.shared.file.read(offset, from_file)?;
        }
        beyond.fill(0);
        Ok(())
    }
}

/// The bytes `[offset, offset + len)` split at block boundaries: (block index, offset in
/// the block, offset in the buffer, length) each.
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let block = at / BLOCK;
        let within = at % BLOCK;
        let take = (BLOCK - within).min(end - at);
        let piece = (
            block,
            within as usize,
            (at - offset) as usize,
            take as usize,
        );
        at += take;
        Some(piece)
    })
}

fn beyond_end(offset: u64, len: usize, file_len: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at {offset} beyond the end ({file_len} bytes)"),
    )
}

impl StorageBackend for Overlay {
    fn len(&self) -> std::result::Result<u64, BackendError> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), BackendError> {
        let state = self.state();
        if offset.saturating_add(out.len() as u64) > state.len {
            return Err(beyond_end(offset, out.len(), state.len).into());
        }
        if state.blocks.is_empty() {
            return Ok(self.read_file(state.file_len, offset, out)?);
        }
        for (block, within, at, len) in pieces(offset, out.len()) {
            let out = &mut out[at..at + len];
            match state.blocks.get(&block) {
                Some(bytes) => out.copy_from_slice(&bytes[within..within + len]),
                None => self.read_file(state.file_len, offset + at as u64, out)?,
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::result::Result<(), BackendError> {
        let mut state = self.state();
        if len < state.len {
            state.blocks.retain(|block, _| block * BLOCK < len);
            if let Some(bytes) = state.blocks.get_mut(&(len / BLOCK)) {
                bytes[(len % BLOCK) as usize..].fill(0);
            }
            state.file_len = state.file_len.min(len);
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> std::result::Result<(), BackendError> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), BackendError> {
        let mut state = self.state();
        let file_len = state.file_len;
        for (block, within, at, len) in pieces(offset, data.len()) {
            let bytes = match state.blocks.entry(block) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let mut bytes = vec![0; BLOCK as usize].into_boxed_slice();
                    // Only a block this write leaves part of is read from the file.
                    if within > 0 || len < BLOCK as usize {
                        self.read_file(file_len, block * BLOCK, &mut bytes)?;
                    }
                    entry.insert(bytes)
                }
            };
            bytes[within..within + len].copy_from_slice(&data[at..at + len]);
        }
        state.len = state.len.max(offset + data.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay_of(bytes: &[u8]) -> (tempfile::TempDir, Overlay) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, bytes).unwrap();
        let overlay = Overlay::open(&path).unwrap();
        (dir, overlay)
    }

    fn read(overlay: &Overlay, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0xee; len];
        overlay.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_land_in_memory_and_read_back_over_the_file() {
        let original: Vec<u8> = (0..3 * BLOCK as usize + 100).map(|i| i as u8).collect();
        let (dir, overlay) = overlay_of(&original);
        assert_eq!(overlay.len().unwrap(), original.len() as u64);
        // Across a block boundary, in the middle of both blocks.
        overlay.write(BLOCK - 10, &[1; 20]).unwrap();
        let mut expected = original.clone();
        expected[BLOCK as usize - 10..BLOCK as usize + 10].fill(1);
        assert_eq!(read(&overlay, 0, expected.len()), expected);
        assert_eq!(
            read(&overlay, BLOCK - 20, 40),
            expected[BLOCK as usize - 20..BLOCK as usize + 20]
        );
        // Growing by a write past the end; the gap reads as zeros.
        overlay.write(5 * BLOCK, &[2; 8]).unwrap();
        assert_eq!(overlay.len().unwrap(), 5 * BLOCK + 8);
        assert_eq!(read(&overlay, 4 * BLOCK, 8), vec![0; 8]);
        assert_eq!(read(&overlay, 5 * BLOCK, 8), vec![2; 8]);
        // The file itself is untouched.
        assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), original);
    }

    #[test]
    fn a_shorter_length_cuts_the_file_and_writes_and_growing_reads_zeros() {
        let original = vec![7u8; 2 * BLOCK as usize];
        let (_dir, overlay) = overlay_of(&original);
        overlay.write(BLOCK + 100, &[9; 10]).unwrap();
        overlay.set_len(50).unwrap();
        assert_eq!(overlay.len().unwrap(), 50);
        let mut out = [0; 10];
        assert!(
            overlay.read(45, &mut out).is_err(),
            "a read past the end fails"
        );
        overlay.set_len(2 * BLOCK).unwrap();
        assert_eq!(read(&overlay, 0, 50), vec![7; 50]);
        assert_eq!(read(&overlay, 50, 100), vec![0; 100]);
        assert_eq!(read(&overlay, BLOCK + 100, 10), vec![0; 10]);
    }

    #[test]
    fn a_writer_and_the_overlay_exclude_each_other_and_overlays_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let db = redb::Database::create(&path).unwrap();
        assert!(matches!(Overlay::open(&path), Err(Error::Locked { .. })));
        drop(db);
        let first = Overlay::open(&path).unwrap();
        let second = Overlay::open(&path).unwrap();
        assert!(matches!(
            redb::Database::open(&path),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
        ));
        let reader = redb::ReadOnlyDatabase::open(&path).unwrap();
        drop((first, second, reader));
        redb::Database::open(&path).unwrap();
    }
}
