//! How a document is opened: flush policy, compaction trigger, actor, text encoding.

use automerge::{ActorId, TextEncoding};
use persister_core::{CompactionTrigger, FlushPolicy};

/// How [`PersistentDoc::load_with`](crate::PersistentDoc::load_with) opens a document.
///
/// ```
/// use persister_automerge::{CompactionTrigger, FlushPolicy, Options};
///
/// let options = Options::default()
///     .with_flush(FlushPolicy::EveryBatches(1_000))
///     .with_compaction(CompactionTrigger::never());
/// assert_eq!(options.flush, FlushPolicy::EveryBatches(1_000));
/// // Text positions count Unicode code points unless set otherwise.
/// assert_eq!(options.text_encoding, automerge::TextEncoding::UnicodeCodePoint);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// When to compact automatically, checked after every successful write. Default:
    /// [`CompactionTrigger::default`]; [`CompactionTrigger::never`] leaves compaction
    /// to [`compact`](crate::PersistentDoc::compact).
    pub compaction: CompactionTrigger,
    /// When writes are made durable. Default: [`FlushPolicy::EveryBatch`], so every
    /// edit that returned `Ok` survives a crash. [`FlushPolicy::EveryBatches`] trades
    /// the last few edits for far fewer `fsync`s; it counts batches, and each edit,
    /// each sync message that brought something and each compaction is one.
    pub flush: FlushPolicy,
    /// The actor of local changes. Default: `None`, a fresh random actor per load, as
    /// automerge recommends (two processes must never share an actor). A persister
    /// stores actor ids of 1 to [`MAX_ACTOR_ID_LEN`](persister_core::MAX_ACTOR_ID_LEN)
    /// bytes; loading refuses another with [`Error::Persister`](crate::Error::Persister).
    pub actor: Option<ActorId>,
    /// How text positions (of `splice_text`, `text`, cursors, marks) are counted.
    /// Default: [`TextEncoding::UnicodeCodePoint`], always.
    ///
    /// This is deliberately not [`TextEncoding::platform_default`] (what
    /// `AutoCommit::new` uses), which changes to UTF-8 or UTF-16 code units when any
    /// crate in the build turns on automerge's `utf8-indexing` or `utf16-indexing`
    /// feature: positions would then change with an unrelated dependency. Set it to
    /// what the positions your application passes count, for example
    /// [`TextEncoding::Utf16CodeUnit`] for positions from JavaScript.
    pub text_encoding: TextEncoding,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            compaction: CompactionTrigger::default(),
            flush: FlushPolicy::EveryBatch,
            actor: None,
            text_encoding: TextEncoding::UnicodeCodePoint,
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

    /// Sets [`Options::actor`].
    pub fn with_actor(mut self, actor: ActorId) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Sets [`Options::text_encoding`].
    pub fn with_text_encoding(mut self, text_encoding: TextEncoding) -> Self {
        self.text_encoding = text_encoding;
        self
    }
}
