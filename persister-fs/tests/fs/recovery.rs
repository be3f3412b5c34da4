//! After a crash, torn tails are truncated and reported and damage before valid data
//! is an error; after a clean close, any damage is an error.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use persister_core::{DocumentId, Error, Persister, Recovered, Store};
use persister_fs::format::LOG_VERSION;
use persister_fs::{FORMAT_VERSION, FsPersister, FsStore};
use tempfile::TempDir;

use crate::common::{RECORD_HEADER_LEN, TestResult, actor, flushed_log, header_len, records};

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

    /// Removes the clean-close record: the store is then as a crash right after its
    /// last flush would have left it.
    fn crash(&self) -> TestResult {
        fs::remove_file(self.dir.path().join("CLOSED"))?;
        Ok(())
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
    // A fourth flush, then a crash that cut it in the middle of its record.
    {
        let mut p = log.open()?;
        p.insert_changes(vec![(actor(1), 4, vec![4; 100])])?;
        p.flush()?;
    }
    log.crash()?;
    let full_len = log.len()?;
    let torn_len = clean_len + (full_len - clean_len) / 2;
    OpenOptions::new()
        .write(true)
        .open(&log.path)?
        .set_len(torn_len)?;

    let store = log.store()?;
    let mut p = store.open_document(&log.id)?;
    assert_eq!(p.get_changes()?.len(), 3);
    assert_eq!(p.recovered_bytes(), torn_len - clean_len);
    assert_eq!(p.recovery().truncated_at, Some(clean_len));
    assert_eq!(
        store.recovered(),
        vec![Recovered::new(
            log.id.clone(),
            &log.path,
            clean_len,
            torn_len - clean_len,
            true
        )]
    );
    assert_eq!(log.len()?, clean_len, "the torn tail is cut off");
    assert_eq!(p.sizes().change_count, 3);

    // The log takes appends after recovery, and reopens cleanly.
    p.insert_changes(vec![(actor(1), 5, b"after".to_vec())])?;
    p.flush()?;
    drop((p, store));
    let p = log.open()?;
    assert_eq!(p.recovered_bytes(), 0);
    assert_eq!(p.get_changes()?.len(), 4);
    Ok(())
}

#[test]
fn zero_filled_tail_is_dropped() -> TestResult {
    let log = Log::flushed(3)?;
    let clean_len = log.len()?;
    log.crash()?;
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
    let bytes = log.rewrite(|bytes| bytes[first + RECORD_HEADER_LEN + 40] ^= 0x10)?;

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

/// A store of version 3 holds logs of versions 2 and 3 only (see `format`, Versions),
/// so any other log version is damage, not a later format: the version 1 before
/// commit records, one from the future, and the user's report of byte 10 flipped.
#[test]
fn a_log_of_an_unknown_version_in_a_known_store_is_damage_naming_the_version() -> TestResult {
    let log = Log::flushed(1)?;
    let pristine = fs::read(&log.path)?;
    let flipped = u32::from_le_bytes([pristine[8], pristine[9], pristine[10] ^ 0xff, pristine[11]]);
    for (version, crashed) in [(1u32, false), (9, false), (flipped, false), (9, true)] {
        if crashed {
            log.crash()?;
        }
        let bytes = log.rewrite(|bytes| {
            bytes.copy_from_slice(&pristine);
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
        })?;
        let err = log.open_err()?;
        assert!(
            matches!(&err, Error::Corrupt { path, offset: Some(8), .. } if *path == log.path),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("log format version {version},")),
            "{message}"
        );
        assert_eq!(
            fs::read(&log.path)?,
            bytes,
            "a damaged version is never truncated or rewritten"
        );
    }
    Ok(())
}

/// Rewrites the marker of the store in `dir` to say `version`, its checksum matching.
fn set_store_version(dir: &std::path::Path, version: u32) -> TestResult {
    let marker = dir.join("STORE");
    let mut bytes = fs::read(&marker)?;
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = persister_fs::format::mask_crc(crc32c::crc32c(&bytes[..12]));
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    fs::write(&marker, &bytes)?;
    Ok(())
}

/// An intact marker of another version is another format, refused naming both.
#[test]
fn unknown_store_version_is_refused_naming_both_versions() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(FsStore::open(dir.path())?);
    for version in [1u32, 7] {
        set_store_version(dir.path(), version)?;
        for err in [
            FsStore::open(dir.path()).unwrap_err(),
            FsStore::open_read_only(dir.path()).unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::UnsupportedFormat {
                        what: "fs store",
                        found,
                        supported: FORMAT_VERSION,
                        ..
                    } if found == version
                ),
                "{err}"
            );
        }
    }
    assert!(
        persister_fs::is_fs_store(dir.path()),
        "still recognised as an fs store"
    );
    Ok(())
}

/// The user's report: byte 10 of the marker flipped was refused as store format
/// version 16711683. The marker's checksum covers its version: it is damage.
#[test]
fn a_damaged_store_version_is_corrupt_not_another_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(FsStore::open(dir.path())?);
    let marker = dir.path().join("STORE");
    let pristine = fs::read(&marker)?;
    for at in 8..12 {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0xff;
        fs::write(&marker, &bytes)?;
        for err in [
            FsStore::open(dir.path()).unwrap_err(),
            FsStore::open_read_only(dir.path()).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Corrupt { path, .. } if *path == marker),
                "byte {at}: {err}"
            );
        }
        assert_eq!(fs::read(&marker)?, bytes, "the marker is left as it is");
    }
    Ok(())
}

/// A store of version 3 holds clean-close records of versions 2 and 3 only, so any
/// other version is damage, with the advice the record's other damage gets: the
/// user's report of bytes 8 and 10 flipped, and an intact record of version 4.
#[test]
fn a_clean_close_record_of_an_unknown_version_is_damage_naming_the_version() -> TestResult {
    let log = Log::flushed(1)?;
    let closed = log.dir.path().join("CLOSED");
    let pristine = fs::read(&closed)?;
    let mut damaged = Vec::new();
    for at in [8, 10] {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0xff;
        damaged.push(bytes);
    }
    let mut intact = pristine.clone();
    intact[8..12].copy_from_slice(&4u32.to_le_bytes());
    let end = intact.len() - 4;
    let crc = persister_fs::format::mask_crc(crc32c::crc32c(&intact[..end]));
    intact[end..].copy_from_slice(&crc.to_le_bytes());
    damaged.push(intact);
    for bytes in damaged {
        fs::write(&closed, &bytes)?;
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        for err in [
            FsStore::open(log.dir.path()).unwrap_err(),
            FsStore::open_read_only(log.dir.path()).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Corrupt { path, offset: Some(8), .. } if *path == closed),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("format version {version},"))
                    && message.contains("removing this file"),
                "{message}"
            );
        }
        assert_eq!(fs::read(&closed)?, bytes, "the record is left as it is");
    }
    Ok(())
}

#[test]
fn length_of_2_pow_32_minus_1_at_the_tail_is_a_torn_tail() -> TestResult {
    let log = Log::flushed(2)?;
    log.crash()?;
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
fn damage_after_a_clean_close_is_an_error_naming_file_and_offset() -> TestResult {
    // Insert (a,1), flush, insert (a,2), flush, close.
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let (after_first, path) = {
        let store = FsStore::open(dir.path())?;
        let mut p = store.open_document(&id)?;
        p.insert_changes(vec![(actor(1), 1, b"one".to_vec())])?;
        p.flush()?;
        let path = store.log_path(&id).unwrap();
        let after_first = fs::metadata(&path)?.len();
        p.insert_changes(vec![(actor(1), 2, b"two".to_vec())])?;
        p.flush()?;
        p.close()?;
        store.close()?;
        (after_first, path)
    };
    let pristine = fs::read(&path)?;
    let reopen = || FsStore::open(dir.path())?.open_document(&id).map(drop);
    // The last byte flipped.
    let mut bytes = pristine.clone();
    *bytes.last_mut().unwrap() ^= 1;
    fs::write(&path, &bytes)?;
    let err = reopen().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path: p, offset: Some(_), .. } if *p == path),
        "{err}"
    );
    assert_eq!(fs::read(&path)?, bytes, "nothing was cut");
    // Cut exactly where the first flush ended.
    fs::write(&path, &pristine[..after_first as usize])?;
    let err = reopen().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path: p, offset: Some(o), .. } if *p == path && *o == after_first),
        "{err}"
    );
    assert!(err.to_string().contains("closed cleanly"), "{err}");
    // Whole again, it reads exactly.
    fs::write(&path, &pristine)?;
    let store = FsStore::open(dir.path())?;
    assert_eq!(
        store.open_document(&id)?.get_changes()?,
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    Ok(())
}

#[test]
fn a_torn_tail_of_a_large_value_is_recovered_in_linear_time() -> TestResult {
    // A flush of one 8 MiB change whose bytes happen to hold many record-header-like
    // patterns (type 1 and a length of 4 MiB, every 5 bytes), cut by a crash before its
    // last 100 bytes reached the disk: the tail is torn. Telling it from damage scans
    // it for intact records; checking each candidate's checksum from scratch costs
    // 840,000 checksums of 4 MiB (3.5 TB) here, and grows with the square of the tail.
    let log = Log::flushed(2)?;
    let value = [1u8, 0x00, 0x00, 0x40, 0x00].repeat((8 << 20) / 5);
    {
        let mut p = log.open()?;
        p.insert_changes(vec![(actor(1), 3, value)])?;
        p.flush()?;
    }
    log.crash()?;
    let len = log.len()?;
    OpenOptions::new()
        .write(true)
        .open(&log.path)?
        .set_len(len - 100)?;

    let dir = log.dir.path().to_path_buf();
    let id = log.id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opened = FsStore::open(&dir)
            .and_then(|store| store.open_document(&id).and_then(|p| p.get_changes()));
        let _ = tx.send(opened.map(|changes| changes.len()));
    });
    // A linear scan of 8 MiB takes a few seconds at most, even in a debug build.
    let opened = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .map_err(|_| "recovering an 8 MiB torn tail took over 60 s")?;
    assert_eq!(opened?, 2);
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_log_s_magic_is_corruption_naming_file_and_offset() -> TestResult {
    // The crate promises that after a clean close a flipped byte anywhere in any log is
    // `Corrupt` naming the file and the offset: the log's magic included. It is a log
    // of this store (its name says so, and the clean-close record lists it), damaged.
    let log = Log::flushed(2)?;
    log.rewrite(|bytes| bytes[0] ^= 0x01)?;
    let err = log.open_err()?;
    assert!(
        matches!(&err, Error::Corrupt { path, offset: Some(0), .. } if *path == log.path),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_flipped_byte_in_the_magic_of_a_long_id_s_log_is_corruption() -> TestResult {
    // A log named by hash: its header is read when the store opens.
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from(vec![b'x'; 300]);
    let path = flushed_log(dir.path(), &id, 1)?;
    let mut bytes = fs::read(&path)?;
    bytes[0] ^= 0x01;
    fs::write(&path, &bytes)?;
    let err = match FsStore::open(dir.path()) {
        Ok(store) => match store.open_document(&id) {
            Ok(_) => return Err("the damaged log opened".into()),
            Err(err) => err,
        },
        Err(err) => err,
    };
    assert!(
        matches!(&err, Error::Corrupt { path: p, .. } if *p == path),
        "{err}"
    );
    Ok(())
}

/// Bytes of records in the documented framing, each a batch of flush `flush` with a
/// 1-byte payload: of log format version 3 with `key` (29-byte header), or of version
/// 2 (13-byte header) with none. An application can store such bytes in a value.
fn forged_records(key: Option<[u8; 16]>, flushes: std::ops::Range<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for flush in flushes {
        let mut head = vec![1];
        head.extend_from_slice(&1u32.to_le_bytes());
        head.extend_from_slice(&flush.to_le_bytes());
        if let Some(key) = key {
            head.extend_from_slice(&key);
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(b"x"), &head);
        head.extend_from_slice(&persister_fs::format::mask_crc(crc).to_le_bytes());
        head.push(b'x');
        out.extend_from_slice(&head);
    }
    out
}

/// A crash that tears the flush of a change whose value holds bytes laid out as
/// records of other flushes (in both framings, with a guessed key): the flush is a torn
/// tail, dropped and reported, and the flushes before it are there. Without the log's
/// key in every record, those bytes made the torn flush read as damage, and the
/// document did not open.
#[test]
fn a_torn_flush_whose_value_holds_bytes_of_records_is_a_torn_tail() -> TestResult {
    let log = Log::flushed(3)?;
    let clean_len = log.len()?;
    let mut value = vec![0xaa; 64];
    value.extend_from_slice(&forged_records(Some([0; 16]), 0..8));
    value.extend_from_slice(&forged_records(None, 0..8));
    value.extend_from_slice(&[0xbb; 1000]);
    {
        let mut p = log.open()?;
        p.insert_changes(vec![(actor(1), 4, value)])?;
        p.flush()?;
    }
    log.crash()?;
    // Cut inside the value, after the bytes laid out as records.
    let torn_len = log.len()? - 500;
    OpenOptions::new()
        .write(true)
        .open(&log.path)?
        .set_len(torn_len)?;
    let p = log.open()?;
    assert_eq!(p.get_changes()?.len(), 3);
    assert_eq!(p.recovered_bytes(), torn_len - clean_len);
    Ok(())
}

/// The log of a document as a build of log format version 2 wrote it: its header
/// without the key (18 + n bytes), its records with 13-byte headers whose checksum
/// covers bytes 0..9, its commits' running checksums over those bytes. The store's
/// clean-close record, which names the log's length and checksum, is removed.
fn as_log_version_2(log: &Log) -> TestResult<Vec<u8>> {
    let bytes = fs::read(&log.path)?;
    let id_len = usize::from(u16::from_le_bytes([bytes[12], bytes[13]]));
    let mut out = bytes[..14 + id_len].to_vec();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = persister_fs::format::mask_crc(crc32c::crc32c(&out));
    out.extend_from_slice(&crc.to_le_bytes());
    for (start, end) in records(&bytes, header_len(&log.id)) {
        let kind = bytes[start];
        let mut payload = bytes[start + RECORD_HEADER_LEN..end].to_vec();
        if kind == 3 {
            payload = (out.len() as u64).to_le_bytes().to_vec();
            payload.extend_from_slice(&crc32c::crc32c(&out).to_le_bytes());
        }
        let mut head = bytes[start..start + 9].to_vec();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&payload), &head);
        head.extend_from_slice(&persister_fs::format::mask_crc(crc).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&payload);
    }
    fs::write(&log.path, &out)?;
    log.crash()?;
    Ok(out)
}

/// A log of format version 2 reads as before, takes flushes in its own framing, and
/// loses nothing to a crash; the store's rewrite of the log writes version 3.
#[test]
fn a_log_of_format_version_2_is_read_appended_to_and_rewritten_as_version_3() -> TestResult {
    let log = Log::flushed(3)?;
    let old = as_log_version_2(&log)?;
    {
        let mut p = log.open()?;
        assert_eq!(p.get_changes()?.len(), 3);
        for seq in 4..=5 {
            p.insert_changes(vec![(actor(1), seq, vec![seq as u8; 100])])?;
            p.flush()?;
        }
    }
    let bytes = fs::read(&log.path)?;
    assert_eq!(&bytes[..old.len()], &old[..], "appended to, not rewritten");
    assert_eq!(bytes[8..12], 2u32.to_le_bytes());
    // Two more flushes of two records each, in version 2's 13-byte framing.
    let mut at = old.len();
    for _ in 0..4 {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 13 + len;
    }
    assert_eq!(at, bytes.len());
    log.crash()?;
    assert_eq!(log.open()?.get_changes()?.len(), 5);

    // Overwriting most of the document makes the next flush rewrite its log.
    let options = persister_fs::FsOptions::default()
        .with_rewrite_min_len(1024)
        .with_rewrite_dead_share(0.5);
    let store = FsStore::open_with(log.dir.path(), options)?;
    let mut p = store.open_document(&log.id)?;
    let mut batch = persister_core::Batch::new().set_document(vec![9; 100]);
    for seq in 1..=4 {
        batch = batch.remove_change(actor(1), seq);
    }
    p.apply(batch)?;
    p.flush()?;
    drop((p, store));
    let bytes = fs::read(&log.path)?;
    assert_eq!(bytes[8..12], LOG_VERSION.to_le_bytes());
    let p = log.open()?;
    assert_eq!(p.get_changes()?, vec![vec![5; 100]]);
    assert_eq!(p.get_document()?, Some(vec![9; 100]));
    Ok(())
}

/// Rewrites the store marker of `dir` as a build of store format version 2 wrote it.
fn as_store_version_2(dir: &std::path::Path) -> TestResult {
    set_store_version(dir, 2)
}

/// The store format version in the marker of `dir`, and the log format version of
/// the log at `log`.
fn versions(dir: &std::path::Path, log: &std::path::Path) -> TestResult<(u32, u32)> {
    let marker = fs::read(dir.join("STORE"))?;
    let log = fs::read(log)?;
    let version = |b: &[u8]| u32::from_le_bytes(b[8..12].try_into().unwrap());
    Ok((version(&marker), version(&log)))
}

/// A store of format version 2 opened without being asked to migrate stays version 2:
/// its new logs and its rewritten ones are of log format version 2, and its clean-close
/// record too, so the builds that wrote it still open it (no silent migration). Asked
/// to migrate, it becomes version 3: its new logs are of log format version 3, and its
/// old ones are appended to as they are until rewritten.
#[test]
fn a_store_of_version_2_migrates_only_when_asked() -> TestResult {
    let log = Log::flushed(3)?;
    as_log_version_2(&log)?;
    as_store_version_2(log.dir.path())?;
    let rewrite = persister_fs::FsOptions::default()
        .with_rewrite_min_len(1024)
        .with_rewrite_dead_share(0.5);
    let other = DocumentId::from("other");
    {
        let store = FsStore::open_with(log.dir.path(), rewrite.clone())?;
        assert_eq!(store.format_version(), Some(2));
        let mut p = store.open_document(&other)?;
        p.insert_changes(vec![(actor(1), 1, b"new".to_vec())])?;
        p.flush()?;
        let other_log = store.log_path(&other).unwrap();
        assert_eq!(versions(log.dir.path(), &other_log)?, (2, 2));
        drop(p);
        // A rewrite of the old document's log keeps version 2.
        let mut p = store.open_document(&log.id)?;
        p.apply(persister_core::Batch::new().set_document(vec![1; 2000]))?;
        p.flush()?;
        let before = log.len()?;
        let mut batch = persister_core::Batch::new().set_document(vec![9; 100]);
        for seq in 1..=3 {
            batch = batch.remove_change(actor(1), seq);
        }
        p.apply(batch)?;
        p.flush()?;
        assert!(log.len()? < before, "the log was rewritten");
        assert_eq!(versions(log.dir.path(), &log.path)?, (2, 2));
        drop(p);
        store.close()?;
    }
    let closed = fs::read(log.dir.path().join("CLOSED"))?;
    assert_eq!(closed[8..12], 2u32.to_le_bytes());
    assert_eq!(log.open()?.get_document()?, Some(vec![9; 100]));

    let migrate = rewrite.with_migrate_format(true);
    let store = FsStore::open_with(log.dir.path(), migrate)?;
    assert_eq!(store.format_version(), Some(FORMAT_VERSION));
    let third = DocumentId::from("third");
    let mut p = store.open_document(&third)?;
    p.insert_changes(vec![(actor(1), 1, b"third".to_vec())])?;
    p.flush()?;
    let third_log = store.log_path(&third).unwrap();
    assert_eq!(versions(log.dir.path(), &third_log)?, (3, 3));
    drop(p);
    // The old document's log is appended to as it is, then rewritten as version 3.
    let mut p = store.open_document(&log.id)?;
    p.insert_changes(vec![(actor(1), 4, vec![4; 100])])?;
    p.flush()?;
    assert_eq!(versions(log.dir.path(), &log.path)?, (3, 2));
    p.apply(persister_core::Batch::new().set_document(vec![7; 3000]))?;
    p.flush()?;
    assert_eq!(versions(log.dir.path(), &log.path)?, (3, 2));
    p.apply(persister_core::Batch::new().set_document(vec![8; 10]))?;
    p.flush()?;
    assert_eq!(versions(log.dir.path(), &log.path)?, (3, 3));
    drop(p);
    store.close()?;
    let closed = fs::read(log.dir.path().join("CLOSED"))?;
    assert_eq!(closed[8..12], 3u32.to_le_bytes());
    let store = FsStore::open(log.dir.path())?;
    let p = store.open_document(&log.id)?;
    assert_eq!(p.get_changes()?, vec![vec![4; 100]]);
    assert_eq!(p.get_document()?, Some(vec![8; 10]));
    let other = store.open_document(&other)?;
    assert_eq!(other.get_changes()?, vec![b"new".to_vec()]);
    Ok(())
}
