//! Record framing: the header of each record, 29 bytes in a log of format version 3
//! and 13 in one of version 2 (see the [module docs](super)).

use super::{COMMIT_LEN, KEY_LEN, MAX_RECORD_LEN, le_u32, mask_crc};

/// The framing of a log's records, by its format version: version 3's carry the log's
/// key, version 2's do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    /// Log format version 2: a 13-byte header without a key.
    Unkeyed,
    /// Log format version 3: a 29-byte header with this key, the one in the log's header.
    Keyed([u8; KEY_LEN]),
}

impl RecordFormat {
    /// The length of a record header in this format.
    pub fn header_len(&self) -> usize {
        9 + self.key().len() + 4
    }

    /// The key every record carries: empty in version 2.
    pub fn key(&self) -> &[u8] {
        match self {
            RecordFormat::Unkeyed => &[],
            RecordFormat::Keyed(key) => key,
        }
    }

    /// Where the checksum starts: after the type, length, flush number and key.
    fn crc_at(&self) -> usize {
        9 + self.key().len()
    }
}

/// The record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A batch of writes.
    Batch = 1,
    /// The end of a flush: the log's length and running checksum before it.
    Commit = 3,
}

/// Starts a record of `format` at the end of `out`: reserves its header, to be filled
/// by [`finish_record`] once the payload has been appended. Returns the record's start.
pub(crate) fn begin_record(out: &mut Vec<u8>, format: RecordFormat) -> usize {
    let start = out.len();
    out.resize(start + format.header_len(), 0);
    start
}

/// Fills the header of the record of `kind` and `format` begun at `start`.
///
/// The payload must be 1 to [`MAX_RECORD_LEN`] bytes; callers check that first.
pub(crate) fn finish_record(
    out: &mut [u8],
    start: usize,
    kind: RecordKind,
    flush: u32,
    format: RecordFormat,
) {
    let crc_at = format.crc_at();
    let (header, payload) = out[start..].split_at_mut(format.header_len());
    header[0] = kind as u8;
    header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[5..9].copy_from_slice(&flush.to_le_bytes());
    header[9..crc_at].copy_from_slice(format.key());
    let crc = mask_crc(crc32c::crc32c_append(
        crc32c::crc32c(payload),
        &header[..crc_at],
    ));
    header[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the commit record of `format` that ends flush `flush` to `out`, for a log
/// whose bytes before it are `log_len` long with running CRC32C `log_crc`.
pub(crate) fn push_commit(
    out: &mut Vec<u8>,
    flush: u32,
    log_len: u64,
    log_crc: u32,
    format: RecordFormat,
) {
    let start = begin_record(out, format);
    out.extend_from_slice(&log_len.to_le_bytes());
    out.extend_from_slice(&log_crc.to_le_bytes());
    finish_record(out, start, RecordKind::Commit, flush, format);
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

/// Reads the record of `format` at `at`, or says why there is no valid record there.
/// Never reads or allocates beyond `buf`: the length is checked against the bytes
/// present first.
pub(crate) fn parse_record(
    buf: &[u8],
    at: usize,
    format: RecordFormat,
) -> Result<Record, &'static str> {
    parse_record_with(buf, at, format, |start, end| {
        crc32c::crc32c(&buf[start..end])
    })
}

/// [`parse_record`], with `payload_crc(start, end)` giving the CRC32C of
/// `buf[start..end]` (for a caller that can compute it without reading the range).
pub(crate) fn parse_record_with(
    buf: &[u8],
    at: usize,
    format: RecordFormat,
    payload_crc: impl FnOnce(usize, usize) -> u32,
) -> Result<Record, &'static str> {
    let header_len = format.header_len();
    let crc_at = format.crc_at();
    let Some((header, rest)) = buf
        .get(at..)
        .filter(|b| b.len() >= header_len)
        .map(|b| b.split_at(header_len))
    else {
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
    if header[9..crc_at] != *format.key() {
        return Err("a record header does not carry the log's key");
    }
    if rest.len() < len {
        return Err("a record extends past the end of the file");
    }
    let payload_start = at + header_len;
    let stored = le_u32([
        header[crc_at],
        header[crc_at + 1],
        header[crc_at + 2],
        header[crc_at + 3],
    ]);
    let payload = payload_crc(payload_start, payload_start + len);
    let actual = mask_crc(crc32c::crc32c_append(payload, &header[..crc_at]));
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

    const KEYED: RecordFormat = RecordFormat::Keyed([0x5c; KEY_LEN]);
    const FORMATS: [RecordFormat; 2] = [KEYED, RecordFormat::Unkeyed];

    fn record(payload: &[u8], flush: u32, format: RecordFormat) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        let start = begin_record(&mut out, format);
        out.extend_from_slice(payload);
        finish_record(&mut out, start, RecordKind::Batch, flush, format);
        out
    }

    #[test]
    fn records_and_commits_parse_back() {
        for format in FORMATS {
            let mut out = record(b"payload", 7, format);
            let rec = parse_record(&out, 6, format);
            assert_eq!(
                rec,
                Ok(Record {
                    kind: RecordKind::Batch,
                    flush: 7,
                    payload_start: 6 + format.header_len(),
                    end: out.len()
                })
            );
            let at = out.len();
            push_commit(&mut out, 7, at as u64, 0xdead_beef, format);
            let commit = parse_record(&out, at, format);
            assert!(matches!(commit, Ok(r) if r.kind == RecordKind::Commit && r.flush == 7));
            let payload = &out[at + format.header_len()..];
            assert_eq!(
                parse_commit(payload),
                Some(Commit {
                    log_len: at as u64,
                    log_crc: 0xdead_beef
                })
            );
        }
        assert_eq!(KEYED.header_len(), 29);
        assert_eq!(RecordFormat::Unkeyed.header_len(), 13);
    }

    #[test]
    fn every_damaged_byte_of_a_record_is_detected() {
        for format in FORMATS {
            let out = record(b"some payload", 3, format);
            for i in 6..out.len() {
                for bit in 0..8 {
                    let mut bad = out.clone();
                    bad[i] ^= 1 << bit;
                    assert!(
                        parse_record(&bad, 6, format).is_err(),
                        "flip of bit {bit} at {i}"
                    );
                }
            }
            for cut in 6..out.len() {
                assert!(parse_record(&out[..cut], 6, format).is_err());
            }
        }
    }

    /// A record is one only in the format and with the key of the log it is read in:
    /// a record written with another key (bytes an application stored, which cannot
    /// know the log's key), or in the other format, is not.
    #[test]
    fn a_record_of_another_key_or_format_is_not_one() {
        let other = RecordFormat::Keyed([0x5d; KEY_LEN]);
        let out = record(b"payload", 1, other);
        assert_eq!(
            parse_record(&out, 6, KEYED),
            Err("a record header does not carry the log's key")
        );
        assert!(parse_record(&out, 6, RecordFormat::Unkeyed).is_err());
        let out = record(b"payload", 1, RecordFormat::Unkeyed);
        assert!(parse_record(&out, 6, KEYED).is_err());
    }

    #[test]
    fn zero_bytes_and_hostile_lengths_are_not_records() {
        for format in FORMATS {
            assert_eq!(
                parse_record(&[0; 64], 0, format),
                Err("a record header has type 0")
            );
            let mut header = [0u8; 64];
            header[9..format.crc_at()].copy_from_slice(format.key());
            header[0] = 2;
            assert_eq!(
                parse_record(&header, 0, format),
                Err("a record header has an unknown type"),
                "type 2 was format version 1's end of a flush"
            );
            header[0] = 1;
            assert_eq!(
                parse_record(&header, 0, format),
                Err("a record header has length 0")
            );
            header[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(
                parse_record(&header, 0, format),
                Err("a record header's length is over the maximum")
            );
            header[1..5].copy_from_slice(&(MAX_RECORD_LEN as u32).to_le_bytes());
            assert_eq!(
                parse_record(&header, 0, format),
                Err("a record extends past the end of the file")
            );
            assert!(parse_record(&header, 1000, format).is_err());
        }
    }
}
