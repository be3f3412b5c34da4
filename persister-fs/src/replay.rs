//! Replaying a log, and telling a torn tail from damage.
//!
//! A flush is its batch records followed by one commit record; its batches count only
//! once the commit is read. A crash can damage only what the last flush was writing:
//! every earlier flush returned after `fdatasync`, and the first flush of every log
//! file is synced before the file gets its name. So the bytes after the last valid
//! commit are a torn tail exactly when they could all belong to the one unfinished
//! flush `T` that follows it:
//!
//! - no valid record lies there except records of flush `T`, and
//! - a commit record of flush `T` ends the file.
//!
//! Any other valid record after an invalid one (a record of an older or a later flush,
//! or a commit followed by more bytes) proves that something already synced was
//! damaged: that is corruption, reported with the offset of the first invalid record,
//! and nothing is truncated. A log without a valid commit (damage inside the first
//! flush of the file), a record of an unexpected flush number, a commit whose length
//! or running checksum does not match the bytes before it, or a payload that fails to
//! decode behind a valid checksum are corruption too.
//!
//! A store closed cleanly knows each log's exact length and running checksum (the
//! clean-close record); its logs are checked against them by the caller, and no tail
//! at all is accepted.

use std::path::Path;

use persister_core::{Error, Result};

use crate::format::{
    LogEnd, RecordFormat, RecordKind, batch, parse_commit, parse_record, parse_record_with,
};
use crate::live::LiveState;

/// What replaying a log found.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The state after every committed flush.
    pub live: LiveState,
    /// Where the last commit ends, and the running checksum of the bytes before it;
    /// the bytes after it are a torn tail.
    pub valid: LogEnd,
    /// The flush number the next appended record gets.
    pub next_flush: u32,
    /// Where the first invalid record starts, when the log does not end with a commit
    /// (its torn tail's first damaged byte is at or after it).
    pub first_invalid: Option<usize>,
}

/// Replays the records of a log read whole into `bytes`, whose header is
/// `header_len` bytes long and names its records' `format`.
pub(crate) fn replay(
    bytes: &[u8],
    header_len: usize,
    format: RecordFormat,
    path: &Path,
) -> Result<Replayed> {
    let corrupt = |what: String, at: usize| Error::corrupt(what, path, Some(at as u64));
    let mut live = LiveState::default();
    let mut pos = header_len;
    let mut crc = crc32c::crc32c(&bytes[..header_len]);
    // The batches of the flush being read, not committed yet: where each starts.
    let mut uncommitted: Vec<usize> = Vec::new();
    // The flush number the next record must have, once one record was read.
    let mut due: Option<u32> = None;
    let mut valid: Option<LogEnd> = None;
    let mut first_invalid = None;
    while pos < bytes.len() {
        let record = match parse_record(bytes, pos, format) {
            Ok(record) => record,
            Err(why) => {
                check_torn_tail(bytes, pos, why, valid.is_some(), due, format, path)?;
                first_invalid = Some(pos);
                break;
            }
        };
        if let Some(due) = due
            && record.flush != due
        {
            let what = format!(
                "the log's writes are out of order (write {} where write {due} belongs): part of the file was lost or moved, so it is damaged",
                record.flush
            );
            return Err(corrupt(what, pos));
        }
        match record.kind {
            RecordKind::Batch => {
                uncommitted.push(pos);
                due = Some(record.flush);
            }
            RecordKind::Commit => {
                let payload = &bytes[record.payload_start..record.end];
                let commit = parse_commit(payload);
                if commit.map(|c| (c.log_len, c.log_crc)) != Some((pos as u64, crc)) {
                    let what = format!(
                        "a commit record does not match the {pos} bytes before it (a record was lost, added or moved)"
                    );
                    return Err(corrupt(what, pos));
                }
                for at in uncommitted.drain(..) {
                    apply(bytes, at, format, &mut live).map_err(|why| corrupt(why, at))?;
                }
                due = Some(record.flush.wrapping_add(1));
            }
        }
        crc = crc32c::crc32c_append(crc, &bytes[pos..record.end]);
        pos = record.end;
        if record.kind == RecordKind::Commit {
            valid = Some(LogEnd {
                len: pos as u64,
                crc,
            });
        }
    }
    let Some(valid) = valid else {
        let at = first_invalid.unwrap_or(header_len);
        return Err(corrupt(
            "the log has lost the data it was created with, which was safely on disk before the document appeared: the file is damaged"
                .into(),
            at,
        ));
    };
    if first_invalid.is_none() && !uncommitted.is_empty() {
        first_invalid = Some(pos);
    }
    Ok(Replayed {
        live,
        valid,
        next_flush: due.unwrap_or(0),
        first_invalid,
    })
}

/// Applies the batch record at `at`, which has a valid checksum.
fn apply(
    bytes: &[u8],
    at: usize,
    format: RecordFormat,
    live: &mut LiveState,
) -> std::result::Result<(), String> {
    let record = parse_record(bytes, at, format).map_err(str::to_owned)?;
    let payload = &bytes[record.payload_start..record.end];
    batch::decode(payload, |write| live.apply_write(write))
        .map_err(|why| format!("a record has a valid checksum but {why}"))
}

/// Checks that the bytes from `at` on, where no valid record starts, can be a torn
/// tail: the rest of the unfinished flush `torn_flush`. Only records of the log's
/// `format` count, with its key in version 3: the torn flush's payload holds an
/// application's bytes, which can be laid out as records but cannot carry the key.
#[allow(clippy::too_many_arguments)]
fn check_torn_tail(
    bytes: &[u8],
    at: usize,
    why: &str,
    committed: bool,
    torn_flush: Option<u32>,
    format: RecordFormat,
    path: &Path,
) -> Result<()> {
    let corrupt = |what: String| Err(Error::corrupt(what, path, Some(at as u64)));
    let (true, Some(torn_flush)) = (committed, torn_flush) else {
        return corrupt(format!(
            "{why}, in the data the log was created with, which was safely on disk before the document appeared: the file is damaged, not cut short by a crash"
        ));
    };
    // Every byte may start a record whose length field covers most of the tail: each
    // candidate's checksum is computed from prefix checksums, so the scan stays linear.
    let crcs = persister_core::checksum::RangeCrc::new(bytes, at + 1);
    let mut scan = at + 1;
    while scan < bytes.len() {
        let Ok(record) = parse_record_with(bytes, scan, format, |start, end| crcs.crc(start, end))
        else {
            scan += 1;
            continue;
        };
        if record.flush != torn_flush {
            return corrupt(format!(
                "{why}, yet intact data (of write {}) follows at byte {scan}: the file is damaged, not cut short by a crash",
                record.flush
            ));
        }
        if record.kind == RecordKind::Commit && record.end != bytes.len() {
            return corrupt(format!(
                "{why}, yet an intact end of write {} follows at byte {scan}, and more after it: the file is damaged, not cut short by a crash",
                record.flush
            ));
        }
        // A record of the torn flush: whatever starts inside it is no evidence.
        scan = record.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use persister_core::{ActorId, Batch, DocumentId};

    use super::*;
    use crate::format::{KEY_LEN, begin_record, encode_log_header, finish_record, push_commit};

    const KEY: [u8; KEY_LEN] = [0x71; KEY_LEN];
    const FORMAT: RecordFormat = RecordFormat::Keyed(KEY);

    /// A log with the given flushes, each a number of one-change batches and a commit.
    /// Returns the bytes and the start of every record, commits included.
    fn log(flushes: &[usize]) -> (Vec<u8>, Vec<usize>) {
        log_in(FORMAT, flushes)
    }

    /// The header of a log of `format`: version 3's with its key, or version 2's.
    fn header_of(format: RecordFormat) -> Vec<u8> {
        encode_log_header(&DocumentId::from("doc"), format)
    }

    /// [`log`] in `format`.
    fn log_in(format: RecordFormat, flushes: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut out = header_of(format);
        let mut starts = Vec::new();
        let mut seq = 0;
        for (flush, &records) in flushes.iter().enumerate() {
            for _ in 0..records {
                seq += 1;
                let change =
                    Batch::new().insert_change(ActorId::new([1]), seq, vec![seq as u8; 30]);
                starts.push(push_batch(&mut out, &change, flush as u32, format));
            }
            starts.push(out.len());
            let crc = crc32c::crc32c(&out);
            let len = out.len() as u64;
            push_commit(&mut out, flush as u32, len, crc, format);
        }
        (out, starts)
    }

    /// Appends `batch` as a record of `flush` in `format`; gives where it starts.
    fn push_batch(out: &mut Vec<u8>, batch: &Batch, flush: u32, format: RecordFormat) -> usize {
        let start = begin_record(out, format);
        batch::encode(out, batch);
        finish_record(out, start, RecordKind::Batch, flush, format);
        start
    }

    fn header_len() -> usize {
        header_of(FORMAT).len()
    }

    fn replay_log(bytes: &[u8]) -> Result<Replayed> {
        replay(bytes, header_len(), FORMAT, Path::new("log"))
    }

    /// A torn flush whose change holds bytes laid out as records of other flushes,
    /// checksums and all: an application's bytes, which cannot carry the log's key, so
    /// the flush is a torn tail and the document opens at the flush before it. With the
    /// log's key (which only the log's own records have) the same bytes are damage, and
    /// in a log of format version 2, which has no key, they were.
    #[test]
    fn records_forged_inside_a_torn_flush_are_no_evidence_of_damage() -> Result<()> {
        let forged = |format: RecordFormat| {
            let mut value = Vec::new();
            for flush in 0..8 {
                let batch = Batch::new().set_document(b"forged".to_vec());
                push_batch(&mut value, &batch, flush, format);
            }
            value
        };
        let stranger = RecordFormat::Keyed([0x72; KEY_LEN]);
        for (format, value_format, torn) in [
            (FORMAT, stranger, true),
            (FORMAT, RecordFormat::Unkeyed, true),
            (FORMAT, FORMAT, false),
            (RecordFormat::Unkeyed, RecordFormat::Unkeyed, false),
        ] {
            let (mut bytes, _) = log_in(format, &[1, 1]);
            let valid = bytes.len();
            let mut value = vec![0xaa; 100];
            value.extend_from_slice(&forged(value_format));
            value.extend_from_slice(&[0xbb; 400]);
            let change = Batch::new().insert_change(ActorId::new([1]), 3, value);
            push_batch(&mut bytes, &change, 2, format);
            // Cut inside the value, after the forged records.
            bytes.truncate(bytes.len() - 200);
            let header_len = header_of(format).len();
            let result = replay(&bytes, header_len, format, Path::new("log"));
            match torn {
                true => {
                    let replayed = result?;
                    assert_eq!(changes(&replayed), 2);
                    assert_eq!(replayed.valid.len, valid as u64);
                }
                false => assert!(result.is_err_and(|e| e.is_corrupt()), "{format:?}"),
            }
        }
        Ok(())
    }

    /// A log of format version 2 replays as before: whole, cut, and damaged.
    #[test]
    fn a_log_of_format_version_2_replays() -> Result<()> {
        let format = RecordFormat::Unkeyed;
        let header_len = header_of(format).len();
        let (bytes, starts) = log_in(format, &[1, 3, 2]);
        let replayed = replay(&bytes, header_len, format, Path::new("log"))?;
        assert_eq!((changes(&replayed), replayed.next_flush), (6, 3));
        assert_eq!(replayed.valid.crc, crc32c::crc32c(&bytes));
        let cut = replay(
            &bytes[..bytes.len() - 3],
            header_len,
            format,
            Path::new("log"),
        )?;
        assert_eq!(changes(&cut), 4);
        let mut damaged = bytes.clone();
        damaged[starts[1] + 20] ^= 1;
        assert!(
            replay(&damaged, header_len, format, Path::new("log")).is_err_and(|e| e.is_corrupt())
        );
        // Read as a log of version 3, it has no records.
        assert!(replay(&bytes, header_len, FORMAT, Path::new("log")).is_err());
        Ok(())
    }

    fn changes(replayed: &Replayed) -> u64 {
        replayed.live.state().sizes().change_count
    }

    #[test]
    fn clean_log_replays_whole() -> Result<()> {
        let (bytes, _) = log(&[1, 3, 2]);
        let replayed = replay_log(&bytes)?;
        assert_eq!(
            (changes(&replayed), replayed.valid.len),
            (6, bytes.len() as u64)
        );
        assert_eq!(replayed.valid.crc, crc32c::crc32c(&bytes));
        assert_eq!((replayed.next_flush, replayed.first_invalid), (3, None));
        Ok(())
    }

    #[test]
    fn any_cut_inside_the_last_flush_drops_the_whole_flush() -> Result<()> {
        let (bytes, starts) = log(&[2, 3]);
        // The last flush starts after the first flush's commit (record 2).
        let last_flush = starts[3];
        for cut in last_flush + 1..bytes.len() {
            let replayed = replay_log(&bytes[..cut])?;
            assert_eq!(changes(&replayed), 2, "cut at {cut}");
            assert_eq!(replayed.valid.len, last_flush as u64);
            assert!(replayed.first_invalid.is_some());
            // An unfinished flush keeps its number for the records that follow it.
            assert_eq!(replayed.next_flush, 1);
        }
        Ok(())
    }

    #[test]
    fn lost_sectors_inside_the_last_flush_are_a_torn_tail() -> Result<()> {
        let (mut bytes, starts) = log(&[2, 3]);
        // The middle record of the last flush is lost, the records around it and the
        // commit are not.
        bytes[starts[4]..starts[5]].fill(0);
        let replayed = replay_log(&bytes)?;
        assert_eq!(
            (changes(&replayed), replayed.valid.len),
            (2, starts[3] as u64)
        );
        Ok(())
    }

    #[test]
    fn damage_before_a_later_flush_is_corruption() {
        let (mut bytes, starts) = log(&[2, 1, 1]);
        bytes[starts[3] + 20] ^= 1;
        let err = replay_log(&bytes);
        assert!(
            matches!(&err, Err(Error::Corrupt { offset: Some(o), .. }) if *o == starts[3] as u64),
            "{err:?}"
        );
    }

    #[test]
    fn damage_to_the_commit_of_the_second_last_flush_is_corruption() {
        let (mut bytes, starts) = log(&[1, 2, 2]);
        // The commit of flush 1 (records: b, c, b, b, c, b, b, c).
        bytes[starts[4] + 15] ^= 1;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn damage_inside_the_first_flush_is_corruption() {
        let (mut bytes, starts) = log(&[3]);
        bytes[starts[2] + 20] ^= 1;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
        let (bytes, starts) = log(&[3]);
        assert!(replay_log(&bytes[..starts[3]]).is_err_and(|e| e.is_corrupt()));
        let (mut bytes, starts) = log(&[1, 1]);
        bytes[starts[0]] = 0;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn zero_tail_and_hostile_length_tail_are_torn() -> Result<()> {
        let (mut bytes, _) = log(&[1, 1]);
        let len = bytes.len();
        bytes.resize(len + 4096, 0);
        assert_eq!(replay_log(&bytes)?.valid.len, len as u64);
        bytes.truncate(len);
        bytes.push(1);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0xee; 100]);
        assert_eq!(replay_log(&bytes)?.valid.len, len as u64);
        Ok(())
    }

    #[test]
    fn out_of_sequence_flush_is_corruption() {
        let (mut bytes, _) = log(&[1]);
        push_batch(
            &mut bytes,
            &Batch::new().set_document(b"d".to_vec()),
            5,
            FORMAT,
        );
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn a_commit_that_does_not_match_the_bytes_before_it_is_corruption() {
        // A whole record removed between two commits: every record checksum is fine.
        let (bytes, starts) = log(&[1, 2, 1]);
        let mut spliced = bytes[..starts[2]].to_vec();
        spliced.extend_from_slice(&bytes[starts[3]..]);
        let err = replay_log(&spliced);
        assert!(err.is_err_and(|e| e.is_corrupt()));
        // A commit copied from elsewhere.
        let (mut bytes, starts) = log(&[1, 1]);
        let start = starts[3];
        let crc = crc32c::crc32c(&bytes[..start]) ^ 1;
        bytes.truncate(start);
        push_commit(&mut bytes, 1, start as u64, crc, FORMAT);
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn bad_payload_behind_a_valid_checksum_is_corruption() {
        let (mut bytes, _) = log(&[1]);
        let start = begin_record(&mut bytes, FORMAT);
        bytes.extend_from_slice(&[1, 0, 0, 0, 99]);
        finish_record(&mut bytes, start, RecordKind::Batch, 1, FORMAT);
        let crc = crc32c::crc32c(&bytes);
        let len = bytes.len() as u64;
        push_commit(&mut bytes, 1, len, crc, FORMAT);
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }
}
