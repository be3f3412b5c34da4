//! Storage backends for tests: one that fails chosen I/O calls of a real file, and one
//! that keeps the bytes a power loss or a process kill would leave.

use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// What a [`FaultBackend`] fails, shared with the test that drives it.
#[derive(Debug)]
pub struct FaultControl {
    /// `write`, `set_len` and `sync_data` calls made so far.
    calls: AtomicU64,
    /// `sync_data` calls made so far.
    syncs: AtomicU64,
    /// `set_len` calls made so far.
    set_lens: AtomicU64,
    /// The index of the call that fails (`u64::MAX`: none).
    fail_at: AtomicU64,
    /// Whether every call from `fail_at` on fails too.
    forever: AtomicBool,
    /// Fail the next `sync_data`, whatever its index.
    fail_next_sync: AtomicBool,
    /// Whether a fault was injected.
    fired: AtomicBool,
    /// The OS error a fault reports (`ENOSPC`, `EROFS`, ...); 0 for a generic one.
    errno: AtomicI32,
}

impl Default for FaultControl {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            set_lens: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            forever: AtomicBool::new(false),
            fail_next_sync: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            errno: AtomicI32::new(0),
        }
    }
}

impl FaultControl {
    /// Fails call `index` only (`forever == false`), or every call from it on.
    pub fn failing_at(index: u64, forever: bool) -> Self {
        let control = Self::default();
        control.fail_at.store(index, Ordering::SeqCst);
        control.forever.store(forever, Ordering::SeqCst);
        control
    }

    /// Makes every fault report OS error `errno`, as the disk would (28, `ENOSPC`: the
    /// disk is full; 30, `EROFS`: the file system went read-only).
    pub fn with_errno(self, errno: i32) -> Self {
        self.errno.store(errno, Ordering::SeqCst);
        self
    }

    pub fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    pub fn set_lens(&self) -> u64 {
        self.set_lens.load(Ordering::SeqCst)
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    fn check(&self, call: &str, is_sync: bool) -> io::Result<()> {
        let index = self.calls.fetch_add(1, Ordering::SeqCst);
        match call {
            "sync_data" => self.syncs.fetch_add(1, Ordering::SeqCst),
            "set_len" => self.set_lens.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let fail_at = self.fail_at.load(Ordering::SeqCst);
        let fail = index == fail_at
            || (self.forever.load(Ordering::SeqCst) && index >= fail_at)
            || (is_sync && self.fail_next_sync.swap(false, Ordering::SeqCst));
        if fail {
            self.fired.store(true, Ordering::SeqCst);
            return Err(match self.errno.load(Ordering::SeqCst) {
                0 => io::Error::other(format!("injected fault in {call} #{index}")),
                errno => io::Error::from_raw_os_error(errno),
            });
        }
        Ok(())
    }
}

/// A real file whose `write`, `set_len` and `sync_data` calls fail as its
/// [`FaultControl`] says. Reads and locks go to the file untouched.
#[derive(Debug)]
pub struct FaultBackend {
    inner: FileBackend,
    control: Arc<FaultControl>,
}

impl FaultBackend {
    pub fn new(inner: FileBackend, control: Arc<FaultControl>) -> Self {
        Self { inner, control }
    }
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.control.check("set_len", false)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.control.check("sync_data", true)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.control.check("write", false)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// The bytes of a simulated disk: what the process sees, and what survives power loss.
#[derive(Default)]
struct Disk {
    /// Every write, at once: what a process kill leaves (the page cache survives).
    live: Vec<u8>,
    /// The bytes as of the last completed `sync_data`: what a power loss leaves.
    durable: Vec<u8>,
    /// Calls made so far (every kind).
    calls: u64,
    /// The call at which the machine dies: it and every later call fail.
    crash_at: Option<u64>,
    crashed: bool,
}

/// A disk in memory that can die at a chosen I/O call.
///
/// Every call (`len`, `read`, `write`, `set_len`, `sync_data`) counts. At the crash
/// index the call fails without effect and so does every later one, as if the process
/// had died there; [`CrashBackend::durable`] and [`CrashBackend::live`] then give the
/// bytes a power loss and a process kill would leave.
#[derive(Clone, Default)]
pub struct CrashBackend {
    disk: Arc<Mutex<Disk>>,
}

impl fmt::Debug for CrashBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.disk();
        f.debug_struct("CrashBackend")
            .field("len", &disk.live.len())
            .field("calls", &disk.calls)
            .field("crash_at", &disk.crash_at)
            .finish()
    }
}

impl CrashBackend {
    /// A disk holding `image` (durable), dying at call `crash_at` if given.
    pub fn new(image: Vec<u8>, crash_at: Option<u64>) -> Self {
        Self {
            disk: Arc::new(Mutex::new(Disk {
                live: image.clone(),
                durable: image,
                calls: 0,
                crash_at,
                crashed: false,
            })),
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn calls(&self) -> u64 {
        self.disk().calls
    }

    pub fn crashed(&self) -> bool {
        self.disk().crashed
    }

    pub fn durable(&self) -> Vec<u8> {
        self.disk().durable.clone()
    }

    pub fn live(&self) -> Vec<u8> {
        self.disk().live.clone()
    }

    /// Counts a call, and fails it if the machine is dead.
    fn call(&self, what: &str) -> io::Result<MutexGuard<'_, Disk>> {
        let mut disk = self.disk();
        let index = disk.calls;
        disk.calls += 1;
        if disk.crashed || disk.crash_at == Some(index) {
            disk.crashed = true;
            return Err(io::Error::other(format!(
                "simulated crash: {what} #{index}"
            )));
        }
        Ok(disk)
    }
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> Result<u64, BackendError> {
        Ok(self.call("len")?.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let disk = self.call("read")?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = disk
            .live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let mut disk = self.call("set_len")?;
        disk.live
            .resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        let mut disk = self.call("sync_data")?;
        disk.durable = disk.live.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut disk = self.call("write")?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if disk.live.len() < start + data.len() {
            disk.live.resize(start + data.len(), 0);
        }
        disk.live[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// Opens the store at `path` (which must exist) through a [`FaultBackend`].
pub fn open_faulty(
    path: &std::path::Path,
    control: &Arc<FaultControl>,
    options: persister_redb::RedbOptions,
) -> persister_core::Result<persister_redb::RedbStore> {
    use persister_core::Error;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|err| Error::io("open", path, err))?;
    let file = FileBackend::new(file);
    let backend = FaultBackend::new(file, Arc::clone(control));
    persister_redb::RedbStore::open_on_backend(backend, path, options)
}
