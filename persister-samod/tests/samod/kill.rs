//! A child process runs a samod repo that edits a document and reports each change
//! once the storage has made it durable; it is killed with SIGKILL at some point of its
//! writing, restarted, killed again; every change it reported is there.

use std::collections::HashSet;
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
use samod::storage::StorageKey;
use samod_core::CompactionHash;

use crate::repos::contents;
use crate::support::{Backend, Result, runtime};

const DIR: &str = "PERSISTER_SAMOD_KILL_DIR";
const BACKEND: &str = "PERSISTER_SAMOD_KILL_BACKEND";
const ROUND: &str = "PERSISTER_SAMOD_KILL_ROUND";
const DOC: &str = "PERSISTER_SAMOD_KILL_DOC";

#[test]
fn acknowledged_changes_survive_sigkill_on_redb() -> Result {
    kill_rounds(Backend::Redb)
}

#[test]
fn acknowledged_changes_survive_sigkill_on_fs() -> Result {
    kill_rounds(Backend::Fs)
}

fn kill_rounds(backend: Backend) -> Result {
    let rounds: u32 = std::env::var("PERSISTER_SAMOD_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let mut doc: Option<String> = None;
    let mut acked = Vec::new();
    for round in 0..rounds {
        // Kill after a different number of acknowledged edits each round, so the kill
        // lands at different points of samod's incremental/compaction cycle.
        let target = 7 + 11 * round as usize;
        let count = run_child(backend, dir.path(), round, &mut doc, target)?;
        acked.push(count);
        let doc = doc
            .as_deref()
            .ok_or("the child never reported its document")?;
        verify(backend, dir.path(), doc, &acked)?;
    }
    Ok(())
}

/// Runs one child until `target` acknowledgements, kills it, and returns how many it
/// acknowledged in all (lines already in the pipe count).
fn run_child(
    backend: Backend,
    dir: &Path,
    round: u32,
    doc: &mut Option<String>,
    target: usize,
) -> Result<usize> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "kill::child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR, dir)
        .env(BACKEND, backend.name())
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
        return Err(format!(
            "the child ended by itself ({status}) after {count} of {target} acknowledgements"
        )
        .into());
    }
    Ok(count)
}

fn verify(backend: Backend, dir: &Path, doc: &str, acked: &[usize]) -> Result {
    let storage = backend.storage(dir, Options::new())?;
    let rt = runtime()?;
    let found = rt.block_on(async {
        let repo = Repo::build_tokio()
            .with_storage(storage.clone())
            .load()
            .await;
        let handle = repo
            .find(doc.parse()?)
            .await?
            .ok_or("the document is gone")?;
        let found = handle.with_document(|d| contents(d));
        repo.stop().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(found)
    })?;
    drop(rt);
    storage.close();
    for (round, &count) in acked.iter().enumerate() {
        for i in 0..count {
            let key = format!("r{round}-{i}");
            if found.get(&key) != Some(&format!("\"{i}\"")) {
                return Err(format!(
                    "{}: edit {key} was acknowledged before the kill but is not in the reopened document ({} keys there)",
                    backend.name(),
                    found.len()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The child: edits until killed, printing `ACK i` once edit `i` is durable.
#[test]
#[ignore = "the child process of the kill tests; run acknowledged_changes_survive_sigkill_* instead"]
fn child() -> Result {
    let dir = std::env::var(DIR)
        .map_err(|_| "run the kill tests, which start this child with its environment")?;
    let backend = Backend::from_name(&std::env::var(BACKEND)?).ok_or("unknown backend")?;
    let round = std::env::var(ROUND)?;
    let (tx, durable) = mpsc::channel::<StorageKey>();
    let options = Options::new().on_event(move |event| {
        if let Event::Durable {
            key,
            deleted: false,
        } = event
        {
            let _ = tx.send(StorageKey::clone(key));
        }
    });
    let storage = backend.storage(Path::new(&dir), options)?;
    let rt = runtime()?;
    rt.block_on(async {
        let repo = Repo::build_tokio().with_storage(storage).load().await;
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
