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
pub fn schema(dir: &Path) -> String {
    let mut hasher = DefaultHasher::new();
    dir.hash(&mut hasher);
    format!("bench_{:016x}", hasher.finish())
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
