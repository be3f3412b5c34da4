//! The PostgreSQL server the tests use: `PERSISTER_POSTGRES_URL`, or a throwaway
//! cluster made with `initdb` in a temporary directory, listening only on a Unix
//! socket there, and stopped when the test process exits however it exits.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use persister_postgres::{PostgresOptions, PostgresStore};
pub use persister_testkit::postgres::{Cluster, binaries};

/// The test clusters' settings. The server commits asynchronously by default
/// (`synchronous_commit = off`), so the tests prove that the backend turns it on for
/// its flushes; `fsync = off` spares the disk, since the tests kill processes, which
/// leaves the page cache intact.
/// `pg_stat_statements` counts the statements a workload sends (the round-trip test).
pub const TEST_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "max_connections=300",
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track_utility=off",
];

/// Where the shared server is.
pub enum Server {
    /// Given by `PERSISTER_POSTGRES_URL`.
    Url(String),
    /// Started by these tests.
    Cluster(Cluster),
}

impl Server {
    pub fn url(&self) -> String {
        match self {
            Server::Url(url) => url.clone(),
            Server::Cluster(cluster) => cluster.url(),
        }
    }
}

static SERVER: OnceLock<Result<Option<Server>, String>> = OnceLock::new();

/// The server shared by every test of this binary. Without one, prints why and ends
/// the process with success, unless `PERSISTER_REQUIRE_POSTGRES=1`, which makes it a
/// failure.
pub fn server() -> &'static Server {
    let server = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("PERSISTER_POSTGRES_URL") {
            return Ok(Some(Server::Url(url)));
        }
        match binaries() {
            Some(bin) => Cluster::start(&bin, TEST_SETTINGS).map(|c| Some(Server::Cluster(c))),
            None => Ok(None),
        }
    });
    match server {
        Ok(Some(server)) => server,
        Ok(None) => skip(
            "no PostgreSQL server: set PERSISTER_POSTGRES_URL, or install the server binaries (initdb, pg_ctl)",
        ),
        Err(e) => panic!("starting the test cluster: {e}"),
    }
}

/// Ends the test process: a skip, or a failure when `PERSISTER_REQUIRE_POSTGRES=1`.
pub fn skip(why: &str) -> ! {
    if std::env::var("PERSISTER_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PERSISTER_REQUIRE_POSTGRES=1, but {why}");
    }
    println!("skipped: the postgres tests, because {why}");
    std::process::exit(0)
}

/// A schema name no other test of any process uses.
pub fn fresh_schema() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens a store in a fresh schema of the shared server.
pub fn fresh_store(
    options: PostgresOptions,
) -> Result<(PostgresStore, String), persister_core::Error> {
    let schema = fresh_schema();
    let store = PostgresStore::open_with(&server().url(), options.schema(schema.clone()))?;
    Ok((store, schema))
}

/// A connection for the tests' own SQL (inspecting leases, terminating backends).
pub fn admin(url: &str) -> Result<postgres::Client, postgres::Error> {
    url.parse::<postgres::Config>()?
        .application_name("persister-tests")
        .connect(postgres::NoTls)
}

/// Waits until `condition` holds, checking it every 5 ms or so, for at most a
/// minute (a failure, not a guess: the condition is expected within milliseconds).
pub fn wait_for(
    what: &str,
    mut condition: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition()? {
        if std::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// How many statements that name the `leases` table of the store in `schema` wait for
/// a lock.
pub fn waiting_on_locks(client: &mut postgres::Client, schema: &str) -> Result<i64, String> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            &[&format!("%\"{schema}\".leases%")],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}
