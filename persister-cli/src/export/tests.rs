#![allow(clippy::unwrap_used, clippy::expect_used)]

use persister_core::ActorId;

use super::record::{Bytes, Record, frame_crc, header};
use super::*;

fn docs() -> Vec<DocumentDump> {
    vec![
        DocumentDump {
            id: "".into(),
            document: Some(Vec::new()),
            ..Default::default()
        },
        DocumentDump {
            id: "notes".into(),
            document: Some(b"compacted".to_vec()),
            changes: vec![
                (ActorId::new([1; 16]), 1, b"one".to_vec()),
                (ActorId::new([1; 16]), 2, b"two".to_vec()),
                (ActorId::new([2]), 1, Vec::new()),
            ],
            sync_states: vec![
                (Vec::new(), b"s0".to_vec()),
                (b"peer".to_vec(), b"s1".to_vec()),
            ],
        },
        DocumentDump {
            id: vec![0xff, 0x00].into(),
            document: None,
            changes: vec![(ActorId::new([9]), 7, vec![0; 300])],
            sync_states: Vec::new(),
        },
    ]
}

/// A frame around `record`, with a correct checksum.
fn frame(record: &Record<'_>) -> Vec<u8> {
    let body = postcard::to_stdvec(record).unwrap();
    raw_frame(&body)
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&frame_crc(len, body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A file of the given records after a good header, ended by a correct end record.
fn file_of(records: &[Record<'_>], documents: u64) -> Vec<u8> {
    let mut out = header(VERSION).to_vec();
    for record in records {
        out.extend(frame(record));
    }
    let digest = crc32c::crc32c(&out);
    out.extend(frame(&Record::End { documents, digest }));
    out
}

#[test]
fn documents_round_trip() -> Result<(), Error> {
    let docs = docs();
    let bytes = encode(&docs)?;
    assert_eq!(&bytes[..8], b"PSTEXPRT");
    assert_eq!(decode(&bytes)?, docs);
    // The streaming reader gives the same, one document at a time.
    let streamed: Vec<_> = Decoder::new(std::io::Cursor::new(&bytes))?.collect::<Result<_, _>>()?;
    assert_eq!(streamed, docs);
    assert_eq!(decode(&encode(&[])?)?, Vec::new());
    Ok(())
}

#[test]
fn every_truncation_is_refused() -> Result<(), Error> {
    let bytes = encode(&docs())?;
    for len in 0..bytes.len() {
        let result = decode(&bytes[..len]);
        assert!(result.is_err(), "a file cut to {len} bytes was accepted");
        if len >= HEADER_LEN {
            assert!(
                matches!(result, Err(Error::Truncated { .. })),
                "cut to {len}: {result:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn every_flipped_bit_is_refused() -> Result<(), Error> {
    let bytes = encode(&docs())?;
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1 << bit;
            assert!(
                decode(&damaged).is_err(),
                "a flip of bit {bit} of byte {i} was accepted"
            );
        }
    }
    Ok(())
}

#[test]
fn an_unknown_version_is_refused_naming_both() {
    let mut bytes = file_of(&[], 0);
    bytes[..HEADER_LEN].copy_from_slice(&header(2));
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));
    let message = err.to_string();
    assert!(
        message.contains("version 2") && message.contains("version 1"),
        "{message}"
    );
}

/// A flipped bit in the header's version is damage, not another version: the
/// header's checksum says so. It was reported as a file of an unsupported version.
#[test]
fn a_damaged_version_is_a_checksum_error() {
    let bytes = file_of(&[], 0);
    for bit in 0..32 {
        let mut damaged = bytes.clone();
        damaged[8 + bit / 8] ^= 1 << (bit % 8);
        let err = decode(&damaged).unwrap_err();
        assert!(
            matches!(err, Error::Checksum { offset: 0, .. }),
            "bit {bit}: {err:?}"
        );
    }
}

#[test]
fn another_file_is_not_an_export() {
    assert!(matches!(decode(b""), Err(Error::NotAnExport)));
    assert!(matches!(
        decode(b"redb\x1a\x0a\xa9\x0d\x0a and more"),
        Err(Error::NotAnExport)
    ));
    assert!(matches!(decode(b"PSTEX"), Err(Error::Truncated { .. })));
}

#[test]
fn a_huge_record_length_is_refused_before_reading() {
    let mut bytes = header(VERSION).to_vec();
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    bytes.extend_from_slice(&[0; 4]);
    assert!(matches!(
        decode(&bytes),
        Err(Error::TooLong { offset: 16, len, .. }) if len == u64::from(u32::MAX)
    ));
    // Under the maximum but past the end of the file: truncated, and nothing of the
    // claimed length is allocated (the body is read through `take`).
    let mut bytes = header(VERSION).to_vec();
    bytes.extend_from_slice(&(MAX_RECORD_LEN).to_be_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(b"short");
    assert!(matches!(decode(&bytes), Err(Error::Truncated { .. })));
}

#[test]
fn a_huge_length_inside_a_record_is_refused() {
    // A Begin record whose id claims 2^62 bytes, with a correct frame checksum.
    let mut body = vec![0u8];
    let mut len: u64 = 1 << 62;
    while len >= 0x80 {
        body.push((len as u8) | 0x80);
        len >>= 7;
    }
    body.push(len as u8);
    body.extend_from_slice(b"tiny");
    let mut bytes = header(VERSION).to_vec();
    bytes.extend(raw_frame(&body));
    assert!(matches!(
        decode(&bytes),
        Err(Error::Malformed { offset: 16, .. })
    ));
}

#[test]
fn the_grammar_is_enforced() {
    let begin = |id: &'static [u8]| Record::Begin { id: Bytes(id) };
    let change = |seq| Record::Change {
        actor: Bytes(b"a"),
        seq,
        value: Bytes(b"v"),
    };
    let malformed = |bytes: Vec<u8>| matches!(decode(&bytes), Err(Error::Malformed { .. }));
    // Good as a baseline.
    assert!(decode(&file_of(&[begin(b"a"), change(1), change(2)], 1)).is_ok());
    // Records before any document, documents out of order, repeated changes.
    assert!(malformed(file_of(&[change(1)], 0)));
    assert!(malformed(file_of(&[begin(b"b"), begin(b"a")], 2)));
    assert!(malformed(file_of(&[begin(b"a"), begin(b"a")], 2)));
    assert!(malformed(file_of(&[begin(b"a"), change(2), change(2)], 1)));
    assert!(malformed(file_of(&[begin(b"a"), change(2), change(1)], 1)));
    // A compacted document after changes, an empty actor, a wrong count.
    let compacted = Record::Compacted {
        document: Bytes(b"d"),
    };
    assert!(malformed(file_of(&[begin(b"a"), change(1), compacted], 1)));
    let empty_actor = Record::Change {
        actor: Bytes(b""),
        seq: 1,
        value: Bytes(b""),
    };
    assert!(malformed(file_of(&[begin(b"a"), empty_actor], 1)));
    assert!(malformed(file_of(&[begin(b"a")], 2)));
    // Bytes after the end record.
    let mut trailing = file_of(&[begin(b"a")], 1);
    trailing.push(0);
    assert!(malformed(trailing));
}

#[test]
fn a_record_dropped_whole_is_caught_by_the_digest() -> Result<(), Error> {
    let good = file_of(&[Record::Begin { id: Bytes(b"a") }], 1);
    assert!(decode(&good).is_ok());
    // The same file without its change record, but with the end record of the full one.
    let full = file_of(
        &[
            Record::Begin { id: Bytes(b"a") },
            Record::Change {
                actor: Bytes(b"x"),
                seq: 1,
                value: Bytes(b"v"),
            },
        ],
        1,
    );
    let change_len = frame(&Record::Change {
        actor: Bytes(b"x"),
        seq: 1,
        value: Bytes(b"v"),
    })
    .len();
    let begin_end = HEADER_LEN + frame(&Record::Begin { id: Bytes(b"a") }).len();
    let mut dropped = full[..begin_end].to_vec();
    dropped.extend_from_slice(&full[begin_end + change_len..]);
    assert!(matches!(decode(&dropped), Err(Error::Checksum { .. })));
    Ok(())
}

#[test]
fn the_encoder_refuses_what_the_decoder_would() {
    let mut docs = docs();
    docs.swap(0, 1);
    assert!(matches!(encode(&docs), Err(Error::Invalid { .. })));
    let mut unordered = self::docs();
    unordered[1].changes.swap(0, 1);
    assert!(matches!(encode(&unordered), Err(Error::Invalid { .. })));
    let mut empty_actor = self::docs();
    empty_actor[1].changes[0].0 = ActorId::new(Vec::new());
    assert!(matches!(encode(&empty_actor), Err(Error::Invalid { .. })));
}
