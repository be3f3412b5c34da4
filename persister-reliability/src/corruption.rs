//! The corruption sweep: damage a small store's files one way at a time and check
//! that every read returns an error or exactly the stored data.
//!
//! The store ([`build`]) holds a few documents written in flushed batches. Each case
//! copies it, applies one [`Mutation`] to one file, opens the copy and reads every
//! document. Each read must fail or return exactly what was stored; `sizes` must be
//! exact whenever every read succeeded. One relief, from the contract: a backend may
//! drop an incomplete tail on open, so after a truncation, a zeroed tail, or damage
//! within what one torn write could reach ([`tail_start`]: the sector where an fs
//! log's last record begins, another file's last 4 KiB), a document may instead hold the state after an
//! earlier batch of its own ([`Verdict::TailDropped`]); elsewhere that is a
//! [`Verdict::Rollback`], reported apart.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use persister_core::{Batch, DocumentState, Error, Persister, Store, Write};

use crate::model::{Contents, list};
use crate::ops::{DOCUMENTS, actor, document_id, peer};
use crate::{Backend, Location, Rng};

/// Bytes in the blocks zeroed by [`Mutation::ZeroBlock`].
pub const BLOCK: u64 = 4096;

/// One way of damaging one file (an index into [`store_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flip bit `bit` (counted from the file's first byte's lowest bit).
    FlipBit {
        /// The file.
        file: usize,
        /// The bit.
        bit: u64,
    },
    /// Cut the file to `len` bytes.
    Truncate {
        /// The file.
        file: usize,
        /// The new length.
        len: u64,
    },
    /// Zero the 4 KiB block starting at `offset` (cut at the end of the file).
    ZeroBlock {
        /// The file.
        file: usize,
        /// The block's first byte.
        offset: u64,
    },
    /// Zero every byte from `from` to the end.
    ZeroTail {
        /// The file.
        file: usize,
        /// The first byte zeroed.
        from: u64,
    },
    /// Overwrite the 4 bytes at `offset` with `0xFFFF_FFFF`, as a length field
    /// claiming 2^32-1 bytes would read.
    MaxLength {
        /// The file.
        file: usize,
        /// The first byte overwritten.
        offset: u64,
    },
}

impl Mutation {
    /// The file it damages.
    pub fn file(&self) -> usize {
        match *self {
            Mutation::FlipBit { file, .. }
            | Mutation::Truncate { file, .. }
            | Mutation::ZeroBlock { file, .. }
            | Mutation::ZeroTail { file, .. }
            | Mutation::MaxLength { file, .. } => file,
        }
    }

    /// Whether a backend may answer it by dropping a tail: it removes or zeroes the
    /// end of the file (a zeroed block that reaches the end is a zero-filled tail:
    /// nothing in the bytes tells it from a torn write), or damages nothing before
    /// `tail_start` (see [`tail_start`]) of a file of `file_len` bytes.
    pub fn touches_only_tail(&self, tail_start: u64, file_len: u64) -> bool {
        match *self {
            Mutation::Truncate { .. } | Mutation::ZeroTail { .. } => true,
            Mutation::FlipBit { bit, .. } => bit / 8 >= tail_start,
            Mutation::ZeroBlock { offset, .. } => {
                offset >= tail_start || offset.saturating_add(BLOCK) >= file_len
            }
            Mutation::MaxLength { offset, .. } => offset >= tail_start,
        }
    }

    /// Applies the damage to `path`.
    pub fn apply(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = fs::read(path)?;
        let len = bytes.len();
        let at = |offset: u64| usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        match *self {
            Mutation::FlipBit { bit, .. } => {
                if let Some(byte) = bytes.get_mut(at(bit / 8)) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate { len, .. } => bytes.truncate(at(len)),
            Mutation::ZeroBlock { offset, .. } => {
                let end = at(offset.saturating_add(BLOCK));
                bytes[at(offset)..end].fill(0);
            }
            Mutation::ZeroTail { from, .. } => bytes[at(from)..].fill(0),
            Mutation::MaxLength { offset, .. } => {
                let end = at(offset.saturating_add(4));
                bytes[at(offset)..end].fill(0xff);
            }
        }
        fs::write(path, bytes)
    }
}

/// The batches the store is built from, in order: `(document, batch)`. Each is
/// flushed before the next; document 3 is then removed.
pub fn content_batches() -> Vec<(usize, Batch)> {
    let mut rng = Rng::new(0x5eed);
    let mut value = |len: usize| rng.bytes(len);
    let mut batches = Vec::new();
    for round in 0..3u64 {
        for doc in 0..4 {
            let mut batch = Batch::new();
            for a in 0..3 {
                // One value over a 4 KiB page, in one document only, so that the
                // other documents' logs stay small enough to damage at every offset.
                let len = if a == 2 && round == 1 && doc == 0 {
                    5000
                } else {
                    10 + a * 7
                };
                batch.push(Write::InsertChange {
                    actor: actor(a),
                    seq: round + 1,
                    value: value(len),
                });
            }
            batch.push(Write::SetSyncState {
                peer: peer(round as usize + doc),
                state: value(20),
            });
            if round == 2 {
                batch.push(Write::SetDocument(value(300)));
                batch.push(Write::RemoveChange {
                    actor: actor(0),
                    seq: 1,
                });
            }
            batches.push((doc, batch));
        }
    }
    batches
}

/// The document removed after the batches.
pub const REMOVED_DOCUMENT: usize = 3;

/// Builds the sweep's store in `dir`: every batch of [`content_batches`], each
/// flushed, then the removal of [`REMOVED_DOCUMENT`].
pub fn build(backend: Backend, dir: &Path) -> Result<(), Error> {
    let store = Location::new(backend, dir).open()?;
    for (doc, batch) in content_batches() {
        let mut p = store.open_document(&document_id(doc))?;
        p.apply(batch)?;
        p.flush()?;
    }
    store.remove_document(&document_id(REMOVED_DOCUMENT))
}

/// For each document, the states it held after each of its batches, first `None`
/// (absent). The last one is what the store holds.
pub fn expected_states() -> Vec<Vec<Option<DocumentState>>> {
    let mut states: Vec<Vec<Option<DocumentState>>> = vec![vec![None]; DOCUMENTS.len()];
    for (doc, batch) in content_batches() {
        let mut state = states[doc].last().cloned().flatten().unwrap_or_default();
        state.apply(batch);
        states[doc].push(Some(state));
    }
    states[REMOVED_DOCUMENT].push(None);
    states
}

/// Every regular file under `dir`, sorted, with its length.
pub fn store_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                files.push((rel, entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Copies the directory tree `from` to `to` (which must not exist).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Where the part of a file that one torn write could have damaged begins: for an fs
/// log, the 512-byte sector holding the start of its last record (every batch of the
/// sweep's store is a flush of its own, and a torn write can garble the whole sector
/// it began in); for other files, their last 4 KiB.
pub fn tail_start(bytes: &[u8]) -> u64 {
    const SECTOR: u64 = 512;
    match fs_length_fields(bytes).last() {
        Some(&length_field) if length_field > 12 => (length_field - 1) / SECTOR * SECTOR,
        _ => (bytes.len() as u64).saturating_sub(BLOCK),
    }
}

/// The offsets of the length fields of an fs document log, read from the format
/// that `persister_fs::format` documents: the id length at byte 12 of the header, then
/// each record's payload length at byte 1 of its 13-byte header. Empty for a file that
/// is not an fs log.
pub fn fs_length_fields(bytes: &[u8]) -> Vec<u64> {
    const LOG_MAGIC: &[u8] = b"PFSLOG\0\0";
    const RECORD_HEADER: u64 = 13;
    if !bytes.starts_with(LOG_MAGIC) {
        return Vec::new();
    }
    let mut fields = vec![12];
    let Some(id_len) = bytes
        .get(12..14)
        .map(|b| u64::from(b[0]) | u64::from(b[1]) << 8)
    else {
        return fields;
    };
    let mut record = 18 + id_len;
    let len = bytes.len() as u64;
    while record + RECORD_HEADER <= len {
        fields.push(record + 1);
        let at = |i: u64| u64::from(bytes[(record + i) as usize]);
        let payload = at(1) | at(2) << 8 | at(3) << 16 | at(4) << 24;
        record += RECORD_HEADER + payload;
    }
    fields
}

/// The cases of a sweep over `files` (paths relative to `root`, which holds them):
/// every truncation length, and a 2^32-1 length at every offset, of files of at most
/// `exhaustive` bytes; a 2^32-1 length in every length field of every fs log; then
/// `random` cases drawn from `seed` over all files (bit flips, truncations, zeroed
/// blocks, zeroed tails, 2^32-1 lengths), a quarter in each file's first 4 KiB, a
/// quarter in its last 4 KiB, and half on bytes that are not zero, where the data is.
pub fn mutations(
    root: &Path,
    files: &[(PathBuf, u64)],
    seed: u64,
    random: u64,
    exhaustive: u64,
) -> Vec<Mutation> {
    let mut cases = Vec::new();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|(path, _)| fs::read(root.join(path)).unwrap_or_default())
        .collect();
    for (file, bytes) in contents.iter().enumerate() {
        let len = bytes.len() as u64;
        if len <= exhaustive {
            cases.extend((0..len).map(|len| Mutation::Truncate { file, len }));
            cases.extend(
                (0..len.saturating_sub(3)).map(|offset| Mutation::MaxLength { file, offset }),
            );
        }
        cases.extend(
            fs_length_fields(bytes)
                .into_iter()
                .map(|offset| Mutation::MaxLength { file, offset }),
        );
    }
    let nonempty: Vec<usize> = (0..contents.len())
        .filter(|&i| !contents[i].is_empty())
        .collect();
    let mut rng = Rng::new(seed);
    for _ in 0..random {
        if nonempty.is_empty() {
            break;
        }
        let file = nonempty[rng.index(nonempty.len())];
        let bytes = &contents[file];
        let len = bytes.len() as u64;
        let offset = match rng.below(4) {
            0 => rng.below(len.min(BLOCK)),
            1 => len - 1 - rng.below(len.min(BLOCK)),
            _ => {
                let mut offset = rng.below(len);
                for _ in 0..64 {
                    if bytes[offset as usize] != 0 {
                        break;
                    }
                    offset = rng.below(len);
                }
                offset
            }
        };
        cases.push(match rng.below(10) {
            0..=4 => Mutation::FlipBit {
                file,
                bit: offset * 8 + rng.below(8),
            },
            5 => Mutation::Truncate { file, len: offset },
            6 => Mutation::ZeroBlock {
                file,
                offset: offset / BLOCK * BLOCK,
            },
            7 => Mutation::ZeroTail { file, from: offset },
            _ => Mutation::MaxLength { file, offset },
        });
    }
    cases
}

/// What one case came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every read returned exactly the stored data.
    Exact,
    /// Opening or some read failed; every read that succeeded was exact.
    Refused(String),
    /// The damage was at the tail, and some document read as an earlier state of its
    /// own (every other read exact or failed): an incomplete tail dropped on open.
    TailDropped(String),
    /// As `TailDropped`, but for damage away from the tail: a silent loss of flushed
    /// data, reported apart.
    Rollback(String),
    /// A read returned data that is neither an error nor the stored data.
    Lie(String),
}

impl Verdict {
    /// A one-word name.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Exact => "exact",
            Verdict::Refused(_) => "refused",
            Verdict::TailDropped(_) => "tail-dropped",
            Verdict::Rollback(_) => "rollback",
            Verdict::Lie(_) => "lie",
        }
    }

    /// What was seen.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Exact => "",
            Verdict::Refused(s)
            | Verdict::TailDropped(s)
            | Verdict::Rollback(s)
            | Verdict::Lie(s) => s,
        }
    }
}

/// Reads one thing: `Ok(true)` when exact, `Ok(false)` when wrong, `Err` when it failed.
fn exact<T: PartialEq>(found: Result<T, Error>, expected: &T) -> Result<bool, Error> {
    found.map(|found| found == *expected)
}

/// Opens the (damaged) store of `backend` in `dir` and reads everything, comparing
/// with [`expected_states`]. `tail` says whether the damage touched only a tail.
pub fn check(backend: Backend, dir: &Path, tail: bool) -> Verdict {
    let states = expected_states();
    let store = match Location::new(backend, dir).open() {
        Ok(store) => store,
        Err(e) => return Verdict::Refused(format!("open: {e}")),
    };
    let mut errors = Vec::new();
    let mut earlier = Vec::new();
    let mut lies = Vec::new();
    // The state each document was found in, when it was read whole.
    let mut found_states: Vec<Option<Option<DocumentState>>> = vec![None; states.len()];
    for (doc, states) in states.iter().enumerate() {
        let id = document_id(doc);
        let p = match store.open_document(&id) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("open {id}: {e}"));
                continue;
            }
        };
        let last = states.last().cloned().flatten();
        let expected = Contents::of(last.as_ref());
        let peers: Vec<Vec<u8>> = expected
            .sync_states
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        let mut reads = vec![
            ("changes", exact(p.get_change_entries(), &expected.changes)),
            (
                "get_changes",
                exact(p.get_changes(), &expected.change_values),
            ),
            ("document", exact(p.get_document(), &expected.document)),
            ("peer ids", exact(p.get_peer_ids(), &peers)),
        ];
        for (peer, state) in &expected.sync_states {
            reads.push(("sync state", exact(p.get_sync_state(peer), state)));
        }
        let mut wrong = Vec::new();
        let mut failed = false;
        for (what, read) in reads {
            match read {
                Ok(true) => {}
                Ok(false) => wrong.push(format!("{id} {what} returned wrong data")),
                Err(e) => {
                    failed = true;
                    errors.push(format!("{id} {what}: {e}"));
                }
            }
        }
        if wrong.is_empty() && !failed {
            if p.sizes() == expected.sizes {
                found_states[doc] = Some(last);
            } else {
                wrong.push(format!(
                    "{id} sizes {:?}, expected {:?}",
                    p.sizes(),
                    expected.sizes
                ));
            }
        }
        if !wrong.is_empty() {
            // Wrong data is excused only if it is an earlier state of this document.
            let whole = Contents::read(&p).ok();
            let k = whole.and_then(|c| states.iter().position(|s| Contents::of(s.as_ref()) == c));
            match k {
                Some(k) if !failed => {
                    earlier.push(format!(
                        "{id} holds its state after {k} of its {} batches",
                        states.len() - 1
                    ));
                    found_states[doc] = Some(states[k].clone());
                }
                _ => lies.extend(wrong),
            }
        }
    }
    match list(&store) {
        Err(e) => errors.push(e),
        Ok(listed) => {
            let mut possible: Vec<_> = (0..states.len())
                .filter(|&d| match &found_states[d] {
                    Some(state) => state.is_some(),
                    None => states[d].last().is_some_and(Option::is_some),
                })
                .map(document_id)
                .collect();
            possible.sort();
            // A document that could not be read may or may not be listed.
            let unread: Vec<_> = (0..states.len())
                .filter(|&d| found_states[d].is_none())
                .map(document_id)
                .collect();
            // A log cut back to before its first batch may still name its document:
            // an existing, empty document, where the prefix says "absent".
            let emptied: Vec<_> = (0..states.len())
                .filter(|&d| matches!(found_states[d], Some(None)) && states[d].len() > 1)
                .map(document_id)
                .filter(|id| listed.contains(id))
                .collect();
            if !emptied.is_empty() {
                earlier.push(format!("{emptied:?} listed with no data left"));
            }
            let strip = |ids: &[persister_core::DocumentId]| -> Vec<persister_core::DocumentId> {
                ids.iter()
                    .filter(|id| !unread.contains(id) && !emptied.contains(id))
                    .cloned()
                    .collect()
            };
            if strip(&listed) != strip(&possible)
                || listed
                    .iter()
                    .any(|id| !(0..DOCUMENTS.len()).any(|d| document_id(d) == *id))
            {
                lies.push(format!(
                    "list_documents gave {listed:?}, expected {possible:?}"
                ));
            }
        }
    }
    if !lies.is_empty() {
        Verdict::Lie(lies.join("; "))
    } else if !earlier.is_empty() {
        let detail = earlier.join("; ");
        if tail {
            Verdict::TailDropped(detail)
        } else {
            Verdict::Rollback(detail)
        }
    } else if !errors.is_empty() {
        Verdict::Refused(errors.join("; "))
    } else {
        Verdict::Exact
    }
}

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
    let verdict = check(
        backend,
        &dir,
        mutation.touches_only_tail(tail_start(&original), original.len() as u64),
    );
    let _ = fs::remove_dir_all(&dir);
    Ok(verdict)
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
    Ok(report)
}
