//! Damaged files: every read that meets damage fails, none returns wrong data, none
//! panics; and entries removed or altered behind the store's back are reported.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use persister_core::{ActorId, Batch, DocumentId, Error, Persister, Result, Store};
use persister_redb::RedbStore;
use redb::{ReadableTable, TableDefinition};
use tempfile::TempDir;

use crate::workload::{Snapshot, scale};

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;
const DOCUMENTS: Bytes = TableDefinition::new("persister_documents");
const CHANGES: Bytes = TableDefinition::new("persister_changes");
const COMPACTED: Bytes = TableDefinition::new("persister_compacted");
const SYNC_STATES: Bytes = TableDefinition::new("persister_sync_states");

fn redb_err(e: impl Into<redb::Error>) -> Error {
    Error::backend("redb", e.into().to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("use", path, e)
}

/// Each document of a store, and what it holds.
type Expected = Vec<(DocumentId, Snapshot)>;

/// A closed store of three documents, and what each holds.
fn populated() -> Result<(TempDir, PathBuf, Expected)> {
    let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path)?;
    let mut expected = Vec::new();
    for d in 0..3u8 {
        let id = DocumentId::from(vec![b'd', d]);
        let mut p = store.open_document(&id)?;
        for seq in 1..=150u64 {
            let value: Vec<u8> = (0..(40 + seq as usize * 3))
                .map(|i| (i as u8) ^ d ^ seq as u8)
                .collect();
            p.apply(Batch::new().insert_change(ActorId::new([d + 1; 16]), seq, value))?;
        }
        p.apply(
            Batch::new()
                .set_document(vec![d; 12_000])
                .set_sync_state(b"peer".to_vec(), vec![d; 300]),
        )?;
        p.flush()?;
        expected.push((id, Snapshot::read(&p)?));
    }
    Ok((dir, path, expected))
}

#[derive(Debug, Default)]
struct Tally {
    refused: usize,
    read_failed: usize,
    intact: usize,
    wrong: Vec<Damage>,
    panicked: Vec<Damage>,
}

fn read_damaged(path: &Path, expected: &[(DocumentId, Snapshot)], access: Access) -> Result<bool> {
    let store = match access {
        Access::ReadOnly => RedbStore::open_read_only(path)?,
        Access::ReadWrite => RedbStore::open(path)?,
    };
    for (id, snapshot) in expected {
        let p = store.open_document(id)?;
        if Snapshot::read(&p)? != *snapshot {
            return Ok(false);
        }
    }
    Ok(true)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Access {
    ReadOnly,
    ReadWrite,
}

/// What is done to a copy of the file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The byte at this offset, flipped.
    Flip(usize),
    /// The page of redb's (4 KiB) at this index, zeroed.
    ZeroPage(usize),
}

impl Damage {
    fn apply(self, bytes: &mut [u8]) {
        match self {
            Damage::Flip(at) => bytes[at] ^= 0x5a,
            Damage::ZeroPage(page) => {
                let end = ((page + 1) * 4096).min(bytes.len());
                bytes[page * 4096..end].fill(0);
            }
        }
    }
}

/// Every damaged copy is read read-only first (which must leave the file as it is),
/// then read-write; each read must fail or give exactly what was stored, and never panic.
#[test]
fn damaged_files_fail_or_read_true_and_never_panic() -> Result<()> {
    let (dir, path, expected) = populated()?;
    let original = fs::read(&path).map_err(io(&path))?;
    // Damage where there is data: bytes that are not zero, spread over the file, and the
    // header; and whole pages zeroed, as a lost write or a bad sector leaves them.
    let written: Vec<usize> = (0..original.len()).filter(|&i| original[i] != 0).collect();
    let count = 120 * scale();
    let step = (written.len() / count).max(1);
    let mut damages: Vec<Damage> = written
        .iter()
        .copied()
        .step_by(step)
        .take(count)
        .chain([0, 9, 10, 16, 40, 64, 100, 200, 320, 480])
        .map(Damage::Flip)
        .collect();
    let pages = original.len().div_ceil(4096);
    damages.extend(
        (0..pages)
            .filter(|&page| original[page * 4096..].iter().take(4096).any(|&b| b != 0))
            .map(Damage::ZeroPage),
    );

    let damaged = dir.path().join("damaged.redb");
    let mut tallies = [Tally::default(), Tally::default()];
    for &damage in &damages {
        let mut bytes = original.clone();
        damage.apply(&mut bytes);
        fs::write(&damaged, &bytes).map_err(io(&damaged))?;
        for (access, tally) in [Access::ReadOnly, Access::ReadWrite]
            .into_iter()
            .zip(&mut tallies)
        {
            match catch_unwind(AssertUnwindSafe(|| {
                read_damaged(&damaged, &expected, access)
            })) {
                Err(_) => tally.panicked.push(damage),
                Ok(Ok(true)) => tally.intact += 1,
                Ok(Ok(false)) => tally.wrong.push(damage),
                Ok(Err(Error::Corrupt { .. } | Error::NotAStore { .. })) => tally.refused += 1,
                Ok(Err(_)) => tally.read_failed += 1,
            }
            if access == Access::ReadOnly {
                let after = fs::read(&damaged).map_err(io(&damaged))?;
                assert!(
                    after == bytes,
                    "a read-only open changed the file ({damage:?})"
                );
            }
        }
    }
    for (access, tally) in [Access::ReadOnly, Access::ReadWrite].iter().zip(&tallies) {
        println!("{} damaged files, {access:?}: {tally:?}", damages.len());
        assert!(tally.panicked.is_empty(), "panics, {access:?}: {tally:?}");
        assert!(tally.wrong.is_empty(), "wrong data, {access:?}: {tally:?}");
        assert!(
            tally.refused + tally.read_failed > damages.len() / 4,
            "too little damage was noticed, {access:?}: {tally:?}"
        );
    }
    Ok(())
}

/// A file cut short reads as damage or exactly as stored, read-only and read-write,
/// whatever its length (a cut past the pages in use loses nothing): never an I/O error
/// that sends the user to check the disk, never less data with `Ok`. Cut inside its
/// header, it is damage.
#[test]
fn a_file_cut_short_is_damage() -> Result<()> {
    let (dir, path, expected) = populated()?;
    let original = fs::read(&path).map_err(io(&path))?;
    let cut = dir.path().join("cut.redb");
    let len = original.len();
    for keep in [16, 100, 319, 320, 4095, 4096, len / 2, len - 4096, len - 1] {
        fs::write(&cut, &original[..keep]).map_err(io(&cut))?;
        for access in [Access::ReadOnly, Access::ReadWrite] {
            match read_damaged(&cut, &expected, access) {
                Err(Error::Corrupt { .. }) => {}
                Ok(true) if keep >= 320 => {}
                other => panic!("{keep} of {len} bytes, {access:?}: {other:?}"),
            }
        }
    }
    Ok(())
}

/// Opens the file with redb itself and runs `edit` in a write transaction.
fn edit_behind_the_store(
    path: &Path,
    edit: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
) -> Result<()> {
    let db = redb::Database::open(path).map_err(redb_err)?;
    let txn = db.begin_write().map_err(redb_err)?;
    edit(&txn)?;
    txn.commit().map_err(redb_err)
}

fn first_key(txn: &redb::WriteTransaction, table: Bytes) -> Result<Vec<u8>> {
    let table = txn.open_table(table).map_err(redb_err)?;
    let first = table.first().map_err(redb_err)?;
    Ok(first.map(|(k, _)| k.value().to_vec()).unwrap_or_default())
}

#[test]
fn entries_missing_behind_the_record_are_corruption() -> Result<()> {
    let (_dir, path, expected) = populated()?;
    let id = &expected[0].0;
    edit_behind_the_store(&path, |txn| {
        for table in [CHANGES, SYNC_STATES, COMPACTED] {
            let key = first_key(txn, table)?;
            txn.open_table(table)
                .map_err(redb_err)?
                .remove(key.as_slice())
                .map_err(redb_err)?;
        }
        Ok(())
    })?;
    let store = RedbStore::open(&path)?;
    let p = store.open_document(id)?;
    assert!(matches!(p.get_changes(), Err(Error::Corrupt { .. })));
    assert!(matches!(p.get_change_entries(), Err(Error::Corrupt { .. })));
    assert!(matches!(p.get_peer_ids(), Err(Error::Corrupt { .. })));
    assert!(matches!(p.get_document(), Err(Error::Corrupt { .. })));
    // The lost sync state is not read as absent, nor is any other peer's.
    for peer in [b"peer".as_slice(), b"another peer"] {
        let read = p.get_sync_state(peer);
        assert!(matches!(read, Err(Error::Corrupt { .. })), "{read:?}");
    }
    // The other documents are untouched, and a peer they have no state for is absent.
    let q = store.open_document(&expected[1].0)?;
    assert!(Snapshot::read(&q)? == expected[1].1);
    assert_eq!(q.get_sync_state(b"another peer")?, None);
    Ok(())
}

#[test]
fn malformed_keys_and_records_are_corruption() -> Result<()> {
    let (_dir, path, expected) = populated()?;
    edit_behind_the_store(&path, |txn| {
        // A change key of the first document with no terminator.
        let mut key = first_key(txn, CHANGES)?;
        key.truncate(9);
        key.push(0x7f);
        txn.open_table(CHANGES)
            .map_err(redb_err)?
            .insert(key.as_slice(), b"x".as_slice())
            .map_err(redb_err)?;
        // A record one byte short.
        txn.open_table(DOCUMENTS)
            .map_err(redb_err)?
            .insert(expected[1].0.as_bytes(), [0u8; 47].as_slice())
            .map_err(redb_err)?;
        Ok(())
    })?;
    let store = RedbStore::open(&path)?;
    let p = store.open_document(&expected[0].0)?;
    assert!(matches!(p.get_change_entries(), Err(Error::Corrupt { .. })));
    drop(p);
    assert!(matches!(
        store.open_document(&expected[1].0),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        store.remove_document(&expected[1].0),
        Err(Error::Corrupt { .. })
    ));
    // Refusing to remove it changed nothing else: the third document still works.
    let mut r = store.open_document(&expected[2].0)?;
    assert!(Snapshot::read(&r)? == expected[2].1);
    r.set_document(b"new".to_vec())?;
    assert!(r.flush()? > 0);
    Ok(())
}
