//! Which backend a path holds, and opening it.

use std::path::{Path, PathBuf};

use persister_core::{DocumentId, DynPersister, Store};
use persister_fs::FsStore;
use persister_postgres::PostgresStore;
use persister_redb::RedbStore;
use persister_sled::SledStore;
use serde::Serialize;

use crate::CliError;

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
            Backend::Fs => persister_fs::FORMAT_VERSION,
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
            if crate::export::is_export_file(path) {
                return Err(CliError::new(
                    format!("{} is a persister export file, not a store", path.display()),
                    format!(
                        "make a store from it with `persister import {} NEW_STORE`",
                        path.display()
                    ),
                ));
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads: the store is opened read-only, so nothing of it is written, locked
    /// or repaired (a sled store is read through a copy its crate makes and removes).
    Read,
    /// Writes in place (a sled store is opened in place only after a copy of it opened
    /// without damage, which persister-sled does itself).
    Write,
    /// Writes in place to a store this process has just made and closed.
    New,
}

/// An open store of any backend.
pub struct OpenStore {
    backend: Backend,
    /// The path the user gave.
    path: PathBuf,
    engine: Engine,
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
        let engine = open_engine(backend, path, access)?;
        Ok(OpenStore {
            backend,
            path: path.to_path_buf(),
            engine,
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
        let engine = open_engine(backend, path, Access::New)?;
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
            engine,
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
        let opened: persister_core::Result<DynPersister> = match &self.engine {
            Engine::Redb(store) => store.open_document(id).map(|p| Box::new(p) as _),
            Engine::Sled(store) => store.open_document(id).map(|p| Box::new(p) as _),
            Engine::Fs(store) => store.open_document(id).map(|p| Box::new(p) as _),
            Engine::Postgres(store) => store.open_document(id).map(|p| Box::new(p) as _),
        };
        let persister = opened.map_err(|e| self.error(e).context(format!("document {id}")))?;
        let recovered = match &self.engine {
            Engine::Redb(store) => store.recovered(),
            Engine::Sled(store) => store.recovered(),
            Engine::Fs(store) => store.recovered(),
            Engine::Postgres(store) => store.recovered(),
        };
        let note = recovered
            .iter()
            .rfind(|r| &r.document == id)
            .map(|r| {
                let fate = if r.truncated {
                    "were dropped"
                } else {
                    "are left in place (a read-only open changes nothing; the next read-write open drops them)"
                };
                format!(
                    "its log ends in a write a crash cut short: {} bytes from byte {} were never flushed and {fate}, as the durability contract allows",
                    r.bytes, r.offset
                )
            });
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

    /// The path of the store, for errors found later.
    pub fn opened_path(&self) -> &Path {
        &self.path
    }

    /// A store error as the user sees it.
    pub fn error(&self, e: persister_core::Error) -> CliError {
        CliError::from(e)
    }
}

fn open_engine(backend: Backend, path: &Path, access: Access) -> persister_core::Result<Engine> {
    let read_only = access == Access::Read;
    Ok(match backend {
        Backend::Redb if read_only => Engine::Redb(RedbStore::open_read_only(path)?),
        Backend::Redb => Engine::Redb(RedbStore::open(path)?),
        Backend::Sled if read_only => {
            // It reads a copy of the store, which takes a while for a large one.
            let copying = crate::output::spinner("copying the sled store");
            let store = SledStore::open_read_only(path)?;
            copying.finish_and_clear();
            Engine::Sled(store)
        }
        Backend::Sled => Engine::Sled(SledStore::open(path)?),
        Backend::Fs if read_only => Engine::Fs(FsStore::open_read_only(path)?),
        Backend::Fs => Engine::Fs(FsStore::open(path)?),
        // Commands that only look create no schema.
        Backend::Postgres => Engine::Postgres(PostgresStore::open_with(
            &path.to_string_lossy(),
            persister_postgres::PostgresOptions::default().create_if_missing(!read_only),
        )?),
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
