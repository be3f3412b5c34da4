//! Space comes back: logs mostly dead are rewritten at a flush; and a full or
//! read-only file system loses nothing flushed.

use std::fs;
use std::path::Path;
use std::process::Command;

use persister_core::{Batch, DocumentId, Error, Persister, Store};
use persister_fs::{FsOptions, FsStore};

use crate::common::{TestResult, actor};

fn options() -> FsOptions {
    FsOptions::default()
        .with_rewrite_min_len(64 * 1024)
        .with_rewrite_dead_share(0.5)
}

#[test]
fn overwriting_the_document_keeps_the_log_bounded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open_with(dir.path(), options())?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(vec![(actor(1), 1, vec![1; 5000])])?;
    let mut largest = 0;
    for round in 0..500u32 {
        p.set_document(round.to_le_bytes().repeat(2500))?;
        p.flush()?;
        largest = largest.max(fs::metadata(store.log_path(&id).unwrap())?.len());
    }
    // 500 flushes of 10 KB: 5 MB appended, but the log is rewritten once it passes the
    // 64 KiB minimum, since its 15 KB of live bytes are less than half of it.
    assert!(
        largest < 64 * 1024 + 11_000,
        "the log grew to {largest} bytes"
    );
    let sizes = p.sizes();
    drop((p, store));
    let store = FsStore::open_with(dir.path(), options())?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, Some(499u32.to_le_bytes().repeat(2500)));
    assert_eq!(p.get_changes()?, vec![vec![1; 5000]]);
    assert_eq!(p.sizes(), sizes);
    assert_eq!(p.recovered_bytes(), 0);
    let leftovers = fs::read_dir(dir.path())?.filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    });
    assert_eq!(leftovers.count(), 0);
    Ok(())
}

#[test]
fn compaction_shrinks_the_log_at_the_next_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open_with(dir.path(), options())?;
    let mut p = store.open_document(&id)?;
    for seq in 1..=200 {
        p.insert_changes(vec![(actor(1), seq, vec![seq as u8; 1000])])?;
        p.flush()?;
    }
    let log = store.log_path(&id).unwrap();
    let before = fs::metadata(&log)?.len();
    assert!(before > 200_000);
    let mut compaction = Batch::new().set_document(vec![7; 2000]);
    for seq in 1..=190 {
        compaction = compaction.remove_change(actor(1), seq);
    }
    p.apply(compaction)?;
    let written = p.flush()? as u64;
    let after = fs::metadata(&log)?.len();
    assert_eq!(written, after, "the flush wrote a new log");
    assert!(after < 20_000, "the log is still {after} bytes");
    drop((p, store));
    let store = FsStore::open_with(dir.path(), options())?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 10);
    assert_eq!(p.get_document()?, Some(vec![7; 2000]));
    Ok(())
}

#[test]
fn small_logs_are_not_rewritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&id)?;
    let mut total = 0;
    for round in 0..100u8 {
        p.set_document(vec![round; 1000])?;
        total += p.flush()? as u64;
    }
    // Under the default 1 MiB minimum, every flush appends.
    assert_eq!(fs::metadata(store.log_path(&id).unwrap())?.len(), total);
    Ok(())
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("the tests do not run as root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) -> TestResult {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()?;
        assert!(status.success(), "remount,{mode} failed");
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// On a real 1 MiB tmpfs: a flush that hits ENOSPC fails clearly and poisons, and
/// once space is freed everything flushed before is there; on the same file system
/// remounted read-only, a writable open fails clearly (EROFS) and a read-only open
/// reads everything. Skipped, with the reason printed, where tmpfs cannot be mounted.
#[test]
fn full_and_read_only_tmpfs_lose_nothing_flushed() -> TestResult {
    let tmpfs = match Tmpfs::mount("1m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("skipped: {why}");
            return Ok(());
        }
    };
    let dir = tmpfs.path().join("store");
    let filler = tmpfs.path().join("filler");
    fs::write(&filler, vec![0; 256 * 1024])?;
    let id = DocumentId::from("doc");
    let store = FsStore::open(&dir)?;
    let mut p = store.open_document(&id)?;
    let mut flushed = 0;
    let err = loop {
        p.insert_changes(vec![(actor(1), flushed + 1, vec![7; 16 * 1024])])?;
        match p.flush() {
            Ok(_) => flushed += 1,
            Err(err) => break err,
        }
        assert!(flushed < 100, "1 MiB never filled up");
    };
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Io { source, path, .. } if source.kind() == std::io::ErrorKind::StorageFull && path.starts_with(&dir)),
        "{message}"
    );
    assert!(message.contains("free space"), "{message}");
    assert!(matches!(p.flush(), Err(Error::Poisoned { .. })));
    drop((p, store));
    fs::remove_file(&filler)?;
    let store = FsStore::open(&dir)?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len() as u64, flushed);
    drop(p);
    store.close()?;

    tmpfs.remount("ro")?;
    let err = FsStore::open(&dir).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let store = FsStore::open_read_only(&dir)?;
    assert_eq!(
        store.open_document(&id)?.get_changes()?.len() as u64,
        flushed
    );
    drop(store);
    tmpfs.remount("rw")?;
    println!("{flushed} flushes of 16 KiB fit, then ENOSPC; everything flushed survived");
    Ok(())
}
