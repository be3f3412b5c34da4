//! The thread that owns the store: queues operations per document, writes each
//! document's queued writes as one batch and one flush, and retries what fails.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use persister_core::{DocumentId, Error, MAX_VALUE_LEN, Persister, Result, Store};
use samod::storage::StorageKey;

use crate::layout::{self, DocIndex, Pending};
use crate::options::{Event, Health, Options, WhenUnusable};

/// The exit code of a process stopped by [`WhenUnusable::Exit`] (`EX_IOERR`).
pub const EXIT_CODE: i32 = 74;

/// Writes gathered into one batch at most, so a batch stays far below the store's limit.
const MAX_BATCH_PAYLOAD: usize = 64 << 20;

/// Opens (or reopens) the store.
pub(crate) type Opener<S> = Box<dyn FnMut() -> Result<S> + Send>;

type Range = HashMap<StorageKey, Vec<u8>>;

/// One operation of the samod storage trait, with where its answer goes.
pub(crate) enum Op {
    Load {
        key: StorageKey,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Range {
        prefix: StorageKey,
        reply: oneshot::Sender<Range>,
    },
    Put {
        key: StorageKey,
        data: Vec<u8>,
        reply: oneshot::Sender<()>,
    },
    Delete {
        key: StorageKey,
        reply: oneshot::Sender<()>,
    },
}

impl Op {
    fn key(&self) -> &StorageKey {
        match self {
            Op::Load { key, .. } | Op::Put { key, .. } | Op::Delete { key, .. } => key,
            Op::Range { prefix, .. } => prefix,
        }
    }

    fn is_write(&self) -> bool {
        matches!(self, Op::Put { .. } | Op::Delete { .. })
    }

    /// The one document this operation touches; `None` for a range over several.
    fn document(&self) -> Option<DocumentId> {
        let parts = parts(self.key());
        match self {
            Op::Range { .. } if parts.len() < 2 => None,
            _ => Some(layout::document_of(&parts)),
        }
    }

    /// Refuses what no store could ever take: a document id or an entry over the
    /// store's limits, a value over [`MAX_VALUE_LEN`].
    fn check(&self) -> Result<()> {
        let parts = parts(self.key());
        if let (Op::Range { .. }, [] | [_]) = (self, parts.as_slice()) {
            // A range over the reserved document and the document its one component
            // names, if any: whatever the component, it is answered (see
            // `range_many`), as no key under it is over a limit but the document's.
            return Ok(());
        }
        if let Some(id) = self.document() {
            id.validate()?;
        }
        layout::entry_id(layout::rest_of(&parts))?;
        if let Op::Put { data, .. } = self
            && data.len() > MAX_VALUE_LEN
        {
            return Err(Error::TooLarge {
                what: "samod value",
                len: data.len() as u64,
                max: MAX_VALUE_LEN as u64,
            });
        }
        Ok(())
    }
}

pub(crate) enum Msg {
    Op(Op),
    /// Finish every queued write, close the store and answer with what closing it
    /// reported.
    Close(std::sync::mpsc::Sender<Result<()>>),
}

pub(crate) fn parts(key: &StorageKey) -> Vec<String> {
    key.into_iter().cloned().collect()
}

/// One document's handle, index and queue.
struct Doc<P> {
    handle: Option<P>,
    index: Option<DocIndex>,
    queue: VecDeque<Op>,
    failures: u32,
    retry_at: Option<Instant>,
    used: u64,
    /// When `handle` was opened or last flushed writes (which renews a store's lease
    /// on the document).
    renewed_at: Instant,
}

impl<P> Default for Doc<P> {
    fn default() -> Self {
        Self {
            handle: None,
            index: None,
            queue: VecDeque::new(),
            failures: 0,
            retry_at: None,
            used: 0,
            renewed_at: Instant::now(),
        }
    }
}

/// A failure: what was being done, and the error.
type Failure = (&'static str, Error);

pub(crate) struct Worker<S: Store> {
    store: Option<S>,
    opener: Option<Opener<S>>,
    rx: Receiver<Msg>,
    docs: HashMap<DocumentId, Doc<S::Persister>>,
    /// Operations behind a range over several documents, in order.
    held: VecDeque<Op>,
    held_retry_at: Option<Instant>,
    store_failures: u32,
    store_retry_at: Option<Instant>,
    options: Options,
    health: Arc<Mutex<Health>>,
    clock: u64,
    disconnected: bool,
    closing: Vec<std::sync::mpsc::Sender<Result<()>>>,
}

impl<S: Store> Worker<S> {
    pub(crate) fn new(
        store: S,
        opener: Option<Opener<S>>,
        rx: Receiver<Msg>,
        options: Options,
        health: Arc<Mutex<Health>>,
    ) -> Self {
        Self {
            store: Some(store),
            opener,
            rx,
            docs: HashMap::new(),
            held: VecDeque::new(),
            held_retry_at: None,
            store_failures: 0,
            store_retry_at: None,
            options,
            health,
            clock: 0,
            disconnected: false,
            closing: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            if !self.runnable() {
                if (self.disconnected || !self.closing.is_empty()) && self.idle() {
                    break;
                }
                if self.disconnected {
                    // Only retries are left: wait for the next one.
                    if let Some(at) = self.next_retry() {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                } else {
                    let received = match self.next_retry() {
                        Some(at) => self
                            .rx
                            .recv_timeout(at.saturating_duration_since(Instant::now())),
                        None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match received {
                        Ok(msg) => self.accept(msg),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => self.disconnected = true,
                    }
                }
            }
            while !self.disconnected {
                match self.rx.try_recv() {
                    Ok(msg) => self.accept(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => self.disconnected = true,
                }
            }
            if self.disconnected || !self.closing.is_empty() {
                self.drop_failing_reads();
            }
            self.round();
        }
        // Release the store, checked, before telling anyone it is closed.
        self.docs.clear();
        let closed = self.store.take().map_or(Ok(()), Store::close);
        {
            let mut health = lock(&self.health);
            health.closed = true;
            if let Err(error) = &closed {
                health.failures += 1;
                health.last_error = Some(format!("closing the store failed: {error}"));
            }
        }
        // The first closer gets the error itself, any other its message.
        let reason = closed.as_ref().err().map(ToString::to_string);
        let mut closed = Some(closed);
        for done in self.closing.drain(..) {
            let answer = closed.take().unwrap_or_else(|| match &reason {
                Some(reason) => Err(Error::Poisoned {
                    reason: reason.clone(),
                }),
                None => Ok(()),
            });
            let _ = done.send(answer);
        }
    }

    fn accept(&mut self, msg: Msg) {
        let op = match msg {
            Msg::Op(op) => op,
            Msg::Close(done) => {
                self.closing.push(done);
                return;
            }
        };
        if let Err(error) = op.check() {
            lock(&self.health).refused += 1;
            self.emit(&Event::Refused {
                key: op.key(),
                error: &error,
            });
            if let WhenUnusable::Exit { .. } = self.options.when_unusable {
                exit(&format!("the key {} cannot be stored: {error}", op.key()));
            }
            return;
        }
        match op.document() {
            Some(id) if self.held.is_empty() => {
                self.docs.entry(id).or_default().queue.push_back(op)
            }
            _ => self.held.push_back(op),
        }
    }

    /// When closing: a read that keeps failing is given up (its future never
    /// completes), so that closing waits only for writes.
    fn drop_failing_reads(&mut self) {
        for doc in self.docs.values_mut().filter(|d| d.failures > 0) {
            doc.queue.retain(Op::is_write);
        }
        if self.held_retry_at.is_some() {
            self.held.retain(|op| op.document().is_some());
            // No range is left to retry: a retry time kept would wake the worker at once.
            self.held_retry_at = None;
        }
    }

    fn idle(&self) -> bool {
        self.held.is_empty() && self.docs.values().all(|d| d.queue.is_empty())
    }

    fn runnable(&self) -> bool {
        let now = Instant::now();
        if self.store.is_none() && self.store_retry_at.is_some_and(|at| at > now) {
            return false;
        }
        let queues_empty = self.docs.values().all(|d| d.queue.is_empty());
        let held_ready = match self.held.front() {
            None => false,
            Some(op) if op.document().is_none() => {
                queues_empty && self.held_retry_at.is_none_or(|at| at <= now)
            }
            Some(_) => true,
        };
        held_ready
            || self
                .docs
                .values()
                .any(|d| !d.queue.is_empty() && d.retry_at.is_none_or(|at| at <= now))
    }

    /// When the worker has something to do with nothing received: a retry, or closing a
    /// handle that reached [`Options::max_handle_age`].
    fn next_retry(&self) -> Option<Instant> {
        let docs = self
            .docs
            .values()
            .filter(|d| !d.queue.is_empty())
            .filter_map(|d| d.retry_at);
        let aged = self
            .docs
            .values()
            .filter(|d| d.handle.is_some() && d.queue.is_empty() && d.failures == 0)
            .map(|d| d.renewed_at + self.options.max_handle_age);
        docs.chain(aged)
            .chain(self.store_retry_at)
            .chain(self.held_retry_at)
            .min()
    }

    fn round(&mut self) {
        if !self.ensure_store() {
            return;
        }
        self.release_held();
        let now = Instant::now();
        let ready: Vec<DocumentId> = self
            .docs
            .iter()
            .filter(|(_, d)| !d.queue.is_empty() && d.retry_at.is_none_or(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut applied = Vec::new();
        for id in ready {
            match self.serve(&id) {
                Ok(0) => {}
                Ok(writes) => applied.push((id, writes)),
                Err((action, error)) => {
                    let write = action != "read";
                    self.fail(&id, action, &error);
                    if write {
                        // The store may have lost what its handles held: start again
                        // from what is durable, with every write still queued.
                        self.reset_store();
                        return;
                    }
                }
            }
        }
        for (id, writes) in applied {
            if let Err(error) = self.flush(&id, writes) {
                self.fail(&id, "flush", &error);
                self.reset_store();
                return;
            }
        }
        self.evict();
    }

    /// Opens the store if it was closed after a failure; whether it is open.
    fn ensure_store(&mut self) -> bool {
        if self.store.is_some() {
            return true;
        }
        if self.store_retry_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        let Some(opener) = self.opener.as_mut() else {
            return false;
        };
        let opened = opener().and_then(|store| {
            let mut layout_doc = store.open_document(&DocumentId::from(layout::LAYOUT_DOCUMENT))?;
            layout::check_format(&mut layout_doc)?;
            drop(layout_doc);
            Ok(store)
        });
        let root = DocumentId::from(layout::LAYOUT_DOCUMENT);
        match opened {
            Ok(store) => {
                self.store = Some(store);
                self.store_retry_at = None;
                if self.store_failures > 0 {
                    self.emit(&Event::Recovered {
                        document: &root,
                        after: self.store_failures,
                    });
                    self.store_failures = 0;
                    lock(&self.health).failing.retain(|d| *d != root);
                }
                true
            }
            Err(error) => {
                self.store_failures += 1;
                let retry_in = self.backoff(self.store_failures);
                self.store_retry_at = Some(Instant::now() + retry_in);
                self.report(&root, "open", &error, self.store_failures, retry_in);
                false
            }
        }
    }

    fn reset_store(&mut self) {
        for doc in self.docs.values_mut() {
            doc.handle = None;
            doc.index = None;
        }
        if self.opener.is_some() {
            self.store = None;
        }
    }

    /// Serves the reads at the head of a document's queue, then applies the writes
    /// behind them as one batch; returns how many writes wait for the flush.
    fn serve(&mut self, id: &DocumentId) -> Result<usize, Failure> {
        self.clock += 1;
        let clock = self.clock;
        let Some(store) = self.store.as_ref() else {
            return Ok(0);
        };
        let doc = self.docs.entry(id.clone()).or_default();
        doc.used = clock;
        if doc.handle.is_none() {
            doc.handle = Some(store.open_document(id).map_err(|e| ("open", e))?);
            doc.renewed_at = Instant::now();
        }
        let mut read_ok = false;
        while doc.queue.front().is_some_and(|op| !op.is_write()) {
            let Some(op) = doc.queue.pop_front() else {
                break;
            };
            match read(id, doc, &op) {
                Ok(answer) => {
                    send(op, answer);
                    read_ok = true;
                }
                Err(error) => {
                    doc.queue.push_front(op);
                    return Err(("read", error));
                }
            }
        }
        if read_ok && doc.failures > 0 {
            self.recover(id);
        }
        let Some(doc) = self.docs.get_mut(id) else {
            return Ok(0);
        };
        let (Some(handle), true) = (
            doc.handle.as_mut(),
            doc.queue.front().is_some_and(Op::is_write),
        ) else {
            return Ok(0);
        };
        if doc.index.is_none() {
            doc.index = Some(DocIndex::read(id, handle).map_err(|e| ("read", e))?.0);
        }
        let Some(index) = doc.index.as_mut() else {
            return Ok(0);
        };
        let mut pending = Pending::default();
        let mut writes = 0;
        let mut payload = 0;
        for op in doc.queue.iter() {
            let parts = parts(op.key());
            let rest = layout::rest_of(&parts);
            let translated = match op {
                Op::Put { data, .. } => {
                    payload += data.len();
                    index.put(id, handle, &mut pending, rest, data.clone())
                }
                Op::Delete { .. } => index.delete(id, handle, &mut pending, rest),
                _ => break,
            };
            if let Err(error) = translated {
                doc.index = None;
                return Err(("read", error));
            }
            writes += 1;
            if payload > MAX_BATCH_PAYLOAD {
                break;
            }
        }
        if let Err(error) = handle.apply(pending.into_batch()) {
            doc.index = None;
            return Err(("write", error));
        }
        Ok(writes)
    }

    fn flush(&mut self, id: &DocumentId, writes: usize) -> Result<()> {
        let Some(doc) = self.docs.get_mut(id) else {
            return Ok(());
        };
        let Some(handle) = doc.handle.as_mut() else {
            return Ok(());
        };
        handle.flush()?;
        if writes > 0 {
            doc.renewed_at = Instant::now();
        }
        let done: Vec<Op> = doc.queue.drain(..writes.min(doc.queue.len())).collect();
        self.recover(id);
        for op in done {
            match op {
                Op::Put { key, reply, .. } => {
                    self.emit(&Event::Durable {
                        key: &key,
                        deleted: false,
                    });
                    let _ = reply.send(());
                }
                Op::Delete { key, reply } => {
                    self.emit(&Event::Durable {
                        key: &key,
                        deleted: true,
                    });
                    let _ = reply.send(());
                }
                Op::Load { .. } | Op::Range { .. } => {}
            }
        }
        Ok(())
    }

    /// Routes the held operations whose turn has come, and serves a range over
    /// several documents once every queue before it is empty.
    fn release_held(&mut self) {
        while let Some(op) = self.held.front() {
            if let Some(id) = op.document() {
                if let Some(op) = self.held.pop_front() {
                    self.docs.entry(id).or_default().queue.push_back(op);
                }
                continue;
            }
            let now = Instant::now();
            if !self.docs.values().all(|d| d.queue.is_empty())
                || self.held_retry_at.is_some_and(|at| at > now)
            {
                return;
            }
            let Some(Op::Range { prefix, reply }) = self.held.pop_front() else {
                return;
            };
            match self.range_many(&prefix) {
                Ok(values) => {
                    self.held_retry_at = None;
                    let _ = reply.send(values);
                }
                Err((id, error)) => {
                    self.fail(&id, "read", &error);
                    self.held_retry_at = self.docs.get(&id).and_then(|d| d.retry_at);
                    self.held.push_front(Op::Range { prefix, reply });
                    return;
                }
            }
        }
    }

    /// A range over the layout document and one or every samod document.
    fn range_many(&mut self, prefix: &StorageKey) -> Result<Range, (DocumentId, Error)> {
        let root = DocumentId::from(layout::LAYOUT_DOCUMENT);
        let parts = parts(prefix);
        let Some(store) = self.store.as_ref() else {
            return Err((
                root,
                Error::NotFound {
                    what: "the store (it is being reopened)".into(),
                },
            ));
        };
        let documents: Vec<DocumentId> = match parts.first() {
            // An id over the store's limits holds nothing: no key under it is stored.
            Some(first) => Some(DocumentId::from(first.as_str()))
                .filter(|id| id.validate().is_ok())
                .into_iter()
                .collect(),
            None => store
                .list_documents()
                .map_err(|e| (root.clone(), e))?
                .into_iter()
                .filter(|id| layout::component(id).is_some())
                .collect(),
        };
        let mut values = Range::new();
        self.range_one(&root, &parts, &mut values)?;
        for id in documents {
            self.range_one(&id, &[], &mut values)?;
        }
        Ok(values)
    }

    fn range_one(
        &mut self,
        id: &DocumentId,
        rest: &[String],
        values: &mut Range,
    ) -> Result<(), (DocumentId, Error)> {
        self.clock += 1;
        let clock = self.clock;
        let Some(store) = self.store.as_ref() else {
            return Ok(());
        };
        let doc = self.docs.entry(id.clone()).or_default();
        doc.used = clock;
        if doc.handle.is_none() {
            doc.handle = Some(store.open_document(id).map_err(|e| (id.clone(), e))?);
            doc.renewed_at = Instant::now();
        }
        range(id, doc, rest, values).map_err(|e| (id.clone(), e))?;
        self.recover(id);
        Ok(())
    }

    /// Marks a document working again after an operation on it succeeded.
    fn recover(&mut self, id: &DocumentId) {
        let Some(doc) = self.docs.get_mut(id) else {
            return;
        };
        let recovered = std::mem::take(&mut doc.failures);
        doc.retry_at = None;
        if recovered > 0 {
            lock(&self.health).failing.retain(|d| d != id);
            self.emit(&Event::Recovered {
                document: id,
                after: recovered,
            });
        }
    }

    fn fail(&mut self, id: &DocumentId, action: &'static str, error: &Error) {
        let doc = self.docs.entry(id.clone()).or_default();
        doc.handle = None;
        doc.index = None;
        doc.failures += 1;
        let attempt = doc.failures;
        let retry_in = self.backoff(attempt);
        if let Some(doc) = self.docs.get_mut(id) {
            doc.retry_at = Some(Instant::now() + retry_in);
        }
        self.report(id, action, error, attempt, retry_in);
    }

    fn report(
        &self,
        id: &DocumentId,
        action: &'static str,
        error: &Error,
        attempt: u32,
        retry_in: Duration,
    ) {
        {
            let mut health = lock(&self.health);
            health.failures += 1;
            health.last_error = Some(format!("{action} of document {id}: {error}"));
            if !health.failing.contains(id) {
                health.failing.push(id.clone());
            }
        }
        self.emit(&Event::Failed {
            document: id,
            action,
            error,
            attempt,
            retry_in,
        });
        if let WhenUnusable::Exit { after_failures } = self.options.when_unusable
            && attempt >= after_failures
        {
            exit(&format!(
                "{action} of document {id} failed {attempt} times in a row, the last time with: {error}"
            ));
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.options
            .backoff
            .saturating_mul(factor)
            .min(self.options.max_backoff)
    }

    /// Closes the handles of idle documents opened or last flushed
    /// [`Options::max_handle_age`] ago or more (a store's lease on them may be running
    /// out), then of the least recently
    /// used idle documents beyond the limit.
    fn evict(&mut self) {
        let now = Instant::now();
        let age = self.options.max_handle_age;
        self.docs.retain(|_, d| {
            d.handle.is_none() || !d.queue.is_empty() || d.failures > 0 || d.renewed_at + age > now
        });
        let open = self.docs.len();
        if open <= self.options.max_open_documents {
            return;
        }
        let mut idle: Vec<(u64, DocumentId)> = self
            .docs
            .iter()
            .filter(|(_, d)| d.queue.is_empty() && d.failures == 0)
            .map(|(id, d)| (d.used, id.clone()))
            .collect();
        idle.sort();
        for (_, id) in idle
            .into_iter()
            .take(open - self.options.max_open_documents)
        {
            self.docs.remove(&id);
        }
    }

    fn emit(&self, event: &Event<'_>) {
        if let Some(hook) = &self.options.hook {
            hook(event);
        }
    }
}

/// What a read found.
enum Answer {
    One(Option<Vec<u8>>),
    Many(Range),
}

/// Serves a load, or a range within one document.
fn read<P: Persister<Error = Error>>(id: &DocumentId, doc: &mut Doc<P>, op: &Op) -> Result<Answer> {
    let parts = parts(op.key());
    if let Op::Range { .. } = op {
        let mut values = Range::new();
        range(id, doc, &parts[1..], &mut values)?;
        return Ok(Answer::Many(values));
    }
    let Some(handle) = doc.handle.as_ref() else {
        return Err(closed(id));
    };
    if doc.index.is_none() {
        doc.index = Some(DocIndex::read(id, handle)?.0);
    }
    let Some(index) = doc.index.as_ref() else {
        return Err(closed(id));
    };
    Ok(Answer::One(layout::read_one(
        id,
        handle,
        index,
        layout::rest_of(&parts),
    )?))
}

fn send(op: Op, answer: Answer) {
    match (op, answer) {
        (Op::Load { reply, .. }, Answer::One(value)) => {
            let _ = reply.send(value);
        }
        (Op::Range { reply, .. }, Answer::Many(values)) => {
            let _ = reply.send(values);
        }
        _ => {}
    }
}

fn closed(id: &DocumentId) -> Error {
    Error::NotFound {
        what: format!("an open handle of document {id}"),
    }
}

/// Every key of document `id` under `rest`, into `values`.
fn range<P: Persister<Error = Error>>(
    id: &DocumentId,
    doc: &mut Doc<P>,
    rest: &[String],
    values: &mut Range,
) -> Result<()> {
    let Some(handle) = doc.handle.as_ref() else {
        return Err(closed(id));
    };
    let mut read = None;
    if doc.index.is_none() {
        let (index, changes) = DocIndex::read(id, handle)?;
        doc.index = Some(index);
        read = Some(changes);
    }
    let Some(index) = doc.index.as_ref() else {
        return Err(closed(id));
    };
    let mut found = Vec::new();
    layout::read_range(id, handle, index, read, rest, &mut found)?;
    for (rest, value) in found {
        let key = layout::key_of(id, rest)
            .and_then(|parts| StorageKey::from_parts(parts).ok())
            .ok_or_else(|| {
                Error::corrupt(
                    format!("document {id} holds a key samod cannot name"),
                    format!("document {id}"),
                    None,
                )
            })?;
        values.insert(key, value);
    }
    Ok(())
}

pub(crate) fn exit(what: &str) -> ! {
    eprintln!(
        "persister-samod: stopping the process (exit code {EXIT_CODE}) because the store stays unusable: {what}. \
         Every write acknowledged before this is durable; writes not yet acknowledged are not. \
         Fix the store (disk space, permissions, damage: `persister verify`) and restart."
    );
    std::process::exit(EXIT_CODE)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
