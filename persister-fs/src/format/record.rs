//! Record framing: the 13-byte header of each record (see the [module docs](super)).

use super::{MAX_RECORD_LEN, RECORD_HEADER_LEN, le_u32, mask_crc};

/// Starts a record at the end of `out`: reserves its header, to be filled by
/// [`finish_record`] once the payload has been appended. Returns the record's start.
pub(crate) fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    start
}

/// Fills the header of the record begun at `start` (a batch that does not end its
/// flush) and returns the CRC32C of its payload, which [`mark_ends_flush`] needs.
///
/// The payload must be 1 to [`MAX_RECORD_LEN`] bytes; callers check that first.
pub(crate) fn finish_record(out: &mut [u8], start: usize, flush: u32) -> u32 {
    let (header, payload) = out[start..].split_at_mut(RECORD_HEADER_LEN);
    let payload_crc = crc32c::crc32c(payload);
    header[0] = RecordKind::Batch as u8;
    header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[5..9].copy_from_slice(&flush.to_le_bytes());
    seal(header, payload_crc);
    payload_crc
}

/// Turns the finished record at `start` into the last record of its flush.
pub(crate) fn mark_ends_flush(out: &mut [u8], start: usize, payload_crc: u32) {
    let header = &mut out[start..start + RECORD_HEADER_LEN];
    header[0] = RecordKind::BatchEndsFlush as u8;
    seal(header, payload_crc);
}

fn seal(header: &mut [u8], payload_crc: u32) {
    let crc = mask_crc(crc32c::crc32c_append(payload_crc, &header[..9]));
    header[9..13].copy_from_slice(&crc.to_le_bytes());
}

/// The record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A batch; more records of the same flush follow.
    Batch = 1,
    /// A batch, the last record its flush wrote.
    BatchEndsFlush = 2,
}

/// A valid record found in a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Whether it is the last record of its flush.
    pub ends_flush: bool,
    /// Its flush number.
    pub flush: u32,
    /// Where its payload starts.
    pub payload_start: usize,
    /// Where it ends: one past its last payload byte.
    pub end: usize,
}

/// Reads the record at `at`, or says why there is no valid record there. Never reads
/// or allocates beyond `buf`: the length is checked against the bytes present first.
pub(crate) fn parse_record(buf: &[u8], at: usize) -> Result<Record, &'static str> {
    let Some((header, rest)) = buf.get(at..).and_then(|b| b.split_first_chunk::<13>()) else {
        return Err("a record header is cut short by the end of the file");
    };
    let ends_flush = match header[0] {
        0 => return Err("a record header has type 0"),
        1 => false,
        2 => true,
        _ => return Err("a record header has an unknown type"),
    };
    let len = le_u32([header[1], header[2], header[3], header[4]]) as usize;
    if len == 0 {
        return Err("a record header has length 0");
    }
    if len > MAX_RECORD_LEN {
        return Err("a record header's length is over the maximum");
    }
    let Some(payload) = rest.get(..len) else {
        return Err("a record extends past the end of the file");
    };
    let stored = le_u32([header[9], header[10], header[11], header[12]]);
    let actual = mask_crc(crc32c::crc32c_append(crc32c::crc32c(payload), &header[..9]));
    if stored != actual {
        return Err("a record's checksum does not match");
    }
    let payload_start = at + RECORD_HEADER_LEN;
    Ok(Record {
        ends_flush,
        flush: le_u32([header[5], header[6], header[7], header[8]]),
        payload_start,
        end: payload_start + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8], flush: u32) -> (Vec<u8>, u32) {
        let mut out = b"prefix".to_vec();
        let start = begin_record(&mut out);
        out.extend_from_slice(payload);
        let crc = finish_record(&mut out, start, flush);
        (out, crc)
    }

    #[test]
    fn records_parse_back_and_can_be_marked_as_ending_a_flush() {
        let (mut out, crc) = record(b"payload", 7);
        let rec = parse_record(&out, 6);
        assert_eq!(
            rec,
            Ok(Record {
                ends_flush: false,
                flush: 7,
                payload_start: 19,
                end: out.len()
            })
        );
        mark_ends_flush(&mut out, 6, crc);
        assert!(matches!(parse_record(&out, 6), Ok(r) if r.ends_flush && r.flush == 7));
    }

    #[test]
    fn every_damaged_byte_of_a_record_is_detected() {
        let (out, _) = record(b"some payload", 3);
        for i in 6..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                assert!(parse_record(&bad, 6).is_err(), "flip of bit {bit} at {i}");
            }
        }
        for cut in 6..out.len() {
            assert!(parse_record(&out[..cut], 6).is_err());
        }
    }

    #[test]
    fn zero_bytes_and_hostile_lengths_are_not_records() {
        assert_eq!(parse_record(&[0; 64], 0), Err("a record header has type 0"));
        let mut header = [0u8; 64];
        header[0] = 1;
        assert_eq!(
            parse_record(&header, 0),
            Err("a record header has length 0")
        );
        header[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_record(&header, 0),
            Err("a record header's length is over the maximum")
        );
        header[1..5].copy_from_slice(&(MAX_RECORD_LEN as u32).to_le_bytes());
        assert_eq!(
            parse_record(&header, 0),
            Err("a record extends past the end of the file")
        );
        assert!(parse_record(&header, 1000).is_err());
    }
}
