//! A throwaway PostgreSQL cluster for tests and benchmarks: made with `initdb` in a
//! temporary directory, listening only on a Unix socket there, run as the `postgres`
//! user when this process runs as root, and stopped when its [`Cluster`] is dropped or
//! this process exits, however it exits. A [`Pair`] is two of them, a primary and a
//! streaming standby made with `pg_basebackup -R`, for failover tests.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The port of a [`Cluster::start`]ed server's socket (`.s.PGSQL.5432` in its directory).
const DEFAULT_PORT: u16 = 5432;

/// Where `initdb` and `pg_ctl` are: on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`. An `initdb` on `PATH` that is a link leads to the
/// directory it links into, where the server's other tools (`pg_basebackup`, `psql`)
/// are too.
pub fn binaries() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions.flatten().map(|v| v.path().join("bin")).collect();
        found.sort();
        dirs.extend(found.into_iter().rev());
    }
    let dir = dirs
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())?;
    match std::fs::canonicalize(dir.join("initdb")) {
        Ok(initdb) => match initdb.parent() {
            Some(real) if real.join("pg_ctl").is_file() => Some(real.to_path_buf()),
            _ => Some(dir),
        },
        Err(_) => Some(dir),
    }
}

/// A server for one test's `schema`: the URL of `PERSISTER_POSTGRES_URL` with the
/// schema added, or of a throwaway cluster, returned with it (stopped when dropped).
/// `Ok(None)`, after printing why, when there is no server; an error instead when
/// `PERSISTER_REQUIRE_POSTGRES=1`, so that CI cannot skip the test unseen.
pub fn schema_server(schema: &str) -> Result<Option<(String, Option<Cluster>)>, String> {
    if let Some(url) = env_schema_url(schema)? {
        return Ok(Some((url, None)));
    }
    match binaries() {
        Some(bin) => {
            let cluster = Cluster::start(&bin, &[])?;
            Ok(Some((cluster.uri(schema), Some(cluster))))
        }
        None => no_server(),
    }
}

/// [`schema_server`] for tests that make many stores: the URL of `schema` on one
/// server for the whole process, `PERSISTER_POSTGRES_URL` or a throwaway cluster that
/// the first call starts and that stops when the process exits, however it exits.
/// `Ok(None)` (after printing why) or an error when there is no server, as there.
pub fn shared_schema_url(schema: &str) -> Result<Option<String>, String> {
    static SHARED: OnceLock<Result<Option<Cluster>, String>> = OnceLock::new();
    if let Some(url) = env_schema_url(schema)? {
        return Ok(Some(url));
    }
    let shared = SHARED.get_or_init(|| binaries().map(|bin| Cluster::start(&bin, &[])).transpose());
    match shared {
        Ok(Some(cluster)) => Ok(Some(cluster.uri(schema))),
        Ok(None) => no_server(),
        Err(e) => Err(e.clone()),
    }
}

/// `PERSISTER_POSTGRES_URL` with `schema` added, if it is set to a URL; an error when
/// it names a schema itself (each test makes one of its own, and the store refuses a
/// URL that gives `schema` twice).
fn env_schema_url(schema: &str) -> Result<Option<String>, String> {
    let Ok(url) = std::env::var("PERSISTER_POSTGRES_URL") else {
        return Ok(None);
    };
    if !url.contains("://") {
        return Ok(None);
    }
    let (_, query) = url.split_once('?').unwrap_or((&url, ""));
    if query.split('&').any(|option| option.starts_with("schema=")) {
        return Err(
            "PERSISTER_POSTGRES_URL sets `schema`: leave it out, each test makes a schema of its own"
                .into(),
        );
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(Some(format!("{url}{sep}schema={schema}")))
}

/// No server: an error under `PERSISTER_REQUIRE_POSTGRES=1`, else `Ok(None)` after
/// printing why.
fn no_server<T>() -> Result<Option<T>, String> {
    if std::env::var("PERSISTER_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        return Err("PERSISTER_REQUIRE_POSTGRES=1, but there is no PostgreSQL server".into());
    }
    println!(
        "skipped: no PostgreSQL server (set PERSISTER_POSTGRES_URL or install initdb and pg_ctl)"
    );
    Ok(None)
}

/// A cluster of its own.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    settings: Vec<String>,
    /// Run the server's tools as the `postgres` user (this process runs as root).
    as_postgres: bool,
    /// Its end of the supervisor's standard input: when it closes (the cluster is
    /// dropped, or the process exits, even killed), the supervisor stops the server
    /// and deletes the directory.
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
}

impl Cluster {
    /// Makes a cluster with `initdb --no-sync` (trust authentication, superuser
    /// `postgres`) and starts it with the server settings `settings` (`name=value`).
    pub fn start(bin: &Path, settings: &[&str]) -> Result<Self, String> {
        Self::start_on(bin, settings, DEFAULT_PORT)
    }

    /// [`Cluster::start`] with its socket on `port`.
    pub fn start_on(bin: &Path, settings: &[&str], port: u16) -> Result<Self, String> {
        let cluster = Self::empty(bin, settings, port)?;
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
            .arg(cluster.data()))?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Makes a standby of `primary` with `pg_basebackup -R` (it streams the primary's
    /// WAL; `initdb` allows local replication connections), and starts it with
    /// `settings` on `port`.
    pub fn start_standby(
        bin: &Path,
        primary: &Cluster,
        settings: &[&str],
        port: u16,
    ) -> Result<Self, String> {
        let cluster = Self::empty(bin, settings, port)?;
        cluster.rebuild_as_standby_of(primary)?;
        Ok(cluster)
    }

    /// A new directory with its supervisor, and no data directory yet.
    fn empty(bin: &Path, settings: &[&str], port: u16) -> Result<Self, String> {
        // The process id and a count tell apart the clusters of this machine's
        // processes; the time, those of a process with the same id before.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "persister-pg-{}-{}-{port}-{nanos}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            port,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            as_postgres,
            supervisor: Mutex::new(None),
        };
        cluster.supervise()?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&cluster.dir))?;
        }
        Ok(cluster)
    }

    /// Replaces this (stopped) cluster's data with a fresh copy of `primary` made with
    /// `pg_basebackup -R`, and starts it as `primary`'s standby. A primary that
    /// failed over is rebuilt this way, since it may hold WAL its successor never got.
    pub fn rebuild_as_standby_of(&self, primary: &Cluster) -> Result<(), String> {
        let data = self.data();
        match std::fs::remove_dir_all(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", data.display())),
        }
        run(self
            .tool("pg_basebackup")
            .arg("-h")
            .arg(&primary.dir)
            .args(["-p", &primary.port.to_string(), "-U", "postgres"])
            .args(["-X", "stream", "-c", "fast", "--no-sync", "-R", "-D"])
            .arg(&data))?;
        self.start_server()
    }

    /// Promotes this standby (`pg_ctl promote`) and waits until it accepts writes
    /// (`pg_is_in_recovery()` is false).
    pub fn promote(&self) -> Result<(), String> {
        run(self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "promote"]))?;
        wait_until("the promoted standby to leave recovery", || {
            Ok(self.query("SELECT pg_is_in_recovery()")? == "f")
        })
    }

    /// Runs `sql` with `psql` and returns its output, unaligned, without headers.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let out = self
            .tool("psql")
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "psql {sql:?} on {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The directory of its socket.
    pub fn host(&self) -> &Path {
        &self.dir
    }

    /// The port of its socket.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Its connection string: `host=DIR user=postgres dbname=postgres` (and `port=N`
    /// when not 5432).
    pub fn url(&self) -> String {
        let port = if self.port == DEFAULT_PORT {
            String::new()
        } else {
            format!(" port={}", self.port)
        };
        format!(
            "host={}{port} user=postgres dbname=postgres",
            self.dir.display()
        )
    }

    /// Its URL, `postgres://postgres@%2FDIR/postgres`, with `?schema=SCHEMA`.
    pub fn uri(&self, schema: &str) -> String {
        let host = self.dir.display().to_string().replace('/', "%2F");
        let port = if self.port == DEFAULT_PORT {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("postgres://postgres@{host}{port}/postgres?schema={schema}")
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

    fn supervise(&self) -> Result<(), String> {
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
        // It ignores the signals a terminal or `timeout` sends to a whole process group,
        // and has a group of its own, so that it outlives whatever kills the process it
        // supervises.
        let script = format!(
            "trap '' INT TERM HUP QUIT; read _; {stop} >/dev/null 2>&1; rm -rf '{}'",
            self.dir.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the supervisor: {e}"))?;
        let stdin = child.stdin.take().ok_or("the supervisor has no stdin")?;
        *self.supervisor.lock().map_err(|_| "poisoned")? = Some((child, stdin));
        Ok(())
    }

    /// Starts the server (again, after [`Cluster::crash`]).
    pub fn start_server(&self) -> Result<(), String> {
        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={}",
            self.dir.display(),
            self.port
        );
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
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

/// A primary and its streaming standby, each a [`Cluster`] of its own (its own socket
/// directory and port), for failover tests: [`Pair::fail_over`] kills the primary and
/// promotes the standby, [`Pair::rebuild_standby`] makes the old primary the new
/// standby.
pub struct Pair {
    nodes: [Cluster; 2],
    primary: usize,
}

impl Pair {
    /// Starts a primary with `settings` and a standby of it with the same settings
    /// (ports 5433 and 5434, in directories of their own), and waits until the standby
    /// streams. With `synchronous_standby_names` in `settings`, commits that ask for
    /// it wait for the standby.
    pub fn start(bin: &Path, settings: &[&str]) -> Result<Self, String> {
        let primary = Cluster::start_on(bin, settings, 5433)?;
        let standby = Cluster::start_standby(bin, &primary, settings, 5434)?;
        let pair = Pair {
            nodes: [primary, standby],
            primary: 0,
        };
        pair.wait_streaming()?;
        Ok(pair)
    }

    /// A connection string naming both nodes, `target_session_attrs=read-write`: a
    /// client connects to whichever is the primary.
    pub fn url(&self) -> String {
        let [a, b] = &self.nodes;
        format!(
            "host={},{} port={},{} user=postgres dbname=postgres target_session_attrs=read-write",
            a.dir.display(),
            b.dir.display(),
            a.port,
            b.port
        )
    }

    /// The node that is the primary now.
    pub fn primary(&self) -> &Cluster {
        &self.nodes[self.primary]
    }

    /// The other node: the standby, or the failed primary until it is rebuilt.
    pub fn standby(&self) -> &Cluster {
        &self.nodes[1 - self.primary]
    }

    /// Kills the primary (`pg_ctl stop -m immediate`), promotes the standby and waits
    /// until it accepts writes. The old primary stays down until
    /// [`Pair::rebuild_standby`].
    pub fn fail_over(&mut self) -> Result<(), String> {
        self.primary().crash()?;
        self.standby().promote()?;
        self.primary = 1 - self.primary;
        Ok(())
    }

    /// Rebuilds the stopped node as the primary's standby, and waits until it streams.
    pub fn rebuild_standby(&self) -> Result<(), String> {
        self.standby().rebuild_as_standby_of(self.primary())?;
        self.wait_streaming()
    }

    /// Waits until the primary sees its standby streaming.
    fn wait_streaming(&self) -> Result<(), String> {
        wait_until("the standby to stream from the primary", || {
            Ok(self
                .primary()
                .query("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")?
                != "0")
        })
    }
}

/// Waits until `condition` holds, checking it every few milliseconds, for at most two
/// minutes (then an error: the condition is expected within seconds).
pub fn wait_until(
    what: &str,
    mut condition: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition()? {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
