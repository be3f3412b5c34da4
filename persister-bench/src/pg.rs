//! The PostgreSQL column's server: `PERSISTER_POSTGRES_URL`, or a throwaway cluster
//! this run starts (fsync and synchronous commits on, the server's defaults), and the
//! server's own limit: single-row commits per second.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use persister_testkit::postgres::{Cluster, binaries};

use crate::Result;
use crate::clock::{Lap, Stopwatch};

/// Where this run's processes find the server's URL: a file named after the parent's
/// process id, so that the rows' child processes find it too.
fn url_file(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("persister-bench-pg-{pid}.url"))
}

/// The server's URL, starting a cluster the first time when none is given. Child
/// processes of the run read the parent's.
pub fn url() -> Result<String> {
    static URL: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("PERSISTER_POSTGRES_URL") {
            return Ok(url);
        }
        if let Ok(url) = std::fs::read_to_string(url_file(std::os::unix::process::parent_id())) {
            return Ok(url);
        }
        start_cluster().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(Into::into)
}

/// The schema of the store "in" `dir`: one per directory, the same in every process.
/// Its name starts with the run's prefix ([`run_prefix`]), so that the run can drop
/// every schema it made, whichever process made it.
pub fn schema(dir: &Path) -> String {
    format!("{}{:016x}", run_prefix(dir), hash(dir))
}

/// `bench_<run>_`, where `<run>` (16 hex digits) names the run's directory: the
/// ancestor of `dir` whose name starts with `persister-bench-` (the run's temporary
/// directory), or `dir` itself when there is none.
pub fn run_prefix(dir: &Path) -> String {
    let run = dir
        .ancestors()
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("persister-bench-"))
        })
        .unwrap_or(dir);
    format!("bench_{:016x}_", hash(run))
}

fn hash(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// Whether the run's server is the user's (`PERSISTER_POSTGRES_URL`), which outlives
/// the run, rather than a cluster the run started.
pub fn on_users_server() -> bool {
    std::env::var_os("PERSISTER_POSTGRES_URL").is_some()
}

/// A new connection to the run's server.
fn connect() -> Result<postgres::Client> {
    Ok(url()?
        .parse::<postgres::Config>()?
        .connect(postgres::NoTls)?)
}

/// Drops every schema of the run whose directory is `base` from a server given with
/// `PERSISTER_POSTGRES_URL`, and says how many; a cluster the run started goes away
/// with its data when the process exits. Stores are tables in these schemas, so a run
/// leaves nothing behind on the user's server.
pub fn drop_run_schemas(base: &Path) -> Result<usize> {
    if !on_users_server() {
        return Ok(0);
    }
    drop_schemas(&mut connect()?, base)
}

/// Drops the schemas of the run whose directory is `base`: only names of exactly the
/// shape [`schema`] gives (the run's prefix, 16 hex digits, and `_limit` for a limit's
/// table) and owned by the connected role, so that nothing else on the server can
/// match. Tries every one, waiting at most 10 s for each one's locks; an error names
/// how many of them were dropped and the first failure.
fn drop_schemas(client: &mut postgres::Client, base: &Path) -> Result<usize> {
    client.batch_execute("SET lock_timeout = '10s'")?;
    let shape = format!("^{}[0-9a-f]{{16}}(_limit)?$", run_prefix(base));
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace
             WHERE nspname ~ $1 AND nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
            &[&shape],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut first_error = None;
    let mut dropped = 0;
    for schema in &schemas {
        // The shape leaves only lowercase hex digits and `_`; quoted all the same.
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        match client.batch_execute(&format!("DROP SCHEMA {quoted} CASCADE")) {
            Ok(()) => dropped += 1,
            Err(e) => {
                first_error.get_or_insert(format!("{schema}: {e}"));
            }
        }
    }
    match first_error {
        None => Ok(dropped),
        Some(e) => Err(format!("dropped {dropped} of {} schemas; {e}", schemas.len()).into()),
    }
}

/// The run's cluster, stopped when the process exits.
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

fn start_cluster() -> Result<String> {
    let bin = binaries().ok_or(
        "no PostgreSQL server: initdb and pg_ctl are not installed, and PERSISTER_POSTGRES_URL is not set",
    )?;
    // The server's defaults: fsync and synchronous_commit on, so commits are durable.
    let cluster = Cluster::start(&bin, &[])?;
    let url = cluster.url();
    *CLUSTER.lock().map_err(|_| "poisoned")? = Some(cluster);
    std::fs::write(url_file(std::process::id()), &url)?;
    Ok(url)
}

/// Removes the file that tells child processes the URL.
pub fn forget_url() {
    let _ = std::fs::remove_file(url_file(std::process::id()));
}

/// Single-row inserts, each its own transaction committed with `synchronous_commit`
/// on: the rate no store on this server that commits every write can beat.
pub struct Commits {
    client: postgres::Client,
    insert: postgres::Statement,
    next: i64,
}

impl Commits {
    /// A new table in `schema` on the server.
    pub fn create(schema: &str) -> Result<Self> {
        let mut client = connect()?;
        client.batch_execute(&format!(
            "SET synchronous_commit = on; CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {schema}.commits (id int8 PRIMARY KEY, value bytea NOT NULL); SET search_path = {schema}"
        ))?;
        let insert = client.prepare("INSERT INTO commits (id, value) VALUES ($1, $2)")?;
        Ok(Self {
            client,
            insert,
            next: 0,
        })
    }

    /// Commits one row of 100 bytes in its own transaction.
    fn commit_one(&mut self, value: &[u8]) -> Result<()> {
        self.next += 1;
        self.client.execute(&self.insert, &[&self.next, &value])?;
        Ok(())
    }

    /// Commits `count` rows of 100 bytes, one per transaction; returns the time taken.
    pub fn append_synced(&mut self, count: usize) -> Result<Lap> {
        let value = [0x5a_u8; 100];
        let watch = Stopwatch::start();
        for _ in 0..count {
            self.commit_one(&value)?;
        }
        Ok(watch.lap())
    }

    /// Commits rows of 100 bytes, one per transaction, for `time`: returns how many, and
    /// the wall time they took (the last commit ends past `time`).
    pub fn append_synced_for(&mut self, time: Duration) -> Result<(usize, Duration)> {
        let value = [0x5a_u8; 100];
        crate::clock::repeat_for(time, || self.commit_one(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema of a run, made in whichever process, starts with the run's prefix,
    /// and another run's do not.
    #[test]
    fn schemas_of_one_run_share_its_prefix() {
        let run = Path::new("/tmp/persister-bench-Ab12/");
        let prefix = run_prefix(run);
        for dir in [
            "server-postgres",
            "flush-postgres/raw",
            "many-postgres/10000",
        ] {
            let schema = schema(&run.join(dir));
            assert!(schema.starts_with(&prefix), "{schema} {prefix}");
            assert!(format!("{schema}_limit").len() <= 63, "{schema}");
        }
        assert_ne!(prefix, run_prefix(Path::new("/tmp/persister-bench-Cd34")));
        assert_ne!(
            schema(&run.join("server-postgres")),
            schema(&run.join("flush-postgres"))
        );
    }

    /// The drop takes the run's schemas and nothing else: not another run's, not an
    /// older build's `bench_<16 hex>`, not a name that only starts like the run's.
    #[test]
    fn dropping_a_runs_schemas_leaves_every_other_schema() -> Result<()> {
        let Some((_, cluster)) = persister_testkit::postgres::schema_server("unused")? else {
            return Ok(());
        };
        let url = match &cluster {
            Some(cluster) => cluster.url(),
            None => std::env::var("PERSISTER_POSTGRES_URL")?,
        };
        let mut client = url.parse::<postgres::Config>()?.connect(postgres::NoTls)?;
        let dirs = tempfile::tempdir()?;
        let (run, other) = (
            dirs.path().join("persister-bench-run"),
            dirs.path().join("persister-bench-other"),
        );
        let store = schema(&run.join("server-postgres"));
        let ours = [
            store.clone(),
            format!("{store}_limit"),
            schema(&run.join("flush-postgres/raw")),
        ];
        let others = [
            schema(&other.join("server-postgres")),
            format!("bench_{:016x}", hash(&run)),
            format!("{store}_kept"),
            run_prefix(&run).to_uppercase() + "0123456789ABCDEF",
        ];
        for name in ours.iter().chain(&others) {
            client.batch_execute(&format!(
                "CREATE SCHEMA \"{name}\"; CREATE TABLE \"{name}\".t (id int8)"
            ))?;
        }
        let dropped = drop_schemas(&mut client, &run);
        let mut exists = |name: &String| -> Result<bool> {
            let row = client.query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[name],
            )?;
            Ok(row.get::<_, i64>(0) == 1)
        };
        let mut left_ours = Vec::new();
        for name in &ours {
            if exists(name)? {
                left_ours.push(name.clone());
            }
        }
        let mut gone_others = Vec::new();
        for name in &others {
            if !exists(name)? {
                gone_others.push(name.clone());
            }
        }
        for name in others.iter().chain(&left_ours) {
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))?;
        }
        assert_eq!(dropped?, ours.len());
        assert!(left_ours.is_empty(), "not dropped: {left_ours:?}");
        assert!(gone_others.is_empty(), "dropped: {gone_others:?}");
        Ok(())
    }
}
