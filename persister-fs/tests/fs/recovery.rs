//! Torn tails are truncated and reported; damage before valid data is an error.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use persister_core::{DocumentId, Error, Persister, Store};
use persister_fs::{FsPersister, FsStore};
use persister_testkit::Rng;
use tempfile::TempDir;

use crate::common::{TestResult, actor, flushed_log, header_len, records};

/// The log of document `doc`, alone in a store in a temporary directory, for a test to
/// damage and reopen.
struct Log {
    dir: TempDir,
    id: DocumentId,
    path: PathBuf,
}

impl Log {
    /// A log of `flushes` flushes of one 100-byte change each.
    fn flushed(flushes: u64) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let id = DocumentId::from("doc");
        let path = flushed_log(dir.path(), &id, flushes)?;
        Ok(Self { dir, id, path })
    }

    fn len(&self) -> TestResult<u64> {
        Ok(fs::metadata(&self.path)?.len())
    }

    /// The start and end of each record.
    fn records(&self) -> TestResult<Vec<(usize, usize)>> {
        Ok(records(&fs::read(&self.path)?, header_len(&self.id)))
    }

    /// Rewrites the log as `damage` changes it; returns what it now holds.
    fn rewrite(&self, damage: impl FnOnce(&mut Vec<u8>)) -> TestResult<Vec<u8>> {
        let mut bytes = fs::read(&self.path)?;
        damage(&mut bytes);
        fs::write(&self.path, &bytes)?;
        Ok(bytes)
    }

    /// Appends `bytes` to the log, as a write that never completed can leave them.
    fn append(&self, bytes: &[u8]) -> TestResult {
        OpenOptions::new()
            .append(true)
            .open(&self.path)?
            .write_all(bytes)?;
        Ok(())
    }

    fn store(&self) -> persister_core::Result<FsStore> {
        FsStore::open(self.dir.path())
    }

    /// Opens the store and the document, recovering what the log holds.
    fn open(&self) -> persister_core::Result<FsPersister> {
        self.store()?.open_document(&self.id)
    }

    /// The error opening the document returns; a test failure if it opens.
    fn open_err(&self) -> TestResult<Error> {
        match self.open() {
            Ok(_) => Err("the damaged log opened".into()),
            Err(err) => Ok(err),
        }
    }

    /// Opening the document fails with `Corrupt` at byte `offset` of the log.
    fn assert_corrupt_at(&self, offset: usize) -> TestResult {
        let err = self.open_err()?;
        assert!(
            matches!(err, Error::Corrupt { offset: Some(o), .. } if o == offset as u64),
            "{err}"
        );
        Ok(())
    }
}

#[test]
fn torn_tail_is_truncated_and_reported() -> TestResult {
    let log = Log::flushed(3)?;
    let clean_len = log.len()?;
    // A fourth flush, then cut in the middle of its record, as a crash can leave it.
    {
        let mut p = log.open()?;
        p.insert_changes(vec![(actor(1), 4, vec![4; 100])])?;
        p.flush()?;
    }
    let full_len = log.len()?;
    let torn_len = clean_len + (full_len - clean_len) / 2;
    OpenOptions::new()
        .write(true)
        .open(&log.path)?
        .set_len(torn_len)?;

    let mut p = log.open()?;
    assert_eq!(p.get_changes()?.len(), 3);
    assert_eq!(p.recovered_bytes(), torn_len - clean_len);
    assert_eq!(p.recovery().truncated_at, Some(clean_len));
    assert_eq!(log.len()?, clean_len, "the torn tail is cut off");
    assert_eq!(p.sizes().change_count, 3);

    // The log takes appends after recovery, and reopens cleanly.
    p.insert_changes(vec![(actor(1), 5, b"after".to_vec())])?;
    p.flush()?;
    drop(p);
    let p = log.open()?;
    assert_eq!(p.recovered_bytes(), 0);
    assert_eq!(p.get_changes()?.len(), 4);
    Ok(())
}

#[test]
fn zero_filled_tail_is_dropped() -> TestResult {
    let log = Log::flushed(3)?;
    let clean_len = log.len()?;
    log.append(&[0; 4096])?;

    let p = log.open()?;
    assert_eq!(p.get_changes()?.len(), 3);
    assert_eq!(p.recovered_bytes(), 4096);
    assert_eq!(log.len()?, clean_len);
    Ok(())
}

#[test]
fn flipped_byte_before_a_valid_record_is_an_error_naming_file_and_offset() -> TestResult {
    let log = Log::flushed(3)?;
    let (first, _) = log.records()?[0];
    let bytes = log.rewrite(|bytes| bytes[first + 13 + 40] ^= 0x10)?;

    let store = log.store()?;
    let err = store.open_document(&log.id).unwrap_err();
    match &err {
        Error::Corrupt { path, offset, .. } => {
            assert_eq!(path, &log.path);
            assert_eq!(*offset, Some(first as u64));
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(
        err.to_string().contains(&format!("at byte {first}")),
        "{err}"
    );
    // Nothing was truncated or rewritten, and other documents still open.
    assert_eq!(fs::read(&log.path)?, bytes);
    let mut other = store.open_document(&"other".into())?;
    other.set_document(b"fine".to_vec())?;
    other.flush()?;
    Ok(())
}

#[test]
fn damage_in_an_older_flush_followed_by_one_flush_is_an_error() -> TestResult {
    // Only the last flush can be torn: damage to the record before it is corruption.
    let log = Log::flushed(3)?;
    let (second, end) = log.records()?[1];
    log.rewrite(|bytes| bytes[end - 1] ^= 1)?;
    log.assert_corrupt_at(second)
}

#[test]
fn unknown_log_version_is_refused_naming_both_versions() -> TestResult {
    let log = Log::flushed(1)?;
    let bytes = log.rewrite(|bytes| bytes[8..12].copy_from_slice(&2u32.to_le_bytes()))?;

    let err = log.open_err()?;
    assert!(
        matches!(&err, Error::UnsupportedFormat { what: "fs log", found: 2, supported: 1, path } if *path == log.path),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("version 2") && message.contains("version 1"),
        "{message}"
    );
    assert_eq!(
        fs::read(&log.path)?,
        bytes,
        "an unknown version is never rewritten"
    );
    Ok(())
}

#[test]
fn unknown_store_version_is_refused_naming_both_versions() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(FsStore::open(dir.path())?);
    let marker = dir.path().join("STORE");
    let mut bytes = fs::read(&marker)?;
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&marker, &bytes)?;
    let err = FsStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormat {
                what: "fs store",
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        persister_fs::is_fs_store(dir.path()),
        "still recognised as an fs store"
    );
    Ok(())
}

#[test]
fn length_of_2_pow_32_minus_1_at_the_tail_is_a_torn_tail() -> TestResult {
    let log = Log::flushed(2)?;
    let mut hostile = vec![1u8];
    hostile.extend_from_slice(&u32::MAX.to_le_bytes());
    hostile.extend_from_slice(&[0xab; 100]);
    log.append(&hostile)?;

    let p = log.open()?;
    assert_eq!(p.get_changes()?.len(), 2);
    assert_eq!(p.recovered_bytes(), hostile.len() as u64);
    Ok(())
}

#[test]
fn length_of_2_pow_32_minus_1_before_a_valid_record_is_corruption() -> TestResult {
    let log = Log::flushed(3)?;
    let (second, _) = log.records()?[1];
    log.rewrite(|bytes| bytes[second + 1..second + 5].copy_from_slice(&u32::MAX.to_le_bytes()))?;
    log.assert_corrupt_at(second)
}

#[test]
fn hostile_id_length_in_the_header_is_corruption() -> TestResult {
    let log = Log::flushed(1)?;
    log.rewrite(|bytes| bytes[12..14].copy_from_slice(&u16::MAX.to_le_bytes()))?;
    log.assert_corrupt_at(12)
}

#[test]
fn log_holding_another_documents_id_is_corruption() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = flushed_log(dir.path(), &"a".into(), 1)?;
    let b = flushed_log(dir.path(), &"b".into(), 1)?;
    fs::copy(&a, &b)?;
    let store = FsStore::open(dir.path())?;
    assert!(store.open_document(&"a".into()).is_ok());
    let err = store.open_document(&"b".into()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    Ok(())
}

#[test]
fn random_damage_is_an_error_or_a_reported_loss() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    // 20 flushes of one to three one-change batches.
    let mut seq = 0;
    let mut before_last_flush = 0;
    let log = {
        let store = FsStore::open(dir.path())?;
        let mut p = store.open_document(&id)?;
        for flush in 0..20u64 {
            before_last_flush = seq;
            for _ in 0..=flush % 3 {
                seq += 1;
                p.insert_changes(vec![(actor(1), seq, vec![seq as u8; 50 + seq as usize])])?;
            }
            p.flush()?;
        }
        store.log_path(&id).unwrap()
    };
    let pristine = fs::read(&log)?;
    let records = records(&pristine, header_len(&id));
    let boundaries: Vec<usize> = records.iter().map(|r| r.1).collect();
    let last_record = records.last().map_or(0, |r| r.0);
    let mut rng = Rng::new(7);
    let (mut errors, mut losses) = (0, 0);
    for case in 0..600 {
        let mut bytes = pristine.clone();
        let at = rng.index(bytes.len());
        match case % 4 {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.truncate(at),
            2 => bytes[at..(at + 512).min(pristine.len())].fill(0),
            _ => {
                let end = (at + 4).min(bytes.len());
                bytes[at..end].copy_from_slice(&u32::MAX.to_le_bytes()[..end - at]);
            }
        }
        // Damage that reaches the last record leaves no valid record after it, so it
        // looks like a torn write wherever it starts: an append-only log cannot tell
        // how long it was. Damage with a valid record after it is located exactly.
        let damaged_end = match case % 4 {
            0 => at + 1,
            1 => pristine.len(),
            2 => at + 512,
            _ => at + 4,
        };
        let reaches_last_record = damaged_end > last_record;
        fs::write(&log, &bytes)?;
        let store = FsStore::open(dir.path())?;
        match store.open_document(&id) {
            Err(_) => errors += 1,
            Ok(p) => {
                let changes = p.get_change_entries()?;
                let kept = changes.len() as u64;
                // Whole batches, in order, with their exact bytes.
                for (i, (_, s, value)) in changes.iter().enumerate() {
                    assert_eq!(*s, i as u64 + 1, "case {case}");
                    assert_eq!(value, &vec![*s as u8; 50 + *s as usize], "case {case}");
                }
                if !reaches_last_record {
                    assert!(
                        kept >= before_last_flush,
                        "case {case}: an older flush was lost"
                    );
                }
                // A cut between records leaves a shorter log that is whole.
                let cut_between_records = case % 4 == 1 && boundaries.contains(&at);
                if kept < seq && !cut_between_records {
                    assert!(
                        p.recovered_bytes() > 0,
                        "case {case}: a loss was not reported"
                    );
                    losses += 1;
                }
            }
        }
    }
    assert!(
        errors > 100 && losses > 10,
        "{errors} errors, {losses} losses"
    );
    Ok(())
}
