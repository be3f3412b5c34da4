//! One writer per store, across processes: while this process holds a store another
//! process gets `Locked` at once, and once this process has dropped it the other opens
//! it at once, however often, on every disk backend, while a thread of this process
//! keeps spawning children (which share this process's file descriptions between their
//! `fork` and `exec`).
//!
//! The other process is this test binary run again in child mode: it reads one store
//! path a line from stdin, tries to open it, drops what it opened, and answers one line.
//! `PERSISTER_LOCK_CYCLES` sets the cycles per backend (default 1,000).

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use persister_core::{DynStore, Error, Result};

use persister_backends::Access;

use crate::support::{Location, named};

const CHILD: &str = "PERSISTER_LOCK_CHILD";

/// The most a second process may take to learn that a store is locked.
const AT_ONCE: Duration = Duration::from_millis(100);

fn cycles() -> usize {
    persister_testkit::env_count("PERSISTER_LOCK_CYCLES", 1000) as usize
}

fn open(backend: &str, path: &Path) -> Result<DynStore> {
    named(backend).open(path, Access::ReadWrite)
}

/// The child: for each line `BACKEND PATH`, opens the store and answers `opened`,
/// `locked MICROS` or `error MESSAGE`. Without `PERSISTER_LOCK_CHILD` (an ordinary test
/// run) it returns at once.
#[test]
fn child_entry_point() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("a line from the parent");
        let (backend, path) = line.split_once(' ').expect("BACKEND PATH");
        let started = Instant::now();
        let answer = match open(backend, Path::new(path)) {
            Ok(store) => {
                drop(store);
                "opened".to_string()
            }
            Err(Error::Locked { .. }) => format!("locked {}", started.elapsed().as_micros()),
            Err(e) => format!("error {e}"),
        };
        writeln!(out, "{answer}").expect("answering the parent");
        out.flush().expect("answering the parent");
    }
}

struct ChildProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    fn start() -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "lock::child_entry_point",
                "--nocapture",
                "--quiet",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the child");
        let stdin = child.stdin.take().expect("its stdin");
        let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Asks the child to open the store at `path`, and returns its answer.
    fn try_open(&mut self, backend: &str, path: &Path) -> String {
        writeln!(self.stdin, "{backend} {}", path.display()).expect("asking the child");
        self.stdin.flush().expect("asking the child");
        loop {
            let mut line = String::new();
            let read = self
                .stdout
                .read_line(&mut line)
                .expect("the child's answer");
            assert!(read > 0, "the child exited");
            let line = line.trim();
            // The test harness's own lines ("running 1 test") come first.
            if line == "opened" || line.starts_with("locked ") || line.starts_with("error ") {
                return line.to_string();
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn locked_at_once_and_free_after_drop(backend: &str) -> Result<()> {
    let location = Location::new(named(backend));
    drop(location.open()?);
    let path = location.path();
    let mut child = ChildProcess::start();
    let stop = AtomicBool::new(false);
    let spawned = AtomicU64::new(0);
    let cycles = cycles();
    let mut slowest = Duration::ZERO;
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = Command::new("true").spawn() {
                    let _ = c.wait();
                    spawned.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Stops the spawning thread however this ends, a failed assertion included:
        // the scope would wait for it forever.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        (|| -> Result<()> {
            for cycle in 0..cycles {
                let store = location.open()?;
                let answer = child.try_open(backend, &path);
                let micros: u64 = answer
                    .strip_prefix("locked ")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "{backend}, cycle {cycle}: held here, the other process got {answer}"
                        )
                    });
                slowest = slowest.max(Duration::from_micros(micros));
                drop(store);
                let answer = child.try_open(backend, &path);
                assert_eq!(
                    answer, "opened",
                    "{backend}, cycle {cycle}: dropped here, the other process could not open it"
                );
            }
            Ok(())
        })()
    })?;
    assert!(
        slowest < AT_ONCE,
        "{backend}: the other process took {slowest:?} to learn the store was locked"
    );
    println!(
        "{backend}: {cycles} cycles, other process locked out in at most {slowest:?}, {} children spawned meanwhile",
        spawned.load(Ordering::Relaxed)
    );
    Ok(())
}

#[test]
fn redb_is_locked_at_once_and_free_after_drop() -> Result<()> {
    locked_at_once_and_free_after_drop("redb")
}

#[test]
fn sled_is_locked_at_once_and_free_after_drop() -> Result<()> {
    locked_at_once_and_free_after_drop("sled")
}

#[test]
fn fs_is_locked_at_once_and_free_after_drop() -> Result<()> {
    locked_at_once_and_free_after_drop("fs")
}
