//! Replaying a log, and telling a torn tail from damage.
//!
//! A crash can damage only what the last flush was writing: every earlier flush
//! returned after `fdatasync`, and the first flush of every log file is synced before
//! the file gets its name. So the bytes after the last valid record are a torn tail
//! exactly when they could all belong to one unfinished flush, the flush `T` that
//! follows the valid prefix (the prefix's last flush if its last record does not end
//! it, the next flush number otherwise):
//!
//! - no valid record lies there except records of flush `T`, and
//! - a record that ends flush `T` ends the file.
//!
//! Any other valid record after an invalid one (a record of an older or a later flush,
//! or a record that ends a flush and is followed by more bytes) proves that something
//! already synced was damaged: that is corruption, reported with the offset of the
//! first invalid record, and nothing is truncated. Damage inside the first flush of a
//! file is corruption too. Damage to the bytes of the last flush itself cannot be told
//! from a torn write without another sync per flush: it is treated as a torn tail, and
//! the dropped bytes are reported.

use std::path::Path;

use persister_core::{Error, Result};

use crate::format::{batch, parse_record};
use crate::live::LiveState;

/// What replaying a log found.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The state after every valid record.
    pub live: LiveState,
    /// Where the valid records end; the bytes after it are a torn tail.
    pub valid_len: usize,
    /// The flush number the next appended record gets.
    pub next_flush: u32,
}

/// The last valid record's flush number and whether it ended its flush.
#[derive(Clone, Copy, Debug)]
struct Last {
    flush: u32,
    ends_flush: bool,
}

impl Last {
    /// The flush number of the record that may follow.
    fn next(self) -> u32 {
        if self.ends_flush {
            self.flush.wrapping_add(1)
        } else {
            self.flush
        }
    }
}

/// Replays the records of a log read whole into `bytes`, whose header is
/// `header_len` bytes long.
pub(crate) fn replay(bytes: &[u8], header_len: usize, path: &Path) -> Result<Replayed> {
    let mut live = LiveState::default();
    let mut pos = header_len;
    let mut first_flush = None;
    let mut last: Option<Last> = None;
    while pos < bytes.len() {
        let record = match parse_record(bytes, pos) {
            Ok(record) => record,
            Err(why) => {
                check_torn_tail(bytes, pos, why, first_flush, last, path)?;
                break;
            }
        };
        if let Some(last) = last
            && record.flush != last.next()
        {
            let what = format!(
                "a record of flush {} follows one of flush {}, where flush {} was due",
                record.flush,
                last.flush,
                last.next()
            );
            return Err(Error::corrupt(what, path, Some(pos as u64)));
        }
        let payload = &bytes[record.payload_start..record.end];
        batch::decode(payload, |write| live.apply_write(write)).map_err(|why| {
            let what = format!("a record has a valid checksum but {why}");
            Error::corrupt(what, path, Some(pos as u64))
        })?;
        first_flush.get_or_insert(record.flush);
        last = Some(Last {
            flush: record.flush,
            ends_flush: record.ends_flush,
        });
        pos = record.end;
    }
    Ok(Replayed {
        live,
        valid_len: pos,
        next_flush: last.map_or(0, Last::next),
    })
}

/// Checks that the bytes from `at` on, where no valid record starts, are a torn tail.
fn check_torn_tail(
    bytes: &[u8],
    at: usize,
    why: &str,
    first_flush: Option<u32>,
    last: Option<Last>,
    path: &Path,
) -> Result<()> {
    let corrupt = |what: String| Err(Error::corrupt(what, path, Some(at as u64)));
    let Some(last) = last else {
        return corrupt(format!(
            "{why}, in the first flush of the log, which was synced before the file was named"
        ));
    };
    if !last.ends_flush && Some(last.flush) == first_flush {
        return corrupt(format!(
            "{why}, inside the first flush of the log, which was synced before the file was named"
        ));
    }
    let torn_flush = last.next();
    let mut scan = at + 1;
    while scan < bytes.len() {
        let Ok(record) = parse_record(bytes, scan) else {
            scan += 1;
            continue;
        };
        if record.flush != torn_flush {
            return corrupt(format!(
                "{why}, yet a valid record of flush {} follows at byte {scan}: the log was damaged before its end",
                record.flush
            ));
        }
        if record.ends_flush && record.end != bytes.len() {
            return corrupt(format!(
                "{why}, yet a valid record ending flush {} follows at byte {scan} and more bytes follow it: the log was damaged before its end",
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
    use crate::format::{begin_record, encode_log_header, finish_record, mark_ends_flush};

    /// A log with the given flushes, each a number of one-change batches. Returns the
    /// bytes and the start of every record.
    fn log(flushes: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut out = encode_log_header(&DocumentId::from("doc"));
        let mut starts = Vec::new();
        let mut seq = 0;
        for (flush, &records) in flushes.iter().enumerate() {
            for i in 0..records {
                seq += 1;
                let start = begin_record(&mut out);
                let change =
                    Batch::new().insert_change(ActorId::new([1]), seq, vec![seq as u8; 30]);
                batch::encode(&mut out, &change);
                let crc = finish_record(&mut out, start, flush as u32);
                if i + 1 == records {
                    mark_ends_flush(&mut out, start, crc);
                }
                starts.push(start);
            }
        }
        (out, starts)
    }

    fn header_len() -> usize {
        encode_log_header(&DocumentId::from("doc")).len()
    }

    fn replay_log(bytes: &[u8]) -> Result<Replayed> {
        replay(bytes, header_len(), Path::new("log"))
    }

    fn changes(replayed: &Replayed) -> u64 {
        replayed.live.state().sizes().change_count
    }

    #[test]
    fn clean_log_replays_whole() -> Result<()> {
        let (bytes, _) = log(&[1, 3, 2]);
        let replayed = replay_log(&bytes)?;
        assert_eq!((changes(&replayed), replayed.valid_len), (6, bytes.len()));
        assert_eq!(replayed.next_flush, 3);
        Ok(())
    }

    #[test]
    fn any_cut_inside_the_last_flush_is_a_torn_tail() -> Result<()> {
        let (bytes, starts) = log(&[2, 3]);
        let ends: Vec<usize> = starts[1..].iter().copied().chain([bytes.len()]).collect();
        for cut in starts[2] + 1..bytes.len() {
            let replayed = replay_log(&bytes[..cut])?;
            let kept = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(changes(&replayed) as usize, kept, "cut at {cut}");
            assert_eq!(replayed.valid_len, ends[kept - 1]);
            // An unfinished flush keeps its number for the records that follow it.
            assert_eq!(replayed.next_flush, 1);
        }
        Ok(())
    }

    #[test]
    fn lost_sectors_inside_the_last_flush_are_a_torn_tail() -> Result<()> {
        let (mut bytes, starts) = log(&[2, 3]);
        // The middle record of the last flush is lost, the records around it are not.
        bytes[starts[3]..starts[4]].fill(0);
        let replayed = replay_log(&bytes)?;
        assert_eq!((changes(&replayed), replayed.valid_len), (3, starts[3]));
        Ok(())
    }

    #[test]
    fn damage_before_a_later_flush_is_corruption() {
        let (mut bytes, starts) = log(&[2, 1, 1]);
        bytes[starts[1] + 20] ^= 1;
        let err = replay_log(&bytes);
        assert!(
            matches!(&err, Err(Error::Corrupt { offset: Some(o), .. }) if *o == starts[1] as u64),
            "{err:?}"
        );
    }

    #[test]
    fn damage_to_the_end_of_the_second_last_flush_is_corruption() {
        // Only one flush follows; without the end marker this would look torn.
        let (mut bytes, starts) = log(&[1, 2, 2]);
        bytes[starts[2] + 20] ^= 1;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn damage_inside_the_first_flush_is_corruption() {
        let (mut bytes, starts) = log(&[3]);
        bytes[starts[2] + 20] ^= 1;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
        let (mut bytes, starts) = log(&[1, 1]);
        bytes[starts[0]] = 0;
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn zero_tail_and_hostile_length_tail_are_torn() -> Result<()> {
        let (mut bytes, _) = log(&[1, 1]);
        let len = bytes.len();
        bytes.resize(len + 4096, 0);
        assert_eq!(replay_log(&bytes)?.valid_len, len);
        bytes.truncate(len);
        bytes.push(1);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0xee; 100]);
        assert_eq!(replay_log(&bytes)?.valid_len, len);
        Ok(())
    }

    #[test]
    fn out_of_sequence_flush_is_corruption() {
        let (mut bytes, _) = log(&[1]);
        let start = begin_record(&mut bytes);
        batch::encode(&mut bytes, &Batch::new().set_document(b"d".to_vec()));
        finish_record(&mut bytes, start, 5);
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }

    #[test]
    fn bad_payload_behind_a_valid_checksum_is_corruption() {
        let (mut bytes, _) = log(&[1]);
        let start = begin_record(&mut bytes);
        bytes.extend_from_slice(&[1, 0, 0, 0, 99]);
        finish_record(&mut bytes, start, 1);
        assert!(replay_log(&bytes).is_err_and(|e| e.is_corrupt()));
    }
}
