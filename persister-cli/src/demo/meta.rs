//! What the demo document records about itself, beside its text: how many sessions
//! and edits it has seen, where its edits come from, how far a trace got, and whether
//! the last session ended. An Automerge document keeps it at its root; a Yjs document
//! in its root map "meta".
//!
//! A session records its number when it starts, with its first edits, and the edits
//! and the trace's position when it ends. A session stopped before its end leaves its
//! number as the open session, and more text than the record says: the next session
//! says so, and finds a trace's position from the text.

use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::CliError;

/// The demo's keys at the root of the document (of the "meta" map, on Yjs).
pub(crate) const TEXT: &str = "text";
pub(crate) const SESSIONS: &str = "sessions";
pub(crate) const EDITS: &str = "edits";
pub(crate) const SOURCE: &str = "source";
pub(crate) const TRACE_POSITION: &str = "trace_position";
/// The session that started and has not recorded its end: 0 once it has.
pub(crate) const OPEN_SESSION: &str = "open_session";

/// The demo's record of a document.
#[derive(Debug, Default)]
pub(crate) struct Meta {
    pub(crate) sessions: u64,
    pub(crate) edits: u64,
    pub(crate) source: Option<String>,
    pub(crate) trace_position: u64,
    /// A session that started and never recorded its end (stopped by Ctrl-C, a kill
    /// or a crash): its number, or 0. What it flushed is in the text, beyond what
    /// `edits` and `trace_position` say.
    pub(crate) open_session: u64,
}

impl Meta {
    /// Reads the record of an Automerge document, and the id of its text; a document
    /// that holds other things is refused.
    pub(crate) fn from_automerge(doc: &AutoCommit) -> Result<(Meta, Option<ObjId>), CliError> {
        let text = match doc.get(ROOT, TEXT).map_err(|e| not_ours(&e.to_string()))? {
            Some((Value::Object(ObjType::Text), id)) => Some(id),
            Some(_) => return Err(not_ours("its \"text\" is not a text")),
            None => None,
        };
        let source = match doc
            .get(ROOT, SOURCE)
            .map_err(|e| not_ours(&e.to_string()))?
        {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => return Err(not_ours("its \"source\" is not a string")),
            },
            _ => None,
        };
        let meta = Meta {
            sessions: count(doc, SESSIONS).map_err(not_ours)?,
            edits: count(doc, EDITS).map_err(not_ours)?,
            trace_position: count(doc, TRACE_POSITION).map_err(not_ours)?,
            open_session: count(doc, OPEN_SESSION).map_err(not_ours)?,
            source,
        };
        if text.is_none() && (meta.sessions > 0 || doc.length(ROOT) > 0) {
            return Err(not_ours("it has no \"text\""));
        }
        Ok((meta, text))
    }
}

/// The refusal of a document the demo did not make, saying `what` is wrong with it.
pub(crate) fn not_ours(what: &str) -> CliError {
    CliError::new(
        format!("the document \"demo\" was not made by `persister demo` ({what})"),
        "give the demo a directory of its own with --dir",
    )
}

/// A non-negative integer at the root, 0 when absent.
fn count(doc: &AutoCommit, key: &str) -> Result<u64, &'static str> {
    match doc.get(ROOT, key) {
        Ok(None) => Ok(0),
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Int(i) => u64::try_from(*i).map_err(|_| "a count is negative"),
            ScalarValue::Uint(u) => Ok(*u),
            _ => Err("a count is not a number"),
        },
        _ => Err("a count is not a number"),
    }
}
