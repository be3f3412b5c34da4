//! What the demo prints.

use std::time::Duration;

use persister_core::StoredSizes;
use serde::Serialize;

use crate::commands::plural;
use crate::output::{duration, millis, say, table, thousands};
use crate::{Backend, Crdt};

/// Everything one session did and measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) store: String,
    pub(crate) backend: Backend,
    pub(crate) crdt: Crdt,
    pub(crate) document: String,
    pub(crate) source: String,
    pub(crate) session: u64,
    /// The previous session, when it stopped before its end.
    pub(crate) cut_short: Option<CutShort>,
    pub(crate) previous_edits: u64,
    pub(crate) loaded_chars: usize,
    pub(crate) edits: u64,
    pub(crate) insertions: u64,
    pub(crate) deletions: u64,
    pub(crate) cursor_jumps: u64,
    pub(crate) text_chars: usize,
    pub(crate) flush_every: u64,
    pub(crate) flushes: u64,
    pub(crate) flushed_bytes: u64,
    pub(crate) compactions: u64,
    pub(crate) loaded_sizes: StoredSizes,
    pub(crate) sizes: StoredSizes,
    pub(crate) disk_bytes: u64,
    pub(crate) trace: Option<TraceProgress>,
    pub(crate) timings: Timings,
}

/// A session stopped before its end (Ctrl-C, a kill, a crash): what it flushed is in
/// the document, beyond what it recorded.
#[derive(Debug, Serialize)]
pub(crate) struct CutShort {
    /// Its number.
    pub(crate) session: u64,
    /// For a trace, the edits it flushed beyond its record, found from the text and
    /// counted from then on; for generated typing, `None`: they are in the text, but
    /// not counted.
    pub(crate) recovered_edits: Option<u64>,
}

impl CutShort {
    /// What the demo says about it.
    pub(crate) fn line(&self) -> String {
        format!(
            "session {} stopped before its end (Ctrl-C, a kill or a crash): {}",
            self.session,
            match self.recovered_edits {
                Some(n) => format!(
                    "the {} it flushed beyond its record are kept, found in the text, and counted",
                    plural(n, "edit", "edits")
                ),
                None => "what it flushed is kept; its edits are not counted".into(),
            }
        )
    }
}

/// How far a trace got.
#[derive(Debug, Serialize)]
pub(crate) struct TraceProgress {
    pub(crate) position: usize,
    pub(crate) transactions: usize,
    /// Whether it is replayed to its end, and the text then equals its `endContent`.
    pub(crate) complete: bool,
}

/// Where the time went.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Timings {
    #[serde(serialize_with = "ms")]
    pub(crate) open: Duration,
    #[serde(serialize_with = "ms")]
    pub(crate) load: Duration,
    #[serde(serialize_with = "ms")]
    pub(crate) edit: Duration,
    #[serde(serialize_with = "ms")]
    pub(crate) flush: Duration,
    #[serde(serialize_with = "ms")]
    pub(crate) compact: Duration,
    #[serde(serialize_with = "ms")]
    pub(crate) reopen: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

impl Report {
    pub(crate) fn print(&self) {
        say(&format!(
            "persister demo: {} store {}, {} document \"{}\" ({})",
            self.backend, self.store, self.crdt, self.document, self.source
        ));
        say(&self.session_line());
        if let Some(cut) = &self.cut_short {
            say(&cut.line());
        }
        say("");
        let t = &self.timings;
        let l = &self.loaded_sizes;
        let rate = if t.edit.is_zero() {
            0
        } else {
            (self.edits as f64 / t.edit.as_secs_f64()) as u64
        };
        let rows = vec![
            vec!["open store".into(), duration(t.open), String::new()],
            vec![
                "load".into(),
                duration(t.load),
                if l.is_empty() {
                    "nothing stored yet".into()
                } else {
                    format!(
                        "{}-byte document + {}",
                        thousands(l.document),
                        plural(l.change_count, "change", "changes")
                    )
                },
            ],
            vec![
                plural(self.edits, "edit", "edits"),
                duration(t.edit),
                format!(
                    "{} edits/s: {} chars inserted, {} deleted{}",
                    thousands(rate),
                    thousands(self.insertions),
                    thousands(self.deletions),
                    if self.trace.is_some() {
                        String::new()
                    } else {
                        format!(", {} cursor jumps", thousands(self.cursor_jumps))
                    }
                ),
            ],
            vec![
                plural(self.flushes, "flush", "flushes"),
                duration(t.flush),
                format!(
                    "every {} writes and on close: {} bytes made durable",
                    thousands(self.flush_every),
                    thousands(self.flushed_bytes)
                ),
            ],
            vec![
                plural(self.compactions, "compaction", "compactions"),
                duration(t.compact),
                "when sizes() said so (1,000+ changes, change bytes >= document bytes)".into(),
            ],
            vec![
                "reopen + check".into(),
                duration(t.reopen),
                format!(
                    "text of {} matches, {} in all",
                    plural(self.text_chars as u64, "char", "chars"),
                    plural(self.previous_edits + self.edits, "edit", "edits")
                ),
            ],
        ];
        say(&indent(&table(&["step", "time", "detail"], "lrl", &rows)));
        say("");
        let s = &self.sizes;
        let stored = vec![
            vec![
                "changes".into(),
                thousands(s.change_count),
                thousands(s.changes),
            ],
            vec![
                "document".into(),
                u64::from(s.document > 0).to_string(),
                thousands(s.document),
            ],
            vec![
                "sync states".into(),
                thousands(s.sync_state_count),
                thousands(s.sync_states),
            ],
            vec!["total".into(), String::new(), thousands(s.total_bytes())],
            vec!["on disk".into(), String::new(), thousands(self.disk_bytes)],
        ];
        say(&indent(&table(
            &["stored", "count", "bytes"],
            "lrr",
            &stored,
        )));
        say("");
        let look = format!(
            "look inside with `persister info {} {}`",
            self.store, self.document
        );
        match &self.trace {
            Some(trace) if trace.complete => say(&format!(
                "The trace is replayed to its end, and the text equals its final text; {look}."
            )),
            Some(trace) => say(&format!(
                "Replayed {} of {} trace transactions: run it again to continue; {look}.",
                thousands(trace.position as u64),
                thousands(trace.transactions as u64)
            )),
            None => say(&format!(
                "Run it again to continue the same document; {look}."
            )),
        }
    }

    fn session_line(&self) -> String {
        if self.session == 1 {
            return "session 1: a new document".into();
        }
        let runs = self.session - 1;
        format!(
            "session {}: loaded {} from {}, text now {}",
            self.session,
            plural(self.previous_edits, "edit", "edits"),
            if runs == 1 {
                "the previous run".to_string()
            } else {
                format!("{runs} previous runs")
            },
            plural(self.loaded_chars as u64, "char", "chars"),
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
