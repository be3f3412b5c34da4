//! The demo's document on either CRDT: an Automerge text (`persister-automerge`) or a
//! Yjs text (`persister-yrs`), driven the same way by the editing session.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, TextEncoding};
use persister_automerge::PersistentDoc;
use persister_core::{CompactionTrigger, Error, FlushPolicy, Persister, StoredSizes};
use persister_yrs::PersistentYDoc;
use yrs::types::ToJson;
use yrs::{Any, GetString, Map, MapRef, Out, Text, TextRef, Transact};

use super::meta::{self, Meta, not_ours};
use super::source::Splice;
use crate::{CliError, Crdt};

/// One demo document, whatever its CRDT: what the session reads and writes.
pub(super) trait DemoDoc<P> {
    /// The demo's record of the document; a document the demo did not make is refused.
    fn meta(&self) -> Result<Meta, CliError>;

    /// The text, as it is now.
    fn text(&self) -> Result<String, CliError>;

    /// Starts session number `session`: records it as the open session (and, in a new
    /// document, makes the text and records the source of its edits).
    fn start(&mut self, source: &str, session: u64) -> Result<(), CliError>;

    /// Applies `splices` in one transaction, written to the persister as one change.
    fn splice(&mut self, splices: &[Splice]) -> Result<(), CliError>;

    /// Ends the session: records the counts (and how far a trace got, when it is one),
    /// and that no session is open.
    fn record(&mut self, sessions: u64, edits: u64, trace_position: u64) -> Result<(), CliError>;

    /// Compacts now.
    fn compact(&mut self) -> Result<(), CliError>;

    /// What the persister holds.
    fn sizes(&self) -> StoredSizes;

    /// The persister, to read.
    fn persister(&self) -> &P;

    /// Writes what is queued, makes everything durable, and returns the persister.
    fn close(self: Box<Self>) -> Result<P, CliError>;
}

/// Loads the demo document of `crdt` held by `persister`. With `flush_every`, the
/// document flushes after that many writes; without, it never writes on its own (to
/// read it back). Compaction is the session's to decide.
pub(super) fn load<P>(
    crdt: Crdt,
    persister: P,
    flush_every: Option<u64>,
) -> Result<Box<dyn DemoDoc<P>>, CliError>
where
    P: Persister<Error = Error> + 'static,
{
    let flush = flush_every.map_or(FlushPolicy::Manual, FlushPolicy::EveryBatches);
    Ok(match crdt {
        Crdt::Automerge => {
            let options = persister_automerge::Options::default()
                .with_flush(flush)
                .with_compaction(CompactionTrigger::never())
                .with_text_encoding(TextEncoding::UnicodeCodePoint);
            let doc = PersistentDoc::load_with(persister, options)?;
            // A document the demo did not make is refused by `meta`, with its hint.
            let text = Meta::from_automerge(doc.doc()).map_or(None, |(_, text)| text);
            Box::new(AutomergeDemo { doc, text })
        }
        Crdt::Yjs => {
            let options = persister_yrs::Options::default()
                .with_flush(flush)
                .with_compaction(CompactionTrigger::never());
            let doc = PersistentYDoc::load_with(persister, options)?;
            let text = doc.doc().get_or_insert_text(meta::TEXT);
            let meta = doc.doc().get_or_insert_map(YJS_META);
            let ascii = text.get_string(&doc.doc().transact()).is_ascii();
            Box::new(YjsDemo {
                doc,
                text,
                meta,
                ascii,
            })
        }
    })
}

/// An Automerge text at the root, and the demo's record beside it.
struct AutomergeDemo<P> {
    doc: PersistentDoc<P>,
    /// The text, once there is one.
    text: Option<ObjId>,
}

impl<P: Persister<Error = Error>> DemoDoc<P> for AutomergeDemo<P> {
    fn meta(&self) -> Result<Meta, CliError> {
        Ok(Meta::from_automerge(self.doc.doc())?.0)
    }

    fn text(&self) -> Result<String, CliError> {
        match &self.text {
            Some(text) => self.doc.doc().text(text).map_err(automerge_bug),
            None => Ok(String::new()),
        }
    }

    fn start(&mut self, source: &str, session: u64) -> Result<(), CliError> {
        let has_text = self.text.is_some();
        let text = self.doc.edit(|d| {
            let text = match has_text {
                true => None,
                false => {
                    d.put(ROOT, meta::SOURCE, source)?;
                    Some(d.put_object(ROOT, meta::TEXT, ObjType::Text)?)
                }
            };
            d.put(ROOT, meta::SESSIONS, session as i64)?;
            d.put(ROOT, meta::OPEN_SESSION, session as i64)?;
            Ok(text)
        })?;
        if text.is_some() {
            self.text = text;
        }
        Ok(())
    }

    fn splice(&mut self, splices: &[Splice]) -> Result<(), CliError> {
        let Some(text) = &self.text else {
            return Err(not_ours("it has no \"text\""));
        };
        self.doc.edit(|d| {
            for s in splices {
                d.splice_text(text, s.pos, s.delete as isize, &s.insert)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn record(&mut self, sessions: u64, edits: u64, trace_position: u64) -> Result<(), CliError> {
        self.doc.edit(|d| {
            d.put(ROOT, meta::SESSIONS, sessions as i64)?;
            d.put(ROOT, meta::EDITS, edits as i64)?;
            d.put(ROOT, meta::OPEN_SESSION, 0)?;
            if trace_position > 0 {
                d.put(ROOT, meta::TRACE_POSITION, trace_position as i64)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn compact(&mut self) -> Result<(), CliError> {
        Ok(self.doc.compact()?)
    }

    fn sizes(&self) -> StoredSizes {
        self.doc.sizes()
    }

    fn persister(&self) -> &P {
        self.doc.persister()
    }

    fn close(self: Box<Self>) -> Result<P, CliError> {
        Ok(self.doc.close()?)
    }
}

/// The root map of a Yjs demo document that holds the demo's record.
const YJS_META: &str = "meta";

/// A Yjs text at the root ("text"), and the demo's record in the root map "meta".
///
/// yrs counts text positions in UTF-8 bytes (its default) and the demo in Unicode
/// scalar values: the same while the text is ASCII, which generated typing and most
/// traces are; past the first other character, each position is converted.
struct YjsDemo<P> {
    doc: PersistentYDoc<P>,
    text: TextRef,
    meta: MapRef,
    /// Whether every character the text ever held is ASCII.
    ascii: bool,
}

impl<P: Persister<Error = Error>> DemoDoc<P> for YjsDemo<P> {
    fn meta(&self) -> Result<Meta, CliError> {
        let txn = self.doc.doc().transact();
        let count = |key: &str| -> Result<u64, CliError> {
            match self.meta.get(&txn, key) {
                None => Ok(0),
                Some(Out::Any(Any::Number(n))) => n
                    .as_i64()
                    .and_then(|i| u64::try_from(i).ok())
                    .ok_or_else(|| not_ours("a count is not a whole number of 0 or more")),
                Some(_) => Err(not_ours("a count is not a number")),
            }
        };
        let source = match self.meta.get(&txn, meta::SOURCE) {
            None => None,
            Some(Out::Any(Any::String(s))) => Some(s.to_string()),
            Some(other) => {
                // Escaped: the document's own content, which may hold control characters.
                let found = other.to_json(&txn).to_string();
                return Err(not_ours(&format!(
                    "its \"source\" is not a string but {}",
                    found.escape_debug()
                )));
            }
        };
        let meta = Meta {
            sessions: count(meta::SESSIONS)?,
            edits: count(meta::EDITS)?,
            trace_position: count(meta::TRACE_POSITION)?,
            open_session: count(meta::OPEN_SESSION)?,
            source,
        };
        if meta.source.is_none() && (meta.sessions > 0 || self.text.len(&txn) > 0) {
            return Err(not_ours("it records no source"));
        }
        Ok(meta)
    }

    fn text(&self) -> Result<String, CliError> {
        Ok(self.text.get_string(&self.doc.doc().transact()))
    }

    fn start(&mut self, source: &str, session: u64) -> Result<(), CliError> {
        let meta = &self.meta;
        self.doc.edit(|txn| {
            meta.insert(txn, meta::SOURCE, source);
            meta.insert(txn, meta::SESSIONS, session as i64);
            meta.insert(txn, meta::OPEN_SESSION, session as i64);
        })?;
        Ok(())
    }

    fn splice(&mut self, splices: &[Splice]) -> Result<(), CliError> {
        let ascii = self.ascii && splices.iter().all(|s| s.insert.is_ascii());
        let text = &self.text;
        let fits = self.doc.edit(|txn| {
            for s in splices {
                // (byte position, bytes to delete) of the splice's chars.
                let (pos, delete) = if ascii {
                    (s.pos, s.delete)
                } else {
                    let now = text.get_string(txn);
                    let byte = |chars: usize| {
                        now.char_indices()
                            .nth(chars)
                            .map_or(now.len(), |(byte, _)| byte)
                    };
                    let start = byte(s.pos);
                    (start, byte(s.pos + s.delete) - start)
                };
                let (Ok(pos), Ok(delete)) = (u32::try_from(pos), u32::try_from(delete)) else {
                    return false;
                };
                if delete > 0 {
                    text.remove_range(txn, pos, delete);
                }
                if !s.insert.is_empty() {
                    text.insert(txn, pos, &s.insert);
                }
            }
            true
        })?;
        self.ascii = ascii;
        if !fits {
            return Err(CliError::new(
                "a position is past the 4 GiB a Yjs text can address",
                "replay a smaller trace on Yjs",
            ));
        }
        Ok(())
    }

    fn record(&mut self, sessions: u64, edits: u64, trace_position: u64) -> Result<(), CliError> {
        let meta = &self.meta;
        self.doc.edit(|txn| {
            meta.insert(txn, meta::SESSIONS, sessions as i64);
            meta.insert(txn, meta::EDITS, edits as i64);
            meta.insert(txn, meta::OPEN_SESSION, 0);
            if trace_position > 0 {
                meta.insert(txn, meta::TRACE_POSITION, trace_position as i64);
            }
        })?;
        Ok(())
    }

    fn compact(&mut self) -> Result<(), CliError> {
        Ok(self.doc.compact()?)
    }

    fn sizes(&self) -> StoredSizes {
        self.doc.sizes()
    }

    fn persister(&self) -> &P {
        self.doc.persister()
    }

    fn close(self: Box<Self>) -> Result<P, CliError> {
        Ok(self.doc.close()?)
    }
}

fn automerge_bug(e: automerge::AutomergeError) -> CliError {
    CliError::from(persister_automerge::Error::from(e))
}
