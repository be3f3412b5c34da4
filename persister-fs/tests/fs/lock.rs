//! One process, one open store: the lock file.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    if expect == "serve" {
        return serve(Path::new(&dir));
    }
    let result = FsStore::open(&dir);
    match expect.as_str() {
        "locked" => assert!(matches!(result, Err(Error::Locked { .. })), "{result:?}"),
        _ => assert!(result.is_ok(), "{result:?}"),
    }
    Ok(())
}

/// The child's loop: for each line on stdin, opens the store once (no retry), drops
/// it, and answers `reply locked <µs>`, `reply open <µs>` or `reply error <message>`.
fn serve(dir: &Path) -> TestResult {
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        line?;
        let started = Instant::now();
        let result = FsStore::open(dir);
        let micros = started.elapsed().as_micros();
        let reply = match result {
            Ok(store) => {
                drop(store);
                format!("open {micros}")
            }
            Err(Error::Locked { .. }) => format!("locked {micros}"),
            Err(e) => format!("error {e}"),
        };
        writeln!(out, "reply {reply}")?;
        out.flush()?;
    }
    Ok(())
}

fn lock_cycles() -> u64 {
    persister_testkit::env_count("PERSISTER_FS_LOCK_CYCLES", 1000)
}

/// A second process is refused at once while this one holds the store, and gets in
/// right after this one dropped it, even while another thread keeps forking children
/// (which share the lock's open file description between fork and exec): 1,000
/// cycles, 0 failures. `PERSISTER_FS_LOCK_CYCLES=n` runs n cycles.
#[test]
fn another_process_is_locked_out_at_once_and_gets_in_right_after_the_drop() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(FsStore::open(dir.path())?);
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "lock::child_opens_the_store",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_EXPECT, "serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().ok_or("no stdin")?;
    let mut from_child = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut ask = || -> TestResult<String> {
        writeln!(to_child, "try")?;
        to_child.flush()?;
        let mut line = String::new();
        loop {
            line.clear();
            if from_child.read_line(&mut line)? == 0 {
                return Err("the child exited".into());
            }
            if let Some(reply) = line.trim_end().strip_prefix("reply ") {
                return Ok(reply.to_owned());
            }
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let spawned = Arc::new(AtomicU64::new(0));
    let spawner = {
        let (stop, spawned) = (Arc::clone(&stop), Arc::clone(&spawned));
        std::thread::spawn(move || -> std::io::Result<()> {
            while !stop.load(Ordering::SeqCst) {
                Command::new("true").status()?;
                spawned.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let cycles = lock_cycles();
    let mut failures = Vec::new();
    let mut locked_micros = Vec::new();
    for cycle in 0..cycles {
        let store = FsStore::open(dir.path())?;
        let reply = ask()?;
        match reply.strip_prefix("locked ").map(str::parse::<u64>) {
            Some(Ok(micros)) => locked_micros.push(micros),
            _ => failures.push(format!("cycle {cycle}, while held: {reply}")),
        }
        drop(store);
        let reply = ask()?;
        if !reply.starts_with("open ") {
            failures.push(format!("cycle {cycle}, after the drop: {reply}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    spawner.join().map_err(|_| "the spawner panicked")??;
    drop(to_child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut from_child, &mut rest)?;
    assert!(child.wait()?.success(), "{rest}");
    locked_micros.sort_unstable();
    let median = locked_micros
        .get(locked_micros.len() / 2)
        .copied()
        .unwrap_or(0);
    let max = locked_micros.last().copied().unwrap_or(0);
    let spawned = spawned.load(Ordering::SeqCst);
    println!(
        "{cycles} cycles, {spawned} children spawned meanwhile: {} failures; Locked after {median} µs (median), {max} µs (max)",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(spawned > 0, "no child was spawned during the cycles");
    assert!(
        Duration::from_micros(median) < Duration::from_millis(100),
        "Locked took {median} µs"
    );
    Ok(())
}
