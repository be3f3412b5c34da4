//! Random single damages to a cleanly closed store: every reopen that reads everything
//! is an error or exactly the stored data, never fewer flushed batches with `Ok`. And
//! after a crash, damage confined to the bytes after the last flush is a torn tail,
//! recovered and reported.
//!
//! `PERSISTER_FS_DAMAGE_CASES=n` runs n damages instead of 1,000 (and n / 5 crash
//! cases instead of 200). Seeded: a failure names its case, and reruns the same.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use persister_core::{ActorId, Batch, DocumentId, DocumentState, Error, Persister, Store};
use persister_fs::{FsOptions, FsStore};
use persister_testkit::{Contents, Rng};

use crate::common::{TestResult, records};

const DEFAULT_CASES: u64 = 1000;
const BLOCK: usize = 4096;

fn cases() -> u64 {
    persister_testkit::env_count("PERSISTER_FS_DAMAGE_CASES", DEFAULT_CASES)
}

/// Small rewrite thresholds, so that the store's history includes log rewrites.
fn options() -> FsOptions {
    FsOptions::default()
        .with_rewrite_min_len(4096)
        .with_rewrite_dead_share(0.4)
}

fn ids() -> Vec<DocumentId> {
    vec![
        DocumentId::from("notes"),
        DocumentId::from(""),
        DocumentId::from("a/../b"),
        // Named by its hash, with the id in the log header.
        DocumentId::from(vec![0xab; 300]),
    ]
}

type Model = BTreeMap<DocumentId, DocumentState>;

fn random_batch(rng: &mut Rng) -> Batch {
    let mut batch = Batch::new();
    for _ in 0..=rng.below(3) {
        let actor = ActorId::new(vec![1 + rng.below(3) as u8; 16]);
        let seq = 1 + rng.below(8);
        batch = match rng.below(8) {
            0..=3 => {
                let len = rng.index(700);
                batch.insert_change(actor, seq, rng.bytes(len))
            }
            4 => batch.remove_change(actor, seq),
            5 => {
                let len = rng.index(1500);
                batch.set_document(rng.bytes(len))
            }
            6 => batch.set_sync_state(vec![b'p'; rng.index(3)], rng.bytes(40)),
            _ => batch.remove_sync_state(vec![b'p'; rng.index(3)]),
        };
    }
    batch
}

/// A store in `dir` with several documents, each flushed several times (some logs
/// rewritten on the way), closed cleanly. Returns what each document holds.
fn build(dir: &Path, seed: u64) -> TestResult<Model> {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let store = FsStore::open_with(dir, options())?;
    for round in 0..6 {
        for id in ids() {
            let mut p = store.open_document(&id)?;
            let state = model.entry(id).or_default();
            for _ in 0..=rng.below(3) {
                let batch = random_batch(&mut rng);
                state.apply(batch.clone());
                p.apply(batch)?;
            }
            p.flush()?;
            if round % 2 == 1 {
                // Writes never flushed are not part of the store.
                p.apply(random_batch(&mut rng))?;
            }
        }
    }
    store.close()?;
    model.retain(|_, state| !state.is_empty());
    Ok(model)
}

/// Every file of the store and its bytes.
fn files(dir: &Path) -> TestResult<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        out.insert(path.clone(), fs::read(&path)?);
    }
    Ok(out)
}

/// Puts every file back as it was.
fn restore(pristine: &BTreeMap<PathBuf, Vec<u8>>) -> TestResult {
    for (path, bytes) in pristine {
        fs::write(path, bytes)?;
    }
    Ok(())
}

/// Opens the store and reads every document whole.
fn read_everything(
    dir: &Path,
    read_only: bool,
) -> persister_core::Result<BTreeMap<DocumentId, Contents>> {
    let store = if read_only {
        FsStore::open_read_only(dir)?
    } else {
        FsStore::open_with(dir, options())?
    };
    let mut out = BTreeMap::new();
    for id in store.list_documents()? {
        let p = store.open_document(&id)?;
        out.insert(id, Contents::read(&p)?);
    }
    Ok(out)
}

fn expected(model: &Model) -> BTreeMap<DocumentId, Contents> {
    model
        .iter()
        .map(|(id, state)| (id.clone(), Contents::of(state)))
        .collect()
}

/// One damage: what was done, to which file.
#[derive(Debug)]
enum Damage {
    Flip { at: usize, mask: u8 },
    ZeroBlock { at: usize },
    Truncate { len: usize, boundary: bool },
}

impl Damage {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match *self {
            Damage::Flip { at, mask } => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte ^= mask;
                }
            }
            Damage::ZeroBlock { at } => {
                let end = (at + BLOCK).min(bytes.len());
                if at < end {
                    bytes[at..end].fill(0);
                }
            }
            Damage::Truncate { len, .. } => bytes.truncate(len),
        }
    }
}

/// The ends of the records of a log (the places a cut leaves whole records), or none
/// for a file that is not a log.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    if !bytes.starts_with(b"PFSLOG\0\0") || bytes.len() < 14 {
        return Vec::new();
    }
    let header = 34 + usize::from(u16::from_le_bytes([bytes[12], bytes[13]]));
    let mut out = vec![header];
    out.extend(records(bytes, header).into_iter().map(|(_, end)| end));
    out
}

fn random_damage(rng: &mut Rng, case: u64, bytes: &[u8]) -> Damage {
    let len = bytes.len();
    let at = rng.index(len.max(1));
    match case % 5 {
        0 => Damage::Flip {
            at,
            mask: 1 + rng.below(255) as u8,
        },
        1 => Damage::ZeroBlock {
            at: at / BLOCK * BLOCK,
        },
        2 => Damage::ZeroBlock { at },
        3 => Damage::Truncate {
            len: at,
            boundary: false,
        },
        _ => {
            let ends = boundaries(bytes);
            match ends.len() {
                0 => Damage::Truncate {
                    len: at,
                    boundary: false,
                },
                n => Damage::Truncate {
                    len: ends[rng.index(n)],
                    boundary: true,
                },
            }
        }
    }
}

#[test]
fn any_single_damage_after_a_clean_close_is_an_error_or_the_exact_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let model = build(dir.path(), 13)?;
    let expected = expected(&model);
    assert_eq!(read_everything(dir.path(), false)?, expected);
    let pristine = files(dir.path())?;
    let names: Vec<&PathBuf> = pristine.keys().collect();
    assert!(names.len() >= 7, "{names:?}");
    let mut rng = Rng::new(0x5eed);
    let cases = cases();
    let (mut errors, mut exact, mut unchanged, mut at_boundaries) = (0, 0, 0, 0);
    for case in 0..cases {
        let path = names[rng.index(names.len())];
        let original = &pristine[path];
        let damage = random_damage(&mut rng, case, original);
        let mut bytes = original.clone();
        damage.apply(&mut bytes);
        fs::write(path, &bytes)?;
        let read_only = case % 2 == 1;
        let what = format!("case {case}: {damage:?} of {}", path.display());
        match read_everything(dir.path(), read_only) {
            // Never UnsupportedFormat: damage to a version field is damage (see
            // `format`, Versions).
            Err(Error::Corrupt { .. } | Error::NotAStore { .. }) => {
                errors += 1;
            }
            Err(other) => {
                return Err(format!("{what}: an error that is not about the data: {other}").into());
            }
            Ok(read) if read == expected => exact += 1,
            Ok(read) => {
                return Err(format!(
                    "{what}: reopened with Ok and other data ({} documents, {} expected)",
                    read.len(),
                    expected.len()
                )
                .into());
            }
        }
        unchanged += usize::from(bytes == *original);
        at_boundaries += usize::from(matches!(damage, Damage::Truncate { boundary: true, .. }));
        restore(&pristine)?;
    }
    println!(
        "{cases} damages of a cleanly closed store ({at_boundaries} cuts at record boundaries): \
         {errors} errors, {exact} exact data ({unchanged} left the bytes unchanged), 0 with less data"
    );
    // Only a damage that changed nothing (the empty LOCK file, a cut at a file's end)
    // may read exactly.
    assert_eq!(exact, unchanged, "a damage read as the exact data");
    assert!(errors as u64 > cases / 2 && at_boundaries as u64 > cases / 20);
    Ok(())
}

#[test]
fn damage_after_the_last_flush_of_a_crashed_store_is_a_reported_torn_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut model = build(dir.path(), 29)?;
    let id = ids()[0].clone();
    // One more flush, and then a crash: no clean-close record.
    let store = FsStore::open_with(dir.path(), options())?;
    let log = store.log_path(&id).ok_or("no log")?;
    let before = fs::metadata(&log)?.len() as usize;
    let mut p = store.open_document(&id)?;
    p.set_document(vec![7; 3000])?;
    p.insert_changes(vec![(ActorId::new([9; 16]), 1, vec![9; 100])])?;
    p.flush()?;
    drop(p);
    store.close()?;
    fs::remove_file(dir.path().join("CLOSED"))?;
    let after = fs::metadata(&log)?.len() as usize;
    assert!(after > before + 3000, "the last flush appended");
    let older = expected(&model);
    let state = model.get_mut(&id).ok_or("no model")?;
    state.apply(Batch::new().set_document(vec![7; 3000]).insert_change(
        ActorId::new([9; 16]),
        1,
        vec![9; 100],
    ));
    let newest = expected(&model);

    let pristine = files(dir.path())?;
    let original = &pristine[&log];
    let mut rng = Rng::new(0x7a11);
    let cases = (cases() / 5).max(1);
    let (mut torn, mut unseen) = (0, 0);
    for case in 0..cases {
        // Every tenth case cuts exactly where the last flush began.
        let at = if case % 10 == 9 {
            before
        } else {
            before + rng.index(after - before)
        };
        let damage = match case % 3 {
            _ if case % 10 == 9 => Damage::Truncate {
                len: at,
                boundary: true,
            },
            0 => Damage::Flip {
                at,
                mask: 1 + rng.below(255) as u8,
            },
            1 => Damage::ZeroBlock { at },
            _ => Damage::Truncate {
                len: at,
                boundary: at == before,
            },
        };
        let mut bytes = original.clone();
        damage.apply(&mut bytes);
        fs::write(&log, &bytes)?;
        let read_only = case % 2 == 1;
        let what = format!("case {case}: {damage:?}");
        let store = if read_only {
            FsStore::open_read_only(dir.path())?
        } else {
            FsStore::open_with(dir.path(), options())?
        };
        let mut read = BTreeMap::new();
        for doc in store.list_documents()? {
            let p = store
                .open_document(&doc)
                .map_err(|e| format!("{what}: {e}"))?;
            read.insert(doc, Contents::read(&p)?);
        }
        let reported = store.recovered();
        if bytes == *original {
            assert_eq!(read, newest, "{what}");
            assert!(reported.is_empty(), "{what}");
            continue;
        }
        assert_eq!(read, older, "{what}: the last flush is dropped whole");
        if bytes.len() == before {
            // A cut exactly where the last flush began: a crash can leave just this.
            assert!(reported.is_empty(), "{what}");
            unseen += 1;
        } else {
            assert_eq!(reported.len(), 1, "{what}");
            let tail = &reported[0];
            assert_eq!(
                (
                    &tail.document,
                    &tail.path,
                    tail.offset,
                    tail.bytes,
                    tail.truncated
                ),
                (
                    &Some(id.clone()),
                    &log,
                    before as u64,
                    (bytes.len() - before) as u64,
                    !read_only
                ),
                "{what}"
            );
            torn += 1;
        }
        drop(store);
        if !read_only {
            assert_eq!(
                fs::metadata(&log)?.len() as usize,
                before,
                "{what}: cut off"
            );
            // Closed cleanly after the recovery: nothing more to report.
            let store = FsStore::open_with(dir.path(), options())?;
            store.open_document(&id)?;
            assert!(store.recovered().is_empty(), "{what}");
            drop(store);
            fs::remove_file(dir.path().join("CLOSED"))?;
        } else {
            assert_eq!(
                fs::read(&log)?,
                bytes,
                "{what}: a read-only open cut the log"
            );
        }
        restore(&pristine)?;
    }
    println!(
        "{cases} crash cases: {torn} torn tails reported, {unseen} cuts at the flush boundary"
    );
    assert!(torn as u64 > cases / 2);
    Ok(())
}
