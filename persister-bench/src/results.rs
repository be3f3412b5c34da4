//! What one run measured: plain data, serialised as the `--json` output.

use serde::Serialize;

/// One cell of the table: a value, or why there is none.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell<T> {
    /// Measured.
    Value(T),
    /// Not measured, for a reason that is not a failure (a missing trace, a row that
    /// does not apply to the column).
    Skipped(String),
    /// The row does not apply to the column (memory has no disk; the peer has no
    /// automerge 0.12 integration).
    NotApplicable(String),
    /// The column failed this row.
    Failed(String),
}

impl<T> Cell<T> {
    /// The value, if measured.
    pub fn value(&self) -> Option<&T> {
        match self {
            Cell::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the column failed this row.
    pub fn failed(&self) -> bool {
        matches!(self, Cell::Failed(_))
    }

    /// A cell from a result, keeping the error's message.
    pub fn from_result(result: crate::Result<T>) -> Self {
        match result {
            Ok(v) => Cell::Value(v),
            Err(e) => Cell::Failed(e.to_string()),
        }
    }
}

/// The sizes a run used.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Config {
    /// Changes written in rows 1, 3, 4, 5 (large) and 6.
    pub changes: usize,
    /// Changes per batch in row 1.
    pub batch: usize,
    /// The smaller store of row 5.
    pub small_changes: usize,
    /// Insert-and-flush rounds in row 2.
    pub flushes: usize,
    /// Repetitions of rows 1, 3 and 5, interleaved across columns; the best is kept.
    pub repeats: usize,
    /// Bytes written by the sequential-write limit.
    pub sequential_bytes: usize,
    /// Trace edits replayed in row 7 (`None`: all of them).
    pub trace_edits: Option<usize>,
    /// Row 7 flushes every this many edits.
    pub trace_flush_every: usize,
    /// Row 7 stops a column's replay that has not finished after this many seconds.
    pub trace_timeout_s: u64,
    /// Rounds of row 7 (each replays every column once).
    pub trace_rounds: usize,
}

/// The disk's limits, measured in this run on the backends' file system.
#[derive(Clone, Debug, Serialize)]
pub struct Limit {
    /// 100-byte appends + `fdatasync` per second: the median of `fdatasync_samples`.
    pub fdatasync_per_s: Option<f64>,
    /// Each measurement, one just before each column's row 2.
    pub fdatasync_samples: Vec<f64>,
    /// Sequential write bandwidth including the final `fdatasync`, MB/s.
    pub sequential_write_mb_s: Option<Cell<f64>>,
}

/// Row 1.
#[derive(Clone, Debug, Serialize)]
pub struct Insert {
    /// The best rate over the repeats, changes per second of own time (wall time minus
    /// the run-queue wait, see `clock`).
    pub changes_per_s: f64,
    /// The same repeat's rate in wall time.
    pub wall_changes_per_s: f64,
    /// In the best repeat, seconds (own time) spent inserting, before the flush.
    pub insert_s: f64,
    /// In the best repeat, seconds (own time) spent in the final flush.
    pub flush_s: f64,
    /// Every repeat's rate (own time).
    pub samples: Vec<f64>,
    /// Every repeat's rate in wall time.
    pub wall_samples: Vec<f64>,
}

/// Row 2. In wall time, unlike the other rows: a loop that sleeps in `fdatasync` is
/// woken once per flush, and what the scheduler does at each wake-up is part of what
/// a synced write costs; the interleaving with the raw appends is what keeps the
/// ratio fair.
#[derive(Clone, Debug, Serialize)]
pub struct Flush {
    /// Insert-one-change-then-flush rounds per second.
    pub flushes_per_s: f64,
    /// The raw 100-byte append + `fdatasync` rate, in slices interleaved with the
    /// column's.
    pub raw_fdatasync_per_s: f64,
    /// `flushes_per_s / raw_fdatasync_per_s`.
    pub ratio_to_raw: f64,
    /// The same ratio in own time.
    pub own_ratio_to_raw: f64,
}

/// Row 3.
#[derive(Clone, Debug, Serialize)]
pub struct Reload {
    /// The best time over the repeats to open the store and read every change, ms of
    /// own time.
    pub ms: f64,
    /// The same repeat's wall time, ms.
    pub wall_ms: f64,
    /// In the best repeat, ms spent opening the store and the document.
    pub open_ms: f64,
    /// In the best repeat, ms spent in `get_changes`.
    pub read_ms: f64,
    /// Every repeat's time (own time).
    pub samples: Vec<f64>,
    /// Every repeat's wall time.
    pub wall_samples: Vec<f64>,
}

/// Row 4.
#[derive(Clone, Debug, Serialize)]
pub struct Disk {
    /// Bytes the store's files occupy on disk (allocated blocks) after the flush.
    pub allocated_bytes: u64,
    /// The files' lengths added up (sparse regions included).
    pub apparent_bytes: u64,
    /// Bytes of keys and values written (16-byte actor + 8-byte seq + value, as
    /// `Batch::payload_len` counts them).
    pub payload_bytes: u64,
    /// `allocated_bytes / payload_bytes`.
    pub ratio: f64,
    /// `allocated_bytes` over the change values alone.
    pub ratio_to_values: f64,
}

/// Row 5.
#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    /// The first `sizes()` call after opening the small store, ns (median over repeats).
    pub small_ns: f64,
    /// The same on the large store.
    pub large_ns: f64,
    /// Opening the small store, ms (median), for context: `sizes()` must not be paid
    /// for there either by reading every value.
    pub small_open_ms: f64,
    /// Opening the large store, ms (median).
    pub large_open_ms: f64,
    /// Whether both reports were exact (bytes, and the count when the column has one).
    pub exact: bool,
    /// Whether the large store's time stayed within 2x + 1 µs of the small one's (a
    /// walk over the changes would take tens of µs more at 100,000).
    pub flat: bool,
}

/// Row 6.
#[derive(Clone, Debug, Serialize)]
pub struct Peak {
    /// VmHWM of a child process after it opened the store and read every change, MiB.
    pub peak_mib: f64,
    /// VmHWM of the same child before it opened the store, MiB.
    pub baseline_mib: f64,
}

/// Row 7.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TraceRun {
    /// Edits replayed (one commit each).
    pub edits: usize,
    /// Wall time of the replay, s (the median run's).
    pub replay_s: f64,
    /// CPU time of the whole process during the replay, all threads, s: steadier than
    /// wall time on a busy machine, but blind to waiting for the disk.
    pub cpu_s: f64,
    /// Time the replaying thread spent runnable but waiting for a CPU (the second field
    /// of `/proc/thread-self/schedstat`), s: what other processes on a shared machine
    /// took from it.
    #[serde(default)]
    pub runnable_wait_s: f64,
    /// The median over rounds of `replay_s` over the memory column's in the same round.
    pub ratio_to_memory: Option<f64>,
    /// The same for `replay_s - runnable_wait_s`: the wall time without what other
    /// processes took, which keeps the waits for the disk. The targets use this one.
    #[serde(default)]
    pub own_ratio_to_memory: Option<f64>,
    /// The same for `cpu_s`.
    #[serde(default)]
    pub cpu_ratio_to_memory: Option<f64>,
    /// Compactions the trigger caused during the replay.
    pub compactions: u64,
    /// Time to open the store and load the document after the replay (the last
    /// automatic compaction and the changes since), ms of own time, the fastest of
    /// three.
    pub reload_ms: f64,
    /// Automerge's `AutoCommit::load` of the same document and change bytes, ms of own
    /// time, the fastest of three.
    pub automerge_load_ms: f64,
    /// `reload_ms / automerge_load_ms`.
    pub reload_ratio: f64,
    /// Every round's `replay_s`.
    #[serde(default)]
    pub replay_samples_s: Vec<f64>,
    /// Every round's ratio to memory.
    #[serde(default)]
    pub ratio_samples: Vec<f64>,
    /// Every round's ratio to memory in own time (wall minus run-queue wait).
    #[serde(default)]
    pub own_ratio_samples: Vec<f64>,
}

/// Every row of one column.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnReport {
    /// The column's short name.
    pub column: String,
    /// Row 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert: Option<Cell<Insert>>,
    /// Row 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush: Option<Cell<Flush>>,
    /// Row 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<Cell<Reload>>,
    /// Row 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Cell<Disk>>,
    /// Row 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizes: Option<Cell<Sizes>>,
    /// Row 6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak: Option<Cell<Peak>>,
    /// Row 7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Cell<TraceRun>>,
    /// Row 8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Cell<crate::rows::server::Server>>,
    /// Row 9.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub many: Option<Cell<crate::rows::many::Many>>,
}

impl ColumnReport {
    /// A column with no row measured yet.
    pub fn new(column: &str) -> Self {
        Self {
            column: column.to_owned(),
            insert: None,
            flush: None,
            reload: None,
            disk: None,
            sizes: None,
            peak: None,
            trace: None,
            server: None,
            many: None,
        }
    }

    /// Whether row `row` (1 to 9) was run for this column.
    pub fn ran(&self, row: u8) -> bool {
        match row {
            1 => self.insert.is_some(),
            2 => self.flush.is_some(),
            3 => self.reload.is_some(),
            4 => self.disk.is_some(),
            5 => self.sizes.is_some(),
            6 => self.peak.is_some(),
            7 => self.trace.is_some(),
            8 => self.server.is_some(),
            9 => self.many.is_some(),
            _ => false,
        }
    }

    /// Whether row `row` (1 to 9) failed for this column.
    pub fn failed(&self, row: u8) -> bool {
        match row {
            1 => self.insert.as_ref().is_some_and(Cell::failed),
            2 => self.flush.as_ref().is_some_and(Cell::failed),
            3 => self.reload.as_ref().is_some_and(Cell::failed),
            4 => self.disk.as_ref().is_some_and(Cell::failed),
            5 => self.sizes.as_ref().is_some_and(Cell::failed),
            6 => self.peak.as_ref().is_some_and(Cell::failed),
            7 => self.trace.as_ref().is_some_and(Cell::failed),
            8 => self.server.as_ref().is_some_and(Cell::failed),
            9 => self.many.as_ref().is_some_and(Cell::failed),
            _ => false,
        }
    }

    /// Whether any row failed.
    pub fn any_failed(&self) -> bool {
        self.insert.as_ref().is_some_and(Cell::failed)
            || self.flush.as_ref().is_some_and(Cell::failed)
            || self.reload.as_ref().is_some_and(Cell::failed)
            || self.disk.as_ref().is_some_and(Cell::failed)
            || self.sizes.as_ref().is_some_and(Cell::failed)
            || self.peak.as_ref().is_some_and(Cell::failed)
            || self.trace.as_ref().is_some_and(Cell::failed)
            || self.server.as_ref().is_some_and(Cell::failed)
            || self.many.as_ref().is_some_and(Cell::failed)
    }
}

/// One target of the brief, checked against this run.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// The column it applies to.
    pub column: String,
    /// The row.
    pub row: u8,
    /// The target, in words ("at least 8x the peer").
    pub target: String,
    /// What was measured, in the target's unit.
    pub measured: Option<f64>,
    /// Whether it was met; `None` when it could not be checked.
    pub met: Option<bool>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `"full"` or `"quick"`.
    pub mode: &'static str,
    /// The sizes used.
    pub config: Config,
    /// The directory the stores and the limit files were written in.
    pub dir: String,
    /// The peer, with its version.
    pub peer: &'static str,
    /// The disk's limits.
    pub limit: Limit,
    /// One entry per column, in table order.
    pub columns: Vec<ColumnReport>,
    /// Row 7 for Yjs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yjs: Option<Cell<crate::rows::yjs::YjsRow>>,
    /// Row 2 for PostgreSQL on one node and with a synchronous standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<Cell<crate::rows::replication::ReplicationRow>>,
    /// Row 8 without a store: one file per document, and one shared log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bare: Option<crate::rows::bare::Bare>,
    /// The targets, checked.
    pub targets: Vec<TargetCheck>,
    /// Rows 10 and 11: samod repos, when run.
    pub samod: Option<crate::samod::SamodReport>,
    /// Total wall time of the run, s.
    pub wall_s: f64,
}
