//! Which backend a path holds, and opening it.

use std::path::{Path, PathBuf};

use persister_core::{DocumentId, DynPersister, Store};
use persister_fs::FsStore;
use persister_postgres::PostgresStore;
use persister_redb::RedbStore;
use persister_sled::SledStore;
use serde::Serialize;
use tempfile::TempDir;

use crate::CliError;
use crate::snapshot::copy_sled_store;

/// A storage backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One redb file (the default for new stores).
    Redb,
    /// A sled directory.
    Sled,
    /// A persister-fs directory.
    Fs,
    /// A schema of a PostgreSQL database, given as a `postgres://` URL (`?schema=NAME`,
    /// default `persister`).
    Postgres,
}

impl Backend {
    /// Its name, as `--backend` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
            Backend::Fs => "fs",
            Backend::Postgres => "postgres",
        }
    }

    /// The store format version this build reads and writes: every store it opens is
    /// of this version, others are refused.
    pub fn format_version(self) -> u32 {
        match self {
            Backend::Redb => persister_redb::FORMAT_VERSION,
            Backend::Sled => persister_sled::FORMAT_VERSION,
            Backend::Fs => persister_fs::format::STORE_VERSION,
            Backend::Postgres => persister_postgres::FORMAT_VERSION,
        }
    }

    /// The backend of a new store at `destination`: a PostgreSQL URL is always a
    /// postgres store, whatever `--backend` says.
    pub fn for_destination(destination: &Path, backend: Backend) -> Backend {
        if is_url(destination) {
            Backend::Postgres
        } else {
            backend
        }
    }

    /// Whether its stores are directories (otherwise a file).
    pub fn is_directory(self) -> bool {
        !matches!(self, Backend::Redb | Backend::Postgres)
    }

    /// The backend of the store at `path`: a redb file, a sled directory or an fs
    /// directory.
    pub fn detect(path: &Path) -> Result<Backend, CliError> {
        if is_url(path) {
            return Ok(Backend::Postgres);
        }
        if !path.exists() {
            return Err(CliError::new(
                format!("there is no store at {}", path.display()),
                "check the path; `persister copy` and `persister import` create new stores",
            ));
        }
        if path.is_file() {
            if persister_redb::is_redb_file(path) {
                return Ok(Backend::Redb);
            }
            return Err(CliError::new(
                format!("{} is a file, but not a redb store", path.display()),
                "check the path (sled and fs stores are directories), or pass --backend to force a backend",
            ));
        }
        if persister_sled::is_sled_store(path) {
            return Ok(Backend::Sled);
        }
        if persister_fs::is_fs_store(path) {
            return Ok(Backend::Fs);
        }
        Err(CliError::new(
            format!(
                "{} is a directory, but neither a sled store nor an fs store",
                path.display()
            ),
            "check the path, or pass --backend to force a backend",
        ))
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a command uses an existing store.
///
/// Opening a damaged sled store lets sled's recovery overwrite the data after the
/// damage before `persister-sled` can refuse the store, so a sled store a command did
/// not just make is never opened in place before a copy of it has opened cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads: a sled store is read through a copy of its directory in a temporary
    /// directory.
    Read,
    /// Writes in place; a sled store is opened in place only after a copy of it opened
    /// without error.
    Write,
    /// Writes in place to a store this process has just made and closed.
    New,
}

/// An open store of any backend.
pub struct OpenStore {
    backend: Backend,
    /// The path the user gave.
    path: PathBuf,
    /// The path opened: `path`, or the copy of a sled store.
    opened: PathBuf,
    engine: Engine,
    /// The copy's directory, removed when the store is dropped (after the engine).
    _copy: Option<TempDir>,
}

enum Engine {
    Redb(RedbStore),
    Sled(SledStore),
    Fs(FsStore),
    Postgres(PostgresStore),
}

/// A store argument as the CLI shows it: a path as given, a URL without its password.
pub fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if !is_url(path) {
        return text;
    }
    let (scheme, rest) = text.split_once("://").unwrap_or(("", &text));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => text,
    }
}

/// Whether a store argument is a PostgreSQL URL rather than a path.
pub fn is_url(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A document's handle, and what opening it noticed.
pub struct OpenedDocument {
    /// The handle.
    pub persister: DynPersister,
    /// Something worth reporting, such as a torn tail an fs log dropped.
    pub note: Option<String>,
}

impl OpenStore {
    /// Opens the existing store at `path`, of the backend `forced` or the one detected.
    pub fn existing(
        path: &Path,
        forced: Option<Backend>,
        access: Access,
    ) -> Result<OpenStore, CliError> {
        if !path.exists() && !is_url(path) {
            // Every backend would create a store here: say there is none instead.
            Backend::detect(path)?;
        }
        let backend = match forced {
            Some(backend) => backend,
            None => Backend::detect(path)?,
        };
        let in_place = |opened: &Path| {
            open_engine(backend, opened).map_err(|e| {
                CliError::from(e)
                    .replace_path(&opened.display().to_string(), &path.display().to_string())
            })
        };
        let (copy, opened) = match (backend, access) {
            (Backend::Sled, Access::Read) => {
                let (dir, copy) = copy_sled_store(path)?;
                (Some(dir), copy)
            }
            (Backend::Sled, Access::Write) => {
                let (_dir, copy) = copy_sled_store(path)?;
                drop(in_place(&copy)?);
                (None, path.to_path_buf())
            }
            _ => (None, path.to_path_buf()),
        };
        let engine = in_place(&opened)?;
        Ok(OpenStore {
            backend,
            path: path.to_path_buf(),
            opened,
            engine,
            _copy: copy,
        })
    }

    /// Creates a new store of `backend` at `path`, which must not exist yet.
    pub fn create(path: &Path, backend: Backend) -> Result<OpenStore, CliError> {
        if path.exists() {
            return Err(CliError::new(
                format!("{} already exists", path.display()),
                "choose a new path for the new store",
            ));
        }
        let engine = open_engine(backend, path)?;
        if let Engine::Postgres(store) = &engine
            && !store.list_documents()?.is_empty()
        {
            return Err(CliError::new(
                format!("{} already holds documents", store.description()),
                "give an empty schema (add ?schema=NAME to the URL) or an empty database",
            ));
        }
        Ok(OpenStore {
            backend,
            path: path.to_path_buf(),
            opened: path.to_path_buf(),
            engine,
            _copy: None,
        })
    }

    /// The store's backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every document's id, ordered by their bytes.
    pub fn list(&self) -> Result<Vec<DocumentId>, CliError> {
        let ids = match &self.engine {
            Engine::Redb(store) => store.list_documents(),
            Engine::Sled(store) => store.list_documents(),
            Engine::Fs(store) => store.list_documents(),
            Engine::Postgres(store) => store.list_documents(),
        };
        ids.map_err(|e| self.error(e))
    }

    /// Opens document `id`.
    pub fn open_document(&self, id: &DocumentId) -> Result<OpenedDocument, CliError> {
        let opened = match &self.engine {
            Engine::Redb(store) => store.open_document(id).map(|p| (Box::new(p) as _, None)),
            Engine::Sled(store) => store.open_document(id).map(|p| (Box::new(p) as _, None)),
            Engine::Postgres(store) => store.open_document(id).map(|p| (Box::new(p) as _, None)),
            Engine::Fs(store) => store.open_document(id).map(|p| {
                let dropped = p.recovered_bytes();
                let note = (dropped > 0).then(|| {
                    format!("its log ended in a torn write: {dropped} unflushed bytes were dropped")
                });
                (Box::new(p) as DynPersister, note)
            }),
        };
        let (persister, note) =
            opened.map_err(|e| self.error(e).context(format!("document {id}")))?;
        Ok(OpenedDocument { persister, note })
    }

    /// Whether document `id` exists.
    pub fn contains(&self, id: &DocumentId) -> Result<bool, CliError> {
        Ok(self.list()?.binary_search(id).is_ok())
    }

    /// The bytes the store takes on disk.
    pub fn disk_usage(&self) -> u64 {
        disk_usage(&self.path)
    }

    /// The path of the store actually opened (a copy for a sled store read-only), for
    /// errors found later.
    pub fn opened_path(&self) -> &Path {
        &self.opened
    }

    /// A store error as the user sees it, naming the original path.
    pub fn error(&self, e: persister_core::Error) -> CliError {
        CliError::from(e).replace_path(
            &self.opened.display().to_string(),
            &self.path.display().to_string(),
        )
    }
}

fn open_engine(backend: Backend, path: &Path) -> persister_core::Result<Engine> {
    Ok(match backend {
        Backend::Redb => Engine::Redb(RedbStore::open(path)?),
        Backend::Sled => Engine::Sled(SledStore::open(path)?),
        Backend::Fs => Engine::Fs(FsStore::open(path)?),
        Backend::Postgres => Engine::Postgres(PostgresStore::open(&path.to_string_lossy())?),
    })
}

/// The bytes of a file, or of every file under a directory.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}
