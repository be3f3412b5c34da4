//! Child processes: this test binary run again in a mode named by `PERSISTER_PG_CHILD`,
//! reporting to its parent through its standard output, one line per event.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use persister_core::{
    ActorId, Batch, BoxedStore, DocumentId, DynPersister, DynStore, Persister, Store,
};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_reliability::ops::{Op, document_id};
use persister_reliability::{apply_to_handle, workload_of};

/// A running child, its input and its lines.
pub struct Running {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    /// The next line the child reported (libtest's own lines skipped), or `None` at
    /// the end of its output.
    pub fn line(&mut self) -> Result<Option<String>, String> {
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the child: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
            // libtest may have begun the line with the test's name.
            if let Some(at) = line.find("@@ ") {
                return Ok(Some(line[at + 3..].trim_end().to_string()));
            }
        }
    }

    /// Every line until the end of its output.
    pub fn rest(&mut self) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        while let Some(line) = self.line()? {
            lines.push(line);
        }
        Ok(lines)
    }

    /// Sends one line to the child.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the child's stdin is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the child: {e}"))
    }

    /// Sends a signal (`STOP`, `CONT`) with `kill`.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .map_err(|e| format!("kill -{signal}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} failed"))
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary as a child in `mode`, with `vars` in its environment.
pub fn spawn(mode: &str, vars: &[(&str, String)]) -> Result<Running, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "child::child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PERSISTER_PG_CHILD", mode)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("starting a child: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    Ok(Running {
        child,
        stdin,
        stdout: BufReader::new(stdout),
    })
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn num(name: &str) -> Result<u64, String> {
    var(name)?.parse().map_err(|e| format!("{name}: {e}"))
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to stdout: {e}"))
}

fn open_store() -> Result<PostgresStore, String> {
    let options = PostgresOptions::default()
        .schema(var("PERSISTER_PG_SCHEMA")?)
        .lease_duration(Duration::from_millis(num("PERSISTER_PG_LEASE_MS")?));
    PostgresStore::open_with(&var("PERSISTER_PG_URL")?, options)
        .map_err(|e| format!("opening the store: {e}"))
}

/// The child's side; ignored in a normal run, run by [`spawn`] with `--ignored`.
#[test]
#[ignore = "run as a child process by the tests that need one"]
fn child_process() -> Result<(), String> {
    let result = match var("PERSISTER_PG_CHILD")?.as_str() {
        "workload" => workload(),
        "writer" => writer(),
        "holder" => holder(),
        other => Err(format!("unknown child mode {other}")),
    };
    if let Err(e) = &result {
        say(&format!("error {e}"))?;
    }
    result
}

/// Runs the reliability harness's workload of `PERSISTER_PG_SEED`: `ok I` after step
/// `I` was applied, `ack I` after its flush of every handle returned `Ok`, `removed I`
/// after its removal returned.
fn workload() -> Result<(), String> {
    let store: DynStore = Box::new(BoxedStore(open_store()?));
    let ops = workload_of(
        num("PERSISTER_PG_SEED")?,
        num("PERSISTER_PG_LEN")? as usize,
        num("PERSISTER_PG_DOCS")? as usize,
        false,
    );
    say("ready")?;
    let mut handles: BTreeMap<usize, DynPersister> = BTreeMap::new();
    let mut dirty = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::FlushAll => {
                for doc in std::mem::take(&mut dirty) {
                    if let Some(p) = handles.get_mut(&doc) {
                        p.flush().map_err(|e| format!("step {i}: flush: {e}"))?;
                    }
                }
                say(&format!("ack {i}"))?;
            }
            Op::RemoveDocument { doc } => {
                handles.remove(doc);
                dirty.remove(doc);
                store
                    .remove_document(&document_id(*doc))
                    .map_err(|e| format!("step {i}: remove: {e}"))?;
                say(&format!("removed {i}"))?;
            }
            Op::Reopen => return Err(format!("step {i}: a workload cannot reopen")),
            Op::Apply { doc, .. }
            | Op::Single { doc, .. }
            | Op::Compact { doc, .. }
            | Op::Refused { doc, .. }
            | Op::Flush { doc } => {
                if !handles.contains_key(doc) {
                    let p = store
                        .open_document(&document_id(*doc))
                        .map_err(|e| format!("step {i}: open: {e}"))?;
                    handles.insert(*doc, p);
                }
                if let Some(p) = handles.get_mut(doc) {
                    apply_to_handle(p, op).map_err(|e| format!("step {i}: {op:?}: {e}"))?;
                }
                dirty.insert(*doc);
                say(&format!("ok {i}"))?;
            }
        }
    }
    say("done 0")
}

/// The batch `k` (from 1) of a writer's document: a change, its sync state.
pub fn writer_batch(k: u64) -> Batch {
    Batch::new()
        .insert_change(ActorId::new([7; 16]), k, format!("change {k}").into_bytes())
        .set_sync_state(b"last".to_vec(), k.to_string().into_bytes())
}

/// Writes `PERSISTER_PG_BATCHES` batches to each of the documents
/// `PERSISTER_PG_PREFIX` 0 to `PERSISTER_PG_DOCS`, flushing each: `ack DOC K`.
fn writer() -> Result<(), String> {
    let store = open_store()?;
    let prefix = var("PERSISTER_PG_PREFIX")?;
    let docs = num("PERSISTER_PG_DOCS")?;
    let mut handles = Vec::new();
    for d in 0..docs {
        let id = DocumentId::from(format!("{prefix}{d}"));
        handles.push(
            store
                .open_document(&id)
                .map_err(|e| format!("open {id}: {e}"))?,
        );
    }
    for k in 1..=num("PERSISTER_PG_BATCHES")? {
        for (d, p) in handles.iter_mut().enumerate() {
            p.apply(writer_batch(k))
                .map_err(|e| format!("apply: {e}"))?;
            p.flush().map_err(|e| format!("flush: {e}"))?;
            say(&format!("ack {d} {k}"))?;
        }
    }
    for p in handles {
        p.close().map_err(|e| format!("close: {e}"))?;
    }
    say("done")
}

/// Opens `PERSISTER_PG_DOC`, writes and flushes batch 1, says `ready`, and waits for a
/// line: then writes batch 2 and says `result ok` or `result err MESSAGE`. At the end
/// of its input it exits, releasing the document.
fn holder() -> Result<(), String> {
    let store = open_store()?;
    let id = DocumentId::from(var("PERSISTER_PG_DOC")?);
    let mut p = match store.open_document(&id) {
        Ok(p) => p,
        Err(e) => return say(&format!("locked {e}")),
    };
    p.apply(writer_batch(1))
        .map_err(|e| format!("apply: {e}"))?;
    p.flush().map_err(|e| format!("flush: {e}"))?;
    say("ready")?;
    let mut line = String::new();
    if std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?
        == 0
    {
        return Ok(());
    }
    let result = p.apply(writer_batch(2)).and_then(|()| p.flush().map(drop));
    match result {
        Ok(()) => say("result ok"),
        Err(e) => say(&format!("result err {e}")),
    }
}
