//! Which backend a path holds, and opening it: the standard registry of
//! `persister-backends`, with the command line's own messages and advice.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use persister_backends::{Registry, StoreKind, shown};
use persister_core::{DocumentId, DynPersister, DynStore, Store};

use crate::CliError;

/// Every backend the commands know.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::standard);

/// The registry's backends, as `--backend` offers them.
static BACKENDS: LazyLock<Vec<Backend>> = LazyLock::new(|| REGISTRY.iter().map(Backend).collect());

/// A storage backend: an entry of the standard registry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Backend(&'static persister_backends::Backend);

impl Backend {
    /// The backend called `name` (as `--backend` takes it).
    pub fn named(name: &str) -> Option<Backend> {
        REGISTRY.get(name).map(Backend)
    }

    /// The backend of new stores when `--backend` does not say: the registry's first.
    pub fn default_for_new() -> Backend {
        BACKENDS[0]
    }

    /// Its name, as `--backend` takes it.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The store format version this build writes into new stores. A store of an older
    /// version may open as it is (see [`OpenStore::format_version`]), or be refused.
    pub fn format_version(self) -> u32 {
        self.0.format_version()
    }

    /// The backend of a new store at `destination`: a URL names its own backend,
    /// whatever `--backend` says.
    pub fn for_destination(destination: &Path, backend: Backend) -> Backend {
        REGISTRY.url_backend(destination).map_or(backend, Backend)
    }

    /// Whether its stores are directories (otherwise a file or a URL).
    pub fn is_directory(self) -> bool {
        self.0.is_directory()
    }

    /// Whether its stores are files.
    pub fn is_file(self) -> bool {
        self.0.kind() == StoreKind::File
    }

    /// The backend of the store at `path`, as the registry recognises it.
    pub fn detect(path: &Path) -> Result<Backend, CliError> {
        match REGISTRY.detect(path) {
            Ok(backend) => return Ok(Backend(backend)),
            // An empty location, or a URL no backend takes: the registry names the
            // mistake (and the URL backends it knows).
            Err(persister_core::Error::InvalidInput {
                what: "store location",
                reason,
            }) => return Err(location_error(&reason, path, None)),
            Err(_) => {}
        }
        if !path.exists() {
            return Err(CliError::new(
                format!("there is no store at {}", shown(path)),
                "check the path; `persister copy` and `persister import` create new stores",
            ));
        }
        let of_kind = |kind| REGISTRY.iter().filter(move |b| b.kind() == kind);
        if path.is_file() {
            if crate::export::is_export_file(path) {
                return Err(CliError::new(
                    format!("{} is a persister export file, not a store", shown(path)),
                    format!(
                        "make a store from it with `persister import {} NEW_STORE`",
                        shown(path)
                    ),
                ));
            }
            let files: Vec<&str> = of_kind(StoreKind::File).map(|b| b.what()).collect();
            let directories: Vec<&str> = of_kind(StoreKind::Directory).map(|b| b.name()).collect();
            return Err(CliError::new(
                format!("{} is a file, but not {}", shown(path), files.join(" or ")),
                format!(
                    "check the path ({} stores are directories), or pass --backend to force a backend",
                    directories.join(" and ")
                ),
            ));
        }
        let directories: Vec<&str> = of_kind(StoreKind::Directory).map(|b| b.what()).collect();
        Err(CliError::new(
            format!(
                "{} is a directory, but {}",
                shown(path),
                neither(&directories)
            ),
            "check the path, or pass --backend to force a backend",
        ))
    }
}

/// The error for a location a backend or the registry refuses as a store's (an empty
/// one, a URL no backend takes, a URL for a file or directory backend, a directory
/// for a file backend or a file for a directory backend), from the registry's
/// `reason`: its first clause is the cause, the rest (if any) the advice. `forced` is
/// the backend `--backend` named, whose mistake the advice then points at.
fn location_error(reason: &str, path: &Path, forced: Option<Backend>) -> CliError {
    let (cause, rest) = reason.split_once("; ").unwrap_or((reason, ""));
    let advice = match (forced, url_backend(path)) {
        (Some(forced), Some(url)) => format!(
            "leave out --backend {forced}: a URL names its own backend ({})",
            url.name()
        ),
        (Some(forced), None) if rest.is_empty() => format!(
            "check the path, or leave out --backend {forced} to have the backend detected from what is there"
        ),
        (None, _) if rest.is_empty() => "check the path".to_string(),
        _ => rest.to_string(),
    };
    CliError::new(cause.to_string(), advice)
}

/// The error of a new store's `destination` that no backend can make a store at: a
/// URL no backend takes, or, for a backend whose stores are named by URLs, anything
/// but one of its URLs (a new store on a server is built under another name beside
/// the destination, which only a URL says how to write).
pub(crate) fn refused_destination(destination: &Path, backend: Backend) -> Option<CliError> {
    if url_backend(destination).is_some() {
        return None;
    }
    if let Err(persister_core::Error::InvalidInput {
        what: "store location",
        reason,
    }) = REGISTRY.detect(destination)
    {
        return Some(location_error(&reason, destination, None));
    }
    (backend.0.kind() == StoreKind::Url).then(|| {
        CliError::new(
            format!(
                "{} is not a URL of the {backend} backend, which a new {backend} store needs",
                shown(destination)
            ),
            format!("give the new store as a URL: {}", backend.0.description()),
        )
    })
}

/// "neither A nor B", "none of A, B or C".
fn neither(what: &[&str]) -> String {
    match what {
        [] => "no store".into(),
        [one] => format!("not {one}"),
        [a, b] => format!("neither {a} nor {b}"),
        [rest @ .., last] => format!("none of {} or {last}", rest.join(", ")),
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Backend {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl clap::ValueEnum for Backend {
    fn value_variants<'a>() -> &'a [Self] {
        &BACKENDS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = if *self == Backend::default_for_new() {
            format!("{} (the default for new stores)", self.0.description())
        } else {
            self.0.description().to_string()
        };
        Some(clap::builder::PossibleValue::new(self.name()).help(help))
    }
}

/// How a command uses an existing store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads: the store is opened read-only, so nothing of it is written or
    /// repaired; a shared lock keeps writers out while it is open (a sled store is
    /// read through a copy its crate makes and removes).
    Read,
    /// Writes in place (a sled store is opened in place only after a copy of it opened
    /// without damage, which persister-sled does itself).
    Write,
    /// Writes in place to a store this process has just made and closed.
    New,
    /// Writes in place, migrating the store to the format version this build writes
    /// first when it is of an older one.
    Migrate,
}

/// An open store of any backend.
pub struct OpenStore {
    backend: Backend,
    /// The path the user gave.
    path: PathBuf,
    store: DynStore,
}

/// An error of opening or listing a store: damage there stops every document from
/// being read, with or without `--skip-damaged`, and the advice says so.
fn whole_store_error(e: persister_core::Error) -> CliError {
    let damaged = matches!(e, persister_core::Error::Corrupt { .. });
    let error = CliError::from(e);
    match damaged {
        true => CliError {
            advice: crate::error::UNOPENABLE_ADVICE.to_string(),
            ..error
        },
        false => error,
    }
}

/// An error of opening the existing store at `path`, `forced` to a backend by
/// `--backend` or not: a location the backend refuses says what to do about it.
pub(crate) fn open_error(
    e: persister_core::Error,
    path: &Path,
    forced: Option<Backend>,
) -> CliError {
    match e {
        persister_core::Error::InvalidInput {
            what: "store location",
            reason,
        } => location_error(&reason, path, forced),
        e => CliError::from(e),
    }
}

/// A store URL without its `migrate_format` option, for `persister migrate`, which
/// decides itself whether to migrate; a path as it is.
pub(crate) fn without_migrate_format(path: &Path) -> PathBuf {
    if !is_url(path) {
        return path.to_path_buf();
    }
    let text = path.to_string_lossy();
    let (scheme, authority, tail) = url_parts(&text);
    PathBuf::from(format!(
        "{scheme}://{authority}{}",
        without_options(tail, "migrate_format")
    ))
}

/// A URL's scheme, its authority (`user:password@host:port`) and the rest (`/db?a=1`),
/// split as the PostgreSQL driver splits them: the user part ends at the first `@`,
/// and the hosts at the first `/` or `?` after it.
fn url_parts(text: &str) -> (&str, &str, &str) {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let hosts = rest.find('@').map_or(0, |at| at + 1);
    let authority_end = rest[hosts..]
        .find(['/', '?'])
        .map_or(rest.len(), |end| hosts + end);
    let (authority, tail) = rest.split_at(authority_end);
    (scheme, authority, tail)
}

/// The part of a URL after its authority (`/db?a=1&b=2`) without its query options
/// called `name`.
fn without_options(tail: &str, name: &str) -> String {
    match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|option| option.split('=').next() != Some(name))
                .collect();
            match kept.is_empty() {
                true => path.to_string(),
                false => format!("{path}?{}", kept.join("&")),
            }
        }
        None => tail.to_string(),
    }
}

/// Whether a store argument is a URL rather than a path.
pub fn is_url(path: &Path) -> bool {
    REGISTRY.url_backend(path).is_some()
}

/// Whether the backend called `name` keeps its stores on a server, named by URLs.
pub(crate) fn on_server(name: &str) -> bool {
    REGISTRY
        .get(name)
        .is_some_and(|backend| backend.kind() == StoreKind::Url)
}

/// The backend whose stores `path` names as a URL, if it is one.
pub(crate) fn url_backend(path: &Path) -> Option<&'static persister_backends::Backend> {
    REGISTRY.url_backend(path)
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
        let backend = Self::backend_of(path, forced)?;
        Self::open_as(path, backend, access).map_err(|e| match e {
            persister_core::Error::Corrupt { .. } => whole_store_error(e),
            e => open_error(e, path, forced),
        })
    }

    /// The backend of the existing store at `path`: `forced`, or the one detected. An
    /// error when nothing is there, since every backend would create a store there
    /// (but a server's store is not on disk: a URL, or any location `forced` to a
    /// backend of URLs, such as a PostgreSQL connection string, is left to it).
    pub(crate) fn backend_of(path: &Path, forced: Option<Backend>) -> Result<Backend, CliError> {
        let on_server = forced.is_some_and(|b| b.0.kind() == StoreKind::Url);
        if !path.exists() && !is_url(path) && !on_server {
            Backend::detect(path)?;
        }
        match forced {
            Some(backend) => Ok(backend),
            None => Backend::detect(path),
        }
    }

    /// Fails when no store of `backend` is at `path` and a read-write open would make
    /// an empty one there (in an empty directory, in a schema without tables): a
    /// command on an existing store must not make one and report success on it. What
    /// else is not a store, the backend's open refuses with its own error.
    pub(crate) fn check_there(
        path: &Path,
        backend: Backend,
        forced: Option<Backend>,
    ) -> Result<(), CliError> {
        let never = "this command never makes a store (`persister copy` and `persister import` do)";
        let advice = match forced {
            Some(forced) => format!(
                "check the path, or leave out --backend {forced} to have the backend detected from what is there; {never}"
            ),
            None => format!("check the path; {never}"),
        };
        match backend.0.kind() {
            StoreKind::Directory => {
                let empty = std::fs::read_dir(path).is_ok_and(|mut e| e.next().is_none());
                if empty && !backend.0.recognises(path) {
                    return Err(CliError::new(
                        format!(
                            "{} is an empty directory, not {}",
                            shown(path),
                            backend.0.what()
                        ),
                        advice,
                    ));
                }
            }
            // A read-only open creates nothing and says whether the store is there;
            // any other refusal is left to the open that follows, which reports it. A
            // location asking for a migration (`migrate_format=true`, in a URL or a
            // connection string), which a read-only open refuses before it looks, is
            // looked at by a migrating open instead: it creates nothing either, and
            // migrates only what the command's own open would.
            StoreKind::Url => match backend
                .0
                .open(path, persister_backends::Access::ReadOnly)
                .or_else(|e| match e {
                    persister_core::Error::InvalidInput {
                        what: "read-only open",
                        ..
                    } => backend.0.open(path, persister_backends::Access::Migrate),
                    e => Err(e),
                }) {
                Err(e @ persister_core::Error::NotAStore { .. }) => {
                    return Err(CliError {
                        advice,
                        ..CliError::from(e)
                    });
                }
                Ok(store) => {
                    let _ = store.close();
                }
                Err(_) => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// Opens the existing store at `path` of `backend`, with the backend's own error
    /// (to tell one apart, as `persister migrate` does).
    pub(crate) fn open_as(
        path: &Path,
        backend: Backend,
        access: Access,
    ) -> persister_core::Result<OpenStore> {
        let access = match access {
            Access::Read => persister_backends::Access::ReadOnly,
            Access::Write | Access::New => persister_backends::Access::ReadWrite,
            Access::Migrate => persister_backends::Access::Migrate,
        };
        let store =
            if access == persister_backends::Access::ReadOnly && backend.0.reads_through_copy() {
                // It reads a copy of the store, which takes a while for a large one.
                let copying = crate::output::spinner(format!("copying the {backend} store"));
                let store = backend.0.open(path, access);
                copying.finish_and_clear();
                store?
            } else {
                backend.0.open(path, access)?
            };
        Ok(OpenStore {
            backend,
            path: path.to_path_buf(),
            store,
        })
    }

    /// Creates a new store of `backend` at `path`, which must not exist yet.
    pub fn create(path: &Path, backend: Backend) -> Result<OpenStore, CliError> {
        if path.exists() {
            return Err(CliError::new(
                format!("{} already exists", shown(path)),
                "choose a new path for the new store",
            ));
        }
        let store = match backend.0.open(path, persister_backends::Access::Create) {
            // The registry's reason says what is there, then what to do.
            Err(persister_core::Error::InvalidInput {
                what: "new store",
                reason,
            }) => {
                let (cause, advice) = reason.split_once("; ").unwrap_or((&reason, ""));
                return Err(CliError::new(cause.to_string(), advice.to_string()));
            }
            opened => opened?,
        };
        Ok(OpenStore {
            backend,
            path: path.to_path_buf(),
            store,
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

    /// The store's format version as stored, which is older than
    /// [`Backend::format_version`] for a store an older build made and nothing
    /// migrated; `None` for a store without one (memory).
    pub fn format_version(&self) -> Option<u32> {
        self.store.format_version()
    }

    /// Every document's id, ordered by their bytes.
    pub fn list(&self) -> Result<Vec<DocumentId>, CliError> {
        self.store.list_documents().map_err(whole_store_error)
    }

    /// Removes document `id` with all its data.
    pub(crate) fn remove_document(&self, id: &DocumentId) -> Result<(), CliError> {
        self.store
            .remove_document(id)
            .map_err(|e| self.error(e).context(format!("document {id}")))
    }

    /// Opens document `id`.
    pub fn open_document(&self, id: &DocumentId) -> Result<OpenedDocument, CliError> {
        let persister = self
            .store
            .open_document(id)
            .map_err(|e| self.error(e).context(format!("document {id}")))?;
        let note = self
            .store
            .recovered()
            .iter()
            .rfind(|r| r.document.as_ref().is_none_or(|document| document == id))
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

    /// Closes the store, reporting what went wrong releasing it.
    pub fn close(self) -> Result<(), CliError> {
        self.store.close().map_err(CliError::from)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `persister migrate` drops a URL's `migrate_format` option, and nothing else.
    #[test]
    fn a_url_loses_its_migrate_format_option_and_nothing_else() {
        for (url, expected) in [
            ("postgres://u@h/db?migrate_format=true", "postgres://u@h/db"),
            (
                "postgres://u:pw@h:5432/db?schema=s&migrate_format=false&sslmode=disable",
                "postgres://u:pw@h:5432/db?schema=s&sslmode=disable",
            ),
            ("postgresql://h/db?schema=s", "postgresql://h/db?schema=s"),
            (
                "postgres://h/db?migrate_formats=1",
                "postgres://h/db?migrate_formats=1",
            ),
            // A `?` in the password, as the driver reads it.
            (
                "postgres://u:a?b@h/db?migrate_format=true",
                "postgres://u:a?b@h/db",
            ),
        ] {
            assert_eq!(
                without_migrate_format(Path::new(url)),
                Path::new(expected),
                "{url}"
            );
        }
        let path = Path::new("./x?migrate_format=true.redb");
        assert_eq!(without_migrate_format(path), path);
    }
}
