//! Commands that only read: on a read-only file system they work and change no byte,
//! and an interrupted command leaves nothing behind outside its destination.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use persister_core::{ActorId, Persister, Store};

use crate::support::{
    TestResult, backends, interrupt_when_made, make_store, named, open_store, persister,
    snapshot_files, store_path,
};

/// A tmpfs mounted at a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a new tmpfs at `dir`, or says why it cannot (not root, no mount here).
    fn tmpfs(dir: &Path) -> Result<Mount, String> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("mount could not run: {e}"))?;
        if !status.success() {
            return Err("mount -t tmpfs failed (the tests are not root here)".into());
        }
        Ok(Mount(dir.to_path_buf()))
    }

    fn remount_read_only(&self) -> TestResult {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()?;
        assert!(status.success(), "remounting read-only failed");
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_commands_work_on_a_read_only_file_system_and_change_no_byte() -> TestResult {
    for backend in backends() {
        let dir = tempfile::tempdir()?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt)?;
        let mount = match Mount::tmpfs(&mnt) {
            Ok(mount) => Some(mount),
            Err(why) => {
                println!("{why}: checking on a writable directory that nothing changes");
                None
            }
        };
        let path = store_path(&mnt, backend);
        make_store(backend, &path)?;
        if let Some(mount) = &mount {
            mount.remount_read_only()?;
        }
        let before = snapshot_files(&mnt)?;
        let store = path.to_str().ok_or("path")?;
        let out = dir.path().join("out");
        persister(["ls", store])?.expect(0);
        persister(["info", store, "notes"])?.expect(0);
        persister(["verify", store])?.expect(0);
        let export = out.with_extension("export");
        persister(["export", store, export.to_str().ok_or("path")?])?.expect(0);
        let copy = out.with_extension("redb");
        persister(["copy", store, copy.to_str().ok_or("path")?])?.expect(0);
        assert!(
            snapshot_files(&mnt)? == before,
            "{backend:?}: a read-only command changed the store"
        );
        drop(mount);
    }
    Ok(())
}

#[test]
fn an_interrupted_copy_from_sled_leaves_nothing_behind() -> TestResult {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir()?;
    let src = store_path(dir.path(), named("sled"));
    {
        // Large enough that copying it takes a while.
        let store = open_store(named("sled"), &src)?;
        for doc in 0..40u8 {
            let mut p = store.open_document(&format!("doc {doc}").into())?;
            for seq in 1..=4 {
                p.insert_changes(vec![(ActorId::new([doc; 16]), seq, vec![doc; 256 * 1024])])?;
            }
            p.close()?;
        }
    }
    let tmp = dir.path().join("tmp");
    let out = dir.path().join("out");
    std::fs::create_dir(&tmp)?;
    std::fs::create_dir(&out)?;
    let dst = out.join("copy.redb");
    // Once it has made its copy of the sled store, press Ctrl-C.
    let (status, seen) = interrupt_when_made(
        Command::new(env!("CARGO_BIN_EXE_persister"))
            .arg("copy")
            .arg(&src)
            .arg(&dst)
            .env("TMPDIR", &tmp),
        &tmp,
    )?;
    if !seen {
        println!("the copy finished before it could be interrupted: {status:?}");
    }
    assert!(
        status.signal() == Some(2) || status.success(),
        "ended by {status:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)?.collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let made: Vec<_> = std::fs::read_dir(&out)?.collect::<Result<_, _>>()?;
    assert!(
        status.success() || made.is_empty(),
        "left beside the destination: {made:?}"
    );
    assert!(seen, "the command ended before its copy appeared");
    Ok(())
}
