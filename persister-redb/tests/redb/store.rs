//! Opening, creating, locking and format checks of a store file.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use persister_core::{DocumentId, Error, Persister, Result, Store};
use persister_redb::{FORMAT_VERSION, RedbOptions, RedbPersister, RedbStore, is_redb_file};
use redb::TableDefinition;
use tempfile::TempDir;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("persister_meta");

fn temp_dir() -> Result<TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("write", path, e)
}

fn redb_err(e: impl Into<redb::Error>) -> Error {
    Error::backend("redb", e.into().to_string())
}

#[test]
fn creating_leaves_exactly_one_store_file() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("new.redb");
    assert!(!is_redb_file(&path));
    let store = RedbStore::open(&path)?;
    assert_eq!(store.path(), path);
    assert!(store.list_documents()?.is_empty());
    let names: Vec<_> = fs::read_dir(dir.path())
        .map_err(io(dir.path()))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io(dir.path()))?;
    assert_eq!(names, vec![std::ffi::OsString::from("new.redb")]);
    assert!(is_redb_file(&path));
    Ok(())
}

/// A redb file of another program at `path`: one table of its own, closed cleanly.
fn another_programs_redb_file(path: &std::path::Path) -> Result<()> {
    let db = redb::Database::create(path).map_err(redb_err)?;
    let txn = db.begin_write().map_err(redb_err)?;
    let table: TableDefinition<u64, u64> = TableDefinition::new("someone_elses");
    txn.open_table(table)
        .map_err(redb_err)?
        .insert(1, 2)
        .map_err(redb_err)?;
    txn.commit().map_err(redb_err)?;
    Ok(())
}

#[test]
fn files_that_are_not_stores_are_refused() -> Result<()> {
    let dir = temp_dir()?;
    let text = dir.path().join("text");
    fs::write(&text, b"hello, this is not a database").map_err(io(&text))?;
    let empty = dir.path().join("empty");
    fs::write(&empty, b"").map_err(io(&empty))?;
    let other = dir.path().join("other.redb");
    another_programs_redb_file(&other)?;
    for path in [&text, &empty, &other] {
        let result = RedbStore::open(path);
        assert!(
            matches!(result, Err(Error::NotAStore { .. })),
            "{path:?}: {result:?}"
        );
        assert!(fs::metadata(path).map_err(io(path))?.len() > 0 || path == &empty);
    }
    // The refused files are left as they were.
    assert_eq!(
        fs::read(&text).map_err(io(&text))?,
        b"hello, this is not a database"
    );
    assert!(is_redb_file(&other) && !is_redb_file(&text) && !is_redb_file(&empty));

    let missing_dir = dir.path().join("no such dir").join("store.redb");
    assert!(matches!(
        RedbStore::open(&missing_dir),
        Err(Error::Io { .. })
    ));
    assert!(matches!(RedbStore::open(dir.path()), Err(Error::Io { .. })));
    Ok(())
}

#[test]
fn an_unknown_format_version_is_refused_naming_both() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open(&path)?;
        let mut p = store.open_document(&"doc".into())?;
        p.set_document(b"kept".to_vec())?;
        p.flush()?;
    }
    let set_version = |version: u32| -> Result<()> {
        let db = redb::Database::open(&path).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(META)
            .map_err(redb_err)?
            .insert("format_version", version.to_be_bytes().as_slice())
            .map_err(redb_err)?;
        txn.commit().map_err(redb_err)
    };
    set_version(FORMAT_VERSION + 1)?;
    match RedbStore::open(&path) {
        Err(
            err @ Error::UnsupportedFormat {
                found, supported, ..
            },
        ) => {
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
            let message = err.to_string();
            let (found, supported) = (
                format!("version {}", FORMAT_VERSION + 1),
                format!("version {FORMAT_VERSION}"),
            );
            assert!(
                message.contains(&found) && message.contains(&supported),
                "{message}"
            );
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    // Refusing wrote nothing: with the version put back, the data is there.
    set_version(FORMAT_VERSION)?;
    let store = RedbStore::open(&path)?;
    let p = store.open_document(&"doc".into())?;
    assert_eq!(p.get_document()?, Some(b"kept".to_vec()));
    Ok(())
}

#[test]
fn a_missing_format_version_is_corruption() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    drop(RedbStore::open(&path)?);
    {
        let db = redb::Database::open(&path).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(META)
            .map_err(redb_err)?
            .remove("format_version")
            .map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
    }
    assert!(matches!(RedbStore::open(&path), Err(Error::Corrupt { .. })));
    Ok(())
}

#[test]
fn a_second_open_in_this_process_is_locked_out() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path)?;
    assert!(matches!(RedbStore::open(&path), Err(Error::Locked { .. })));
    // A handle keeps the file open after its store is dropped.
    let handle = store.open_document(&"doc".into())?;
    drop(store);
    assert!(matches!(RedbStore::open(&path), Err(Error::Locked { .. })));
    drop(handle);
    RedbStore::open(&path)?;
    Ok(())
}

/// Set in a child process started by [`child`], to the path the child works on.
const CHILD_PATH: &str = "PERSISTER_REDB_TEST_CHILD_PATH";

/// Runs the test `name` again in a child process, in `dir`, with [`CHILD_PATH`] set to
/// `path`, and returns its exit code.
fn child(name: &str, dir: &std::path::Path, path: &std::path::Path) -> Option<i32> {
    let exe = std::env::current_exe().ok()?;
    let status = Command::new(exe)
        .args(["--exact", name, "--nocapture"])
        .current_dir(dir)
        .env(CHILD_PATH, path)
        .status()
        .ok()?;
    status.code()
}

#[test]
fn a_second_process_is_locked_out() -> Result<()> {
    if let Some(path) = std::env::var_os(CHILD_PATH) {
        let code = match RedbStore::open(PathBuf::from(path)) {
            Err(Error::Locked { .. }) => 10,
            Ok(_) => 11,
            Err(_) => 12,
        };
        std::process::exit(code);
    }
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path)?;
    let name = "store::a_second_process_is_locked_out";
    assert_eq!(
        child(name, dir.path(), &path),
        Some(10),
        "another process opened an open store"
    );
    drop(store);
    assert_eq!(
        child(name, dir.path(), &path),
        Some(11),
        "another process could not open a closed store"
    );
    Ok(())
}

#[test]
fn a_bare_file_name_is_created_in_the_current_directory() -> Result<()> {
    // Creating works in the parent directory of the path, which is "." here.
    if let Some(path) = std::env::var_os(CHILD_PATH) {
        let code = match RedbStore::open(&path) {
            Ok(_) if is_redb_file(&path) => 20,
            Ok(_) => 21,
            Err(_) => 22,
        };
        std::process::exit(code);
    }
    let dir = temp_dir()?;
    let name = "store::a_bare_file_name_is_created_in_the_current_directory";
    assert_eq!(
        child(name, dir.path(), std::path::Path::new("bare.redb")),
        Some(20)
    );
    assert!(is_redb_file(dir.path().join("bare.redb")));
    Ok(())
}

#[test]
fn verification_can_be_turned_off() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    let options = RedbOptions::default().verify_on_open(false);
    assert!(!options.verify_on_open);
    {
        let store = RedbStore::open_with(&path, options.clone())?;
        let mut p = store.open_document(&"doc".into())?;
        p.set_sync_state(b"p".to_vec(), b"s".to_vec())?;
        p.close()?;
    }
    let store = RedbStore::open_with(&path, options)?;
    let p = store.open_document(&"doc".into())?;
    assert_eq!(p.get_sync_state(b"p")?, Some(b"s".to_vec()));
    Ok(())
}

#[test]
fn stores_and_handles_cross_threads() -> Result<()> {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let dir = temp_dir()?;
    let store = RedbStore::open(dir.path().join("store.redb"))?;
    send_sync(&store);
    let mut handle: RedbPersister = store.open_document(&DocumentId::from("doc"))?;
    send(&handle);
    // A handle made on one thread works on another.
    std::thread::scope(|scope| scope.spawn(|| handle.set_document(b"x".to_vec())).join())
        .map_err(|_| Error::InvalidInput {
            what: "thread",
            reason: "panicked".into(),
        })??;
    assert_eq!(handle.get_document()?, Some(b"x".to_vec()));
    Ok(())
}

/// The names in `dir`.
fn names_in(dir: &std::path::Path) -> Result<Vec<std::ffi::OsString>> {
    fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|entry| entry.map(|e| e.file_name()).map_err(io(dir)))
        .collect()
}

/// A store's commit log is its file's name with `.log` appended. A name the file system
/// takes but whose log's name it refuses (252 to 255 bytes on most) is refused when the
/// store is opened, before anything is created or written, with an error that names the
/// log and what to do: such a store opened, and every flush then failed to create the
/// log and poisoned the store. A long name that leaves room for the log is created (its
/// temporary name made too long failed it, with an error naming that temporary file).
#[test]
fn a_name_too_long_for_the_commit_log_is_refused_at_open() -> Result<()> {
    use persister_core::ActorId;
    let dir = temp_dir()?;
    let too_long = dir.path().join("s".repeat(253));
    match RedbStore::open(&too_long) {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(
                reason.contains(".log") && reason.contains("shorter"),
                "{reason}"
            );
        }
        other => panic!("a new store named too long for its log: {other:?}"),
    }
    assert!(names_in(dir.path())?.is_empty(), "refusing created a file");

    // An existing store renamed so: refused too, and left as it was.
    let short = dir.path().join("short.redb");
    {
        let store = RedbStore::open(&short)?;
        let mut doc = store.open_document(&"doc".into())?;
        doc.insert_changes(vec![(ActorId::new([1]), 1, b"kept".to_vec())])?;
        doc.close()?;
        store.close()?;
    }
    fs::rename(&short, &too_long).map_err(io(&too_long))?;
    let before = fs::read(&too_long).map_err(io(&too_long))?;
    let result = RedbStore::open(&too_long);
    assert!(
        matches!(result, Err(Error::InvalidInput { .. })),
        "an existing store named too long for its log: {result:?}"
    );
    assert!(
        fs::read(&too_long).map_err(io(&too_long))? == before,
        "refusing a cleanly closed store named too long for its log changed it"
    );
    // A name the file system refuses itself: the advice is not about the log.
    match RedbStore::open(dir.path().join("n".repeat(300))) {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(!reason.contains(".log"), "{reason}");
        }
        other => panic!("a store name longer than the file system allows: {other:?}"),
    }
    fs::rename(&too_long, &short).map_err(io(&short))?;
    let store = RedbStore::open(&short)?;
    let doc = store.open_document(&"doc".into())?;
    assert_eq!(doc.get_changes()?, vec![b"kept".to_vec()]);
    drop((doc, store));
    fs::remove_file(&short).map_err(io(&short))?;

    // 250 bytes leave room for `.log`: created, written through the log, closed.
    let long = dir.path().join("l".repeat(250));
    let store = RedbStore::open(&long)?;
    let mut doc = store.open_document(&"doc".into())?;
    for seq in 1..=2 {
        doc.insert_changes(vec![(ActorId::new([1]), seq, b"x".to_vec())])?;
        doc.flush()?;
    }
    assert!(PathBuf::from(format!("{}.log", long.display())).exists());
    doc.close()?;
    store.close()?;
    assert_eq!(
        names_in(dir.path())?,
        vec![long.file_name().unwrap_or_default().to_owned()]
    );
    let store = RedbStore::open(&long)?;
    assert_eq!(store.open_document(&"doc".into())?.get_changes()?.len(), 2);
    Ok(())
}

/// A redb file of another program, and a store of a newer layout, both closed cleanly:
/// a writable open refuses them before it writes a byte. redb's open rewrote the
/// file's header and allocator state (some 4 KiB) before the store looked at its tables.
#[test]
fn refusing_a_file_that_is_not_a_store_leaves_every_byte() -> Result<()> {
    let dir = temp_dir()?;
    let other = dir.path().join("other.redb");
    another_programs_redb_file(&other)?;
    let newer = dir.path().join("newer.redb");
    RedbStore::open(&newer)?.close()?;
    {
        let db = redb::Database::open(&newer).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(META)
            .map_err(redb_err)?
            .insert(
                "format_version",
                (FORMAT_VERSION + 1).to_be_bytes().as_slice(),
            )
            .map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
    }
    for path in [&other, &newer] {
        let before = fs::read(path).map_err(io(path))?;
        let result = RedbStore::open(path);
        assert!(
            matches!(
                result,
                Err(Error::NotAStore { .. } | Error::UnsupportedFormat { .. })
            ),
            "{}: {result:?}",
            path.display()
        );
        assert!(
            fs::read(path).map_err(io(path))? == before,
            "refusing {} changed it",
            path.display()
        );
    }
    Ok(())
}
