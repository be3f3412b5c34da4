//! Running the cases, in child processes, and tallying them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Mutation, Verdict, build, check, copy_tree, mutations, store_files, tail_start};
use crate::Backend;

/// Runs case `index` (`mutation`) on a copy of the store in `pristine` made under
/// `work`, and removes the copy.
pub fn run_case(
    backend: Backend,
    pristine: &Path,
    work: &Path,
    files: &[(PathBuf, u64)],
    index: usize,
    mutation: &Mutation,
) -> Result<Verdict, String> {
    let dir = work.join(format!("case-{index}"));
    let _ = fs::remove_dir_all(&dir);
    copy_tree(pristine, &dir).map_err(|e| format!("copying the store: {e}"))?;
    let (file, _) = files.get(mutation.file()).ok_or("no such file")?;
    let original =
        fs::read(pristine.join(file)).map_err(|e| format!("reading {}: {e}", file.display()))?;
    mutation
        .apply(&dir.join(file))
        .map_err(|e| format!("damaging {}: {e}", file.display()))?;
    let tail = mutation.touches_only_tail(tail_start(&original), original.len() as u64);
    // Read-only first, as the tools read a store: it must come to a verdict that is no
    // failure and leave every file as it was; then read-write.
    let before = contents(&dir)?;
    let read_only = match check(backend, &dir, tail, true) {
        Verdict::Rollback(detail) => Some(Verdict::Rollback(format!("read-only: {detail}"))),
        Verdict::Lie(detail) => Some(Verdict::Lie(format!("read-only: {detail}"))),
        _ if contents(&dir)? != before => Some(Verdict::Lie(
            "a read-only open changed the store's files".to_string(),
        )),
        _ => None,
    };
    let verdict = read_only.unwrap_or_else(|| check(backend, &dir, tail, false));
    let _ = fs::remove_dir_all(&dir);
    Ok(verdict)
}

/// Every file under `dir` with its bytes, in path order.
fn contents(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let files = store_files(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    files
        .into_iter()
        .map(|(path, _)| {
            let bytes = fs::read(dir.join(&path))
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            Ok((path, bytes))
        })
        .collect()
}

/// The peak resident memory of this process in KiB (`VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident memory to the current one, so the next
/// [`peak_rss_kib`] tells the peak of what ran in between.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a sweep over one backend found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// Cases run.
    pub cases: u64,
    /// Cases per verdict name, plus `panic` and `abort`.
    pub verdicts: BTreeMap<String, u64>,
    /// The highest peak resident memory of one case, in KiB.
    pub max_peak_kib: u64,
    /// Every case that failed (lie, panic, abort, rollback), described.
    pub failures: Vec<String>,
    /// The store's files and their lengths.
    pub files: Vec<(PathBuf, u64)>,
    /// Refused cases whose error says the storage engine panicked and the backend
    /// caught it (persister-sled does so around sled 0.34, which panics on some
    /// damaged files): not failures, but reported.
    pub engine_panics_caught: u64,
}

impl SweepReport {
    /// How many cases ended with `name`.
    pub fn count(&self, name: &str) -> u64 {
        self.verdicts.get(name).copied().unwrap_or(0)
    }
}

/// The sweep's parameters.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Seed of the random cases.
    pub seed: u64,
    /// Random cases over all files.
    pub random: u64,
    /// Files of at most this many bytes also get every truncation and every 2^32-1
    /// length.
    pub exhaustive: u64,
    /// The address-space limit of the child running the cases, in KiB: an attempt to
    /// allocate from an untrusted length fails there (an abort) instead of passing
    /// unnoticed on a large machine.
    pub memory_limit_kib: u64,
}

/// The child's side: runs cases from `from` on, printing `start I` before and
/// `case I VERDICT PEAK_KIB DETAIL` after each case (a panic is the verdict
/// `panic`), then `end`.
pub fn sweep_child(
    backend: Backend,
    pristine: &Path,
    work: &Path,
    config: &SweepConfig,
    from: usize,
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    use std::sync::{Arc, Mutex};
    let files = store_files(pristine).map_err(|e| format!("listing the store: {e}"))?;
    let cases = mutations(
        pristine,
        &files,
        config.seed,
        config.random,
        config.exhaustive,
    );
    let message: Arc<Mutex<String>> = Arc::default();
    let hook_message = Arc::clone(&message);
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = hook_message.lock() {
            *m = info.to_string().replace('\n', " ");
        }
    }));
    let mut say = |line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing: {e}"))
    };
    for (index, mutation) in cases.iter().enumerate().skip(from) {
        say(format!("start {index}"))?;
        reset_peak_rss();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(backend, pristine, work, &files, index, mutation)
        }));
        let peak = peak_rss_kib().unwrap_or(0);
        let (name, detail) = match outcome {
            Ok(Ok(verdict)) => (verdict.name().to_string(), verdict.detail().to_string()),
            Ok(Err(e)) => return Err(format!("case {index}: {e}")),
            Err(_) => (
                "panic".to_string(),
                message.lock().map(|m| m.clone()).unwrap_or_default(),
            ),
        };
        say(format!(
            "case {index} {name} {peak} {mutation:?}: {}",
            detail.replace('\n', " ")
        ))?;
    }
    say("end".into())
}

/// The parent's side: builds the store under `root`, runs every case in children of
/// the workload binary at `exe` (restarting after a child dies), and tallies.
pub fn sweep(
    exe: &Path,
    backend: Backend,
    root: &Path,
    config: &SweepConfig,
) -> Result<SweepReport, String> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let pristine = root.join("pristine");
    let work = root.join("work");
    fs::create_dir_all(&pristine).map_err(|e| format!("creating {pristine:?}: {e}"))?;
    fs::create_dir_all(&work).map_err(|e| format!("creating {work:?}: {e}"))?;
    build(backend, &pristine).map_err(|e| format!("building the {backend} store: {e}"))?;
    let mut report = SweepReport {
        files: store_files(&pristine).map_err(|e| format!("listing the store: {e}"))?,
        ..SweepReport::default()
    };
    let total = mutations(
        &pristine,
        &report.files,
        config.seed,
        config.random,
        config.exhaustive,
    )
    .len();
    let mut from = 0;
    while from < total {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {} && exec \"$0\" \"$@\"",
                config.memory_limit_kib
            ))
            .arg(exe)
            .args(["corrupt", "--backend", backend.name(), "--pristine"])
            .arg(&pristine)
            .arg("--work")
            .arg(&work)
            .args(["--seed", &config.seed.to_string()])
            .args(["--random", &config.random.to_string()])
            .args(["--exhaustive", &config.exhaustive.to_string()])
            .args(["--from", &from.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let mut started: Option<usize> = None;
        let mut ended = false;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading the child: {e}"))?;
            if let Some(index) = line.strip_prefix("start ") {
                started = Some(
                    index
                        .parse()
                        .map_err(|e| format!("bad line {line:?}: {e}"))?,
                );
            } else if let Some(rest) = line.strip_prefix("case ") {
                let mut parts = rest.splitn(4, ' ');
                let (Some(index), Some(name), Some(peak), detail) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("bad line {line:?}"));
                };
                let index: usize = index
                    .parse()
                    .map_err(|e| format!("bad line {line:?}: {e}"))?;
                report.cases += 1;
                *report.verdicts.entry(name.to_string()).or_default() += 1;
                report.max_peak_kib = report.max_peak_kib.max(peak.parse().unwrap_or(0));
                if name == "refused" && detail.is_some_and(|d| d.contains("panicked")) {
                    report.engine_panics_caught += 1;
                }
                if matches!(name, "lie" | "panic" | "rollback") {
                    report
                        .failures
                        .push(format!("case {index} {name}: {}", detail.unwrap_or("")));
                }
                started = None;
            } else if line == "end" {
                ended = true;
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the child: {e}"))?;
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut stderr);
        }
        if ended && status.success() {
            break;
        }
        match started {
            Some(index) => {
                report.cases += 1;
                *report.verdicts.entry("abort".into()).or_default() += 1;
                let tail: String = stderr
                    .chars()
                    .rev()
                    .take(400)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                report
                    .failures
                    .push(format!("case {index} abort ({status}): {tail}"));
                from = index + 1;
                let _ = fs::remove_dir_all(work.join(format!("case-{index}")));
            }
            None => {
                return Err(format!(
                    "the sweep child failed ({status}) outside a case: {stderr}"
                ));
            }
        }
    }
    // Every case must have come to a verdict: one the children skipped would pass
    // unseen.
    if report.cases != total as u64 {
        return Err(format!(
            "{} of the {total} cases came to a verdict",
            report.cases
        ));
    }
    Ok(report)
}
