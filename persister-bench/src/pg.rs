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

/// `bench_<run>_`, where `<run>` names the run's directory: the ancestor of `dir` whose
/// name starts with `persister-bench-` (the run's temporary directory), or `dir`
/// itself when there is none.
fn run_prefix(dir: &Path) -> String {
    let run = dir
        .ancestors()
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("persister-bench-"))
        })
        .unwrap_or(dir);
    format!("bench_{:08x}_", hash(run) as u32)
}

fn hash(path: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// Drops every schema of the run whose directory is `base` from a server given with
/// `PERSISTER_POSTGRES_URL`, and says how many; a cluster the run started goes away
/// with its data when the process exits. Stores are tables in these schemas, so a run
/// leaves nothing behind on the user's server.
pub fn drop_run_schemas(base: &Path) -> Result<usize> {
    if std::env::var_os("PERSISTER_POSTGRES_URL").is_none() {
        return Ok(0);
    }
    let mut client: postgres::Client = url()?
        .parse::<postgres::Config>()?
        .connect(postgres::NoTls)?;
    // The prefix is `bench_`, hex digits and `_`: `_` is a LIKE wildcard, so it is
    // escaped; nothing else in it needs quoting.
    let pattern = format!("{}%", run_prefix(base).replace('_', "\\_"));
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[&pattern],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for schema in &schemas {
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
    }
    Ok(schemas.len())
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
        let mut client: postgres::Client = url()?
            .parse::<postgres::Config>()?
            .connect(postgres::NoTls)?;
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
            assert!(schema.len() < 64 - "_limit".len(), "{schema}");
        }
        assert_ne!(prefix, run_prefix(Path::new("/tmp/persister-bench-Cd34")));
        assert_ne!(
            schema(&run.join("server-postgres")),
            schema(&run.join("flush-postgres"))
        );
    }
}
