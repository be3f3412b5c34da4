//! Record framing: the 13-byte header of each record (see the [module docs](super)).

use super::{COMMIT_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN, le_u32, mask_crc};

/// The record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A batch of writes.
    Batch = 1,
    /// The end of a flush: the log's length and running checksum before it.
    Commit = 3,
}

/// Starts a record at the end of `out`: reserves its header, to be filled by
/// [`finish_record`] once the payload has been appended. Returns the record's start.
pub(crate) fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    start
}

/// Fills the header of the record of `kind` begun at `start`.
///
/// The payload must be 1 to [`MAX_RECORD_LEN`] bytes; callers check that first.
pub(crate) fn finish_record(out: &mut [u8], start: usize, kind: RecordKind, flush: u32) {
    let (header, payload) = out[start..].split_at_mut(RECORD_HEADER_LEN);
    header[0] = kind as u8;
    header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[5..9].copy_from_slice(&flush.to_le_bytes());
    let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(payload), &header[..9]));
    header[9..13].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the commit record that ends flush `flush` to `out`, for a log whose bytes
/// before it are `log_len` long with running CRC32C `log_crc`.
pub(crate) fn push_commit(out: &mut Vec<u8>, flush: u32, log_len: u64, log_crc: u32) {
    let start = begin_record(out);
    out.extend_from_slice(&log_len.to_le_bytes());
    out.extend_from_slice(&log_crc.to_le_bytes());
    finish_record(out, start, RecordKind::Commit, flush);
}

/// A valid record found in a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its type.
    pub kind: RecordKind,
    /// Its flush number.
    pub flush: u32,
    /// Where its payload starts.
    pub payload_start: usize,
    /// Where it ends: one past its last payload byte.
    pub end: usize,
}

/// What a commit record says about the log before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Commit {
    /// The length of the log before the commit record.
    pub log_len: u64,
    /// The running CRC32C of those bytes.
    pub log_crc: u32,
}

/// Reads the payload of a valid commit record.
pub(crate) fn parse_commit(payload: &[u8]) -> Option<Commit> {
    let (len, crc) = payload.split_first_chunk::<8>()?;
    let crc: [u8; 4] = crc.try_into().ok()?;
    Some(Commit {
        log_len: u64::from_le_bytes(*len),
        log_crc: le_u32(crc),
    })
}

/// Reads the record at `at`, or says why there is no valid record there. Never reads
/// or allocates beyond `buf`: the length is checked against the bytes present first.
pub(crate) fn parse_record(buf: &[u8], at: usize) -> Result<Record, &'static str> {
    parse_record_with(buf, at, |start, end| crc32c::crc32c(&buf[start..end]))
}

/// [`parse_record`], with `payload_crc(start, end)` giving the CRC32C of
/// `buf[start..end]` (for a caller that can compute it without reading the range).
pub(crate) fn parse_record_with(
    buf: &[u8],
    at: usize,
    payload_crc: impl FnOnce(usize, usize) -> u32,
) -> Result<Record, &'static str> {
    let Some((header, rest)) = buf.get(at..).and_then(|b| b.split_first_chunk::<13>()) else {
        return Err("a record header is cut short by the end of the file");
    };
    let kind = match header[0] {
        0 => return Err("a record header has type 0"),
        1 => RecordKind::Batch,
        3 => RecordKind::Commit,
        _ => return Err("a record header has an unknown type"),
    };
    let len = le_u32([header[1], header[2], header[3], header[4]]) as usize;
    if len == 0 {
        return Err("a record header has length 0");
    }
    if len > MAX_RECORD_LEN {
        return Err("a record header's length is over the maximum");
    }
    if kind == RecordKind::Commit && len != COMMIT_LEN {
        return Err("a commit record header has a length other than 12");
    }
    if rest.len() < len {
        return Err("a record extends past the end of the file");
    }
    let payload_start = at + RECORD_HEADER_LEN;
    let stored = le_u32([header[9], header[10], header[11], header[12]]);
    let payload = payload_crc(payload_start, payload_start + len);
    let actual = mask_crc(crc32c::crc32c_append(payload, &header[..9]));
    if stored != actual {
        return Err("a record's checksum does not match");
    }
    Ok(Record {
        kind,
        flush: le_u32([header[5], header[6], header[7], header[8]]),
        payload_start,
        end: payload_start + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8], flush: u32) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        let start = begin_record(&mut out);
        out.extend_from_slice(payload);
        finish_record(&mut out, start, RecordKind::Batch, flush);
        out
    }

    #[test]
    fn records_and_commits_parse_back() {
        let mut out = record(b"payload", 7);
        let rec = parse_record(&out, 6);
        assert_eq!(
            rec,
            Ok(Record {
                kind: RecordKind::Batch,
                flush: 7,
                payload_start: 19,
                end: out.len()
            })
        );
        let at = out.len();
        push_commit(&mut out, 7, at as u64, 0xdead_beef);
        let commit = parse_record(&out, at);
        assert!(matches!(commit, Ok(r) if r.kind == RecordKind::Commit && r.flush == 7));
        let payload = &out[at + RECORD_HEADER_LEN..];
        assert_eq!(
            parse_commit(payload),
            Some(Commit {
                log_len: at as u64,
                log_crc: 0xdead_beef
            })
        );
    }

    #[test]
    fn every_damaged_byte_of_a_record_is_detected() {
        let out = record(b"some payload", 3);
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
        header[0] = 2;
        assert_eq!(
            parse_record(&header, 0),
            Err("a record header has an unknown type"),
            "type 2 was format version 1's end of a flush"
        );
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
