//! Real character-by-character editing traces, as the tests, benchmarks and the demo
//! replay them.
//!
//! The traces are gzipped JSON files in the format of the public editing-traces
//! collection. They live beside the workspace in `../shared/traces` (or wherever
//! `PERSISTER_TRACES` points); they are not shipped with the crate, so every user of
//! this crate must cope with their absence: [`find`] returns `None` and the caller skips
//! with a printed reason.
//!
//! ```
//! let Some(path) = persister_traces::find("automerge-paper") else {
//!     println!("skipped: trace automerge-paper not found");
//!     return Ok(());
//! };
//! let trace = persister_traces::Trace::load(&path)?;
//! assert_eq!(trace.replay_text()?, trace.end_content);
//! # Ok::<(), persister_traces::TraceError>(())
//! ```

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What can go wrong reading or replaying a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}: {source}", path = path.display())]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file's gzip stream is damaged: it does not decompress, or fails its
    /// checksum.
    #[error("trace {path} is damaged: {source}; fetch it again (see the README beside it)", path = path.display())]
    Damaged {
        /// The trace file.
        path: PathBuf,
        /// What decompressing reported.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a trace in the expected format.
    #[error("{path} is not an editing trace in the expected format (damaged, or another file): {source}; fetch it again (see the README beside it)", path = path.display())]
    Format {
        /// The trace file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A concurrent trace names an agent or a parent it does not have: an agent past
    /// its number of agents, a parent that is not an earlier transaction, or a
    /// transaction without either.
    #[error("{path} is not a consistent concurrent trace: transaction {txn} {reason}; fetch it again (see the README beside it)", path = path.display())]
    Inconsistent {
        /// The trace file.
        path: PathBuf,
        /// Index of the transaction.
        txn: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A patch does not fit the text it applies to.
    #[error(
        "patch {patch} of transaction {txn} starts or deletes past the end of the text: the trace is damaged"
    )]
    BadPatch {
        /// Index of the transaction.
        txn: usize,
        /// Index of the patch within it.
        patch: usize,
    },
}

/// One edit: at `pos` (in Unicode scalar values) delete `delete` characters, then
/// insert `insert`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

impl Patch {
    /// The position, in Unicode scalar values.
    pub fn pos(&self) -> usize {
        self.0
    }

    /// How many characters are deleted.
    pub fn delete(&self) -> usize {
        self.1
    }

    /// The inserted text.
    pub fn insert(&self) -> &str {
        &self.2
    }
}

/// One transaction: patches applied one after another.
#[derive(Clone, Debug, Deserialize)]
pub struct Txn {
    /// The patches, in the order they apply.
    pub patches: Vec<Patch>,
    /// In concurrent traces, who typed this transaction.
    #[serde(default)]
    pub agent: Option<usize>,
    /// In concurrent traces, the indexes of the transactions whose merged state this
    /// one was typed on (`[]`: the empty document).
    #[serde(default)]
    pub parents: Option<Vec<usize>>,
}

/// A whole trace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// `"concurrent"` for concurrent traces; absent for sequential ones.
    #[serde(default)]
    pub kind: Option<String>,
    /// The text before the first transaction.
    #[serde(default)]
    pub start_content: String,
    /// The text after the last transaction.
    pub end_content: String,
    /// In concurrent traces, how many agents typed.
    #[serde(default)]
    pub num_agents: Option<usize>,
    /// The transactions, in order.
    pub txns: Vec<Txn>,
}

impl Trace {
    /// Reads a trace from a gzipped (`.gz`) or plain JSON file.
    ///
    /// A damaged file is an error: [`TraceError::Damaged`] when its gzip stream does not
    /// decompress or fails its checksum, [`TraceError::Format`] when it is not JSON in
    /// the trace format, [`TraceError::Inconsistent`] when a concurrent trace names an
    /// agent or parent it lacks. Patches that do not fit the text are found when the
    /// trace is replayed ([`TraceError::BadPatch`]).
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let gzipped = path.extension().is_some_and(|e| e == "gz");
        Self::read(path, BufReader::new(file), gzipped)
    }

    /// Reads a trace from `reader` (gzipped if `gzipped`); `path` names it in errors.
    fn read(path: &Path, reader: impl std::io::Read, gzipped: bool) -> Result<Self, TraceError> {
        let parsed: Result<Self, _> = match gzipped {
            // serde_json reads to the end (for trailing characters), so the gzip
            // trailer's checksum and length are checked too.
            true => serde_json::from_reader(BufReader::new(flate2::read::GzDecoder::new(reader))),
            false => serde_json::from_reader(reader),
        };
        let trace = parsed.map_err(|e| match e.is_io() {
            true => TraceError::Damaged {
                path: path.to_owned(),
                source: e.into(),
            },
            false => TraceError::Format {
                path: path.to_owned(),
                source: e,
            },
        })?;
        trace.check(path)?;
        Ok(trace)
    }

    /// Checks that a concurrent trace's agents and parents exist, so that a replay may
    /// index by them.
    fn check(&self, path: &Path) -> Result<(), TraceError> {
        if !self.is_concurrent() {
            return Ok(());
        }
        let inconsistent = |txn: usize, reason: String| TraceError::Inconsistent {
            path: path.to_owned(),
            txn,
            reason,
        };
        let agents = self
            .num_agents
            .ok_or_else(|| inconsistent(0, "is in a trace without numAgents".to_string()))?;
        for (t, txn) in self.txns.iter().enumerate() {
            match txn.agent {
                Some(agent) if agent < agents => {}
                Some(agent) => {
                    return Err(inconsistent(t, format!("names agent {agent} of {agents}")));
                }
                None => return Err(inconsistent(t, "has no agent".to_string())),
            }
            let parents = txn
                .parents
                .as_deref()
                .ok_or_else(|| inconsistent(t, "has no parents".to_string()))?;
            if let Some(parent) = parents.iter().find(|&&p| p >= t) {
                return Err(inconsistent(
                    t,
                    format!("names parent {parent}, which is not an earlier transaction"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this is a concurrent trace (transactions with agents and parents).
    pub fn is_concurrent(&self) -> bool {
        self.kind.as_deref() == Some("concurrent")
    }

    /// Total number of patches.
    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }

    /// The text after applying the first `txns` transactions in order to
    /// `start_content` (sequential traces).
    pub fn text_after(&self, txns: usize) -> Result<String, TraceError> {
        let mut text = GapBuffer::new(&self.start_content);
        for (t, txn) in self.txns.iter().take(txns).enumerate() {
            for (p, patch) in txn.patches.iter().enumerate() {
                if !text.splice(patch.pos(), patch.delete(), patch.insert()) {
                    return Err(TraceError::BadPatch { txn: t, patch: p });
                }
            }
        }
        Ok(text.to_string())
    }

    /// The first number of transactions, `from` or more, after which the text is
    /// `text` (sequential traces); `None` when no such number up to the whole trace
    /// gives it. How an application finds where a replay stopped when its record of
    /// the position may lag behind the text (a replay cut short after writing more
    /// than it recorded).
    pub fn position_of(&self, text: &str, from: usize) -> Result<Option<usize>, TraceError> {
        let wanted: Vec<char> = text.chars().collect();
        let mut now = GapBuffer::new(&self.start_content);
        for (t, txn) in self.txns.iter().enumerate() {
            if t >= from && now.holds(&wanted) {
                return Ok(Some(t));
            }
            for (p, patch) in txn.patches.iter().enumerate() {
                if !now.splice(patch.pos(), patch.delete(), patch.insert()) {
                    return Err(TraceError::BadPatch { txn: t, patch: p });
                }
            }
        }
        let end = self.txns.len();
        Ok((end >= from && now.holds(&wanted)).then_some(end))
    }

    /// The text after every transaction (sequential traces).
    pub fn replay_text(&self) -> Result<String, TraceError> {
        self.text_after(self.txns.len())
    }
}

/// Text as characters with a gap at the last edit, so the local edits of a trace cost
/// what they move, not the length of the text.
struct GapBuffer {
    before: Vec<char>,
    // Characters after the gap, in reverse order.
    after: Vec<char>,
}

impl GapBuffer {
    fn new(text: &str) -> Self {
        Self {
            before: text.chars().collect(),
            after: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.before.len() + self.after.len()
    }

    /// Whether the text is `text`.
    fn holds(&self, text: &[char]) -> bool {
        self.len() == text.len()
            && self.before[..] == text[..self.before.len()]
            && self.after.iter().rev().eq(text[self.before.len()..].iter())
    }

    /// Deletes `delete` characters at `pos` and inserts `insert` there; `false` when
    /// the range is past the end.
    fn splice(&mut self, pos: usize, delete: usize, insert: &str) -> bool {
        // Checked: a damaged trace may hold any number.
        if pos.checked_add(delete).is_none_or(|end| end > self.len()) {
            return false;
        }
        while self.before.len() > pos {
            if let Some(c) = self.before.pop() {
                self.after.push(c);
            }
        }
        while self.before.len() < pos {
            if let Some(c) = self.after.pop() {
                self.before.push(c);
            }
        }
        let keep = self.after.len() - delete;
        self.after.truncate(keep);
        self.before.extend(insert.chars());
        true
    }
}

impl std::fmt::Display for GapBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self.before.iter().chain(self.after.iter().rev()).collect();
        f.write_str(&text)
    }
}

/// The directory holding the shared traces: `$PERSISTER_TRACES` if set, otherwise
/// `shared/traces` beside the workspace, if it exists.
pub fn traces_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PERSISTER_TRACES") {
        return Some(PathBuf::from(dir));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let candidates = [
        workspace.join("../shared/traces"),
        PathBuf::from("../shared/traces"),
    ];
    candidates.into_iter().find(|dir| dir.is_dir())
}

/// The path of the trace `name` (without `.json.gz`), if it is present.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = traces_dir()?.join(format!("{name}.json.gz"));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_of_a_text_is_the_first_from_the_one_given() -> Result<(), TraceError> {
        // "ab" after 0, "abc" after 1, "ab" after 2, "xab" after 3.
        let trace: Trace = serde_json::from_str(
            r#"{"startContent":"ab","endContent":"xab","txns":[
                {"patches":[[2,0,"c"]]},{"patches":[[2,1,""]]},{"patches":[[0,0,"x"]]}]}"#,
        )
        .map_err(|source| TraceError::Format {
            path: "inline".into(),
            source,
        })?;
        assert_eq!(trace.position_of("ab", 0)?, Some(0));
        assert_eq!(trace.position_of("ab", 1)?, Some(2));
        assert_eq!(trace.position_of("abc", 0)?, Some(1));
        assert_eq!(trace.position_of("abc", 2)?, None);
        assert_eq!(trace.position_of("xab", 0)?, Some(3));
        assert_eq!(trace.position_of("xab", 3)?, Some(3));
        assert_eq!(trace.position_of("xab", 4)?, None);
        assert_eq!(trace.position_of("other", 0)?, None);
        for t in 0..=3 {
            let text = trace.text_after(t)?;
            assert_eq!(trace.position_of(&text, t)?, Some(t), "{text}");
        }
        Ok(())
    }

    #[test]
    fn patches_apply_in_scalar_values() -> Result<(), TraceError> {
        let trace: Trace = serde_json::from_str(
            r#"{"startContent":"héllo","endContent":"hé!o","txns":[{"patches":[[3,2,"!o"],[4,1,""]]}]}"#,
        )
        .map_err(|source| TraceError::Format { path: "inline".into(), source })?;
        assert_eq!(trace.replay_text()?, "hél!");
        assert_eq!(trace.text_after(0)?, "héllo");
        assert!(!trace.is_concurrent());
        Ok(())
    }

    #[test]
    fn a_patch_past_the_end_is_an_error() -> Result<(), serde_json::Error> {
        let trace: Trace =
            serde_json::from_str(r#"{"endContent":"","txns":[{"patches":[[1,5,""]]}]}"#)?;
        assert!(matches!(
            trace.replay_text(),
            Err(TraceError::BadPatch { txn: 0, patch: 0 })
        ));
        Ok(())
    }

    #[test]
    fn shared_traces_replay_to_their_end_content() -> Result<(), TraceError> {
        for name in ["automerge-paper", "seph-blog1"] {
            let Some(path) = find(name) else {
                println!(
                    "skipped: trace {name} not found (set PERSISTER_TRACES or put ../shared/traces beside the workspace)"
                );
                continue;
            };
            let trace = Trace::load(&path)?;
            assert_eq!(trace.replay_text()?, trace.end_content, "{name}");
        }
        if let Some(path) = find("clownschool") {
            let trace = Trace::load(&path)?;
            assert_eq!(trace.num_agents, Some(3));
            assert!(trace.is_concurrent());
            assert_eq!(trace.txns.len(), 23_136);
            assert!(
                trace
                    .txns
                    .iter()
                    .all(|t| t.agent.is_some() && t.parents.is_some())
            );
        } else {
            println!(
                "skipped: trace clownschool not found (set PERSISTER_TRACES or put ../shared/traces beside the workspace)"
            );
        }
        Ok(())
    }

    /// A small trace, gzipped.
    fn gzipped(json: &str) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(json.as_bytes());
        encoder.finish().unwrap_or_default()
    }

    const SMALL: &str = r#"{"startContent":"","endContent":"ab","txns":[{"patches":[[0,0,"a"]]},{"patches":[[1,0,"b"]]}]}"#;

    fn read(bytes: &[u8]) -> Result<Trace, TraceError> {
        Trace::read(Path::new("small.json.gz"), bytes, true)
    }

    #[test]
    fn a_damaged_gzipped_trace_is_an_error_naming_the_file() -> Result<(), TraceError> {
        let whole = gzipped(SMALL);
        let original = read(&whole)?;
        assert_eq!(original.replay_text()?, "ab");
        // Cut anywhere (in the stream, in its trailer), or a bit flipped in the
        // compressed text or in the checksum: an error, or exactly the trace (a flipped
        // padding bit after the last deflate block changes nothing).
        let mut damaged: Vec<Vec<u8>> = (0..whole.len()).map(|n| whole[..n].to_vec()).collect();
        for at in 10..whole.len() {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x10;
            damaged.push(flipped);
        }
        for bytes in damaged {
            match read(&bytes) {
                Err(e @ (TraceError::Damaged { .. } | TraceError::Format { .. })) => {
                    assert!(e.to_string().contains("small.json.gz"), "{e}");
                }
                Ok(trace) => assert_eq!(format!("{trace:?}"), format!("{original:?}")),
                Err(other) => panic!("{} of {} bytes: {other:?}", bytes.len(), whole.len()),
            }
        }
        // A stream cut in its text is damage, not a format error.
        assert!(matches!(
            read(&whole[..whole.len() / 2]),
            Err(TraceError::Damaged { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_concurrent_trace_naming_what_it_lacks_is_an_error() {
        let trace = |txns: &str| {
            format!(r#"{{"kind":"concurrent","endContent":"","numAgents":2,"txns":[{txns}]}}"#)
        };
        let first = r#"{"patches":[],"agent":0,"parents":[]}"#;
        let plain = |txns: &str| Trace::read(Path::new("c.json"), trace(txns).as_bytes(), false);
        assert!(
            plain(&format!(
                "{first},{}",
                r#"{"patches":[],"agent":1,"parents":[0]}"#
            ))
            .is_ok()
        );
        for bad in [
            r#"{"patches":[],"agent":2,"parents":[0]}"#,
            r#"{"patches":[],"parents":[0]}"#,
            r#"{"patches":[],"agent":1,"parents":[1]}"#,
            r#"{"patches":[],"agent":1,"parents":[7]}"#,
            r#"{"patches":[],"agent":1}"#,
        ] {
            let read = plain(&format!("{first},{bad}"));
            assert!(
                matches!(&read, Err(TraceError::Inconsistent { txn: 1, .. })),
                "{bad}: {read:?}"
            );
        }
    }

    #[test]
    fn a_patch_with_a_huge_position_is_an_error() -> Result<(), serde_json::Error> {
        let trace: Trace = serde_json::from_str(&format!(
            r#"{{"endContent":"","txns":[{{"patches":[[{},{},""]]}}]}}"#,
            usize::MAX,
            usize::MAX
        ))?;
        assert!(matches!(
            trace.replay_text(),
            Err(TraceError::BadPatch { txn: 0, patch: 0 })
        ));
        assert!(matches!(
            trace.position_of("x", 0),
            Err(TraceError::BadPatch { txn: 0, patch: 0 })
        ));
        Ok(())
    }
}
