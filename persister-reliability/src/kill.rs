//! Kill tests: a child process runs a deterministic workload and acknowledges each
//! successful flush; the parent kills it at a random moment, reopens the store, and
//! checks it against the model.
//!
//! The child (`reliability-workload workload ...`, see [`run_child`]) prints one line
//! per finished step: `ok I` after step `I` was applied, `ack I` after the flush of
//! step `I` returned `Ok` for every handle with writes, `removed I` after the removal
//! of step `I` returned. The parent ([`kill_cycles`]) replays the same steps on a
//! [`StoreModel`]: every step up to the last line printed happened, the step after it
//! may have, and acknowledged flushes and removals are durable. After the kill each
//! document must be in a state the model allows: a prefix of its batches that holds
//! every one before its last acknowledged flush, every batch whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use persister_core::{DynPersister, Store};

use crate::ops::{Op, document_id, workload_of};
use crate::{Backend, Location, Rng, StoreModel, apply_to_handle};

/// Steps in one child's workload.
pub const WORKLOAD_LEN: usize = 120;
/// Documents one child's workload writes to.
pub const WORKLOAD_DOCS: usize = 3;
/// Cycles run on one store before starting again from an empty one, so that stores
/// stay small and recovery is tested on stores that were recovered before.
pub const CYCLES_PER_STORE: u64 = 25;

/// What the child runs.
#[derive(Clone, Debug)]
pub struct ChildArgs {
    /// The backend.
    pub backend: Backend,
    /// The directory holding the store.
    pub dir: PathBuf,
    /// The workload's seed.
    pub seed: u64,
    /// Its number of steps.
    pub len: usize,
    /// Its number of documents.
    pub docs: usize,
    /// Whether batches without a payload byte are left out ([`workload_of`]).
    pub payload_only: bool,
    /// The step after which to pause, if any.
    pub pause_at: Option<usize>,
    /// A step the child reports as done without running it, as a backend that loses a
    /// write would: the tests of the checker use it to prove that it fails. `None` in
    /// every kill test.
    pub skip_step: Option<usize>,
}

/// The child's side: runs the workload of `args.seed` on the store, printing a line
/// to `out` after each step. After step `pause_at`, it prints `paused` and waits for a
/// byte on standard input, so that the parent can kill it a chosen moment after that
/// step however late the parent is scheduled. Returns an error message on the first
/// failed operation.
pub fn run_child(args: &ChildArgs, out: &mut impl Write) -> Result<(), String> {
    let ChildArgs {
        backend,
        ref dir,
        seed,
        len,
        docs,
        payload_only,
        pause_at,
        skip_step,
    } = *args;
    let store = Location::new(backend, dir)
        .open()
        .map_err(|e| format!("opening the store: {e}"))?;
    let started = Instant::now();
    let say = |out: &mut dyn Write, line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing to stdout: {e}"))
    };
    say(out, "ready".into())?;
    let mut handles: BTreeMap<usize, DynPersister> = BTreeMap::new();
    let mut dirty: BTreeSet<usize> = BTreeSet::new();
    for (i, op) in workload_of(seed, len, docs, payload_only)
        .iter()
        .enumerate()
    {
        if i > 0 && pause_at == Some(i - 1) {
            say(out, "paused".into())?;
            let mut byte = [0u8; 1];
            std::io::stdin()
                .read_exact(&mut byte)
                .map_err(|e| format!("waiting on stdin: {e}"))?;
        }
        match op {
            Op::FlushAll => {
                for doc in std::mem::take(&mut dirty) {
                    if let Some(p) = handles.get_mut(&doc) {
                        p.flush().map_err(|e| format!("step {i}: flush: {e}"))?;
                    }
                }
                say(out, format!("ack {i}"))?;
            }
            Op::RemoveDocument { doc } => {
                handles.remove(doc);
                dirty.remove(doc);
                store
                    .remove_document(&document_id(*doc))
                    .map_err(|e| format!("step {i}: remove: {e}"))?;
                say(out, format!("removed {i}"))?;
            }
            Op::Reopen => return Err(format!("step {i}: a workload cannot reopen")),
            Op::Apply { doc, .. }
            | Op::Single { doc, .. }
            | Op::Compact { doc, .. }
            | Op::Refused { doc, .. }
            | Op::Flush { doc } => {
                if !handles.contains_key(doc) {
                    let p = store
                        .open_document(&document_id(*doc))
                        .map_err(|e| format!("step {i}: open: {e}"))?;
                    handles.insert(*doc, p);
                }
                if let Some(p) = handles.get_mut(doc)
                    && skip_step != Some(i)
                {
                    apply_to_handle(p, op).map_err(|e| format!("step {i}: {op:?}: {e}"))?;
                }
                dirty.insert(*doc);
                say(out, format!("ok {i}"))?;
            }
        }
    }
    say(out, format!("done {}", started.elapsed().as_micros()))
}

/// What a run of kill cycles did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KillReport {
    /// Cycles run (a child started, ended, and its store was checked).
    pub cycles: u64,
    /// Children killed before they finished.
    pub kills: u64,
    /// Children that finished before the kill came.
    pub completed: u64,
    /// Acknowledged flushes checked after a kill.
    pub acks_checked: u64,
    /// Kills after which some document held more than its last acknowledged state
    /// (unflushed batches that survived).
    pub kept_unflushed: u64,
    /// The last estimate of a workload's run time, in microseconds.
    pub workload_micros: u64,
}

/// The parent's side: runs cycles until `kills` children were killed, with stores
/// under `root`, the child being the workload binary at `exe`. Every random choice
/// comes from `seed`; `payload_only` keeps batches without a payload byte out of the
/// workloads ([`workload_of`]). Returns the first failure, naming the seed, cycle and the
/// directory kept for inspection.
pub fn kill_cycles(
    exe: &Path,
    backend: Backend,
    root: &Path,
    kills: u64,
    seed: u64,
    payload_only: bool,
) -> Result<KillReport, String> {
    let mut rng = Rng::new(seed);
    let mut report = KillReport::default();
    let mut model = StoreModel::new();
    let mut dir = PathBuf::new();
    // How long a workload runs; measured by the first cycle, refined by every
    // child that finishes before its kill.
    let mut estimate: Option<Duration> = None;
    while report.kills < kills {
        // Half the kills come right after a pause, so nearly every cycle kills: many
        // cycles without a kill mean the harness is broken, not the backend.
        if report.cycles > kills.saturating_mul(4) + 100 {
            return Err(format!(
                "{backend}: only {} kills in {} cycles: the children finish before the kill",
                report.kills, report.cycles
            ));
        }
        if report.cycles % CYCLES_PER_STORE == 0 {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            dir = root.join(format!("store-{}", report.cycles));
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {dir:?}: {e}"))?;
            model = StoreModel::new();
        }
        let child_seed = rng.next_u64();
        // Half the kills come a random time after the child is ready; the other half
        // up to 200 microseconds after it resumes from a pause after a random step,
        // so that they land all through the workload however late this process is
        // scheduled.
        let kill_at = match estimate {
            None => KillAt::Never,
            Some(e) if rng.chance(1, 2) => {
                KillAt::After(Duration::from_micros(rng.below(e.as_micros() as u64 + 1)))
            }
            Some(_) => KillAt::Step(
                rng.index(WORKLOAD_LEN),
                Duration::from_micros(rng.below(200)),
            ),
        };
        let context = format!(
            "{backend} kill cycle {} (seed {seed}, child seed {child_seed}, store {})",
            report.cycles,
            dir.display()
        );
        let outcome = run_cycle(exe, backend, &dir, child_seed, payload_only, kill_at)
            .map_err(|e| format!("{context}: {e}"))?;
        if let Some(took) = outcome.finished_in {
            estimate = Some(match estimate {
                Some(e) => (e * 3 + took) / 4,
                None => took,
            });
            report.workload_micros = estimate.map_or(0, |e| e.as_micros() as u64);
        }
        let ops = workload_of(child_seed, WORKLOAD_LEN, WORKLOAD_DOCS, payload_only);
        let acks =
            replay(&mut model, &ops, &outcome.lines).map_err(|e| format!("{context}: {e}"))?;
        let before = model.clone();
        let store = Location::new(backend, &dir)
            .open()
            .map_err(|e| format!("{context}: reopening after the kill: {e}"))?;
        model
            .adopt_store(&store)
            .map_err(|e| format!("{context}: after the kill: {e}; lines: {:?}", outcome.lines))?;
        drop(store);
        if (0..crate::ops::DOCUMENTS.len()).any(|d| {
            before.doc(d).candidates() > 1
                && model.doc(d).current() != before.doc(d).durable_state()
        }) {
            report.kept_unflushed += 1;
        }
        report.cycles += 1;
        report.acks_checked += acks;
        if outcome.killed {
            report.kills += 1;
        } else {
            report.completed += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// When to kill a child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Let it finish.
    Never,
    /// This long after it says it is ready.
    After(Duration),
    /// This long after it is resumed from a pause after this step.
    Step(usize, Duration),
}

struct CycleOutcome {
    killed: bool,
    finished_in: Option<Duration>,
    lines: Vec<String>,
}

fn run_cycle(
    exe: &Path,
    backend: Backend,
    dir: &Path,
    seed: u64,
    payload_only: bool,
    kill_at: KillAt,
) -> Result<CycleOutcome, String> {
    let pause_at = match kill_at {
        KillAt::Step(step, _) => step.to_string(),
        _ => "none".to_string(),
    };
    let mut child = Command::new(exe)
        .args(["workload", "--backend", backend.name(), "--dir"])
        .arg(dir)
        .args(["--seed", &seed.to_string()])
        .args(["--len", &WORKLOAD_LEN.to_string()])
        .args(["--docs", &WORKLOAD_DOCS.to_string()])
        .args(["--pause-at", &pause_at])
        .args(["--payload-only", &payload_only.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut seen = Vec::new();
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("reading the child: {e}"))?;
    let ready = line.trim() == "ready";
    seen.push(line.trim().to_string());
    let delay = match kill_at {
        KillAt::Never => None,
        KillAt::After(delay) => Some(delay),
        KillAt::Step(_, delay) => loop {
            line.clear();
            let read = stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the child: {e}"))?;
            if read == 0 {
                break None;
            }
            if line.trim() == "paused" {
                if let Some(stdin) = child.stdin.as_mut() {
                    stdin
                        .write_all(b"g")
                        .and_then(|()| stdin.flush())
                        .map_err(|e| format!("resuming the child: {e}"))?;
                }
                break Some(delay);
            }
            seen.push(line.trim().to_string());
        },
    };
    let mut killed = false;
    if ready && let Some(delay) = delay {
        std::thread::sleep(delay);
        if child
            .try_wait()
            .map_err(|e| format!("waiting for the child: {e}"))?
            .is_none()
        {
            child
                .kill()
                .map_err(|e| format!("killing the child: {e}"))?;
            killed = true;
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the child: {e}"))?;
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .map_err(|e| format!("reading the child: {e}"))?;
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let lines: Vec<String> = seen
        .into_iter()
        .chain(rest.lines().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect();
    // The child writes to stderr only when an operation failed: a failure the kill
    // raced (the child was killed after it reported the error, before it exited) is
    // still a failure, not a kill.
    if !stderr.trim().is_empty() {
        return Err(format!(
            "the child reported a failure{} ({status}): {}; lines: {lines:?}",
            if killed { " before the kill" } else { "" },
            stderr.trim()
        ));
    }
    let done = lines.iter().find_map(|l| l.strip_prefix("done "));
    // A kill that landed after the last line counts as a finish: the workload ran whole.
    if let Some(done) = done {
        let micros = done
            .parse()
            .map_err(|e| format!("bad line {done:?}: {e}"))?;
        return Ok(CycleOutcome {
            killed: false,
            finished_in: Some(Duration::from_micros(micros)),
            lines,
        });
    }
    if !killed {
        return Err(format!(
            "the child failed ({status}) before finishing: {stderr}; lines: {lines:?}"
        ));
    }
    Ok(CycleOutcome {
        killed,
        finished_in: None,
        lines,
    })
}

/// Replays `ops` on `model` as far as the child's `lines` say it got, plus the step
/// that may have been in flight. Returns how many flushes were acknowledged.
pub fn replay(model: &mut StoreModel, ops: &[Op], lines: &[String]) -> Result<u64, String> {
    let mut last: Option<usize> = None;
    let mut acks = 0;
    for line in lines {
        let Some((word, index)) = line.split_once(' ') else {
            if line == "ready" {
                continue;
            }
            return Err(format!("bad line from the child: {line:?}"));
        };
        if word == "done" {
            continue;
        }
        let index: usize = index
            .parse()
            .map_err(|e| format!("bad line from the child {line:?}: {e}"))?;
        if Some(index) != last.map(|l| l + 1) && !(last.is_none() && index == 0) {
            return Err(format!("the child skipped a step: {line:?} after {last:?}"));
        }
        if word == "ack" {
            acks += 1;
        }
        last = Some(index);
    }
    let done = last.map_or(0, |l| l + 1);
    for op in &ops[..done] {
        match op {
            Op::FlushAll => model.durable(),
            Op::RemoveDocument { doc } => model.doc_mut(*doc).remove(),
            _ => {
                if let Some((doc, batch)) = op.batch() {
                    model.doc_mut(doc).apply(batch);
                }
            }
        }
    }
    // The step in flight when the child died may or may not have happened.
    if let Some(op) = ops.get(done) {
        match op {
            Op::RemoveDocument { doc } => model.doc_mut(*doc).remove_maybe(),
            _ => {
                if let Some((doc, batch)) = op.batch() {
                    model.doc_mut(doc).apply(batch);
                }
            }
        }
    }
    Ok(acks)
}
