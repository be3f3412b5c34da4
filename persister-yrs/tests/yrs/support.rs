//! What every test shares: backends, replicas that can be reopened, trace helpers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use persister_backends::Backend;
use persister_backends::{Access, Registry};
use persister_core::{DocumentId, DynPersister, DynStore};
use persister_postgres::PostgresOptions;
use persister_testkit::Rng;
use persister_traces::{Trace, Txn};
use persister_yrs::{Options, PersistentYDoc};
use yrs::sync::SyncMessage;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, Text, TextRef, Transact, TransactionMut};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;
pub type Doc = PersistentYDoc<DynPersister>;

/// Set to `1` to replay whole traces instead of the default prefixes.
pub const FULL_TRACE_ENV: &str = "PERSISTER_FULL_TRACE";

pub fn full_trace() -> bool {
    std::env::var(FULL_TRACE_ENV).is_ok_and(|v| v == "1")
}

/// The name of the shared text in every test document.
pub const TEXT: &str = "text";

/// The backend called `name`: `memory` (stores kept by the entry, reopened by path),
/// or one of the standard registry's.
pub fn named(name: &str) -> Backend {
    parse_backend(name).unwrap_or_else(|| panic!("no backend called {name}"))
}

/// The backend called `name`, if there is one.
pub fn parse_backend(name: &str) -> Option<Backend> {
    Registry::standard()
        .with(Backend::memory())
        .with(postgres())
        .get(name)
        .cloned()
}

/// How long a PostgreSQL store's lease on a document runs here: a few seconds rather
/// than the default 30, so that a document a killed process held is free soon after.
pub const LEASE: Duration = Duration::from_secs(3);

/// The standard registry's `postgres` entry (a schema named by a URL), with leases of
/// [`LEASE`].
fn postgres() -> Backend {
    Backend::postgres_with(PostgresOptions::default().lease_duration(LEASE))
}

/// Whether `backend` can run here: every backend but PostgreSQL always can; PostgreSQL
/// when there is a server (see [`shared_schema_url`]), which otherwise prints why the
/// test is skipped, or fails it under `PERSISTER_REQUIRE_POSTGRES=1`.
///
/// [`shared_schema_url`]: persister_testkit::postgres::shared_schema_url
pub fn available(backend: &Backend) -> TestResult<bool> {
    if backend.name() != "postgres" {
        return Ok(true);
    }
    Ok(persister_testkit::postgres::shared_schema_url("probe")?.is_some())
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
    /// A new store: a file or directory in a temporary directory, or for PostgreSQL a
    /// schema of its own on this process's server.
    pub fn new(backend: &Backend) -> TestResult<Self> {
        static SCHEMAS: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir()?;
        let path = match backend.name() {
            "postgres" => {
                // Unique on a shared server too (`PERSISTER_POSTGRES_URL`).
                let schema = format!(
                    "yrs_{}_{}_{}",
                    std::process::id(),
                    started_nanos(),
                    SCHEMAS.fetch_add(1, Ordering::Relaxed)
                );
                let url = persister_testkit::postgres::shared_schema_url(&schema)?
                    .ok_or("no PostgreSQL server")?;
                PathBuf::from(url)
            }
            _ => dir.path().join("store"),
        };
        Ok(Self {
            store: persister_backends::Location::new(backend.clone(), path),
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

/// When this process first asked, in nanoseconds of its second: with the process id,
/// what makes its schemas' names its own.
fn started_nanos() -> u32 {
    static STARTED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    })
}

pub fn doc_id() -> DocumentId {
    "doc".into()
}

pub fn open_doc(store: &DynStore, options: Options) -> TestResult<Doc> {
    Ok(PersistentYDoc::load_with(
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
        Ok(read_text(self.doc()?))
    }
}

/// The text of `doc`.
pub fn read_text<P: persister_core::Persister<Error = persister_core::Error>>(
    doc: &PersistentYDoc<P>,
) -> String {
    let text = doc.doc().get_or_insert_text(TEXT);
    text.get_string(&doc.doc().transact())
}

/// Carries one sync message over the wire: encoded, then decoded.
pub fn transmit(message: SyncMessage) -> TestResult<SyncMessage> {
    Ok(SyncMessage::decode_v1(&message.encode_v1())?)
}

/// One full Yjs sync between `a` and `b`: each sends its state vector (step 1), the
/// other answers with what it lacks (step 2). Returns the bytes of both step-2 updates.
pub fn sync_pair(a: &mut Doc, b: &mut Doc) -> TestResult<usize> {
    Ok(sync_step(a, b)? + sync_step(b, a)?)
}

/// `from` sends its state vector, `to` answers with what `from` lacks, `from` applies
/// it. Returns the bytes of the answer.
fn sync_step(from: &mut Doc, to: &mut Doc) -> TestResult<usize> {
    let step1 = transmit(from.sync_step1())?;
    let step2 = to
        .receive_sync_message(step1)?
        .ok_or("no answer to step 1")?;
    let SyncMessage::SyncStep2(update) = &step2 else {
        return Err(format!("step 1 answered with {step2:?}").into());
    };
    let carried = update.len();
    if from.receive_sync_message(transmit(step2)?)?.is_some() {
        return Err("step 2 must not be answered".into());
    }
    Ok(carried)
}

/// Applies the patches of one trace transaction; positions count bytes, which are
/// Unicode scalar values in an ASCII trace (see [`require_ascii`]).
pub fn apply_txn(txn: &mut TransactionMut<'_>, text: &TextRef, patches: &Txn) {
    for patch in &patches.patches {
        let (pos, delete) = (patch.pos() as u32, patch.delete() as u32);
        if delete > 0 {
            text.remove_range(txn, pos, delete);
        }
        if !patch.insert().is_empty() {
            text.insert(txn, pos, patch.insert());
        }
    }
}

/// The trace positions count Unicode scalar values and yrs counts bytes here: the
/// same in an ASCII trace, which every shared trace replayed here is.
pub fn require_ascii(trace: &Trace) -> TestResult {
    let ascii = trace.end_content.is_ascii()
        && trace
            .txns
            .iter()
            .all(|t| t.patches.iter().all(|p| p.insert().is_ascii()));
    if ascii {
        Ok(())
    } else {
        Err("the trace is not ASCII: positions would need converting to bytes".into())
    }
}

/// The shared trace `name`, or `None` (with a printed reason) when it is absent.
pub fn load_trace(name: &str) -> TestResult<Option<Trace>> {
    match persister_traces::find(name) {
        Some(path) => {
            let trace = Trace::load(&path)?;
            require_ascii(&trace)?;
            Ok(Some(trace))
        }
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
/// and a module `name` with one `#[test]` per listed backend (named as in the
/// registry), so that no backend silently skips a case. A case on PostgreSQL without a
/// server prints why and passes, unless `PERSISTER_REQUIRE_POSTGRES=1` (see
/// [`available`]).
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
                let backend = $crate::support::named(stringify!($backend));
                if !$crate::support::available(&backend)? {
                    return Ok(());
                }
                super::$name(backend)
            }
        )+
    };
}
pub(crate) use backend_tests;
