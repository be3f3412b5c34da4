//! What protects a sled store from sled's own recovery: a damaged store is refused
//! without a byte of it changed (sled's recovery runs on a copy first), and a read-only
//! open reads a copy, never writes the store, and leaves no copy behind, also of a store
//! whose files are read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persister_core::{Error, Persister, Result, Store};
use persister_sled::SledStore;
use persister_testkit::{Contents, Rng};

use crate::corruption::{damage, write_store};

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    all
}

#[test]
fn a_damaged_store_is_refused_untouched() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let pristine = root.path().join("pristine");
    write_store(&pristine, 3)?;
    let mut refused = 0;
    for seed in 0..60 {
        let dir = root.path().join(format!("damaged-{seed}"));
        crate::raw::copy_dir(&pristine, &dir);
        damage(&dir, &mut Rng::new(seed));
        let before = files(&dir);
        if let Err(e) = SledStore::open(&dir) {
            refused += 1;
            assert!(
                !e.to_string().contains("persister-sled-copy"),
                "the error names the copy: {e}"
            );
            assert!(
                files(&dir) == before,
                "seed {seed}: a refused open changed the store"
            );
        }
    }
    println!("{refused} of 60 damaged stores refused, each untouched");
    assert!(
        refused > 0,
        "no damage made the open fail: the test checked nothing"
    );
    Ok(())
}

#[test]
fn a_read_only_open_writes_nothing_and_leaves_no_copy() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("store");
    let versions = write_store(&dir, 2)?;
    let before = files(&dir);
    {
        let store = SledStore::open_read_only(&dir)?;
        let ids = store.list_documents()?;
        assert_eq!(ids.len(), versions.len());
        for id in &ids {
            let mut p = store.open_document(id)?;
            p.get_changes()?;
            p.get_document()?;
            let refused = p.set_document(b"x".to_vec());
            assert!(
                matches!(&refused, Err(Error::InvalidInput { .. })),
                "a write to a read-only store gave {refused:?}"
            );
            assert_eq!(p.flush()?, 0);
        }
        assert!(matches!(
            store.remove_document(&ids[0]),
            Err(Error::InvalidInput { .. })
        ));
        // A second reader at the same time, with a copy of its own.
        let second = SledStore::open_read_only(&dir)?;
        let copies = [store.copy_path().unwrap(), second.copy_path().unwrap()];
        assert_ne!(copies[0], copies[1]);
        assert!(!copies[0].starts_with(&dir));
        drop((second, store));
        for copy in copies {
            assert!(!copy.exists(), "{} was left behind", copy.display());
        }
    }
    assert!(files(&dir) == before, "a read-only open changed the store");

    // A store open for writing cannot be read meanwhile.
    let writer = SledStore::open(&dir)?;
    assert!(matches!(
        SledStore::open_read_only(&dir),
        Err(Error::Locked { .. })
    ));
    drop(writer);
    Ok(())
}

/// Sets every directory from `dir` down to `dir_mode` and every file to `file_mode`.
#[cfg(unix)]
fn set_modes(dir: &Path, dir_mode: u32, file_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            set_modes(&path, dir_mode, file_mode);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

/// Makes a store directory read-only (0555, its files 0444) while alive, and writable
/// again when dropped, even by a failed assertion, so that its temporary directory can
/// be removed.
#[cfg(unix)]
struct ReadOnlyModes<'a>(&'a Path);

#[cfg(unix)]
impl<'a> ReadOnlyModes<'a> {
    /// Makes `dir` and everything in it read-only.
    fn set(dir: &'a Path) -> Self {
        set_modes(dir, 0o555, 0o444);
        Self(dir)
    }
}

#[cfg(unix)]
impl Drop for ReadOnlyModes<'_> {
    fn drop(&mut self) {
        set_modes(self.0, 0o755, 0o644);
    }
}

/// The files (`false`) and directories (`true`) from `dir` down, `dir` itself included,
/// with their modes.
#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        all.push((path, meta.is_dir(), meta.permissions().mode() & 0o7777));
    }
    all
}

// Root writes read-only files all the same, so as root a read-only copy would not make
// sled fail: the test checks the copy's modes too, which fail on the old copy.
#[cfg(unix)]
#[test]
fn a_read_only_open_reads_a_store_of_read_only_files() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("store");
    let versions = write_store(&dir, 3)?;
    let _modes = ReadOnlyModes::set(&dir);
    let before = files(&dir);

    let store = SledStore::open_read_only(&dir)?;
    let copy = store.copy_path().unwrap();
    let copied = modes(&copy);
    assert!(
        copied.iter().any(|(_, is_dir, _)| !is_dir),
        "the copy holds no file"
    );
    for (path, is_dir, mode) in copied {
        let owner = if is_dir { 0o700 } else { 0o600 };
        assert!(
            mode & owner == owner,
            "{} in the copy has mode {mode:o}: sled cannot write it",
            path.display()
        );
    }
    let ids = store.list_documents()?;
    assert!(versions.iter().map(|v| &v.id).eq(ids.iter()));
    for version in &versions {
        let p = store.open_document(&version.id)?;
        let last = version.states.last().unwrap();
        assert!(
            Contents::read(&p)? == Contents::of(last),
            "{} does not read back as written",
            version.id
        );
    }
    drop(store);
    assert!(!copy.exists(), "{} was left behind", copy.display());
    assert!(files(&dir) == before, "a read-only open changed the store");
    Ok(())
}

/// A read-only open holds the store's lock shared while it copies, as a reader does on
/// every backend (README, "Commands that only read"): a reader copying the store beside
/// it does not make it fail, while a writer's open fails with `Locked`.
#[test]
fn readers_copying_at_the_same_time_do_not_lock_each_other_out() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("store");
    let versions = write_store(&dir, 2)?;
    // Another reader, in the middle of its copy, holds sled's lock shared.
    let db = std::fs::File::open(dir.join("db")).expect("open the db file");
    db.try_lock_shared().expect("a shared lock on the db file");

    let store = SledStore::open_read_only(&dir);
    assert!(
        store.is_ok(),
        "a second reader was refused: {:?}",
        store.err()
    );
    let store = store?;
    assert_eq!(store.list_documents()?.len(), versions.len());
    let writer = SledStore::open(&dir);
    assert!(
        matches!(writer, Err(Error::Locked { .. })),
        "a writer opened a store being read: {writer:?}"
    );
    drop(db);

    // Two readers opening at once, many times over: neither is refused.
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    // Every round is run, so that the other reader never waits alone.
                    let mut refused = Vec::new();
                    for round in 0..10 {
                        barrier.wait();
                        if let Err(e) = SledStore::open_read_only(&dir) {
                            refused.push(format!("round {round}: {e}"));
                        }
                    }
                    refused
                })
            })
            .collect();
        for reader in readers {
            let refused = reader.join().expect("the reader thread");
            assert!(refused.is_empty(), "readers refused: {refused:?}");
        }
    });
    Ok(())
}

/// The child side of `a_copy_that_cannot_be_written_names_the_copy`: reports how
/// opening went.
pub fn try_open_read_only(dir: &Path) {
    match SledStore::open_read_only(dir) {
        Ok(_) => println!("RESULT opened"),
        Err(Error::Io { path, source, .. }) => {
            println!("RESULT io {:?} {}", source.kind(), path.display());
        }
        Err(e) => println!("RESULT error {e}"),
    }
}

/// A read-only open whose copy cannot be written (`$TMPDIR` full: here a child whose
/// files may not grow past 4 KiB) fails with an I/O error that names the copy, as the
/// docs say, not the store's file it was copying, which is not at fault.
#[cfg(unix)]
#[test]
fn a_copy_that_cannot_be_written_names_the_copy() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("store");
    write_store(&dir, 2)?;
    let output = crate::child::command_with_file_limit("try-open-read-only", &dir, 8)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|l| Some(l.split_once("RESULT ")?.1))
        .unwrap_or("nothing");
    let path = result
        .strip_prefix("io FileTooLarge ")
        .unwrap_or_else(|| panic!("not the copy's write failure: {stdout}"));
    assert!(
        !Path::new(path).starts_with(&dir),
        "the error names the store, which is not at fault: {path}"
    );
    assert!(path.contains("persister-sled-copy"), "{path}");
    Ok(())
}
