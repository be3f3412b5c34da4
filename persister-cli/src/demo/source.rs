//! Where the demo's edits come from: generated typing, or a recorded trace.

use std::path::Path;

use persister_traces::Trace;

use super::typing::Typist;
use crate::CliError;

/// One text edit: at `pos` (in characters) delete `delete` characters, then insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    pub(crate) pos: usize,
    pub(crate) delete: usize,
    pub(crate) insert: String,
}

impl Splice {
    pub(crate) fn insert(pos: usize, c: char) -> Self {
        Self {
            pos,
            delete: 0,
            insert: c.to_string(),
        }
    }

    pub(crate) fn delete(pos: usize, delete: usize) -> Self {
        Self {
            pos,
            delete,
            insert: String::new(),
        }
    }

    /// Whether it fits a text of `len` characters.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.pos
            .checked_add(self.delete)
            .is_some_and(|end| end <= len)
    }

    /// Applies it to `text`, which it must fit.
    pub(crate) fn apply(&self, text: &mut Vec<char>) {
        text.splice(self.pos..self.pos + self.delete, self.insert.chars());
    }
}

/// A recorded sequential trace, replayed from a position.
#[derive(Debug)]
pub(crate) struct TraceReplay {
    pub(crate) trace: Trace,
    /// The file name, which names the trace in the document.
    pub(crate) name: String,
    /// The next transaction to replay.
    pub(crate) position: usize,
}

impl TraceReplay {
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let trace = Trace::load(path).map_err(|e| {
            CliError::new(
                e.to_string(),
                "give a sequential editing trace in the editing-traces JSON format (startContent, txns, endContent), as .json or .json.gz",
            )
        })?;
        if trace.is_concurrent() {
            return Err(CliError::new(
                format!("{} is a concurrent trace", path.display()),
                "the demo replays sequential traces only, such as automerge-paper.json.gz",
            ));
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            trace,
            name,
            position: 0,
        })
    }

    /// The next transaction's patches, or `None` at the end of the trace.
    fn next_txn(&mut self) -> Option<Vec<Splice>> {
        let txn = self.trace.txns.get(self.position)?;
        self.position += 1;
        Some(
            txn.patches
                .iter()
                .map(|p| Splice {
                    pos: p.pos(),
                    delete: p.delete(),
                    insert: p.insert().to_string(),
                })
                .collect(),
        )
    }

    /// How many transactions are left to replay.
    pub(crate) fn remaining(&self) -> usize {
        self.trace.txns.len().saturating_sub(self.position)
    }

    /// Whether every transaction was replayed.
    pub(crate) fn complete(&self) -> bool {
        self.position >= self.trace.txns.len()
    }
}

/// The edits of a session.
#[derive(Debug)]
pub(crate) enum Source {
    Typing(Typist),
    Trace(TraceReplay),
}

impl Source {
    /// How the document records its source, so a later session continues it alike.
    pub(crate) fn label(&self) -> String {
        match self {
            Source::Typing(_) => "generated typing".into(),
            Source::Trace(replay) => format!("trace {}", replay.name),
        }
    }

    /// The next edit (one or more splices, committed together) for a text of `len`
    /// characters; `None` when a trace is over.
    pub(crate) fn next_edit(&mut self, len: usize) -> Option<Vec<Splice>> {
        match self {
            Source::Typing(typist) => Some(vec![typist.next_edit(len)]),
            Source::Trace(replay) => replay.next_txn(),
        }
    }
}
