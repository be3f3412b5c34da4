//! A child process runs a samod repo that edits a document and reports each change
//! once the storage has made it durable; it is killed with SIGKILL at some point of its
//! writing, restarted, killed again; every change it reported is there.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use persister_samod::{Event, Options};
use samod::Repo;
use samod::storage::{Storage, StorageKey, TokioFilesystemStorage};
use samod_core::CompactionHash;

use crate::repos::contents;
use crate::support::{Result, named, parse_backend, runtime, storage};

const DIR: &str = "PERSISTER_SAMOD_KILL_DIR";
const BACKEND: &str = "PERSISTER_SAMOD_KILL_BACKEND";
const ROUND: &str = "PERSISTER_SAMOD_KILL_ROUND";
const DOC: &str = "PERSISTER_SAMOD_KILL_DOC";

/// The name of samod's own `TokioFilesystemStorage` as the child's storage.
const PEER: &str = "tokio-fs";

#[test]
fn acknowledged_changes_survive_sigkill_on_redb() -> Result {
    let lost = kill_rounds(named("redb").name(), rounds(3))?;
    assert!(lost.is_empty(), "{lost:?}");
    Ok(())
}

#[test]
fn acknowledged_changes_survive_sigkill_on_fs() -> Result {
    let lost = kill_rounds(named("fs").name(), rounds(3))?;
    assert!(lost.is_empty(), "{lost:?}");
    Ok(())
}

/// The same kills on samod's `TokioFilesystemStorage`, whose put completes when
/// `tokio::fs::write` returns: prints what it lost, for RELIABILITY.md.
#[test]
#[ignore = "a measurement of samod's own storage for RELIABILITY.md; run with --ignored --nocapture"]
fn peer_under_sigkill() -> Result {
    let rounds = rounds(20);
    let lost = kill_rounds(PEER, rounds)?;
    println!(
        "{PEER}: {} of {rounds} kills lost acknowledged edits: {lost:?}",
        lost.len()
    );
    Ok(())
}

/// `PERSISTER_SAMOD_KILL_ROUNDS`, or `default`.
fn rounds(default: u32) -> u32 {
    persister_testkit::env_count("PERSISTER_SAMOD_KILL_ROUNDS", default.into()) as u32
}

/// Kills a child `rounds` times on one store; returns what each round that lost
/// something lost.
fn kill_rounds(backend: &str, rounds: u32) -> Result<Vec<String>> {
    let dir = tempfile::tempdir()?;
    let mut doc: Option<String> = None;
    let mut acked = Vec::new();
    let mut lost = Vec::new();
    for round in 0..rounds {
        // Kill after a different number of acknowledged edits each round, so the kill
        // lands at different points of samod's incremental/compaction cycle.
        let target = 7 + 11 * (round as usize % 5);
        let count = run_child(backend, dir.path(), round, &mut doc, target)?;
        acked.push(count);
        let doc = doc
            .as_deref()
            .ok_or("the child never reported its document")?;
        if let Err(what) = verify(backend, dir.path(), doc, &acked) {
            lost.push(format!("round {round}: {what}"));
            // Go on from what is there: later rounds check only their own edits.
            acked.iter_mut().for_each(|count| *count = 0);
        }
    }
    Ok(lost)
}

/// Runs one child until `target` acknowledgements, kills it, and returns how many it
/// acknowledged in all (lines already in the pipe count).
fn run_child(
    backend: &str,
    dir: &Path,
    round: u32,
    doc: &mut Option<String>,
    target: usize,
) -> Result<usize> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["kill::child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(DIR, dir)
        .env(BACKEND, backend)
        .env(ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(id) = doc {
        command.env(DOC, id);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // A child that stops answering is killed after two minutes: the test then fails.
    let (done, watchdog) = mpsc::channel::<()>();
    let pid = child.id().to_string();
    let guard = std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let mut count = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // libtest prints "test kill::child ... " before the child's first line.
        if let Some((_, id)) = line.split_once("DOC ") {
            *doc = Some(id.to_string());
        } else if line.starts_with("ACK ") {
            count += 1;
            if count == target {
                child.kill()?;
            }
        }
    }
    let status = child.wait()?;
    let _ = done.send(());
    let _ = guard.join();
    if count < target || status.signal() != Some(9) {
        let what = format!("the child ended by itself ({status}) after {count} of {target} acks");
        return Err(what.into());
    }
    Ok(count)
}

/// Reopens the store and checks that every acknowledged edit is there.
fn verify(backend: &str, dir: &Path, doc: &str, acked: &[usize]) -> Result {
    let rt = runtime()?;
    let storage = match parse_backend(backend) {
        Some(backend) => Some(storage(&backend, dir, Options::new())?),
        None => None,
    };
    let found = rt.block_on(async {
        let builder = Repo::build_tokio();
        let repo = match &storage {
            Some(storage) => builder.with_storage(storage.clone()).load().await,
            None => {
                let peer = TokioFilesystemStorage::new(dir.join(PEER));
                builder.with_storage(peer).load().await
            }
        };
        let handle = tokio::time::timeout(Duration::from_secs(60), repo.find(doc.parse()?))
            .await
            .map_err(|_| "the document did not load within a minute")??
            .ok_or("the document is gone")?;
        let found = handle.with_document(|d| contents(d));
        repo.stop().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(found)
    })?;
    drop(rt);
    if let Some(storage) = storage {
        storage.close()?;
    }
    for (round, &count) in acked.iter().enumerate() {
        for i in 0..count {
            let key = format!("r{round}-{i}");
            if found.get(&key) != Some(&format!("\"{i}\"")) {
                let there = found.len();
                return Err(format!(
                    "{backend}: edit {key} was acknowledged before the kill but is not in \
                     the reopened document ({there} keys there)"
                )
                .into());
            }
        }
    }
    Ok(())
}

/// A storage that reports each completed put, as the hook does for ours.
#[derive(Clone)]
struct Reporting<S> {
    inner: S,
    completed: mpsc::Sender<StorageKey>,
}

impl<S: Storage> Storage for Reporting<S> {
    fn load(&self, key: StorageKey) -> impl Future<Output = Option<Vec<u8>>> + Send {
        self.inner.load(key)
    }

    fn load_range(
        &self,
        prefix: StorageKey,
    ) -> impl Future<Output = HashMap<StorageKey, Vec<u8>>> + Send {
        self.inner.load_range(prefix)
    }

    fn put(&self, key: StorageKey, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        let put = self.inner.put(key.clone(), data);
        let completed = self.completed.clone();
        async move {
            put.await;
            let _ = completed.send(key);
        }
    }

    fn delete(&self, key: StorageKey) -> impl Future<Output = ()> + Send {
        self.inner.delete(key)
    }
}

/// The child: edits until killed, printing `ACK i` once edit `i` is durable.
#[test]
#[ignore = "the child process of the kill tests; run acknowledged_changes_survive_sigkill_* instead"]
fn child() -> Result {
    let dir = std::env::var(DIR)
        .map_err(|_| "run the kill tests, which start this child with its environment")?;
    let backend = std::env::var(BACKEND)?;
    let round = std::env::var(ROUND)?;
    let (tx, durable) = mpsc::channel::<StorageKey>();
    let rt = runtime()?;
    rt.block_on(async {
        let builder = Repo::build_tokio();
        let repo = match parse_backend(&backend) {
            Some(backend) => {
                let options = Options::new().on_event(move |event| {
                    if let Event::Durable {
                        key,
                        deleted: false,
                    } = event
                    {
                        let _ = tx.send(StorageKey::clone(key));
                    }
                });
                let storage = storage(&backend, Path::new(&dir), options)?;
                builder.with_storage(storage).load().await
            }
            None => {
                let inner = TokioFilesystemStorage::new(Path::new(&dir).join(PEER));
                let storage = Reporting {
                    inner,
                    completed: tx,
                };
                builder.with_storage(storage).load().await
            }
        };
        let handle = match std::env::var(DOC) {
            Ok(id) => repo
                .find(id.parse()?)
                .await?
                .ok_or("the document is gone")?,
            Err(_) => repo.create(Automerge::new()).await?,
        };
        let id = handle.document_id().clone();
        println!("DOC {id}");
        let mut seen = HashSet::new();
        let mut stdout = std::io::stdout();
        for i in 0u64.. {
            let heads = handle.with_document(|d| {
                let mut tx = d.transaction();
                tx.put(ROOT, format!("r{round}-{i}"), i.to_string())?;
                tx.commit();
                Ok::<_, automerge::AutomergeError>(d.get_heads())
            })?;
            // samod stores the change as an incremental, or a snapshot of these heads.
            let head = *heads.first().ok_or("no heads")?;
            let incremental = StorageKey::incremental_path(&id, head);
            let snapshot = StorageKey::snapshot_path(&id, &CompactionHash::new(&heads));
            while !seen.contains(&incremental) && !seen.contains(&snapshot) {
                seen.insert(durable.recv()?);
            }
            writeln!(stdout, "ACK {i}")?;
            stdout.flush()?;
        }
        Ok(())
    })
}
