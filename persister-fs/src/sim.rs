//! A simulated file system that loses what was not synced, for crash tests.
//!
//! Each file has live bytes (what reads see) and durable bytes (what the last
//! `sync_data` made durable); the directory has a live namespace and a durable one
//! (as of the last `sync_dir`), with the creations, renames and removals made since.
//! [`SimFs::crash_at`] makes the n-th I/O call and every later one fail, as if the
//! machine stopped there; [`SimFs::reboot`] then decides what the disk holds:
//!
//! - [`CrashMode::DropUnsynced`]: exactly what was synced.
//! - [`CrashMode::KeepSomeSectors`]: each unsynced 512-byte sector written since the
//!   last sync, at random, either new or as it was; a file's length either new or as
//!   synced; the directory operations since the last directory sync, a random prefix
//!   of them.
//! - [`CrashMode::TearLastWrite`]: everything written, except that the last write not
//!   synced yet is cut at a random byte.
//!
//! A sync that fails (see [`SimFs::fail_next_sync`]) behaves as `fdatasync` does on
//! Linux: the bytes written since the last sync stay as they read, but are marked
//! clean without reaching the disk, so no later sync makes them durable. A later
//! successful sync makes durable only the bytes written after the failure (and the
//! file's length): the dropped ones read from the disk as they were before them, or
//! as zeroes past its old end. (The kernel drops whole pages and writes a page
//! again whole once anything in it is written; dropping exactly the bytes is the
//! harsher case.) A reboot loses them in every [`CrashMode`].
//!
//! Directories are created durably (the store's directory is created once).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::io::SyncFailures;

mod ops;

const SECTOR: usize = 512;

/// What a crash keeps of what was not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashMode {
    DropUnsynced,
    KeepSomeSectors,
    TearLastWrite,
}

/// A fault the simulated disk injects until it is cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The disk is full: an append writes the first half of its bytes, then fails
    /// with `StorageFull` (ENOSPC).
    Full,
    /// The file system is read-only: every call that would change it fails with
    /// `ReadOnlyFilesystem` (EROFS).
    ReadOnly,
}

/// The workspace's seeded generator, with the draws the simulation and its workloads
/// make.
#[derive(Debug, Clone)]
pub(crate) struct Rng(persister_testkit::Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(persister_testkit::Rng::new(seed))
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0.index(n)
    }

    pub(crate) fn coin(&mut self) -> bool {
        self.0.next_u64() & 1 == 1
    }

    /// Random bytes, fewer than `max`.
    pub(crate) fn value(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.0.bytes(len)
    }
}

#[derive(Debug, Clone)]
enum NsOp {
    Link(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
}

impl NsOp {
    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            NsOp::Link(path, ino) => {
                names.insert(path.clone(), *ino);
            }
            NsOp::Rename(from, to) => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
            NsOp::Unlink(path) => {
                names.remove(path);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync: offset and length.
    unsynced: Vec<(usize, usize)>,
    /// Bytes a failed sync marked clean without making them durable, not written
    /// since: offset and length. No sync makes them durable.
    dropped: Vec<(usize, usize)>,
}

impl Inode {
    /// The bytes written at `offset`, `len` of them, are dirty again: no longer
    /// dropped.
    fn rewritten(&mut self, offset: usize, len: usize) {
        let end = offset + len;
        self.dropped = self
            .dropped
            .iter()
            .flat_map(|&(at, n)| {
                let before = (at, n.min(offset.saturating_sub(at)));
                let from = end.max(at);
                let after = (from, (at + n).saturating_sub(from));
                [before, after]
            })
            .filter(|&(_, n)| n > 0)
            .collect();
    }

    /// The file cut (or extended) to `len` bytes.
    fn resized(&mut self, len: usize) {
        self.rewritten(len, usize::MAX - len);
    }

    /// A failed sync: what was written since the last sync is dropped.
    fn sync_failed(&mut self) {
        let unsynced = std::mem::take(&mut self.unsynced);
        self.dropped
            .extend(unsynced.into_iter().filter(|&(_, n)| n > 0));
    }

    /// `data` as the disk holds it once written back: the dropped bytes as the disk
    /// held them before (zeroes past its end).
    fn without_dropped(&self, mut data: Vec<u8>) -> Vec<u8> {
        for &(at, n) in &self.dropped {
            let end = (at + n).min(data.len());
            for (i, slot) in data.iter_mut().enumerate().take(end).skip(at) {
                *slot = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        data
    }
}

#[derive(Debug, Default, Clone)]
struct State {
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    unsynced_ns: Vec<NsOp>,
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// The last write not synced yet: inode, offset, length.
    last_write: Option<(u64, usize, usize)>,
    locks: BTreeSet<PathBuf>,
    shared_locks: BTreeMap<PathBuf, usize>,
    fault: Option<Fault>,
    boot: u64,
    ops: u64,
    renames: u64,
    crash_at: Option<u64>,
    crashed: bool,
    fail_next_sync: bool,
    fail_next_dir_sync: bool,
    ignore_dir_syncs: bool,
    /// Every directory synced, in order.
    synced_dirs: Vec<PathBuf>,
}

impl State {
    /// Counts an I/O call, failing it if the machine is down or goes down now.
    fn tick(&mut self) -> io::Result<()> {
        if !self.crashed && self.crash_at == Some(self.ops) {
            self.crashed = true;
        }
        if self.crashed {
            return Err(io::Error::other("simulated crash: the machine is down"));
        }
        self.ops += 1;
        Ok(())
    }

    /// Fails a call that changes the file system when it is read-only.
    fn check_writable(&self) -> io::Result<()> {
        if self.fault == Some(Fault::ReadOnly) {
            return Err(io::Error::new(
                io::ErrorKind::ReadOnlyFilesystem,
                "simulated: read-only file system",
            ));
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display())))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn link(&mut self, path: &Path) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        self.names.insert(path.to_path_buf(), ino);
        self.unsynced_ns.push(NsOp::Link(path.to_path_buf(), ino));
        ino
    }

    fn inode(&mut self, ino: u64, boot: u64) -> io::Result<&mut Inode> {
        if boot != self.boot {
            return Err(io::Error::other("a handle from before the crash"));
        }
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("no such inode"))
    }
}

/// The simulated file system; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
    /// The logs whose sync failed since the last reboot, as a store notes them.
    sync_failures: Arc<SyncFailures>,
}

impl SimFs {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An independent copy of the disk, to crash it in several ways from one state.
    pub(crate) fn snapshot(&self) -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(self.lock().clone())),
            sync_failures: Arc::new(self.sync_failures.copy()),
        }
    }

    /// Makes I/O call number `n` (counting from 0) and all later ones fail.
    pub(crate) fn crash_at(&self, n: u64) {
        self.lock().crash_at = Some(n);
    }

    /// Whether the machine went down.
    pub(crate) fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// How many renames succeeded since the disk was made.
    pub(crate) fn renames(&self) -> u64 {
        self.lock().renames
    }

    /// How many I/O calls succeeded.
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Makes the next `sync_data` fail, as a failed `fdatasync` does on Linux: what was
    /// written to that file since its last sync is dropped (see the module docs).
    pub(crate) fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Makes the next `sync_dir` fail: the directory's changes since its last sync
    /// stay as they read, and are not made durable by it.
    pub(crate) fn fail_next_dir_sync(&self) {
        self.lock().fail_next_dir_sync = true;
    }

    /// Injects `fault` (or clears it) until changed.
    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        self.lock().fault = fault;
    }

    /// Makes every `sync_dir` do nothing until the next reboot: a store that forgot its
    /// directory syncs.
    pub(crate) fn ignore_dir_syncs(&self) {
        self.lock().ignore_dir_syncs = true;
    }

    /// Every directory synced since the disk was made, in order.
    pub(crate) fn synced_dirs(&self) -> Vec<PathBuf> {
        self.lock().synced_dirs.clone()
    }

    /// The live bytes of the file at `path`.
    pub(crate) fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let ino = state.names.get(path)?;
        state.inodes.get(ino).map(|inode| inode.data.clone())
    }

    /// The logs a store noted as failed to sync on this disk.
    pub(crate) fn failures(&self) -> &SyncFailures {
        &self.sync_failures
    }

    /// Crashes (if the machine is still up) and starts again with what `mode` keeps.
    pub(crate) fn reboot(&self, mode: CrashMode, rng: &mut Rng) {
        let mut state = self.lock();
        let state = &mut *state;
        let mut names = state.durable_names.clone();
        let kept_ns = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepSomeSectors => rng.below(state.unsynced_ns.len() + 1),
            CrashMode::TearLastWrite => state.unsynced_ns.len(),
        };
        for op in &state.unsynced_ns[..kept_ns] {
            op.apply(&mut names);
        }
        let last_write = state.last_write;
        for (&ino, inode) in &mut state.inodes {
            let data = match mode {
                CrashMode::DropUnsynced => inode.durable.clone(),
                CrashMode::KeepSomeSectors => keep_some_sectors(inode, rng),
                CrashMode::TearLastWrite => {
                    let mut data = inode.data.clone();
                    if let Some((_, offset, len)) = last_write.filter(|w| w.0 == ino && w.2 > 0) {
                        // Stores only ever append, so the torn write ends the file.
                        debug_assert_eq!(offset + len, data.len());
                        data.truncate(offset + rng.below(len));
                    }
                    data
                }
            };
            let data = inode.without_dropped(data);
            inode.durable = data.clone();
            inode.data = data;
            inode.unsynced.clear();
            inode.dropped.clear();
        }
        let named: BTreeSet<u64> = names.values().copied().collect();
        state.inodes.retain(|ino, _| named.contains(ino));
        state.durable_names = names.clone();
        state.names = names;
        state.unsynced_ns.clear();
        state.last_write = None;
        state.locks.clear();
        state.shared_locks.clear();
        state.boot += 1;
        state.ops = 0;
        state.crash_at = None;
        state.crashed = false;
        state.fail_next_sync = false;
        state.fail_next_dir_sync = false;
        state.ignore_dir_syncs = false;
        // The process that noted them is gone, and so is the page cache.
        self.sync_failures.clear();
    }
}

fn keep_some_sectors(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let len = if rng.coin() {
        inode.data.len()
    } else {
        inode.durable.len()
    };
    let mut out = inode.durable.clone();
    out.resize(len, 0);
    let sectors: BTreeSet<usize> = inode
        .unsynced
        .iter()
        .filter(|(_, n)| *n > 0)
        .flat_map(|&(offset, n)| offset / SECTOR..=(offset + n - 1) / SECTOR)
        .collect();
    for sector in sectors {
        if rng.coin() {
            let range = (sector * SECTOR).min(len)..((sector + 1) * SECTOR).min(len);
            for (slot, at) in out[range.clone()].iter_mut().zip(range) {
                *slot = inode.data.get(at).copied().unwrap_or(0);
            }
        }
    }
    out
}
