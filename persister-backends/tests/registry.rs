//! The registry finds, opens and refuses stores the same way for every backend, and a
//! new backend is one entry: an engine under core's `EngineStore` passes the
//! conformance suite opened through the registry alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use persister_backends::{Access, Backend, Location, Registry, StoreKind};
use persister_core::{
    BoxedStore, DocumentId, DynStore, EnginePersister, EngineStore, Error, MemoryEngine, Persister,
    Result, Store,
};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const DISK: [&str; 3] = ["redb", "sled", "fs"];

#[test]
fn the_standard_registry_knows_the_workspace_backends() -> TestResult {
    let registry = Registry::standard();
    assert_eq!(registry.names(), ["redb", "sled", "fs", "postgres"]);
    let versions: Vec<u32> = registry.iter().map(Backend::format_version).collect();
    assert_eq!(
        versions,
        [
            persister_redb::FORMAT_VERSION,
            persister_sled::FORMAT_VERSION,
            persister_fs::FORMAT_VERSION,
            persister_postgres::FORMAT_VERSION
        ]
    );
    let kinds: Vec<StoreKind> = registry.iter().map(Backend::kind).collect();
    assert_eq!(
        kinds,
        [
            StoreKind::File,
            StoreKind::Directory,
            StoreKind::Directory,
            StoreKind::Url
        ]
    );
    let unknown = registry
        .backend("lmdb")
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        unknown,
        Err("invalid backend: there is no backend called \"lmdb\"; the known backends are redb, sled, fs, postgres".into())
    );
    Ok(())
}

#[test]
fn a_store_of_every_disk_backend_is_recognised_and_reopened() -> TestResult {
    let registry = Registry::standard();
    for name in DISK {
        let dir = tempfile::tempdir()?;
        let backend = registry.backend(name)?;
        let location = Location::in_dir(backend.clone(), dir.path());
        assert!(registry.recognise(location.path()).is_none(), "{name}");
        assert!(
            matches!(
                registry.detect(location.path()),
                Err(Error::NotFound { .. })
            ),
            "{name}"
        );
        let store = backend.open(location.path(), Access::Create)?;
        let mut doc = store.open_document(&"notes".into())?;
        doc.set_document(b"kept".to_vec())?;
        doc.close()?;
        drop(store);
        assert_eq!(registry.detect(location.path())?.name(), name);
        let read_only = registry.open(location.path(), Access::ReadOnly)?;
        let doc = read_only.open_document(&"notes".into())?;
        assert_eq!(doc.get_document()?, Some(b"kept".to_vec()), "{name}");
        drop((doc, read_only));
        assert_eq!(
            location.open()?.list_documents()?,
            vec!["notes".into()],
            "{name}"
        );
        // A new store is never made over an existing one.
        let again = backend.open(location.path(), Access::Create).map(|_| ());
        assert!(
            matches!(
                &again,
                Err(Error::InvalidInput {
                    what: "new store",
                    ..
                })
            ),
            "{name}: {again:?}"
        );
    }
    Ok(())
}

#[test]
fn what_is_no_store_is_refused_by_detection() -> TestResult {
    let registry = Registry::standard();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"not a store")?;
    for path in [file.as_path(), dir.path()] {
        let found = registry.detect(path).map(Backend::name);
        assert!(matches!(found, Err(Error::NotAStore { .. })), "{found:?}");
    }
    // An empty directory is a fine place for a new directory store, not for a file.
    assert!(
        registry
            .backend("fs")?
            .open(dir.path().join("empty"), Access::Create)
            .is_ok()
    );
    // A migration needs a store to migrate, and makes none: not where nothing is, nor
    // in an empty directory or file.
    for name in ["fs", "redb", "sled"] {
        let missing = dir.path().join(format!("missing-{name}"));
        let empty = dir.path().join(format!("empty-{name}"));
        match name {
            "redb" => std::fs::write(&empty, b"")?,
            _ => std::fs::create_dir(&empty)?,
        }
        for path in [&missing, &empty] {
            let migrated = registry
                .backend(name)?
                .open(path, Access::Migrate)
                .map(|_| ());
            assert!(
                matches!(&migrated, Err(Error::InvalidInput { reason, .. }) if reason.contains("no store")),
                "{migrated:?}"
            );
        }
        assert!(!missing.exists(), "{name}");
        let untouched = match name {
            "redb" => std::fs::metadata(&empty)?.len() == 0,
            _ => std::fs::read_dir(&empty)?.next().is_none(),
        };
        assert!(untouched, "{name}: something was made in the empty place");
    }
    std::fs::create_dir(dir.path().join("empty-dir"))?;
    let redb = registry
        .backend("redb")?
        .open(dir.path().join("empty-dir"), Access::Create)
        .map(|_| ());
    assert!(matches!(redb, Err(Error::InvalidInput { .. })), "{redb:?}");
    Ok(())
}

#[test]
fn a_postgres_url_names_its_backend_before_the_store_exists() {
    let registry = Registry::standard();
    for url in [
        "postgres://u@host/db",
        "postgresql://u:secret@host:5433/db?schema=notes",
    ] {
        assert_eq!(
            registry.url_backend(url).map(Backend::name),
            Some("postgres")
        );
        assert_eq!(registry.recognise(url).map(Backend::name), Some("postgres"));
    }
    assert!(registry.url_backend("/tmp/postgres").is_none());
}

#[test]
fn memory_stores_are_reopened_by_path() -> TestResult {
    let memory = Backend::memory();
    let store = memory.open("a", Access::ReadWrite)?;
    let mut doc = store.open_document(&"doc".into())?;
    doc.set_document(vec![1])?;
    doc.close()?;
    drop(store);
    let reopened = memory.clone().open("a", Access::ReadWrite)?;
    assert_eq!(reopened.list_documents()?, vec!["doc".into()]);
    assert!(
        memory
            .open("b", Access::ReadWrite)?
            .list_documents()?
            .is_empty()
    );
    assert!(memory.open("a", Access::Create).is_err());
    assert!(memory.open("a", Access::ReadOnly).is_err());
    assert!(memory.open("a", Access::Migrate).is_ok());
    assert!(memory.open("never made", Access::Migrate).is_err());
    Ok(())
}

/// A PostgreSQL store through the registry, on a throwaway cluster (or
/// `PERSISTER_POSTGRES_URL`): recognised by its URL, created, refused as a new store
/// once it holds documents, and read read-only.
#[test]
fn a_postgres_store_opens_through_the_registry() -> TestResult {
    use persister_testkit::postgres::schema_server;
    let schema = format!("registry_{}", std::process::id());
    let Some((url, _cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    let registry = Registry::standard();
    // Looking creates nothing, nor does a migration.
    assert!(registry.open(&url, Access::ReadOnly).is_err());
    assert!(registry.open(&url, Access::Migrate).is_err());
    let store = registry.open(&url, Access::Create)?;
    let mut doc = store.open_document(&"notes".into())?;
    doc.set_document(b"on the server".to_vec())?;
    doc.close()?;
    drop(store);
    let again = registry.open(&url, Access::Create).map(|_| ());
    match again {
        Err(Error::InvalidInput {
            what: "new store",
            reason,
        }) => {
            assert!(reason.contains("already holds documents"), "{reason}");
            assert!(reason.contains(&schema), "the schema is named: {reason}");
        }
        other => panic!("a schema holding documents was taken as a new store: {other:?}"),
    }
    let read_only = registry.open(&url, Access::ReadOnly)?;
    let doc = read_only.open_document(&"notes".into())?;
    assert_eq!(doc.get_document()?, Some(b"on the server".to_vec()));
    drop((doc, read_only));
    // A store of the current version opens for a migration as it is.
    let migrated = registry.open(&url, Access::Migrate)?;
    let current = registry.backend("postgres")?.format_version();
    assert_eq!(migrated.format_version(), Some(current));
    let doc = migrated.open_document(&"notes".into())?;
    assert_eq!(doc.get_document()?, Some(b"on the server".to_vec()));
    Ok(())
}

/// A read-only open writes nothing, so a URL that asks for a migration is refused
/// before the server is asked anything (this host has no server at all).
#[test]
fn a_read_only_open_refuses_a_url_that_asks_for_a_migration() {
    let registry = Registry::standard();
    for url in [
        "postgres://u@nowhere.invalid/db?migrate_format=true",
        "postgres://u@nowhere.invalid/db?schema=s&migrate_format=true",
    ] {
        match registry.open(url, Access::ReadOnly).map(|_| ()) {
            Err(Error::InvalidInput { what, reason }) => {
                assert_eq!(what, "read-only open");
                assert!(reason.contains("migrate_format=true"), "{reason}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let postgres = registry.backend("postgres").expect("the postgres entry");
    let string = postgres.open("host=/nonexistent migrate_format=true", Access::ReadOnly);
    assert!(
        matches!(
            string,
            Err(Error::InvalidInput {
                what: "read-only open",
                ..
            })
        ),
        "{:?}",
        string.map(|_| ())
    );
    // Without the option, the open goes to the server (and fails: there is none).
    let plain = registry.open(
        "postgres://u@nowhere.invalid/db?migrate_format=false",
        Access::ReadOnly,
    );
    assert!(
        !matches!(
            plain,
            Err(Error::InvalidInput {
                what: "read-only open",
                ..
            })
        ),
        "{:?}",
        plain.map(|_| ())
    );
}

/// The temporary store of a URL that names no schema is beside the entry's schema,
/// which is where the store goes.
#[test]
fn a_postgres_entry_stages_beside_its_own_schema() -> TestResult {
    let app = Backend::postgres_with(persister_postgres::PostgresOptions::default().schema("app"));
    for (url, expected) in [
        ("postgres://u@h/db", "app_partial_1_2"),
        ("postgres://u@h/db?schema=notes", "notes_partial_1_2"),
    ] {
        let temporary = app
            .temporary_location(Path::new(url), "1_2")?
            .ok_or("no temporary location")?;
        let schema = persister_postgres::schema_in(&temporary.to_string_lossy())?;
        assert_eq!(schema.as_deref(), Some(expected), "{url}");
    }
    Ok(())
}

/// A new PostgreSQL store built out of sight: in a temporary schema named after the
/// destination's, then renamed into place whole; a temporary store that is not used
/// is removed. Only the PostgreSQL entry stages.
#[test]
fn a_new_postgres_store_is_built_out_of_sight_and_renamed_into_place() -> TestResult {
    use persister_testkit::postgres::schema_server;
    let schema = format!("registry_staged_{}", std::process::id());
    let Some((url, _cluster)) = schema_server(&schema)? else {
        return Ok(());
    };
    let registry = Registry::standard();
    for name in ["redb", "sled", "fs"] {
        let backend = registry.backend(name)?;
        assert!(!backend.stages(), "{name}");
        assert!(
            backend
                .temporary_location(Path::new("x"), "t")
                .unwrap()
                .is_none()
        );
        assert!(backend.remove_store(Path::new("x")).is_err());
    }
    let postgres = registry.backend("postgres")?;
    assert!(postgres.stages());
    let destination = Path::new(&url);
    let temporary = postgres
        .temporary_location(destination, "7_42")?
        .ok_or("no temporary location")?;
    let temporary_schema = persister_postgres::schema_in(&temporary.to_string_lossy())?;
    assert_eq!(temporary_schema, Some(format!("{schema}_partial_7_42")));
    // A long destination schema is cut so that the temporary one fits in 63 bytes.
    let long = persister_postgres::url_with_schema(&url, &"s".repeat(63))?;
    let cut = postgres
        .temporary_location(Path::new(&long), "123456_999999999")?
        .ok_or("no temporary location")?;
    let cut = persister_postgres::schema_in(&cut.to_string_lossy())?.ok_or("no schema")?;
    assert_eq!(cut.len(), 63, "{cut}");
    assert!(cut.ends_with("_partial_123456_999999999"), "{cut}");

    let second = postgres
        .temporary_location(destination, "8_1")?
        .ok_or("no temporary location")?;
    let store = postgres.open(&temporary, Access::Create)?;
    let mut doc = store.open_document(&"notes".into())?;
    doc.set_document(b"built out of sight".to_vec())?;
    doc.close()?;
    drop(store);
    // Nothing is at the destination until the rename.
    assert!(postgres.open(destination, Access::ReadOnly).is_err());
    postgres.rename_store(&temporary, destination)?;
    assert!(postgres.open(&temporary, Access::ReadOnly).is_err());
    let store = postgres.open(destination, Access::ReadOnly)?;
    let doc = store.open_document(&"notes".into())?;
    assert_eq!(doc.get_document()?, Some(b"built out of sight".to_vec()));
    drop((doc, store));

    // A second store (its place taken while the destination was empty) may not
    // replace the first, and is removed unused.
    let store = postgres.open(&second, Access::Create)?;
    let mut doc = store.open_document(&"other".into())?;
    doc.set_document(b"not kept".to_vec())?;
    doc.close()?;
    drop(store);
    assert!(postgres.rename_store(&second, destination).is_err());
    // Once the destination holds documents, no place is given to build another.
    assert!(matches!(
        postgres.temporary_location(destination, "9_1"),
        Err(Error::InvalidInput {
            what: "new store",
            ..
        })
    ));
    postgres.remove_store(&second)?;
    assert!(postgres.open(&second, Access::ReadOnly).is_err());
    // Removing what is gone already is done.
    postgres.remove_store(&second)?;
    let store = postgres.open(destination, Access::ReadOnly)?;
    assert_eq!(store.list_documents()?, vec!["notes".into()]);
    Ok(())
}

/// The stores of the memory-engine entry, by path: each path's engine, and the store
/// open on it, which the conformance fixture reaches to arm its fault.
type Engines = Arc<Mutex<HashMap<PathBuf, (MemoryEngine, Weak<EngineStore<MemoryEngine>>)>>>;

/// The whole of adding a backend: an engine (core's `MemoryEngine` here) under core's
/// `EngineStore`, and this one entry.
fn memory_engine_entry(engines: Engines) -> Backend {
    Backend::new(
        "memory-engine",
        StoreKind::Memory,
        1,
        move |path, _access| {
            let mut engines = engines.lock().unwrap_or_else(|e| e.into_inner());
            let (engine, open) = engines.entry(path.to_path_buf()).or_default();
            let store = Arc::new(EngineStore::new(engine.clone()));
            *open = Arc::downgrade(&store);
            Ok(Box::new(BoxedStore(Shared(store))) as DynStore)
        },
    )
    .with_description("Core's memory engine under its generic store")
}

/// An engine store that the fixture can reach too; closing it closes the store.
struct Shared(Arc<EngineStore<MemoryEngine>>);

impl Store for Shared {
    type Persister = EnginePersister<MemoryEngine>;

    fn open_document(&self, id: &DocumentId) -> Result<Self::Persister> {
        self.0.open_document(id)
    }

    fn list_documents(&self) -> Result<Vec<DocumentId>> {
        self.0.list_documents()
    }

    fn remove_document(&self, id: &DocumentId) -> Result<()> {
        self.0.remove_document(id)
    }

    fn flush_documents(&self, handles: &mut [&mut Self::Persister]) -> Result<usize> {
        self.0.flush_documents(handles)
    }

    fn close(self) -> Result<()> {
        // The fixture holds only a weak reference, so this is the only store.
        Arc::try_unwrap(self.0)
            .map_err(|_| Error::InvalidInput {
                what: "store",
                reason: "the store is still held elsewhere".into(),
            })?
            .close()
    }
}

/// One store of the memory-engine entry, opened only through the registry.
struct RegistryFixture {
    registry: Registry,
    engines: Engines,
    path: PathBuf,
}

fn fixture() -> RegistryFixture {
    let engines = Engines::default();
    RegistryFixture {
        registry: Registry::standard().with(memory_engine_entry(Arc::clone(&engines))),
        engines,
        path: Path::new("conformance").to_path_buf(),
    }
}

impl persister_core::conformance::Fixture for RegistryFixture {
    type Store = DynStore;

    fn open(&self) -> Result<DynStore> {
        self.registry
            .backend("memory-engine")?
            .open(&self.path, Access::ReadWrite)
    }

    fn fail_next_flush(&self, _store: &DynStore) {
        let engines = self.engines.lock().unwrap_or_else(|e| e.into_inner());
        let open = engines.get(&self.path).and_then(|(_, open)| open.upgrade());
        if let Some(store) = open {
            store.fail_next_flush();
        }
    }
}

mod memory_engine_through_the_registry {
    use super::fixture;

    persister_core::conformance_tests!(fixture());
}

/// The password of a URL, wherever it is written, in every test below.
const SECRET: &str = "hunter2";

/// A location's `Debug` output shows a URL or connection string without its
/// password, however the password is written, and still names the user and host.
#[test]
fn a_location_shows_no_password_in_debug() -> TestResult {
    let postgres = Registry::standard().backend("postgres")?.clone();
    for url in [
        "postgres://u:hunter2@h/db?schema=s",
        "postgresql://u:hunter2@h:5433/db",
        "postgres://u@h/db?sslmode=disable&password=hunter2&schema=s",
        "postgres://u@h/db?PASSWORD=hunter2",
        // As the driver reads it, the user part ends at the first `@`; as a URL's
        // authority, at the last `@` before the path.
        "postgres://u:hun@ter2@h/db",
        "postgres://u:hunter2/x?y@h/db",
        "host=h user=u password=hunter2 dbname=db",
        "host=h user=u password = 'hun ter2\\' hunter2' dbname=db",
    ] {
        let shown = format!("{:?}", Location::new(postgres.clone(), url));
        assert!(!shown.contains(SECRET), "{url}: {shown}");
        assert!(!shown.contains("ter2"), "{url}: {shown}");
        assert!(shown.contains('u') && shown.contains('h'), "{shown}");
    }
    // A path is shown as it is.
    let redb = Registry::standard().backend("redb")?.clone();
    let shown = format!("{:?}", Location::new(redb, "./a:b@c.redb"));
    assert!(shown.contains("./a:b@c.redb"), "{shown}");
    Ok(())
}

/// What an error says, checked to hold no password.
fn refusal(outcome: Result<impl Sized>) -> std::result::Result<(&'static str, String), String> {
    match outcome {
        Err(Error::InvalidInput { what, reason }) if !reason.contains(SECRET) => Ok((what, reason)),
        Err(other) => Err(format!("not a clear refusal: {other:?}")),
        Ok(_) => Err("opened".into()),
    }
}

/// An empty location, a URL of a scheme no backend takes, and a URL given to a file or
/// directory backend are refused with an error that names the mistake, holds no
/// password, and makes nothing.
#[test]
fn hostile_locations_are_refused_with_clear_errors() -> TestResult {
    let registry = Registry::standard();
    // An empty path is no store, and no name for the current directory.
    let cwd = || -> std::io::Result<Vec<_>> {
        let mut names: Vec<_> = std::fs::read_dir(".")?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names)
    };
    let before = cwd()?;
    for access in [
        Access::ReadOnly,
        Access::ReadWrite,
        Access::Create,
        Access::Migrate,
    ] {
        let (_, reason) = refusal(registry.open("", access))?;
        assert!(reason.contains("empty"), "{reason}");
        for backend in &registry {
            let (_, reason) = refusal(backend.open("", access))?;
            assert!(reason.contains("empty"), "{}: {reason}", backend.name());
        }
    }
    for url in [
        "mysql://u:hunter2@h/db",
        "POSTGRES://u:hunter2@h/db",
        "postgres:/u:hunter2@h/db",
    ] {
        let (_, reason) = refusal(registry.detect(url))?;
        assert!(reason.contains("no backend takes"), "{reason}");
        assert!(
            reason.contains("postgres://"),
            "the URL backends are named: {reason}"
        );
        refusal(registry.open(url, Access::ReadWrite))?;
    }
    let url = "postgres://u:hunter2@h/db";
    for name in DISK {
        for access in [Access::ReadOnly, Access::ReadWrite, Access::Create] {
            let (_, reason) = refusal(registry.backend(name)?.open(url, access))?;
            assert!(reason.contains("is a URL"), "{name}: {reason}");
        }
    }
    assert!(
        !Path::new("postgres:").exists(),
        "a directory was made for a URL"
    );
    assert_eq!(
        cwd()?,
        before,
        "something was made in the current directory"
    );
    Ok(())
}

/// A PostgreSQL URL that is not UTF-8 is refused, not read with its bytes replaced
/// (which would name another database than the one asked for).
#[test]
fn a_postgres_url_that_is_not_utf8_is_refused() -> TestResult {
    use std::os::unix::ffi::OsStrExt;
    let postgres = Registry::standard().backend("postgres")?.clone();
    let url = std::ffi::OsStr::from_bytes(b"postgres://u:hunter2@nowhere.invalid/d\xffb");
    for access in [
        Access::ReadOnly,
        Access::ReadWrite,
        Access::Create,
        Access::Migrate,
    ] {
        let (what, reason) = refusal(postgres.open(url, access))?;
        assert_eq!(what, "PostgreSQL URL");
        assert!(reason.contains("UTF-8"), "{reason}");
    }
    let (_, reason) = refusal(postgres.temporary_location(Path::new(url), "1_2"))?;
    assert!(reason.contains("UTF-8"), "{reason}");
    refusal(postgres.remove_store(Path::new(url)))?;
    refusal(postgres.rename_store(Path::new(url), Path::new("postgres://u@h/db")))?;
    Ok(())
}

/// A store of one backend is never opened as a store of another: each refuses it
/// (the file backend naming a directory for what it is), and leaves it as it was.
#[test]
fn a_store_of_another_backend_is_refused_and_left_as_it_was() -> TestResult {
    fn contents(path: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
        if path.is_file() {
            return Ok(vec![(path.to_path_buf(), std::fs::read(path)?)]);
        }
        let mut all = Vec::new();
        for entry in std::fs::read_dir(path)? {
            all.extend(contents(&entry?.path())?);
        }
        all.sort();
        Ok(all)
    }
    let registry = Registry::standard();
    let dir = tempfile::tempdir()?;
    for made in DISK {
        let path = dir.path().join(made);
        let store = registry.backend(made)?.open(&path, Access::Create)?;
        let mut doc = store.open_document(&"notes".into())?;
        doc.set_document(b"kept".to_vec())?;
        doc.close()?;
        drop(store);
        let before = contents(&path)?;
        for other in DISK.into_iter().filter(|other| *other != made) {
            let backend = registry.backend(other)?;
            for access in [Access::ReadOnly, Access::ReadWrite, Access::Migrate] {
                let opened = backend.open(&path, access).map(|_| ());
                assert!(opened.is_err(), "a {made} store opened as {other}");
            }
            if backend.kind() != registry.backend(made)?.kind() {
                let (what, reason) = refusal(backend.open(&path, Access::ReadWrite))?;
                assert_eq!(what, "store location", "{made} as {other}");
                assert!(reason.contains("is a"), "{made} as {other}: {reason}");
            }
            assert_eq!(contents(&path)?, before, "{made} as {other}");
        }
        assert_eq!(registry.detect(&path)?.name(), made);
    }
    Ok(())
}
