//! A full disk and a read-only file system, for real, on redb and fs (sled 0.34 can hang
//! inside its own threads when its disk fills, as this test once found, so it is not
//! run on sled): on a small
//! tmpfs (the tests must be root to mount it; otherwise they say so and check nothing
//! else), writes and flushes fail with an error that says what happened and what to
//! do, the handle is poisoned, and once space is freed (or the file system is writable
//! again) the store reopens with everything flushed before.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use persister_core::{ActorId, DynStore, Error, Persister, Result};

use persister_backends::{Access, Backend};

use crate::support::{named, store_contents};

/// A tmpfs mounted at a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Mount(dir.to_path_buf()))
    }

    /// `source` mounted again at `target`, read-only: a read-only view of the same
    /// files. Unlike remounting the whole file system read-only, this cannot be refused
    /// because some file on it is open for writing (or deleted but still open) through
    /// the other mount.
    fn read_only_view(source: &Path, target: &Path) -> Mount {
        let run = |args: &[&str]| {
            let status = Command::new("mount")
                .args(args)
                .arg(target)
                .status()
                .expect("mount");
            assert!(
                status.success(),
                "mount {args:?} {} failed",
                target.display()
            );
        };
        run(&["--bind", &source.to_string_lossy()]);
        let view = Mount(target.to_path_buf());
        run(&["-o", "remount,bind,ro"]);
        view
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn open(kind: &Backend, path: &Path) -> Result<DynStore> {
    kind.open(path, Access::ReadWrite)
}

fn open_read_only(kind: &Backend, path: &Path) -> Result<DynStore> {
    kind.open(path, Access::ReadOnly)
}

fn full_disk_and_read_only_file_system(kind: &Backend) -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let Some(_tmpfs) = Mount::tmpfs(dir.path(), "28m") else {
        println!("{kind}: skipped, mounting a tmpfs needs root");
        return Ok(());
    };
    let path = dir.path().join("store");
    // Freeing both leaves the room a reopen needs to write: redb replays the commits its
    // log holds beyond the file (here 8 MiB of them, `checkpoint_log_bytes`: the disk
    // fills at the checkpoint), which with redb's pages around them took more than
    // 10 MiB and at most 11. Freeing the small one alone leaves too little for that.
    let small_filler = dir.path().join("small filler");
    let filler = dir.path().join("filler");
    std::fs::write(&small_filler, vec![1u8; 2 << 20]).expect("the small filler");
    std::fs::write(&filler, vec![1u8; 10 << 20]).expect("the filler");

    // Fill the disk, flushing every write; keep what was flushed.
    let store = open(kind, &path)?;
    let mut doc = store.open_document(&"doc".into())?;
    let actor = ActorId::new([7; 16]);
    let mut flushed = 0u64;
    let (error, in_flush) = loop {
        let seq = flushed + 1;
        if let Err(e) = doc.insert_changes(vec![(actor.clone(), seq, vec![seq as u8; 64 * 1024])]) {
            break (e, false);
        }
        match doc.flush() {
            Ok(_) => flushed = seq,
            Err(e) => break (e, true),
        }
        assert!(flushed < 1000, "{kind}: the disk never filled");
    };
    let message = error.to_string();
    assert!(
        message.contains("disk is full") || matches!(error, Error::Poisoned { .. }),
        "{kind}: the error does not say the disk is full: {message}"
    );
    if in_flush {
        let again = doc.flush();
        assert!(
            matches!(again, Err(Error::Poisoned { .. })),
            "{kind}: after a failed flush, flush gave {again:?}"
        );
    }
    drop(doc);
    drop(store);

    // Too little space freed: redb's replay of its log says how much it needs (fs
    // needs none).
    std::fs::remove_file(&small_filler).expect("removing the small filler");
    match (kind.name(), open(kind, &path)) {
        ("redb", Ok(_)) => panic!("redb replayed 8 MiB of log in 2 MiB"),
        ("redb", Err(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("disk is full") && message.contains("MiB must be free for them"),
                "redb: the error does not say how much room the replay needs: {message}"
            );
            println!("redb, 2 MiB freed: {message}");
        }
        (_, reopened) => drop(reopened?),
    }

    // Space freed: everything flushed is there.
    std::fs::remove_file(&filler).expect("removing the filler");
    let store = open(kind, &path)?;
    let contents = store_contents(&store)?;
    let changes = &contents[0].1.changes;
    assert!(
        changes.len() as u64 >= flushed,
        "{kind}: {flushed} flushed, {} there",
        changes.len()
    );
    for (i, (_, seq, value)) in changes.iter().take(flushed as usize).enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(value, &vec![*seq as u8; 64 * 1024], "{kind}: change {seq}");
    }

    // A read-only file system (a read-only view of the same files): opening for
    // writing fails and says so, opening read-only reads everything flushed, and
    // writable again (the original mount), the store reopens with it.
    let mut doc = store.open_document(&"other".into())?;
    doc.insert_changes(vec![(actor.clone(), 1, b"kept".to_vec())])?;
    doc.close()?;
    drop(store);
    let view_dir = tempfile::tempdir().expect("a temporary directory");
    let view = Mount::read_only_view(dir.path(), view_dir.path());
    let ro_path = view_dir.path().join("store");
    match open(kind, &ro_path) {
        Err(e) => assert!(
            e.to_string().contains("read-only"),
            "{kind}: the error does not say the file system is read-only: {e}"
        ),
        Ok(_) => panic!("{kind}: a store opened for writing on a read-only file system"),
    }
    let read_only = open_read_only(kind, &ro_path)?;
    assert_eq!(store_contents(&read_only)?.len(), 2);
    drop(read_only);
    drop(view);
    let store = open(kind, &path)?;
    let contents = store_contents(&store)?;
    let other = contents
        .iter()
        .find(|(id, ..)| *id == "other".into())
        .expect("the other document");
    assert_eq!(other.1.changes[0].2, b"kept".to_vec());
    println!("{kind}: {flushed} flushes of 64 KiB before the disk was full; all there after");
    Ok(())
}

#[test]
fn redb_full_disk_and_read_only_file_system() -> Result<()> {
    full_disk_and_read_only_file_system(&named("redb"))
}

#[test]
fn fs_full_disk_and_read_only_file_system() -> Result<()> {
    full_disk_and_read_only_file_system(&named("fs"))
}
