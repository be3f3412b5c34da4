//! A throwaway PostgreSQL cluster for tests and benchmarks: made with `initdb` in a
//! temporary directory, listening only on a Unix socket there, run as the `postgres`
//! user when this process runs as root, and stopped when its [`Cluster`] is dropped or
//! this process exits, however it exits.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where `initdb` and `pg_ctl` are: on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
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

/// A cluster of its own.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
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
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("persister-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
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

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Its connection string: `host=DIR user=postgres dbname=postgres`.
    pub fn url(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    /// Its URL, `postgres://postgres@%2FDIR/postgres`, with `?schema=SCHEMA`.
    pub fn uri(&self, schema: &str) -> String {
        let host = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{host}/postgres?schema={schema}")
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
            "-c listen_addresses='' -c unix_socket_directories='{}'",
            self.dir.display()
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
