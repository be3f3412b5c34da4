//! The bodies of the fuzz targets under `fuzz/`, here so that `cargo test` replays
//! every crash fixture and seed through exactly the code the fuzzer ran.
//!
//! Each function panics when the backend breaks a promise on the input: a panic of
//! its own, or reads that succeed but disagree with each other (changes out of order,
//! `get_changes` unlike `get_change_entries`, a listed peer without a state, sizes
//! that are not those of what was read). Errors are fine: the input is garbage.

use std::fs;
use std::path::{Path, PathBuf};

use persister_core::{DocumentState, Error, Persister, Store, Write};

use crate::{Contents, Location, backend};

/// Reads everything `p` holds and checks that the reads agree with each other and
/// with `sizes`. Returns whether every read succeeded.
///
/// # Panics
///
/// When two successful reads disagree, or sizes are not those of the contents.
pub fn check_consistent<P: Persister<Error = Error> + ?Sized>(p: &P) -> bool {
    let Ok(first) = Contents::read(p) else {
        return false;
    };
    let mut state = DocumentState::new();
    if let Some(document) = &first.document {
        state.apply_write(Write::SetDocument(document.clone()));
    }
    let keys: Vec<_> = first
        .changes
        .iter()
        .map(|(a, s, _)| (a.clone(), *s))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "changes not in strictly increasing (actor, seq) order"
    );
    for (actor, seq, value) in &first.changes {
        state.apply_write(Write::InsertChange {
            actor: actor.clone(),
            seq: *seq,
            value: value.clone(),
        });
    }
    let values: Vec<Vec<u8>> = first.changes.iter().map(|c| c.2.clone()).collect();
    assert!(
        values == first.change_values,
        "get_changes differs from get_change_entries"
    );
    let peers: Vec<&Vec<u8>> = first.sync_states.iter().map(|(p, _)| p).collect();
    assert!(
        peers.windows(2).all(|w| w[0] < w[1]),
        "peer ids not in strictly increasing order"
    );
    for (peer, sync_state) in &first.sync_states {
        assert!(sync_state.is_some(), "a listed peer has no sync state");
        if let Some(s) = sync_state {
            state.apply_write(Write::SetSyncState {
                peer: peer.clone(),
                state: s.clone(),
            });
        }
    }
    assert!(
        state.sizes() == first.sizes,
        "sizes {:?} are not those of the contents read, {:?}",
        first.sizes,
        state.sizes()
    );
    if let Ok(second) = Contents::read(p) {
        assert!(second == first, "two reads of the same document differ");
    }
    true
}

/// Opens the fs store in `dir` and checks every listed document and the document
/// ids in `also`. Returns how many listed documents read whole (an id of `also` that
/// is not listed reads as an empty document, which proves nothing).
pub fn check_fs_store(dir: &Path, also: &[persister_core::DocumentId]) -> usize {
    let Ok(store) = Location::new(backend::named("fs"), dir).open() else {
        return 0;
    };
    let listed = store.list_documents().unwrap_or_default();
    assert!(listed.is_sorted(), "list_documents is not sorted");
    let mut ids = listed.clone();
    ids.extend(also.iter().cloned());
    ids.sort();
    ids.dedup();
    let mut whole = 0;
    for id in ids {
        if let Ok(p) = store.open_document(&id) {
            let read = check_consistent(&p);
            whole += usize::from(read && listed.contains(&id));
        }
    }
    whole
}

struct Scratch {
    _root: tempfile::TempDir,
    template: PathBuf,
    work: PathBuf,
}

/// A directory for this thread's inputs, and an empty fs store made once. A thread's
/// own, so that it is removed when the thread ends (a test's thread, a fuzzer's):
/// a `static` is never dropped, and left one directory behind per process.
fn scratch() -> Option<Scratch> {
    let root = crate::scratch_dir().ok()?;
    let template = root.path().join("template");
    fs::create_dir_all(&template).ok()?;
    drop(Location::new(backend::named("fs"), &template).open().ok()?);
    // Without the clean-close record the empty store wrote when it closed: the inputs
    // are then read as a crash left them, by the decoder's most lenient path, rather
    // than refused for not matching the record.
    let closed = Location::new(backend::named("fs"), &template)
        .path()
        .join("CLOSED");
    fs::remove_file(closed).ok()?;
    let work = root.path().join("work");
    Some(Scratch {
        template,
        work,
        _root: root,
    })
}

thread_local! {
    static SCRATCH: Option<Scratch> = scratch();
}

/// A fresh copy of the empty store, as the directory holding it.
fn fresh_store() -> Option<(PathBuf, PathBuf)> {
    SCRATCH.with(|s| {
        let s = s.as_ref()?;
        let _ = fs::remove_dir_all(&s.work);
        crate::corruption::copy_tree(&s.template, &s.work).ok()?;
        let store = Location::new(backend::named("fs"), &s.work)
            .path()
            .to_path_buf();
        Some((s.work.clone(), store))
    })
}

/// The log file name of document `"a"` in an fs store (`d` + hex + `.log`).
pub const FS_LOG_NAME: &str = "d61.log";

/// Fuzz target `fs_log`: `data` is the log of document `"a"` in an otherwise empty fs
/// store, which is opened and read. Returns how many documents read whole.
pub fn fs_log(data: &[u8]) -> usize {
    let Some((dir, store)) = fresh_store() else {
        return 0;
    };
    if fs::write(store.join(FS_LOG_NAME), data).is_err() {
        return 0;
    }
    check_fs_store(&dir, &["a".into()])
}

/// The file names the `fs_dir` target chooses from: the marker, the lock, logs of
/// short ids (`""`, `"a"`, `"ab"`) and of a long one ([`LONG_ID_LOG_NAME`]), a
/// temporary file, and a stranger.
pub const FS_DIR_NAMES: [&str; 8] = [
    "STORE",
    "LOCK",
    "d.log",
    FS_LOG_NAME,
    "d6162.log",
    LONG_ID_LOG_NAME,
    "d61.log.tmp",
    "notes.txt",
];

/// The log file name of the document whose id is 200 zero bytes, [`long_id`]: `h`,
/// the FNV-1a hash of the id, `-0.log`. An input can only reach the reads of a long
/// id's log under the name its id hashes to.
pub const LONG_ID_LOG_NAME: &str = "h37027190f725c8c5-0.log";

/// The long document id the `fs_dir` target reads: 200 zero bytes.
pub fn long_id() -> persister_core::DocumentId {
    vec![0u8; 200].into()
}

/// Splits `data` into files: repeatedly one byte choosing a name of
/// [`FS_DIR_NAMES`], two bytes of length (little-endian), and that many bytes.
pub fn split_files(data: &[u8]) -> Vec<(&'static str, &[u8])> {
    let mut files = Vec::new();
    let mut rest = data;
    while let Some((&selector, after)) = rest.split_first() {
        let (len, after) = match after.split_first_chunk::<2>() {
            Some((len, after)) => (usize::from(u16::from_le_bytes(*len)), after),
            None => (after.len(), &after[after.len()..]),
        };
        let (content, after) = after.split_at(len.min(after.len()));
        files.push((
            FS_DIR_NAMES[usize::from(selector) % FS_DIR_NAMES.len()],
            content,
        ));
        rest = after;
    }
    files
}

/// Fuzz target `fs_dir`: `data` split into files ([`split_files`]) written into an
/// empty fs store (over its marker, if one is named), which is opened and read.
/// Returns how many documents read whole.
pub fn fs_dir(data: &[u8]) -> usize {
    let Some((dir, store)) = fresh_store() else {
        return 0;
    };
    for (name, content) in split_files(data) {
        if fs::write(store.join(name), content).is_err() {
            return 0;
        }
    }
    let ids: Vec<persister_core::DocumentId> = vec!["".into(), "a".into(), "ab".into(), long_id()];
    check_fs_store(&dir, &ids)
}

/// The body of the fuzz target `export`, over the export format's `decode` and
/// `encode` (passed in, so that this crate need not depend on the command-line
/// crate that defines them): decodes `data`; when that succeeds, encodes what it read
/// and decodes that again, which must give the same documents. Returns how many
/// documents `data` held.
///
/// # Panics
///
/// When the documents read cannot be encoded, or do not survive the round trip.
pub fn export_round_trip<D, E>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<Vec<D>, E>,
    encode: impl Fn(&[D]) -> Result<Vec<u8>, E>,
) -> usize
where
    D: PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    let Ok(documents) = decode(data) else {
        return 0;
    };
    let encoded = match encode(&documents) {
        Ok(bytes) => bytes,
        Err(e) => panic!("documents that decoded do not encode: {e}"),
    };
    match decode(&encoded) {
        Ok(again) => assert!(again == documents, "documents change in a round trip"),
        Err(e) => panic!("an encoding of decoded documents does not decode: {e}"),
    }
    documents.len()
}
