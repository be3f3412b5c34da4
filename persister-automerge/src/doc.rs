//! The persistent document: load, edit, compact, flush.

use std::collections::HashMap;

use automerge::{AutoCommit, AutomergeError, Change, ChangeHash, LoadOptions, sync};
use persister_core::{ActorId, Batch, CompactionTrigger, Persister, StoredSizes, Write};

use crate::{Error, Options, Result};
use persister_core::DocumentWriter;

/// An automerge document that writes every change to a [`Persister`] as it happens.
///
/// What the persister holds, and when:
///
/// - **Changes.** Every change the document gains, by [`edit`](Self::edit) or by
///   [`receive_sync_message`](Self::receive_sync_message), is written under its actor
///   and sequence number before the call returns `Ok`. If the persister does not apply
///   it, the change stays queued and goes first in the next write (or
///   [`flush`](Self::flush)); the call returns the error, and nothing of the in-memory
///   document is lost. If it was applied and the flush after it failed, the call
///   returns [`Error::FlushFailed`] (see below).
/// - **Durability** follows [`Options::flush`]; [`flush`](Self::flush) and
///   [`close`](Self::close) make everything written so far durable.
/// - **Compaction** stores the whole document and removes the changes it covers, in
///   one atomic batch; it runs when [`Options::compaction`] says so, or on
///   [`compact`](Self::compact).
/// - **Sync states**, one per peer, are written when their encoding changes, in the
///   same batch as the changes the sync message brought.
///
/// Dropping the document does not flush (a flush can fail and a drop cannot say so):
/// call [`close`](Self::close) or [`flush`](Self::flush) before exiting.
///
/// # After a failed flush
///
/// A failed flush ([`Error::FlushFailed`], from [`flush`](Self::flush),
/// [`close`](Self::close), or an edit, sync message or compaction that
/// [`Options::flush`] flushes after) poisons the persister (see
/// [`Persister::flush`]): every later write and flush is refused
/// ([`persister_core::Error::Poisoned`]), and nothing waits to be retried. Nothing is
/// lost as long as the document is kept: clone it, drop this `PersistentDoc`, reopen
/// the store, load again and merge the clone in; the merge writes every change the
/// store lacks.
///
/// ```
/// # use automerge::{ObjType, ROOT, ReadDoc, transaction::Transactable};
/// # use persister_automerge::{Error, PersistentDoc};
/// # use persister_core::{MemoryStore, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let store = MemoryStore::new();
/// # let mut doc = PersistentDoc::load(store.open_document(&"notes".into())?)?;
/// # store.fail_next_flush();
/// # let edit = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text));
/// # assert!(matches!(edit, Err(Error::FlushFailed(_))));
/// let mut kept = doc.doc().clone();
/// drop(doc);
/// let mut doc = PersistentDoc::load(store.open_document(&"notes".into())?)?;
/// doc.edit(|d| d.merge(&mut kept).map(|_| ()))?;
/// doc.flush()?;
/// # assert!(doc.doc().get(ROOT, "text")?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PersistentDoc<P> {
    pub(crate) doc: AutoCommit,
    pub(crate) writer: DocumentWriter<P>,
    pub(crate) peers: HashMap<Vec<u8>, Peer>,
    /// Stored changes the document could not apply (their dependencies are missing).
    /// Compaction keeps them until the document holds them.
    orphans: Vec<Orphan>,
    compaction: CompactionTrigger,
    /// The last change the last `edit` made, if it made one.
    last_change: Option<ChangeInfo>,
    /// Why the in-memory document is unusable (see [`Error::Broken`]), once it is.
    pub(crate) broken: Option<String>,
}

/// Which change an [`edit`](PersistentDoc::edit) made: what an application needs to
/// acknowledge an edit to its user or to a server. See
/// [`PersistentDoc::last_change`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The change's hash, as automerge names it in heads and dependencies.
    pub hash: ChangeHash,
    /// Its actor: the document's actor ([`AutoCommit::get_actor`]).
    pub actor: automerge::ActorId,
    /// Its sequence number for that actor. The change is stored under the key
    /// (`actor`'s bytes, `seq`).
    pub seq: u64,
}

/// The sync state of one peer, and its encoding as last written (or queued).
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) state: sync::State,
    pub(crate) stored: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Orphan {
    actor: ActorId,
    seq: u64,
    hash: ChangeHash,
    len: u64,
}

impl<P: Persister<Error = persister_core::Error>> PersistentDoc<P> {
    /// Loads the document held by `persister` with the default [`Options`].
    pub fn load(persister: P) -> Result<Self> {
        Self::load_with(persister, Options::default())
    }

    /// Loads the document held by `persister`: the stored document, then every stored
    /// change applied in one go. An empty persister gives an empty document.
    ///
    /// A stored document, change or batch of changes that automerge cannot read is an
    /// error ([`Error::CorruptDocument`], [`Error::CorruptChange`],
    /// [`Error::InconsistentChanges`]); nothing is silently dropped. Stored changes
    /// whose dependencies are missing stay stored, and apply once a sync brings the
    /// missing ones.
    pub fn load_with(persister: P, options: Options) -> Result<Self> {
        let document = persister.get_document()?;
        let entries = persister.get_change_entries()?;
        let mut doc = match document {
            // Automerge loads no bytes as an empty document, but saves even an empty
            // document as a chunk: a stored document is never empty unless damaged.
            Some(bytes) if bytes.is_empty() => {
                return Err(Error::DamagedStore {
                    reason: "the stored document is empty, where compaction stores a saved automerge document".into(),
                });
            }
            Some(bytes) => guarded(|| {
                AutoCommit::load_with_options(
                    &bytes,
                    LoadOptions::new().text_encoding(options.text_encoding),
                )
            })
            .map_err(|reason| Error::DamagedStore { reason })?
            .map_err(|e| Error::CorruptDocument(Box::new(e)))?,
            None => AutoCommit::new_with_encoding(options.text_encoding),
        };
        if let Some(actor) = options.actor {
            // Its changes could not be stored: refused before anything is written.
            ActorId::new(actor.to_bytes()).validate()?;
            doc.set_actor(actor);
        } else {
            doc.set_actor(automerge::ActorId::random());
        }

        let mut keys = Vec::with_capacity(entries.len());
        let mut changes = Vec::with_capacity(entries.len());
        for (actor, seq, bytes) in entries {
            let len = bytes.len() as u64;
            let change = decode_change(&actor, seq, &bytes)?;
            keys.push((actor, seq, change.hash(), len));
            changes.push(change);
        }
        // All at once: automerge sorts them and applies them in one pass, which is
        // orders of magnitude faster than one call per change.
        guarded(|| doc.apply_changes(changes))
            .map_err(|reason| Error::DamagedStore { reason })?
            .map_err(|e| Error::InconsistentChanges(Box::new(e)))?;

        let mut writer = DocumentWriter::new(persister, options.flush);
        let mut orphans = Vec::new();
        // No missing dependency means every stored change was applied; otherwise ask
        // change by change (rare: only after a store lost part of a history).
        let all_applied = doc.get_missing_deps(&[]).is_empty();
        for (actor, seq, hash, len) in keys {
            if all_applied || doc.get_change_meta_by_hash(&hash).is_some() {
                writer.mark_stored(actor, seq);
            } else {
                orphans.push(Orphan {
                    actor,
                    seq,
                    hash,
                    len,
                });
            }
        }
        Ok(Self {
            doc,
            writer,
            peers: HashMap::new(),
            orphans,
            compaction: options.compaction,
            last_change: None,
            broken: None,
        })
    }

    /// The document, to read. Changes go through [`edit`](Self::edit) or sync.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The document's heads, sorted.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document in automerge's format (what compaction stores), without
    /// writing anything: to export it, or to hand it to `AutoCommit::load`.
    pub fn save_document(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Runs `f` on the document, commits what it did, and writes every new change to
    /// the persister before returning.
    ///
    /// `f` may make any number of operations and commits (with a message through
    /// `commit_with`, for example), and may merge other documents: every change the
    /// document gains is written. If `f` returns an error, its uncommitted operations
    /// are rolled back, whatever it committed is still written, and its error is
    /// returned as [`Error::Automerge`]. `f` may type on an older state with
    /// `AutoCommit::isolate`, but must `integrate` before it returns.
    ///
    /// If `f` panics (automerge panics applying or merging a change that passes its
    /// checksum but not its other checks), the panic is caught: nothing of the edit is
    /// written and [`Error::Broken`] is returned, as for a peer's message. So it is when
    /// the edit gains a change no persister stores (a merged change under another
    /// hash, an actor id or a change over persister-core's limits).
    ///
    /// If the write is not applied the changes stay queued (see [`PersistentDoc`]) and
    /// the error is returned; the edit itself is in the document. If it was applied and
    /// the flush after it failed, [`Error::FlushFailed`] is returned. Afterwards the
    /// automatic flush and compaction run as [`Options`] say; a compaction that fails
    /// is [`Error::Compaction`], or [`Error::FlushFailed`] if it was applied and its
    /// flush failed.
    ///
    /// [`last_change`](Self::last_change) then tells which change the edit made.
    pub fn edit<R>(
        &mut self,
        f: impl FnOnce(&mut AutoCommit) -> std::result::Result<R, AutomergeError>,
    ) -> Result<R> {
        self.check_usable()?;
        let before = self.doc.get_heads();
        let doc = &mut self.doc;
        // Automerge enforces some checks on the changes `f` applies or merges by
        // panicking; the document may be half updated then, so it is broken.
        let run = persister_core::catch_panic("the edit", || {
            let result = f(doc);
            let committed = match result {
                Ok(_) => doc.commit(),
                Err(_) => {
                    doc.rollback();
                    None
                }
            };
            (result, committed)
        });
        let (result, committed) = match run {
            Ok(run) => run,
            Err(panic) => return Err(self.break_with(panic)),
        };
        let mut changes = self.changes_since(&before, committed);
        let actor = self.doc.get_actor().clone();
        self.last_change = changes
            .iter()
            .filter(|change| *change.actor_id() == actor)
            .max_by_key(|change| change.seq())
            .map(|change| ChangeInfo {
                hash: change.hash(),
                actor: actor.clone(),
                seq: change.seq(),
            });
        // Changes `f` merged from other documents are checked; its own commits are
        // automerge's encoding already.
        let written = self
            .check_storable(&mut changes, Some(&actor))
            .and_then(|()| self.write_changes(changes, None));
        let value = result.map_err(Error::from)?;
        written?;
        Ok(value)
    }

    /// Compacts now: saves the document and, in one batch, stores it and removes every
    /// stored change it covers. Stored changes it does not cover (their dependencies
    /// are missing) are kept. Queued writes are part of the batch (unless, queued
    /// while the store refused writes, they add up to more than
    /// [`MAX_BATCH_LEN`](persister_core::MAX_BATCH_LEN): see `DocumentWriter::compact`).
    ///
    /// On error nothing is written and the store is as before, except after
    /// [`Error::FlushFailed`]: the batch was applied and the flush after it failed.
    pub fn compact(&mut self) -> Result<()> {
        self.check_usable()?;
        let document = self.doc.save();
        let mut covered = Vec::new();
        let mut uncovered = Vec::new();
        for orphan in std::mem::take(&mut self.orphans) {
            if self.doc.get_change_meta_by_hash(&orphan.hash).is_some() {
                covered.push((orphan.actor.clone(), orphan.seq));
            }
            uncovered.push(orphan);
        }
        let failed_before = self.writer.flush_failed();
        let result = self.writer.compact(document, covered);
        // A compaction that fails was not applied, unless the flush after it failed
        // (which the writer records; a handle whose flush had failed before refuses it).
        let applied = match &result {
            Ok(()) => true,
            Err(_) => !failed_before && self.writer.flush_failed(),
        };
        if applied {
            uncovered.retain(|o| self.doc.get_change_meta_by_hash(&o.hash).is_none());
        }
        self.orphans = uncovered;
        result.map_err(|e| match applied {
            true => Error::FlushFailed(e),
            false => Error::Persister(e),
        })
    }

    /// Writes what is queued, then makes every write so far durable. Returns how many
    /// bytes the persister's flush wrote. After `Ok` it is safe to exit.
    ///
    /// If the queued writes cannot be applied they stay queued, what was applied before
    /// them is made durable all the same, and the error ([`Error::Persister`]) is
    /// returned: a later flush retries them. If the flush itself fails,
    /// [`Error::FlushFailed`] is returned and no later flush of this persister
    /// succeeds (see there for how to keep the changes).
    pub fn flush(&mut self) -> Result<usize> {
        self.writer.flush().map_err(|e| self.persister_error(e))
    }

    /// Writes what is queued, makes everything durable, and returns the persister.
    ///
    /// On error the document is gone but the error says why: it is the error of
    /// [`flush`](Self::flush). To retry a write that was not applied instead, call
    /// [`flush`](Self::flush) until it succeeds, then `close`; after
    /// [`Error::FlushFailed`] no flush succeeds: keep a clone of [`doc`](Self::doc)
    /// as [`PersistentDoc`]'s "After a failed flush" says.
    pub fn close(mut self) -> Result<P> {
        if let Err(e) = self.writer.write([]) {
            let e = self.persister_error(e);
            // As in `flush`: what was applied is not discarded with the handle.
            let _ = self.writer.flush();
            return Err(e);
        }
        // Nothing is queued: what can fail now is the flush.
        self.writer.close().map_err(Error::FlushFailed)
    }

    /// The persister, to read (for example its [`sizes`](Persister::sizes)).
    pub fn persister(&self) -> &P {
        self.writer.persister()
    }

    /// What the persister holds, in bytes and counts.
    pub fn sizes(&self) -> StoredSizes {
        self.writer.sizes()
    }

    /// The change the last [`edit`](Self::edit) made: its hash, actor and sequence
    /// number. `None` before the first edit, and after an edit that changed nothing.
    ///
    /// An edit that committed more than once (with `commit_with` inside its closure)
    /// made the changes of this actor up to this one; changes it merged from other
    /// documents are not its own and are not counted. Once that `edit` returned `Ok`
    /// the change is written, and durable as [`Options::flush`] says (at once by
    /// default); after an `Err` it may be queued (see [`queued_writes`](Self::queued_writes)).
    ///
    /// ```
    /// use automerge::{ROOT, transaction::Transactable};
    /// use persister_automerge::PersistentDoc;
    /// use persister_core::{MemoryStore, Store};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let mut doc = PersistentDoc::load(store.open_document(&"notes".into())?)?;
    /// doc.edit(|d| d.put(ROOT, "title", "shopping"))?;
    /// let change = doc.last_change().ok_or("the edit changed nothing")?.clone();
    /// assert_eq!(change.seq, 1);
    /// assert_eq!(&change.actor, doc.doc().get_actor());
    /// assert_eq!(doc.heads(), vec![change.hash]);
    ///
    /// // An edit that changes nothing makes no change.
    /// doc.edit(|_| Ok(()))?;
    /// assert_eq!(doc.last_change(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn last_change(&self) -> Option<&ChangeInfo> {
        self.last_change.as_ref()
    }

    /// How many writes (changes and sync states) the persister did not apply and wait
    /// in the queue for the next successful write or flush. 0 whenever the last write
    /// succeeded. Writes that were written but are not yet durable are not counted: see
    /// [`Options::flush`].
    pub fn queued_writes(&self) -> usize {
        self.writer.queued_writes()
    }

    /// The old name of [`queued_writes`](Self::queued_writes).
    #[deprecated(
        note = "renamed `queued_writes`: it counts failed writes waiting to be retried, not writes waiting for a flush"
    )]
    pub fn pending_writes(&self) -> usize {
        self.writer.queued_writes()
    }

    /// How many stored changes the document does not hold yet, because their
    /// dependencies are missing. Compaction keeps them.
    pub fn orphaned_changes(&self) -> usize {
        self.orphans.len()
    }

    /// The changes the document gained since it had the heads `before`.
    pub(crate) fn changes_since(
        &mut self,
        before: &[ChangeHash],
        committed: Option<ChangeHash>,
    ) -> Vec<Change> {
        // The usual case, one local change on top of `before`, costs one lookup rather
        // than a walk of the change graph.
        match committed {
            Some(hash) => {
                if let Some(change) = self.doc.get_last_local_change()
                    && change.hash() == hash
                    && change.deps() == before
                {
                    return vec![change];
                }
            }
            None => {
                if self.doc.get_heads() == before {
                    return Vec::new();
                }
            }
        }
        self.doc.get_changes(before)
    }

    /// Writes `changes` and, if given, a sync state, in one batch after whatever is
    /// queued; then compacts if the trigger says so. With nothing new to write it
    /// writes nothing, not even the queue (that is for the next write or a flush).
    /// A change no persister stores breaks the document, and nothing is queued.
    pub(crate) fn write_changes(
        &mut self,
        changes: Vec<Change>,
        sync_state: Option<Write>,
    ) -> Result<()> {
        if changes.is_empty() && sync_state.is_none() {
            return Ok(());
        }
        let writes: Batch = changes
            .into_iter()
            .map(|mut change| Write::InsertChange {
                actor: ActorId::new(change.actor_id().to_bytes()),
                seq: change.seq(),
                value: change.bytes().into_owned(),
            })
            .chain(sync_state)
            .collect();
        // A write no persister applies (an actor id or a change over persister-core's
        // limits) would stay queued ahead of every later write, and no edit would be
        // stored again: the document holds what it cannot store.
        if let Err(e) = writes.validate() {
            return Err(self.break_with(format!("a change cannot be stored: {e}")));
        }
        self.writer
            .write(writes)
            .map_err(|e| self.persister_error(e))?;
        if self.compaction.should_compact(&self.compactable_sizes()) {
            self.compact().map_err(|e| match e {
                Error::Persister(e) => Error::Compaction(e),
                other => other,
            })?;
        }
        Ok(())
    }

    /// The error of a write or flush that failed with `e`: [`Error::Persister`] when
    /// writes wait in the queue to be retried (the batch was not applied),
    /// [`Error::FlushFailed`] when nothing does because a flush through the writer
    /// failed (the batch was applied, and the handle refuses every later write).
    fn persister_error(&self, e: persister_core::Error) -> Error {
        match self.writer.queued_writes() == 0 && self.writer.flush_failed() {
            true => Error::FlushFailed(e),
            false => Error::Persister(e),
        }
    }

    /// Fails with [`Error::Broken`] once the in-memory document is unusable.
    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(Error::Broken {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the document unusable and returns the error saying why.
    pub(crate) fn break_with(&mut self, reason: String) -> Error {
        let reason = self.broken.get_or_insert(reason).clone();
        Error::Broken { reason }
    }

    /// Checks that each change (but those of `skip`, the document's own actor in an
    /// edit), encoded as it is about to be stored, decodes to a change the document
    /// holds: automerge keeps a received change's operations, not its bytes, and a
    /// change that was valid but not encoded as automerge encodes would be stored under
    /// another hash, and the stored history would no longer be the document's. Such a
    /// change breaks the document; call this before writing anything. Every change a
    /// peer's message brings is checked, whatever actor it claims.
    pub(crate) fn check_storable(
        &mut self,
        changes: &mut [Change],
        skip: Option<&automerge::ActorId>,
    ) -> Result<()> {
        for change in changes.iter_mut() {
            if skip == Some(change.actor_id()) {
                continue;
            }
            // The hash of the bytes to be stored must be one the document knows.
            let stored = Change::try_from(&change.bytes()[..]).map(|c| c.hash());
            let faithful = stored
                .as_ref()
                .is_ok_and(|hash| self.doc.get_change_meta_by_hash(hash).is_some());
            if !faithful {
                let reason = format!(
                    "the change ({}, {}) cannot be stored as received: automerge encodes it into other bytes, with another hash ({}) than the document holds it under",
                    change.actor_id(),
                    change.seq(),
                    stored.map_or_else(|e| e.to_string(), |h| h.to_string())
                );
                return Err(self.break_with(reason));
            }
        }
        Ok(())
    }

    /// The stored sizes without the orphaned changes, which compaction cannot remove:
    /// counting them could make every write compact.
    fn compactable_sizes(&self) -> StoredSizes {
        let mut sizes = self.writer.sizes();
        for orphan in &self.orphans {
            sizes.replace_change(Some(orphan.len), None);
        }
        sizes
    }
}

/// Runs `f`, turning a panic into its message: automerge enforces some of its
/// consistency checks on loaded and received data by panicking.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    persister_core::catch_panic("automerge", f)
}

fn decode_change(actor: &ActorId, seq: u64, bytes: &[u8]) -> Result<Change> {
    let corrupt = |reason: String| Error::CorruptChange {
        actor: actor.clone(),
        seq,
        reason,
    };
    let change = Change::try_from(bytes).map_err(|e| corrupt(e.to_string()))?;
    // Parsing a single change does not verify its checksum (loading a document does):
    // bytes 4..8 of every chunk are the first four bytes of its hash.
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err(corrupt("its checksum does not match its contents".into()));
    }
    if change.actor_id().to_bytes() != actor.as_bytes() || change.seq() != seq {
        return Err(corrupt(format!(
            "it is the change ({}, {}), stored under another key",
            change.actor_id(),
            change.seq()
        )));
    }
    Ok(change)
}
