//! What every test shares: backends, replicas that can be reopened, trace helpers.

use std::path::PathBuf;

use automerge::sync::Message;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, TextEncoding};
use persister_automerge::{Options, PersistentDoc};
pub use persister_backends::Backend;
use persister_backends::{Access, Registry};
use persister_core::{DocumentId, DynPersister, DynStore};
use persister_testkit::Rng;
use persister_traces::{Trace, Txn};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;
pub type Doc = PersistentDoc<DynPersister>;

/// Set to `1` to replay whole traces instead of the default prefixes (use `--release`:
/// automerge's debug assertions make a debug build far slower).
pub const FULL_TRACE_ENV: &str = "PERSISTER_FULL_TRACE";

pub fn full_trace() -> bool {
    std::env::var(FULL_TRACE_ENV).is_ok_and(|v| v == "1")
}

/// The backend called `name`: `memory` (stores kept by the entry, reopened by path),
/// or one of the standard registry's.
pub fn named(name: &str) -> Backend {
    parse_backend(name).unwrap_or_else(|| panic!("no backend called {name}"))
}

/// The backend called `name`, if there is one.
pub fn parse_backend(name: &str) -> Option<Backend> {
    Registry::standard()
        .with(Backend::memory())
        .get(name)
        .cloned()
}

/// Opens (creating if needed) the store of `backend` at `path`.
pub fn open_at(backend: &Backend, path: &std::path::Path) -> persister_core::Result<DynStore> {
    backend.open(path, Access::ReadWrite)
}

/// One store of one backend that can be opened again and again, in a temporary
/// directory (a memory store is kept by its backend entry, by path).
pub struct Location {
    store: persister_backends::Location,
    _dir: tempfile::TempDir,
}

impl Location {
    pub fn new(backend: &Backend) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            store: persister_backends::Location::new(backend.clone(), dir.path().join("store")),
            _dir: dir,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    pub fn open(&self) -> persister_core::Result<DynStore> {
        self.store.open()
    }
}

pub fn doc_id() -> DocumentId {
    "doc".into()
}

/// Options for trace replays: trace positions count Unicode scalar values.
pub fn text_options() -> Options {
    Options::default().with_text_encoding(TextEncoding::UnicodeCodePoint)
}

pub fn open_doc(store: &DynStore, options: Options) -> TestResult<Doc> {
    Ok(PersistentDoc::load_with(
        store.open_document(&doc_id())?,
        options,
    )?)
}

/// A document in its own store that can be dropped and reloaded.
pub struct Replica {
    pub location: Location,
    options: Options,
    // Field order: the document (and its persister) drops before the store.
    doc: Option<Doc>,
    store: Option<DynStore>,
}

impl Replica {
    pub fn new(backend: &Backend, options: Options) -> TestResult<Self> {
        let mut replica = Self {
            location: Location::new(backend)?,
            options,
            doc: None,
            store: None,
        };
        replica.reload()?;
        Ok(replica)
    }

    pub fn doc(&mut self) -> TestResult<&mut Doc> {
        self.doc
            .as_mut()
            .ok_or_else(|| "replica is not open".into())
    }

    /// Drops the document and the store without closing them, then opens both again.
    pub fn reload(&mut self) -> TestResult {
        self.doc = None;
        self.store = None;
        let store = self.location.open()?;
        self.doc = Some(open_doc(&store, self.options.clone())?);
        self.store = Some(store);
        Ok(())
    }

    pub fn text(&mut self) -> TestResult<String> {
        Ok(read_text(self.doc()?.doc())?.unwrap_or_default())
    }
}

/// Carries one message over the wire: encoded, then decoded.
pub fn transmit(message: Message) -> TestResult<Message> {
    Ok(Message::decode(&message.encode())?)
}

/// Syncs `a` (which calls its peer `b_id`) with `b` (which calls its peer `a_id`)
/// until neither has anything to send. `after_message` runs after every delivered
/// message with its number, and may reload either side. Returns how many messages
/// were delivered and how many of them carried changes.
pub fn sync_until_quiet(
    (a, a_id): (&mut Replica, &[u8]),
    (b, b_id): (&mut Replica, &[u8]),
    mut after_message: impl FnMut(usize, &mut Replica, &mut Replica) -> TestResult,
) -> TestResult<(usize, usize)> {
    let (mut delivered, mut with_changes) = (0, 0);
    for _ in 0..100 {
        let mut quiet = true;
        if let Some(message) = a.doc()?.generate_sync_message(b_id)? {
            quiet = false;
            with_changes += usize::from(!message.changes.is_empty());
            b.doc()?.receive_sync_message(a_id, transmit(message)?)?;
            delivered += 1;
            after_message(delivered, a, b)?;
        }
        if let Some(message) = b.doc()?.generate_sync_message(a_id)? {
            quiet = false;
            with_changes += usize::from(!message.changes.is_empty());
            a.doc()?.receive_sync_message(b_id, transmit(message)?)?;
            delivered += 1;
            after_message(delivered, a, b)?;
        }
        if quiet {
            return Ok((delivered, with_changes));
        }
    }
    Err("sync did not settle in 100 rounds".into())
}

/// The text object at `ROOT["text"]`, created in its own change if missing.
pub fn text_object(doc: &mut Doc) -> TestResult<ObjId> {
    if let Some((_, id)) = doc.doc().get(ROOT, "text")? {
        return Ok(id);
    }
    Ok(doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?)
}

/// The text at `ROOT["text"]`, if there is one.
pub fn read_text(doc: &AutoCommit) -> TestResult<Option<String>> {
    match doc.get(ROOT, "text")? {
        Some((_, id)) => Ok(Some(doc.text(&id)?)),
        None => Ok(None),
    }
}

/// Applies the patches of one trace transaction.
pub fn apply_txn(d: &mut AutoCommit, text: &ObjId, txn: &Txn) -> Result<(), AutomergeError> {
    for patch in &txn.patches {
        let delete = isize::try_from(patch.delete()).map_err(|_| AutomergeError::Fail)?;
        d.splice_text(text, patch.pos(), delete, patch.insert())?;
    }
    Ok(())
}

/// The shared trace `name`, or `None` (with a printed reason) when it is absent.
pub fn load_trace(name: &str) -> TestResult<Option<Trace>> {
    match persister_traces::find(name) {
        Some(path) => Ok(Some(Trace::load(&path)?)),
        None => {
            println!(
                "skipped: trace {name} not found (put ../shared/traces beside the workspace or set PERSISTER_TRACES)"
            );
            Ok(None)
        }
    }
}

/// A generator seeded from `PERSISTER_TEST_SEED` or the clock; the seed is printed so
/// a failure can be replayed.
pub fn rng_from_env_or_clock() -> Rng {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let seed = persister_testkit::env_count("PERSISTER_TEST_SEED", clock);
    println!("seed: PERSISTER_TEST_SEED={seed}");
    Rng::new(seed)
}

/// Expands, for each `fn name(backend: Backend) -> TestResult { .. }`, the function
/// and a module `name` with one `#[test]` per listed backend (named as in the registry), so that no backend
/// silently skips a case.
macro_rules! backend_tests {
    ($backends:tt $($(#[$meta:meta])* fn $name:ident($arg:ident: Backend) -> TestResult $body:block)+) => {
        $(
            $(#[$meta])*
            fn $name($arg: $crate::support::Backend) -> $crate::support::TestResult $body

            mod $name {
                $crate::support::backend_tests!(@each $name $backends);
            }
        )+
    };
    (@each $name:ident [$($backend:ident),+]) => {
        $(
            #[test]
            fn $backend() -> $crate::support::TestResult {
                super::$name($crate::support::named(stringify!($backend)))
            }
        )+
    };
}
pub(crate) use backend_tests;
