//! The concurrent kill test: many threads write many documents of one store and flush
//! at random, some through a store-wide [`Store::flush_documents`]; the process is
//! killed at a random moment. Every acknowledged flush must have survived, and every
//! document must be at a prefix of its batches.
//!
//! The child (`reliability-workload concurrent ...`, see [`run_child`]) gives thread `t`
//! the documents `d` with `d % threads == t`. Document `d` gets batches of one to three
//! changes of one actor with consecutive seqs, each change's bytes a function of
//! `(d, seq)` ([`value`]) and each batch's length a function of `(d, batch)`
//! ([`batch_len`]), so the parent knows what every document may hold without hearing
//! about each write. After a successful flush the child prints `ack D N`: document `D`
//! is durable up to seq `N`. The parent ([`kill_cycles`]) kills the child after a
//! random number of acknowledgements, reopens the store, and checks each document:
//! seqs `1..=n` with the expected bytes, `n` at the end of a batch, `n` at least the
//! highest acknowledged.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use persister_core::{ActorId, DocumentId, Persister, Store};

use crate::{Backend, Location, Rng};

/// The sizes of one child's run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Writer threads.
    pub threads: usize,
    /// Documents, shared out among the threads.
    pub docs: usize,
}

/// The id of document `d`.
pub fn document(d: usize) -> DocumentId {
    DocumentId::from(format!("concurrent-{d:04}").as_str())
}

/// The actor every change of document `d` is made by.
pub fn actor(d: usize) -> ActorId {
    ActorId::new((d as u128 + 1).to_be_bytes())
}

/// The bytes of change `seq` of document `d`: 1 to 64 bytes, a function of both.
pub fn value(d: usize, seq: u64) -> Vec<u8> {
    let mut rng = Rng::new(((d as u64) << 32) ^ seq ^ 0x9e37_79b9_7f4a_7c15);
    let len = 1 + rng.index(64);
    rng.bytes(len)
}

/// The number of changes in batch `batch` (from 0) of document `d`: 1 to 3.
pub fn batch_len(d: usize, batch: u64) -> u64 {
    let mut rng = Rng::new(((d as u64) << 40) ^ batch ^ 0x5851_f42d_4c95_7f2d);
    1 + rng.below(3)
}

/// The child's side: runs `sizes.threads` writer threads on `store` until killed (or
/// until each has written `steps` batches), printing `ready`, then `ack D N` after every
/// successful flush, to `out`. Returns the first error.
pub fn run_child<S: Store>(
    store: &S,
    sizes: Sizes,
    seed: u64,
    steps: u64,
    out: &Mutex<dyn Write + Send>,
) -> Result<(), String> {
    let say = |lines: &[String]| -> Result<(), String> {
        let mut out = out.lock().map_err(|_| "stdout lock poisoned")?;
        for line in lines {
            writeln!(out, "{line}").map_err(|e| format!("writing to stdout: {e}"))?;
        }
        out.flush().map_err(|e| format!("writing to stdout: {e}"))
    };
    say(&["ready".to_string()])?;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..sizes.threads)
            .map(|t| {
                let say = &say;
                scope.spawn(move || -> Result<(), String> {
                    let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let mine: Vec<usize> = (t..sizes.docs).step_by(sizes.threads).collect();
                    let mut handles = Vec::new();
                    for &d in &mine {
                        let handle = store
                            .open_document(&document(d))
                            .map_err(|e| format!("opening document {d}: {e}"))?;
                        // (document, batches written, last seq written)
                        handles.push((d, handle, 0u64, 0u64));
                    }
                    for _ in 0..steps {
                        if handles.is_empty() {
                            break;
                        }
                        let i = rng.index(handles.len());
                        let (d, handle, batches, last) = &mut handles[i];
                        let len = batch_len(*d, *batches);
                        let changes: Vec<_> = (*last + 1..=*last + len)
                            .map(|seq| (actor(*d), seq, value(*d, seq)))
                            .collect();
                        handle
                            .insert_changes(changes)
                            .map_err(|e| format!("document {d}: insert: {e}"))?;
                        *batches += 1;
                        *last += len;
                        if rng.chance(1, 3) {
                            handle
                                .flush()
                                .map_err(|e| format!("document {d}: flush: {e}"))?;
                            say(&[format!("ack {d} {last}")])?;
                        } else if rng.chance(1, 20) {
                            // The store-wide flush, of every handle of this thread.
                            let mut all: Vec<&mut S::Persister> =
                                handles.iter_mut().map(|(_, h, _, _)| h).collect();
                            store
                                .flush_documents(&mut all)
                                .map_err(|e| format!("flush_documents: {e}"))?;
                            let lines: Vec<String> = handles
                                .iter()
                                .map(|(d, _, _, last)| format!("ack {d} {last}"))
                                .collect();
                            say(&lines)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in threads {
            thread
                .join()
                .map_err(|_| "a writer thread panicked".to_string())??;
        }
        Ok::<(), String>(())
    })?;
    say(&["done".to_string()])
}

/// What a run of kill cycles did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConcurrentReport {
    /// Children killed.
    pub kills: u64,
    /// Documents with an acknowledged flush, checked after the kills.
    pub acks_checked: u64,
    /// Documents checked after the kills.
    pub documents_checked: u64,
    /// Documents found holding more than their last acknowledged flush.
    pub beyond_ack: u64,
}

/// The parent's side: runs `kills` children on `backend`, each on a new store under
/// `root`, kills each after a random number of acknowledgements (SIGKILL), and checks
/// the reopened store. Every random choice comes from `seed`.
pub fn kill_cycles(
    exe: &Path,
    backend: Backend,
    root: &Path,
    sizes: Sizes,
    kills: u64,
    seed: u64,
) -> Result<ConcurrentReport, String> {
    let mut rng = Rng::new(seed);
    let mut report = ConcurrentReport::default();
    for cycle in 0..kills {
        let dir = root.join(format!("concurrent-{cycle}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {dir:?}: {e}"))?;
        let child_seed = rng.next_u64();
        // Up to a few hundred acknowledgements, so kills land early and late.
        let kill_after = rng.below(300);
        let context = format!(
            "{backend} concurrent kill {cycle} (seed {seed}, child seed {child_seed}, store {})",
            dir.display()
        );
        let acks = run_and_kill(exe, backend, &dir, sizes, child_seed, kill_after)
            .map_err(|e| format!("{context}: {e}"))?;
        let store = Location::new(backend, &dir)
            .open()
            .map_err(|e| format!("{context}: reopening after the kill: {e}"))?;
        check_store(&store, sizes.docs, &acks, &mut report)
            .map_err(|e| format!("{context}: {e}"))?;
        drop(store);
        report.kills += 1;
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {dir:?}: {e}"))?;
    }
    Ok(report)
}

/// Runs a child and kills it once it has printed `kill_after` acknowledgements; returns
/// the highest acknowledged seq of each document.
fn run_and_kill(
    exe: &Path,
    backend: Backend,
    dir: &Path,
    sizes: Sizes,
    seed: u64,
    kill_after: u64,
) -> Result<BTreeMap<usize, u64>, String> {
    let mut child = Command::new(exe)
        .args(["concurrent", "--backend", backend.name(), "--dir"])
        .arg(dir)
        .args(["--seed", &seed.to_string()])
        .args(["--threads", &sizes.threads.to_string()])
        .args(["--docs", &sizes.docs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut acks = BTreeMap::new();
    let mut seen = 0u64;
    let mut line = String::new();
    let mut ended = false;
    // Every line read before the kill was printed after its flush returned.
    while seen <= kill_after {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading the child: {e}"))?;
        if read == 0 || line.trim() == "done" {
            ended = true;
            break;
        }
        if record(&mut acks, line.trim())? {
            seen += 1;
        }
    }
    if !ended {
        child
            .kill()
            .map_err(|e| format!("killing the child: {e}"))?;
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the child: {e}"))?;
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .map_err(|e| format!("reading the child: {e}"))?;
    for line in rest.lines() {
        if line.trim() != "done" {
            record(&mut acks, line.trim())?;
        }
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if ended {
        return Err(format!(
            "the child ended ({status}) before the kill, after {seen} acknowledgements: {stderr}"
        ));
    }
    // The child writes to stderr only when it failed: a failure the kill raced is
    // still a failure.
    if !stderr.trim().is_empty() {
        return Err(format!(
            "the child failed, then was killed ({status}): {}",
            stderr.trim()
        ));
    }
    Ok(acks)
}

/// Checks documents `0..docs` of `store`, reopened after a kill, against `acks` (the
/// highest acknowledged seq of each document), adding to `report`'s counts of
/// documents and acknowledgements checked: each document must hold seqs `1..=n` of
/// its actor with the expected bytes, `n` at the end of a batch and at least its
/// acknowledged seq.
pub fn check_store<S: Store>(
    store: &S,
    docs: usize,
    acks: &BTreeMap<usize, u64>,
    report: &mut ConcurrentReport,
) -> Result<(), String> {
    if let Some(d) = acks.keys().find(|&&d| d >= docs) {
        return Err(format!(
            "document {d} was acknowledged, but there are {docs}"
        ));
    }
    for d in 0..docs {
        let acked = acks.get(&d).copied().unwrap_or(0);
        let held = check_document(store, d, acked)?;
        report.documents_checked += 1;
        if held > acked {
            report.beyond_ack += 1;
        }
    }
    report.acks_checked += acks.len() as u64;
    Ok(())
}

/// Records an `ack D N` line in `acks`, the highest acknowledged seq of each document;
/// returns whether it was one (`ready` and blank lines are not; anything else is an
/// error).
pub fn record(acks: &mut BTreeMap<usize, u64>, line: &str) -> Result<bool, String> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ready"), None, None) | (Some(""), None, None) => Ok(false),
        (Some("ack"), Some(d), Some(n)) => {
            let d: usize = d.parse().map_err(|e| format!("bad line {line:?}: {e}"))?;
            let n: u64 = n.parse().map_err(|e| format!("bad line {line:?}: {e}"))?;
            let acked = acks.entry(d).or_insert(0);
            *acked = (*acked).max(n);
            Ok(true)
        }
        _ => Err(format!("bad line from the child: {line:?}")),
    }
}

/// Checks document `d` of `store` after a kill: seqs `1..=n` of its actor with the
/// expected bytes, `n` at the end of a batch and at least `acked`. Returns `n`.
fn check_document<S: Store>(store: &S, d: usize, acked: u64) -> Result<u64, String> {
    let handle = store
        .open_document(&document(d))
        .map_err(|e| format!("opening document {d}: {e}"))?;
    let entries = handle
        .get_change_entries()
        .map_err(|e| format!("reading document {d}: {e}"))?;
    let held = entries.len() as u64;
    for (i, (who, seq, bytes)) in entries.iter().enumerate() {
        let expected = i as u64 + 1;
        if *who != actor(d) || *seq != expected || *bytes != value(d, expected) {
            return Err(format!(
                "document {d}: change {i} is {who}/{seq} ({} bytes), not seq {expected} of its actor with its bytes",
                bytes.len()
            ));
        }
    }
    if held < acked {
        return Err(format!(
            "document {d}: holds {held} changes, but a flush up to {acked} was acknowledged"
        ));
    }
    let mut end = 0;
    let mut batch = 0;
    while end < held {
        end += batch_len(d, batch);
        batch += 1;
    }
    if end != held {
        return Err(format!(
            "document {d}: holds {held} changes, which cuts batch {} (ending at {end}) in half",
            batch.saturating_sub(1)
        ));
    }
    Ok(held)
}
