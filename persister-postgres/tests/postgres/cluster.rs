//! The PostgreSQL server the tests use: `PERSISTER_POSTGRES_URL`, or a throwaway
//! cluster made with `initdb` in a temporary directory, listening only on a Unix
//! socket there, and stopped when the test process exits however it exits.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use persister_postgres::{PostgresOptions, PostgresStore};

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
            Some(bin) => Cluster::start(&bin).map(|c| Some(Server::Cluster(c))),
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

/// Waits until `condition` holds, checking it every millisecond or so, for at most a
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
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Where `initdb` and `pg_ctl` are.
pub fn binaries() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions.flatten().map(|v| v.path().join("bin")).collect();
        found.sort();
        dirs.extend(found.into_iter().rev());
    }
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

/// A cluster made by these tests.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    /// Run the server's tools as the `postgres` user (the tests run as root).
    as_postgres: bool,
    /// Its end of the supervisor's standard input: when it closes (this cluster is
    /// dropped, or the process exits, even killed), the supervisor stops the server
    /// and deletes the directory.
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
}

impl Cluster {
    /// Makes a cluster with `initdb --no-sync` and starts it. The server commits
    /// asynchronously by default (`synchronous_commit = off`), so the tests prove that
    /// the backend turns it on for its flushes; `fsync = off` spares the disk, since
    /// the tests kill processes, which leaves the page cache intact.
    pub fn start(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("persister-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if as_postgres {
            run(Command::new("chown").args(["postgres:", "-R"]).arg(&dir))?;
        }
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            as_postgres,
            supervisor: Mutex::new(None),
        };
        cluster.supervise()?;
        let data = cluster.data();
        run(cluster
            .tool("initdb")
            .args([
                "--no-sync",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data))?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `host=DIR user=postgres dbname=postgres`.
    pub fn url(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    fn supervise(&mut self) -> Result<(), String> {
        let stop = format!(
            "{} '{}' -D '{}' stop -m immediate",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        let script = format!(
            "read _; {stop} >/dev/null 2>&1; rm -rf '{}'",
            self.dir.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the supervisor: {e}"))?;
        let stdin = child.stdin.take().ok_or("the supervisor has no stdin")?;
        *self.supervisor.lock().map_err(|_| "poisoned")? = Some((child, stdin));
        Ok(())
    }

    /// Starts the server (again).
    pub fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c synchronous_commit=off -c max_connections=300",
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let status = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {status}; server log:\n{log}"));
        }
        Ok(())
    }

    /// Kills the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint,
    /// recovery from the WAL at the next start).
    pub fn crash(&self) -> Result<(), String> {
        run(self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "stop", "-m", "immediate"]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut supervisor) = self.supervisor.lock()
            && let Some((mut child, stdin)) = supervisor.take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let _ = std::io::stderr().write_all(&out.stderr);
        Err(format!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
