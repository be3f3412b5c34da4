//! Two processes opening one empty directory at once: the second to take the lock
//! finds the store the first made, and never writes its own marker over it.

use std::io;
use std::path::Path;

use persister_core::Error;

use crate::format::encode_marker;
use crate::io::{Fs, FsFile, FsLock, OsFs};
use crate::names::MARKER;
use crate::{FsOptions, FsStore};

/// The operating system's file system, on which another process makes a store of a
/// later build's format in the directory just before this one takes the lock.
#[derive(Debug)]
struct Racing;

impl Fs for Racing {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.read_dir(dir)
    }
    fn for_each_name(
        &self,
        dir: &Path,
        f: &mut dyn FnMut(String) -> io::Result<()>,
    ) -> io::Result<()> {
        OsFs.for_each_name(dir, f)
    }
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        OsFs.read_prefix(path, max)
    }
    fn open(&self, path: &Path, write: bool) -> io::Result<Box<dyn FsFile>> {
        OsFs.open(path, write)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        OsFs.create(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        if let Some(dir) = path.parent() {
            std::fs::write(dir.join(MARKER), encode_marker(9))?;
        }
        OsFs.try_lock(path)
    }
    fn try_lock_shared(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        OsFs.try_lock_shared(path)
    }
}

#[test]
fn a_store_made_while_this_open_waited_for_the_lock_is_read_not_overwritten() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = dir.path().join("store");
    let opened = FsStore::open_on(std::sync::Arc::new(Racing), &store, FsOptions::default());
    assert!(
        matches!(opened, Err(Error::UnsupportedFormat { found: 9, .. })),
        "{:?}",
        opened.map(|_| ())
    );
    let marker = std::fs::read(store.join(MARKER)).expect("the marker");
    assert_eq!(
        marker,
        encode_marker(9),
        "the other build's marker was replaced"
    );
}
