//! The simulated file system's side of the [`Fs`] trait: every call counts as an I/O
//! call and fails once the machine is down.

use std::io;
use std::path::{Path, PathBuf};

use super::{Fault, NsOp, SimFs};
use crate::io::{FileKey, Fs, FsFile, FsLock, SyncFailures};

impl Fs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.tick()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        state.tick()?;
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        state.tick()?;
        let ino = state.lookup(path)?;
        let data = &state.inodes[&ino].data;
        Ok(data[..data.len().min(max)].to_vec())
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        state.tick()?;
        if write {
            state.check_writable()?;
        }
        let ino = state.lookup(path)?;
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
            pos: 0,
            boot: state.boot,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        state.tick()?;
        state.check_writable()?;
        state.check_parent(path)?;
        let ino = match state.names.get(path) {
            Some(&ino) => {
                let boot = state.boot;
                let inode = state.inode(ino, boot)?;
                inode.data.clear();
                inode.resized(0);
                ino
            }
            None => state.link(path),
        };
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
            pos: 0,
            boot: state.boot,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.tick()?;
        state.check_writable()?;
        state.lookup(from)?;
        let op = NsOp::Rename(from.to_path_buf(), to.to_path_buf());
        op.apply(&mut state.names);
        state.unsynced_ns.push(op);
        state.renames += 1;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.tick()?;
        state.check_writable()?;
        state.lookup(path)?;
        let op = NsOp::Unlink(path.to_path_buf());
        op.apply(&mut state.names);
        state.unsynced_ns.push(op);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.tick()?;
        if std::mem::take(&mut state.fail_next_dir_sync) {
            return Err(io::Error::other("simulated directory fsync failure"));
        }
        state.synced_dirs.push(dir.to_path_buf());
        if !state.ignore_dir_syncs {
            state.durable_names = state.names.clone();
            state.unsynced_ns.clear();
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let mut state = self.lock();
        state.tick()?;
        state.check_parent(path)?;
        // The lock file is opened for writing, which a read-only file system refuses.
        state.check_writable()?;
        if state.locks.contains(path) || state.shared_locks.contains_key(path) {
            return Ok(None);
        }
        if !state.names.contains_key(path) {
            state.link(path);
        }
        state.locks.insert(path.to_path_buf());
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            boot: state.boot,
            shared: false,
        })))
    }

    fn try_lock_shared(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let mut state = self.lock();
        state.tick()?;
        state.lookup(path)?;
        if state.locks.contains(path) {
            return Ok(None);
        }
        *state.shared_locks.entry(path.to_path_buf()).or_default() += 1;
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            boot: state.boot,
            shared: true,
        })))
    }

    fn dir_key(&self, dir: &Path) -> io::Result<FileKey> {
        let mut state = self.lock();
        state.tick()?;
        match state.dirs.contains(dir) {
            // No symlinks here: a directory's path is the directory.
            true => Ok(FileKey::Path(dir.to_path_buf())),
            false => Err(io::Error::new(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn sync_failures(&self) -> &SyncFailures {
        self.failures()
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
    pos: usize,
    boot: u64,
}

impl FsFile for SimFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut state = self.fs.lock();
        state.tick()?;
        let data = state.inode(self.ino, self.boot)?.data.clone();
        self.pos = data.len();
        Ok(data)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.fs.lock();
        state.tick()?;
        let data = &state.inode(self.ino, self.boot)?.data;
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.tick()?;
        state.check_writable()?;
        let (buf, full) = match state.fault {
            // A full disk takes the first half of the write, as a short write does.
            Some(Fault::Full) => (&buf[..buf.len() / 2], true),
            _ => (buf, false),
        };
        let inode = state.inode(self.ino, self.boot)?;
        let end = self.pos + buf.len();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[self.pos..end].copy_from_slice(buf);
        inode.unsynced.push((self.pos, buf.len()));
        inode.rewritten(self.pos, buf.len());
        state.last_write = Some((self.ino, self.pos, buf.len()));
        self.pos = end;
        if full {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated: no space left on device",
            ));
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.tick()?;
        state.check_writable()?;
        let len = len as usize;
        let inode = state.inode(self.ino, self.boot)?;
        inode.data.resize(len, 0);
        inode.resized(len);
        self.pos = len;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.tick()?;
        if std::mem::take(&mut state.fail_next_sync) {
            state.inode(self.ino, self.boot)?.sync_failed();
            return Err(io::Error::other("simulated fdatasync failure"));
        }
        let inode = state.inode(self.ino, self.boot)?;
        inode.durable = inode.without_dropped(inode.data.clone());
        inode.unsynced.clear();
        if state.last_write.is_some_and(|w| w.0 == self.ino) {
            state.last_write = None;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
    boot: u64,
    shared: bool,
}

impl FsLock for SimLock {
    fn release(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.lock();
        if state.boot != self.boot {
            return;
        }
        if !self.shared {
            state.locks.remove(&self.path);
        } else if let Some(n) = state.shared_locks.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                state.shared_locks.remove(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{CrashMode, Rng, SECTOR};

    fn dir() -> PathBuf {
        PathBuf::from("/store")
    }

    fn write_file(fs: &SimFs, name: &str, data: &[u8], sync: bool) -> io::Result<()> {
        let mut file = fs.create(&dir().join(name))?;
        file.append(data)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// The control for the crash tests: a rename not followed by a directory sync is
    /// lost, and one followed by it is kept; unsynced data is lost.
    #[test]
    fn rename_without_directory_sync_is_lost() -> io::Result<()> {
        let fs = SimFs::new();
        fs.create_dir_all(&dir())?;
        write_file(&fs, "a.tmp", b"synced data", true)?;
        fs.rename(&dir().join("a.tmp"), &dir().join("a"))?;
        fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(1));
        assert_eq!(fs.read(&dir().join("a")), None);
        assert_eq!(fs.read_dir(&dir())?, Vec::<String>::new());

        write_file(&fs, "a.tmp", b"synced data", true)?;
        fs.rename(&dir().join("a.tmp"), &dir().join("a"))?;
        fs.sync_dir(&dir())?;
        let mut file = fs.open(&dir().join("a"), true)?;
        file.read_all()?;
        file.append(b" and more")?;
        fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(1));
        assert_eq!(fs.read(&dir().join("a")), Some(b"synced data".to_vec()));
        Ok(())
    }

    #[test]
    fn torn_write_keeps_a_strict_prefix() -> io::Result<()> {
        let fs = SimFs::new();
        fs.create_dir_all(&dir())?;
        write_file(&fs, "a", b"synced", true)?;
        fs.sync_dir(&dir())?;
        let mut file = fs.open(&dir().join("a"), true)?;
        file.read_all()?;
        file.append(b"0123456789")?;
        fs.reboot(CrashMode::TearLastWrite, &mut Rng::new(7));
        let data = fs.read(&dir().join("a")).unwrap_or_default();
        assert!(data.len() >= 6 && data.len() < 16, "{data:?}");
        assert!(b"synced0123456789".starts_with(&data));
        Ok(())
    }

    /// A failed sync leaves the bytes as they read but drops them: a later successful
    /// sync makes durable only what was written after the failure (and the length),
    /// and a power loss shows the dropped bytes as the disk held them before (zeroes
    /// past its old end), in every crash mode. Writing the bytes again makes them dirty
    /// again, so a file rewritten whole is durable whole.
    #[test]
    fn a_failed_sync_drops_what_it_was_to_write() -> io::Result<()> {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::KeepSomeSectors,
            CrashMode::TearLastWrite,
        ] {
            let fs = SimFs::new();
            fs.create_dir_all(&dir())?;
            write_file(&fs, "a", b"synced", true)?;
            fs.sync_dir(&dir())?;
            let mut file = fs.open(&dir().join("a"), true)?;
            file.read_all()?;
            file.append(b"DROPPED")?;
            fs.fail_next_sync();
            assert!(file.sync_data().is_err());
            file.append(b"after")?;
            file.sync_data()?;
            assert_eq!(
                fs.read(&dir().join("a")),
                Some(b"syncedDROPPEDafter".to_vec())
            );
            // Another file's sync changes nothing of it.
            write_file(&fs, "b", b"other", true)?;
            fs.reboot(mode, &mut Rng::new(3));
            assert_eq!(
                fs.read(&dir().join("a")),
                Some(b"synced\0\0\0\0\0\0\0after".to_vec()),
                "{mode:?}"
            );
        }

        // A partial rewrite of the dropped bytes makes just those durable.
        let fs = SimFs::new();
        fs.create_dir_all(&dir())?;
        write_file(&fs, "a", b"0123456789", true)?;
        fs.sync_dir(&dir())?;
        let mut file = fs.open(&dir().join("a"), true)?;
        file.read_all()?;
        file.truncate(4)?;
        file.append(b"abcdef")?;
        fs.fail_next_sync();
        assert!(file.sync_data().is_err());
        file.truncate(6)?;
        file.append(b"XY")?;
        file.sync_data()?;
        fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
        assert_eq!(fs.read(&dir().join("a")), Some(b"012345XY".to_vec()));

        // A file created again over the same name starts with nothing dropped.
        let fs = SimFs::new();
        fs.create_dir_all(&dir())?;
        let mut file = fs.create(&dir().join("a"))?;
        file.append(b"lost")?;
        fs.fail_next_sync();
        assert!(file.sync_data().is_err());
        drop(file);
        write_file(&fs, "a", b"kept", true)?;
        fs.sync_dir(&dir())?;
        fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
        assert_eq!(fs.read(&dir().join("a")), Some(b"kept".to_vec()));
        Ok(())
    }

    /// Four synced sectors of 1s, eight unsynced sectors of 2s, then a reboot.
    fn append_and_keep_some_sectors(seed: u64) -> io::Result<Vec<u8>> {
        let fs = SimFs::new();
        fs.create_dir_all(&dir())?;
        write_file(&fs, "a", &[1; 4 * SECTOR], true)?;
        fs.sync_dir(&dir())?;
        let mut file = fs.open(&dir().join("a"), true)?;
        file.read_all()?;
        file.append(&[2; 8 * SECTOR])?;
        fs.reboot(CrashMode::KeepSomeSectors, &mut Rng::new(seed));
        Ok(fs.read(&dir().join("a")).unwrap_or_default())
    }

    #[test]
    fn lost_sectors_read_as_before() -> io::Result<()> {
        let (mut seen_new, mut seen_lost, mut seen_short) = (false, false, false);
        for seed in 0..20 {
            let data = append_and_keep_some_sectors(seed)?;
            assert!(data.len() == 4 * SECTOR || data.len() == 12 * SECTOR);
            assert!(data[..4 * SECTOR].iter().all(|&b| b == 1));
            seen_short |= data.len() == 4 * SECTOR;
            for sector in data[4 * SECTOR..].chunks(SECTOR) {
                assert!(sector.iter().all(|&b| b == 2) || sector.iter().all(|&b| b == 0));
                seen_new |= sector[0] == 2;
                seen_lost |= sector[0] == 0;
            }
        }
        assert!(seen_new && seen_lost && seen_short);
        Ok(())
    }
}
