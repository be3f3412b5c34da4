//! Running the built binary, and making stores to run it on.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use persister_automerge::{FlushPolicy, Options, PersistentDoc};
use persister_cli::{Backend, DocumentDump};
use persister_core::{DocumentId, DynStore, Store};
use persister_fs::FsStore;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The backend called `name`.
#[track_caller]
pub fn named(name: &str) -> Backend {
    Backend::named(name).unwrap_or_else(|| panic!("no backend called {name}"))
}

/// The backends whose stores are on disk: redb, sled, fs.
pub fn backends() -> [Backend; 3] {
    ["redb", "sled", "fs"].map(named)
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test, showing the output, unless the exit code is `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code {}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked:\n{}",
            self.stderr
        );
        self
    }

    /// The stdout as JSON.
    pub fn json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_str(&self.stdout)?)
    }

    /// Checks the two-line error: a cause and advice.
    #[track_caller]
    pub fn expect_error_lines(&self) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "stderr: {}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        assert!(lines[1].starts_with("hint: "), "{}", self.stderr);
    }
}

/// Runs `persister` with `args`.
pub fn persister<I, S>(args: I) -> TestResult<Run>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(None, args)
}

/// Runs `persister` with `args` in the directory `dir`.
pub fn run_in<I, S>(dir: Option<&Path>, args: I) -> TestResult<Run>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with(dir, &[], args)
}

/// Runs `persister` with `args` in the directory `dir`, with the environment variables
/// `env` set. Its stdin is empty and its stdout and stderr are pipes, so no terminal
/// is in sight: widths come from `COLUMNS`, progress bars are hidden.
pub fn run_with<I, S>(dir: Option<&Path>, env: &[(&str, &str)], args: I) -> TestResult<Run>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_persister"));
    command
        .args(args)
        .env_remove("PERSISTER_PROGRESS")
        .env_remove("COLUMNS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let child = command.spawn()?;
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output()?;
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout)?,
        stderr: String::from_utf8(stderr)?,
    })
}

/// Opens (or creates) a store of `backend` at `path` in this process.
pub fn open_store(backend: Backend, path: &Path) -> TestResult<DynStore> {
    let registry = persister_backends::Registry::standard();
    let store = registry
        .backend(backend.name())?
        .open(path, persister_backends::Access::ReadWrite)?;
    Ok(store)
}

/// The path of a test store of `backend` in `dir`.
pub fn store_path(dir: &Path, backend: Backend) -> std::path::PathBuf {
    dir.join(format!("store-{}", backend.name()))
}

/// The ids of the documents [`make_store`] writes.
pub fn notes() -> DocumentId {
    "notes".into()
}
pub fn binary() -> DocumentId {
    vec![0xff, 0x00, 0x01].into()
}
pub fn odd() -> DocumentId {
    "a/../b".into()
}

/// Writes three Automerge documents: "notes" (typed, compacted half way, more typing,
/// a sync state), a binary id, and an id with `/` and `..`. Returns their full content.
pub fn make_store(backend: Backend, path: &Path) -> TestResult<Vec<DocumentDump>> {
    let store = open_store(backend, path)?;
    let options = || Options::default().with_flush(FlushPolicy::EveryBatch);
    let mut doc = PersistentDoc::load_with(store.open_document(&notes())?, options())?;
    let text = doc.edit(|d| d.put_object(ROOT, "text", ObjType::Text))?;
    for (i, word) in "the quick brown fox jumps over the lazy dog"
        .split(' ')
        .enumerate()
    {
        doc.edit(|d| {
            let len = d.length(&text);
            d.splice_text(&text, len, 0, &format!("{word} "))
        })?;
        if i == 4 {
            doc.compact()?;
        }
    }
    // A real sync with a peer, so a sync state worth keeping is stored.
    let mut peer = automerge::AutoCommit::new();
    let mut peer_state = automerge::sync::State::new();
    for _ in 0..10 {
        let to_peer = doc.generate_sync_message(b"laptop")?;
        let sent = to_peer.is_some();
        if let Some(message) = to_peer {
            peer.sync().receive_sync_message(&mut peer_state, message)?;
        }
        let to_doc = peer.sync().generate_sync_message(&mut peer_state);
        let answered = to_doc.is_some();
        if let Some(message) = to_doc {
            doc.receive_sync_message(b"laptop", message)?;
        }
        if !sent && !answered {
            break;
        }
    }
    doc.close()?;
    for (id, edits) in [(binary(), 5), (odd(), 2)] {
        let mut doc = PersistentDoc::load_with(store.open_document(&id)?, options())?;
        let list = doc.edit(|d| d.put_object(ROOT, "items", ObjType::List))?;
        for i in 0..edits {
            doc.edit(|d| d.insert(&list, i, i as i64))?;
        }
        doc.close()?;
    }
    drop(store);
    read_store(backend, path)
}

/// Every document of the store at `path`, read in full in this process.
pub fn read_store(backend: Backend, path: &Path) -> TestResult<Vec<DocumentDump>> {
    let store = open_store(backend, path)?;
    let mut dumps = Vec::new();
    for id in store.list_documents()? {
        let persister = store.open_document(&id)?;
        dumps.push(DocumentDump::read(&id, &persister, path)?);
    }
    Ok(dumps)
}

/// The text of "notes" as automerge loads it from the store.
pub fn notes_text(backend: Backend, path: &Path) -> TestResult<String> {
    let store = open_store(backend, path)?;
    let doc = PersistentDoc::load(store.open_document(&notes())?)?;
    let (_, text) = doc.doc().get(ROOT, "text")?.ok_or("no text")?;
    Ok(doc.doc().text(&text)?)
}

/// Every file under `dir` with its bytes, to show a command changed nothing.
pub fn snapshot_files(dir: &Path) -> TestResult<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push((dir.to_path_buf(), std::fs::read(dir)?));
        return Ok(files);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(snapshot_files(&path)?);
        } else {
            files.push((path.clone(), std::fs::read(&path)?));
        }
    }
    files.sort();
    Ok(files)
}

/// The names in `dir`, to show a failed command left nothing behind.
pub fn names_in(dir: &Path) -> TestResult<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

/// Flips one byte in the middle of every occurrence of `needle` in `file`; returns how
/// many it found.
pub fn flip_every(file: &Path, needle: &[u8]) -> TestResult<usize> {
    let mut bytes = std::fs::read(file)?;
    let starts: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for start in &starts {
        bytes[start + needle.len() / 2] ^= 0x40;
    }
    std::fs::write(file, bytes)?;
    Ok(starts.len())
}

/// The path of document `id`'s log in the fs store at `path`.
pub fn fs_log_path(path: &Path, id: &DocumentId) -> TestResult<std::path::PathBuf> {
    Ok(FsStore::open(path)?.log_path(id).ok_or("no log")?)
}

/// Flips a byte in the middle of document `id`'s log in the fs store at `path`.
pub fn damage_log(path: &std::path::Path, id: &persister_core::DocumentId) -> TestResult {
    let log = fs_log_path(path, id)?;
    let mut bytes = std::fs::read(&log)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&log, bytes)?;
    Ok(())
}

/// Writes a Yjs document `id` to the store at `path` with `persister-yrs`, as an
/// application would: one transaction per piece of `text`, appended to the text
/// "text", then closed. Its client id is 7.
pub fn write_yjs(backend: Backend, path: &Path, id: &str, text: &[&str]) -> TestResult {
    use yrs::{GetString, Text, Transact};
    let store = open_store(backend, path)?;
    let options = persister_yrs::Options::default().with_client_id(yrs::ClientID::new(7));
    let mut doc =
        persister_yrs::PersistentYDoc::load_with(store.open_document(&id.into())?, options)?;
    let ytext = doc.doc().get_or_insert_text("text");
    for piece in text {
        doc.edit(|txn| {
            let end = ytext.len(txn);
            ytext.insert(txn, end, piece)
        })?;
    }
    assert_eq!(ytext.get_string(&doc.doc().transact()), text.concat());
    doc.close()?;
    store.close()?;
    Ok(())
}

/// Runs `command` (output discarded) until something appears in the directory `watch`,
/// then sends it SIGINT, as Ctrl-C does. Returns how it ended, and whether `watch`
/// held something before it did (`false`: it ended first, and got no signal).
pub fn interrupt_when_made(
    command: &mut Command,
    watch: &Path,
) -> TestResult<(std::process::ExitStatus, bool)> {
    interrupt_when(command, || Ok(std::fs::read_dir(watch)?.next().is_some()))
}

/// Runs `command` (output discarded) until `ready` says so, then sends it SIGINT, as
/// Ctrl-C does. Returns how it ended, and whether `ready` said so before it did
/// (`false`: it ended first, and got no signal).
pub fn interrupt_when(
    command: &mut Command,
    mut ready: impl FnMut() -> TestResult<bool>,
) -> TestResult<(std::process::ExitStatus, bool)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut seen = false;
    while child.try_wait()?.is_none() {
        if ready()? {
            seen = true;
            break;
        }
        std::thread::yield_now();
    }
    if seen {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()?;
    }
    Ok((child.wait()?, seen))
}

/// Makes an fs store of store format version 2 at `path` holding what [`make_store`]
/// writes, as earlier builds left one: its marker, its clean-close record and its logs
/// are all of version 2 (written by this build, which writes a store of version 2 as
/// it is). Returns the documents' content.
pub fn make_fs_store_version_2(path: &Path) -> TestResult<Vec<DocumentDump>> {
    let fs = named("fs");
    // An empty store, whose marker then says version 2.
    open_store(fs, path)?.close()?;
    let marker = path.join("STORE");
    let mut bytes = std::fs::read(&marker)?;
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = persister_fs::format::mask_crc(crc32c::crc32c(&bytes[..12]));
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&marker, &bytes)?;
    let dumps = make_store(fs, path)?;
    let version =
        |file: &Path| -> TestResult<[u8; 4]> { Ok(std::fs::read(file)?[8..12].try_into()?) };
    for file in [marker, path.join("CLOSED"), fs_log_path(path, &notes())?] {
        assert_eq!(version(&file)?, 2u32.to_le_bytes(), "{}", file.display());
    }
    Ok(dumps)
}

/// Makes the redb store at `path`, closed cleanly, one of table layout 2, as earlier
/// builds wrote it: the version, and the log entry without the log's key (its first
/// 17 bytes).
pub fn as_redb_layout_2(path: &Path) -> TestResult {
    use redb::ReadableTable;
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("persister_meta");
    let db = redb::Database::open(path)?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let entry = meta
            .get("log")?
            .map(|v| v.value().to_vec())
            .ok_or("no log entry")?;
        assert_eq!(entry.len(), 33, "layout 3's log entry");
        meta.insert("format_version", 2u32.to_be_bytes().as_slice())?;
        meta.insert("log", &entry[..17])?;
    }
    txn.commit()?;
    Ok(())
}

/// The test's own connection to the server of `schema_server`, for looking at schemas.
pub struct PgServer(pub postgres::Client);

impl PgServer {
    pub fn connect(cluster: &Option<persister_testkit::postgres::Cluster>) -> TestResult<PgServer> {
        let url = match cluster {
            Some(cluster) => cluster.url(),
            None => std::env::var("PERSISTER_POSTGRES_URL")?,
        };
        Ok(PgServer(
            url.parse::<postgres::Config>()?.connect(postgres::NoTls)?,
        ))
    }

    /// The schemas a new store for `schema` was built in and not moved from.
    pub fn partial_schemas(&mut self, schema: &str) -> TestResult<Vec<String>> {
        let rows = self.0.query(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1",
            &[&format!("{schema}_partial_")],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// How many documents the store in `schema` holds; 0 while it has no tables.
    pub fn documents_in(&mut self, schema: &str) -> TestResult<i64> {
        let query = format!("SELECT count(*) FROM \"{schema}\".documents");
        Ok(match self.0.query_one(&query, &[]) {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(e.into()),
        })
    }

    /// Turns the store in `schema` into one of format version 1, as its builds left
    /// it: the documents' sizes in their rows of `documents` rather than in their
    /// leases' rows.
    pub fn as_version_1(&mut self, schema: &str) -> TestResult {
        let sizes = [
            "changes_bytes",
            "document_bytes",
            "sync_state_bytes",
            "change_count",
            "sync_state_count",
        ];
        let s = format!("\"{schema}\"");
        let added: Vec<String> = sizes
            .iter()
            .map(|c| format!("ADD COLUMN {c} int8 NOT NULL DEFAULT 0"))
            .collect();
        let copied: Vec<String> = sizes.iter().map(|c| format!("{c} = l.{c}")).collect();
        let dropped: Vec<String> = sizes.iter().map(|c| format!("DROP COLUMN {c}")).collect();
        self.0.batch_execute(&format!(
            "BEGIN;
            ALTER TABLE {s}.documents {};
            UPDATE {s}.documents d SET {} FROM {s}.leases l WHERE l.document = d.document;
            ALTER TABLE {s}.leases {};
            UPDATE {s}.meta SET value = '1' WHERE key = 'format_version';
            COMMIT;",
            added.join(", "),
            copied.join(", "),
            dropped.join(", "),
        ))?;
        Ok(())
    }
}
