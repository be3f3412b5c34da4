//! One process, one open store: the lock file.

use std::path::Path;
use std::process::Command;

use persister_core::{Error, Persister, Store};
use persister_fs::FsStore;

use crate::common::TestResult;

const CHILD_DIR: &str = "PERSISTER_FS_TEST_CHILD_DIR";
const CHILD_EXPECT: &str = "PERSISTER_FS_TEST_CHILD_EXPECT";

#[test]
fn second_open_in_the_same_process_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FsStore::open(dir.path())?;
    let err = FsStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Locked { path } if path == dir.path()),
        "{err}"
    );
    drop(store);
    FsStore::open(dir.path())?;
    Ok(())
}

#[test]
fn an_open_handle_keeps_the_store_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&"doc".into())?;
    drop(store);
    assert!(matches!(
        FsStore::open(dir.path()),
        Err(Error::Locked { .. })
    ));
    p.set_document(b"still works".to_vec())?;
    assert!(p.flush()? > 0);
    drop(p);
    let store = FsStore::open(dir.path())?;
    let p = store.open_document(&"doc".into())?;
    assert_eq!(p.get_document()?, Some(b"still works".to_vec()));
    Ok(())
}

/// Runs [`child_opens_the_store`] in a child process (this test binary, run again).
fn run_child(dir: &Path, expect: &str) -> TestResult {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "lock::child_opens_the_store",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_EXPECT, expect)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn another_process_gets_locked_until_the_store_is_dropped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FsStore::open(dir.path())?;
    run_child(dir.path(), "locked")?;
    drop(store);
    run_child(dir.path(), "open")
}

/// The child side of [`another_process_gets_locked_until_the_store_is_dropped`].
#[test]
#[ignore = "run in a child process by another_process_gets_locked_until_the_store_is_dropped"]
fn child_opens_the_store() -> TestResult {
    let (Some(dir), Some(expect)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var(CHILD_EXPECT).ok(),
    ) else {
        println!("skipped: only meaningful as a child process");
        return Ok(());
    };
    let result = FsStore::open(&dir);
    match expect.as_str() {
        "locked" => assert!(matches!(result, Err(Error::Locked { .. })), "{result:?}"),
        _ => assert!(result.is_ok(), "{result:?}"),
    }
    Ok(())
}
