//! Writing an export file.

use std::io::Write;

use persister_core::DocumentId;

use super::record::{Bytes, Record, frame_crc, header, limits};
use super::{Error, MAX_RECORD_LEN, VERSION};
use crate::DocumentDump;

/// Writes an export file to `W`, one document at a time.
///
/// Documents must come in increasing id order with their changes and sync states in
/// the order [`Persister`](persister_core::Persister) returns them; anything the
/// [`Decoder`](super::Decoder) would refuse is refused here with [`Error::Invalid`].
/// Call [`finish`](Encoder::finish) to write the end record: without it the file is
/// incomplete and will not import.
#[derive(Debug)]
pub struct Encoder<W: Write> {
    out: W,
    /// crc32c of every byte written so far.
    digest: u32,
    documents: u64,
    last_id: Option<DocumentId>,
}

impl<W: Write> Encoder<W> {
    /// Writes the header to `out`.
    pub fn new(out: W) -> Result<Self, Error> {
        let mut encoder = Self {
            out,
            digest: 0,
            documents: 0,
            last_id: None,
        };
        encoder.write_raw(&header(VERSION))?;
        Ok(encoder)
    }

    /// Writes one document's records.
    pub fn write_document(&mut self, doc: &DocumentDump) -> Result<(), Error> {
        self.check(doc)?;
        let id = &doc.id;
        self.write_record(
            id,
            &Record::Begin {
                id: Bytes(id.as_bytes()),
            },
        )?;
        if let Some(document) = &doc.document {
            self.write_record(
                id,
                &Record::Compacted {
                    document: Bytes(document),
                },
            )?;
        }
        for (actor, seq, value) in &doc.changes {
            let change = Record::Change {
                actor: Bytes(actor.as_bytes()),
                seq: *seq,
                value: Bytes(value),
            };
            self.write_record(id, &change)?;
        }
        for (peer, state) in &doc.sync_states {
            let sync_state = Record::SyncState {
                peer: Bytes(peer),
                state: Bytes(state),
            };
            self.write_record(id, &sync_state)?;
        }
        self.documents += 1;
        self.last_id = Some(doc.id.clone());
        Ok(())
    }

    /// Writes the end record and returns the writer (not flushed or synced).
    pub fn finish(mut self) -> Result<W, Error> {
        let end = Record::End {
            documents: self.documents,
            digest: self.digest,
        };
        self.write_record(&DocumentId::default(), &end)?;
        Ok(self.out)
    }

    /// Refuses what the decoder would refuse: ids out of order, keys out of order or
    /// repeated, ids and values over the limits.
    fn check(&self, doc: &DocumentDump) -> Result<(), Error> {
        let invalid = |reason: String| Error::Invalid {
            document: doc.id.to_string(),
            reason,
        };
        if self.last_id.as_ref().is_some_and(|last| *last >= doc.id) {
            return Err(invalid("documents must come in increasing id order".into()));
        }
        limits::id(doc.id.as_bytes()).map_err(invalid)?;
        if !doc
            .changes
            .windows(2)
            .all(|w| (&w[0].0, w[0].1) < (&w[1].0, w[1].1))
        {
            return Err(invalid(
                "its changes are not in increasing (actor, seq) order".into(),
            ));
        }
        if !doc.sync_states.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(invalid(
                "its sync states are not in increasing peer order".into(),
            ));
        }
        if let Some(document) = &doc.document {
            limits::value("document", document).map_err(invalid)?;
        }
        for (actor, _, value) in &doc.changes {
            limits::actor(actor.as_bytes()).map_err(invalid)?;
            limits::value("change", value).map_err(invalid)?;
        }
        for (peer, state) in &doc.sync_states {
            limits::peer(peer).map_err(invalid)?;
            limits::value("sync state", state).map_err(invalid)?;
        }
        Ok(())
    }

    /// Writes one record of `document`'s (named in errors).
    fn write_record(&mut self, document: &DocumentId, record: &Record<'_>) -> Result<(), Error> {
        let body = postcard::to_stdvec(record).map_err(|e| Error::Io {
            action: "encode a record of",
            source: std::io::Error::other(e),
        })?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|len| *len <= MAX_RECORD_LEN)
            .ok_or_else(|| Error::Invalid {
                document: document.to_string(),
                reason: format!("a record of {} bytes is over the maximum", body.len()),
            })?;
        let mut frame = [0; 8];
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame[4..].copy_from_slice(&frame_crc(len, &body).to_be_bytes());
        self.write_raw(&frame)?;
        self.write_raw(&body)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.digest = crc32c::crc32c_append(self.digest, bytes);
        self.out.write_all(bytes).map_err(|source| Error::Io {
            action: "write",
            source,
        })
    }
}
