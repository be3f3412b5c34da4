//! Reading an export file.

use std::io::{self, Read};

use persister_core::{ActorId, DocumentId};

use super::record::{FRAME_HEADER_LEN, Record, frame_crc, header, limits};
use super::{Error, HEADER_LEN, MAGIC, MAX_RECORD_LEN, VERSION};
use crate::DocumentDump;

/// Reads an export file from `R`, yielding one document at a time.
///
/// Every document is checked before it is yielded, but the file as a whole (the record
/// count and digest of the end record) only at its end: a caller that stores documents
/// as they come must be ready to throw them away if the last item is an error. After
/// an error the iterator ends.
#[derive(Debug)]
pub struct Decoder<R: Read> {
    input: R,
    /// Bytes read so far: the offset of the next record.
    offset: u64,
    /// crc32c of every byte read so far.
    digest: u32,
    documents: u64,
    /// The document being gathered, and the id of the previous one.
    current: Option<DocumentDump>,
    last_id: Option<DocumentId>,
    /// Whether the end record was read.
    ended: bool,
    /// Whether the iterator is over (ended, or failed).
    done: bool,
}

impl<R: Read> Decoder<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut bytes = [0; HEADER_LEN];
        let got = read_full(&mut input, &mut bytes)?;
        if bytes[..got.min(MAGIC.len())] != MAGIC[..got.min(MAGIC.len())] || got == 0 {
            return Err(Error::NotAnExport);
        }
        if got < HEADER_LEN {
            return Err(Error::Truncated {
                offset: got as u64,
                what: "the header",
            });
        }
        // Every version's header is the magic, the version and their checksum, so the
        // checksum is checked first: a damaged version is damage, not a version.
        let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if bytes != header(version) {
            return Err(Error::Checksum {
                offset: 0,
                what: "header",
            });
        }
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        Ok(Self {
            input,
            offset: HEADER_LEN as u64,
            digest: crc32c::crc32c(&bytes),
            documents: 0,
            current: None,
            last_id: None,
            ended: false,
            done: false,
        })
    }

    /// The next whole document, or `None` after the end record.
    fn next_document(&mut self) -> Result<Option<DocumentDump>, Error> {
        if self.ended {
            return Ok(None);
        }
        loop {
            let start = self.offset;
            let digest_before = self.digest;
            let body = self.read_frame()?;
            let malformed = |reason: String| Error::Malformed {
                offset: start,
                reason,
            };
            let (record, rest) = postcard::take_from_bytes::<Record<'_>>(&body)
                .map_err(|e| malformed(e.to_string()))?;
            if !rest.is_empty() {
                return Err(malformed(format!(
                    "{} bytes follow its content",
                    rest.len()
                )));
            }
            if let Record::End { documents, digest } = record {
                let count = self.documents + u64::from(self.current.is_some());
                if documents != count {
                    return Err(malformed(format!(
                        "the end record counts {documents} documents, but the file holds {count}"
                    )));
                }
                if digest != digest_before {
                    return Err(Error::Checksum {
                        offset: start,
                        what: "file (its end record's digest)",
                    });
                }
                self.expect_eof()?;
                self.ended = true;
                return Ok(self.current.take());
            }
            if let Some(finished) = self.apply(record).map_err(malformed)? {
                return Ok(Some(finished));
            }
        }
    }

    /// Adds a record to the current document; returns the previous document when a
    /// new one begins.
    fn apply(&mut self, record: Record<'_>) -> Result<Option<DocumentDump>, String> {
        if let Record::Begin { id } = record {
            limits::id(id.0)?;
            let id = DocumentId::new(id.0);
            let previous = self.current.take();
            if let Some(doc) = &previous {
                self.last_id = Some(doc.id.clone());
                self.documents += 1;
            }
            if self.last_id.as_ref().is_some_and(|last| *last >= id) {
                return Err(format!("document {id} is out of order or repeated"));
            }
            self.current = Some(DocumentDump {
                id,
                ..DocumentDump::default()
            });
            return Ok(previous);
        }
        let doc = self
            .current
            .as_mut()
            .ok_or("a record comes before any document begins")?;
        match record {
            Record::Compacted { document } => {
                if doc.document.is_some() || !doc.changes.is_empty() || !doc.sync_states.is_empty()
                {
                    return Err(format!(
                        "document {}: its compacted form is repeated or out of place",
                        doc.id
                    ));
                }
                limits::value("document", document.0)?;
                doc.document = Some(document.0.to_vec());
            }
            Record::Change { actor, seq, value } => {
                limits::actor(actor.0)?;
                limits::value("change", value.0)?;
                let in_order = doc
                    .changes
                    .last()
                    .is_none_or(|(a, s, _)| (a.as_bytes(), *s) < (actor.0, seq));
                if !doc.sync_states.is_empty() || !in_order {
                    return Err(format!(
                        "document {}: change ({}, {seq}) is out of order or repeated",
                        doc.id,
                        ActorId::new(actor.0)
                    ));
                }
                doc.changes
                    .push((ActorId::new(actor.0), seq, value.0.to_vec()));
            }
            Record::SyncState { peer, state } => {
                limits::peer(peer.0)?;
                limits::value("sync state", state.0)?;
                if doc
                    .sync_states
                    .last()
                    .is_some_and(|(p, _)| p.as_slice() >= peer.0)
                {
                    return Err(format!(
                        "document {}: a sync state is out of order or repeated",
                        doc.id
                    ));
                }
                doc.sync_states.push((peer.0.to_vec(), state.0.to_vec()));
            }
            Record::Begin { .. } | Record::End { .. } => {}
        }
        Ok(None)
    }

    /// Reads one frame and returns its checked body.
    fn read_frame(&mut self) -> Result<Vec<u8>, Error> {
        let start = self.offset;
        let mut frame = [0; FRAME_HEADER_LEN];
        let got = read_full(&mut self.input, &mut frame)?;
        if got < FRAME_HEADER_LEN {
            return Err(Error::Truncated {
                offset: start + got as u64,
                what: if got == 0 {
                    "a document, before the end record"
                } else {
                    "a record's frame"
                },
            });
        }
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_RECORD_LEN {
            return Err(Error::TooLong {
                offset: start,
                what: "record",
                len: len.into(),
                max: MAX_RECORD_LEN.into(),
            });
        }
        // `take` bounds the allocation by the bytes the file really holds.
        let mut body = Vec::new();
        (&mut self.input)
            .take(len.into())
            .read_to_end(&mut body)
            .map_err(|source| Error::Io {
                action: "read",
                source,
            })?;
        self.offset = start + FRAME_HEADER_LEN as u64 + body.len() as u64;
        if body.len() < len as usize {
            return Err(Error::Truncated {
                offset: self.offset,
                what: "a record",
            });
        }
        if frame_crc(len, &body) != crc {
            return Err(Error::Checksum {
                offset: start,
                what: "record",
            });
        }
        self.digest = crc32c::crc32c_append(self.digest, &frame);
        self.digest = crc32c::crc32c_append(self.digest, &body);
        Ok(body)
    }

    fn expect_eof(&mut self) -> Result<(), Error> {
        let mut byte = [0; 1];
        if read_full(&mut self.input, &mut byte)? != 0 {
            return Err(Error::Malformed {
                offset: self.offset,
                reason: "bytes follow the end record".into(),
            });
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Decoder<R> {
    type Item = Result<DocumentDump, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_document();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    source,
                });
            }
        }
    }
    Ok(got)
}
