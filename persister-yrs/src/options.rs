//! How a document is opened: flush policy, compaction trigger, client id, offsets.

use persister_core::{CompactionTrigger, FlushPolicy};
use yrs::{ClientID, OffsetKind};

/// How [`PersistentYDoc::load_with`](crate::PersistentYDoc::load_with) opens a document.
///
/// ```
/// use persister_yrs::{CompactionTrigger, FlushPolicy, Options};
///
/// let options = Options::default()
///     .with_flush(FlushPolicy::EveryBatches(1_000))
///     .with_compaction(CompactionTrigger::never());
/// assert_eq!(options.flush, FlushPolicy::EveryBatches(1_000));
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// When to compact automatically, checked after every successful write. Default:
    /// [`CompactionTrigger::default`]; [`CompactionTrigger::never`] leaves compaction
    /// to [`compact`](crate::PersistentYDoc::compact).
    pub compaction: CompactionTrigger,
    /// When writes are made durable. Default: [`FlushPolicy::EveryBatch`], so every
    /// edit that returned `Ok` survives a crash. [`FlushPolicy::EveryBatches`] trades
    /// the last few edits for far fewer `fsync`s.
    pub flush: FlushPolicy,
    /// The yrs client id of local edits. Default: `None`, a fresh random id per load.
    ///
    /// Yjs requires that two sessions never type under one client id: if a session's
    /// unflushed edits reached a peer and were lost here in a crash, a later session
    /// typing under the same id would reuse their clocks, and the replicas would
    /// diverge for good. Set it only if every edit is flushed before it leaves the
    /// process.
    pub client_id: Option<ClientID>,
    /// How text positions and lengths are counted. Default: [`OffsetKind::Bytes`]
    /// (UTF-8 bytes), yrs' default; [`OffsetKind::Utf16`] is what JavaScript Yjs uses.
    pub offset_kind: OffsetKind,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            compaction: CompactionTrigger::default(),
            flush: FlushPolicy::EveryBatch,
            client_id: None,
            offset_kind: OffsetKind::Bytes,
        }
    }
}

impl Options {
    /// Sets [`Options::compaction`].
    pub fn with_compaction(mut self, compaction: CompactionTrigger) -> Self {
        self.compaction = compaction;
        self
    }

    /// Sets [`Options::flush`].
    pub fn with_flush(mut self, flush: FlushPolicy) -> Self {
        self.flush = flush;
        self
    }

    /// Sets [`Options::client_id`].
    pub fn with_client_id(mut self, client_id: ClientID) -> Self {
        self.client_id = Some(client_id);
        self
    }

    /// Sets [`Options::offset_kind`].
    pub fn with_offset_kind(mut self, offset_kind: OffsetKind) -> Self {
        self.offset_kind = offset_kind;
        self
    }
}
