//! One entry of the registry: a backend, and how to open its stores.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use persister_core::{DynStore, Error, Result};

use crate::shown::{shown, url_scheme};

/// Where a backend keeps a store, which says what names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// One file, named by its path (redb).
    File,
    /// One directory, named by its path (sled, fs).
    Directory,
    /// A place on a server, named by a URL or a connection string (PostgreSQL).
    Url,
    /// The memory of this process: the path only names the store, nothing is on disk.
    Memory,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only reading: nothing of the store is written or repaired (a shared lock, where
    /// the backend has one, keeps writers out while the store is open), and a store
    /// that is not there is an error.
    ReadOnly,
    /// Reading and writing; an empty store is made when there is none (as each
    /// backend's own `open` does).
    ReadWrite,
    /// Reading and writing a new, empty store: fails with
    /// [`Error::InvalidInput`] when something is there already (a file, a directory
    /// that is not empty, a schema that holds documents).
    Create,
    /// Reading and writing an existing store, migrated first to the format version
    /// this build writes when it is of an older one its backend migrates (redb's
    /// layout 2, fs's version 2, PostgreSQL's version 1: each backend's
    /// `migrate_format` option). A store of the current version opens as with
    /// [`Access::ReadWrite`]; nothing is created (a file or directory backend fails
    /// with [`Error::InvalidInput`] unless it recognises a store there, a URL backend
    /// when the store does not exist). Builds that know only the
    /// older version refuse the store afterwards.
    Migrate,
}

/// Opens the store at a path, as an [`Access`] says.
type Opener = dyn Fn(&Path, Access) -> Result<DynStore> + Send + Sync;
/// Whether a path or URL is a store of the backend.
type Recogniser = dyn Fn(&Path) -> bool + Send + Sync;

/// The location of a temporary store for a destination, from a tag.
type Temporary = dyn Fn(&Path, &str) -> Result<PathBuf> + Send + Sync;
/// Moves the store at the first location to the second, whole or not at all.
type Rename = dyn Fn(&Path, &Path) -> Result<()> + Send + Sync;
/// Removes the store at a location, and nothing else.
type Remove = dyn Fn(&Path) -> Result<()> + Send + Sync;

/// How a URL backend builds a new store out of sight and puts it in place: see
/// [`Backend::with_staging`].
#[derive(Clone)]
struct Staging {
    temporary: Arc<Temporary>,
    rename: Arc<Rename>,
    remove: Arc<Remove>,
}

/// One backend: its name, its format version, what its stores are, how to recognise
/// one and how to open one. Cloning it is cheap, and clones share any state its
/// opener keeps (the stores of [`Backend::memory`]).
///
/// Make an entry for a backend of your own with [`Backend::new`]:
///
/// ```
/// use persister_backends::{Access, Backend, Registry, StoreKind};
/// use persister_core::{BoxedStore, MemoryStore};
///
/// let scratch = Backend::new("scratch", StoreKind::Memory, 1, |_path, _access| {
///     Ok(Box::new(BoxedStore(MemoryStore::new())))
/// })
/// .with_description("A store that forgets everything when dropped");
/// let registry = Registry::standard().with(scratch);
/// let store = registry.backend("scratch")?.open("anything", Access::ReadWrite)?;
/// assert!(store.list_documents()?.is_empty());
/// # Ok::<(), persister_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Backend {
    name: &'static str,
    kind: StoreKind,
    format_version: u32,
    description: &'static str,
    what: String,
    reads_through_copy: bool,
    recognise: Arc<Recogniser>,
    open: Arc<Opener>,
    staging: Option<Staging>,
}

impl Backend {
    /// An entry for the backend `name`, whose stores are of `kind` and of format
    /// `format_version`, opened by `open`. It recognises no store until
    /// [`with_recogniser`](Backend::with_recogniser) gives it a way to.
    ///
    /// `open` gets the path (or URL) as given and the [`Access`]; for
    /// [`Access::Create`] on a file or directory backend, [`Backend::open`] has
    /// already checked that nothing is there.
    pub fn new(
        name: &'static str,
        kind: StoreKind,
        format_version: u32,
        open: impl Fn(&Path, Access) -> Result<DynStore> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            kind,
            format_version,
            description: "",
            what: format!("a {name} store"),
            reads_through_copy: false,
            recognise: Arc::new(|_| false),
            open: Arc::new(open),
            staging: None,
        }
    }

    /// The same entry, recognising its stores with `recognise`. The registry asks it
    /// only about paths of the entry's kind: existing files for [`StoreKind::File`],
    /// existing directories for [`StoreKind::Directory`], any text for
    /// [`StoreKind::Url`]; it should read as little as it can (a magic number, a
    /// marker file, a URL's scheme).
    pub fn with_recogniser(
        mut self,
        recognise: impl Fn(&Path) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.recognise = Arc::new(recognise);
        self
    }

    /// The same entry with a one-line description of its stores, for help texts.
    pub fn with_description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// The same entry, with messages naming one of its stores `what` (the default
    /// is "a NAME store").
    pub fn with_what(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    /// The same entry, saying that a read-only open reads through a copy of the store
    /// that it makes first (which takes a while for a large store).
    pub fn with_reads_through_copy(mut self) -> Self {
        self.reads_through_copy = true;
        self
    }

    /// The same entry, building new stores out of sight: `temporary` gives the
    /// location of a temporary store for a destination and a tag (lowercase ASCII
    /// letters, digits and `_`, unique to the caller), `rename` moves a whole store
    /// from one location to another in one step (replacing nothing that holds data),
    /// and `remove` removes the store at a location and nothing else (succeeding when
    /// there is none). For URL backends, whose stores cannot be renamed like files:
    /// tools that make a new store (the `persister` command's `copy` and `import`) then
    /// build it at the temporary location and rename it into place once it is whole and
    /// checked, so that a killed tool leaves the destination as it was.
    pub fn with_staging(
        mut self,
        temporary: impl Fn(&Path, &str) -> Result<PathBuf> + Send + Sync + 'static,
        rename: impl Fn(&Path, &Path) -> Result<()> + Send + Sync + 'static,
        remove: impl Fn(&Path) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.staging = Some(Staging {
            temporary: Arc::new(temporary),
            rename: Arc::new(rename),
            remove: Arc::new(remove),
        });
        self
    }

    /// Its name ("redb").
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What its stores are.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether its stores are directories (rather than files, URLs or memory).
    pub fn is_directory(&self) -> bool {
        self.kind == StoreKind::Directory
    }

    /// The store format version this build writes into new stores. Stores of other
    /// versions are refused, except where the backend's docs say how it reads them or
    /// migrates them when asked (redb's layouts 1 and 2, fs's version 2, PostgreSQL's
    /// version 1 with `migrate_format`); an open store gives its own version with
    /// [`Store::format_version`](persister_core::Store::format_version).
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// A one-line description of its stores ("One redb file"); empty if none was given.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// How messages name one of its stores ("a redb store").
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether a read-only open reads through a copy of the store it makes first.
    pub fn reads_through_copy(&self) -> bool {
        self.reads_through_copy
    }

    /// Whether `location` holds (or, for a URL backend, names) one of its stores. It
    /// does not open the store nor check its health.
    pub fn recognises(&self, location: impl AsRef<Path>) -> bool {
        let location = location.as_ref();
        let of_kind = match self.kind {
            StoreKind::File => location.is_file(),
            StoreKind::Directory => location.is_dir(),
            StoreKind::Url | StoreKind::Memory => true,
        };
        of_kind && (self.recognise)(location)
    }

    /// Whether new stores can be built out of sight ([`Backend::with_staging`]).
    pub fn stages(&self) -> bool {
        self.staging.is_some()
    }

    /// Where to build a new store for `destination` out of sight, named with `tag`;
    /// `None` when the entry has no [staging](Backend::with_staging).
    ///
    /// # Errors
    ///
    /// The entry's own: [`Error::InvalidInput`] for a destination it cannot name a
    /// temporary store for, or that cannot take a new store (PostgreSQL: a schema that
    /// holds documents).
    pub fn temporary_location(&self, destination: &Path, tag: &str) -> Result<Option<PathBuf>> {
        self.staging
            .as_ref()
            .map(|staging| (staging.temporary)(destination, tag))
            .transpose()
    }

    /// Moves the store built at `from` (a [temporary location](Backend::temporary_location))
    /// to `to`, whole or not at all.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the entry has no [staging](Backend::with_staging),
    /// otherwise the entry's own (`to` holds data, the store is in use, the server
    /// failed). On an error nothing moved.
    pub fn rename_store(&self, from: &Path, to: &Path) -> Result<()> {
        match &self.staging {
            Some(staging) => (staging.rename)(from, to),
            None => Err(no_staging(self.name)),
        }
    }

    /// Removes the store at `location` (a [temporary location](Backend::temporary_location)
    /// that will not be used): the store and nothing else; a store that is not there
    /// is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the entry has no [staging](Backend::with_staging),
    /// otherwise the entry's own. On an error nothing was removed.
    pub fn remove_store(&self, location: &Path) -> Result<()> {
        match &self.staging {
            Some(staging) => (staging.remove)(location),
            None => Err(no_staging(self.name)),
        }
    }

    /// The path of a store of this backend inside `dir`, a directory that holds
    /// nothing else: `dir/store.NAME` for a file, `dir/NAME` otherwise; `None` for a
    /// URL backend, whose stores live on a server.
    pub fn store_in(&self, dir: impl AsRef<Path>) -> Option<PathBuf> {
        let dir = dir.as_ref();
        match self.kind {
            StoreKind::File => Some(dir.join(format!("store.{}", self.name))),
            StoreKind::Url => None,
            StoreKind::Directory | StoreKind::Memory => Some(dir.join(self.name)),
        }
    }

    /// Opens the store at `location` (a path, or a URL for a URL backend) as `access`
    /// says, with its handles boxed so that stores of every backend have one type.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty `location`; for a file or directory
    /// backend, when `location` is a URL (`scheme://...`; a relative path that starts
    /// like one is written `./NAME`), or a directory where the backend's store is a
    /// file (or the other way round); for [`Access::Create`] when something is at
    /// `location` already, and for [`Access::Migrate`] when no store of the backend
    /// is; otherwise whatever the backend's open returns ([`Error::Locked`],
    /// [`Error::NotAStore`], [`Error::UnsupportedFormat`], [`Error::Io`], ...). No
    /// message of this entry holds a password the location holds.
    pub fn open(&self, location: impl AsRef<Path>, access: Access) -> Result<DynStore> {
        let location = location.as_ref();
        if location.as_os_str().is_empty() && self.kind != StoreKind::Memory {
            return Err(empty_location());
        }
        let on_disk = matches!(self.kind, StoreKind::File | StoreKind::Directory);
        if on_disk {
            self.check_path(location)?;
        }
        if access == Access::Create && on_disk {
            check_free(location, self.kind == StoreKind::Directory)?;
        }
        if access == Access::Migrate && on_disk && !self.recognises(location) {
            return Err(Error::InvalidInput {
                what: "store",
                reason: format!(
                    "there is no store at {} to migrate ({} is not there)",
                    shown(location),
                    self.what
                ),
            });
        }
        (self.open)(location, access)
    }

    /// Fails when `location` cannot be a store of this file or directory backend: a
    /// URL, or something of the other kind (a directory for a file, a file for a
    /// directory), so that the error names the mistake rather than the system call it
    /// would make fail.
    fn check_path(&self, location: &Path) -> Result<()> {
        let (is, store_is) = if self.kind == StoreKind::File {
            ("a directory", "one file")
        } else {
            ("a file", "a directory")
        };
        let reason = if let Some(scheme) = url_scheme(location) {
            format!(
                "{} is a URL of scheme {scheme:?}, and {} is named by a path; a relative path that starts like a URL is written ./NAME",
                shown(location),
                self.what
            )
        } else {
            // Followed through links, as the backends open them.
            match std::fs::metadata(location) {
                Ok(meta) if meta.is_dir() == (self.kind == StoreKind::File) => format!(
                    "{} is {is}, and {} is {store_is}",
                    location.display(),
                    self.what
                ),
                _ => return Ok(()),
            }
        };
        Err(Error::InvalidInput {
            what: "store location",
            reason,
        })
    }
}

/// The error for an empty location.
pub(crate) fn empty_location() -> Error {
    Error::InvalidInput {
        what: "store location",
        reason: "it is empty; give the path (or URL) of a store".into(),
    }
}

fn no_staging(name: &str) -> Error {
    Error::InvalidInput {
        what: "store location",
        reason: format!("the {name} backend does not build stores out of sight"),
    }
}

/// Fails unless nothing is at `path` (or, when `directory`, an empty directory).
fn check_free(path: &Path, directory: bool) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let empty_dir = directory
        && meta.is_dir()
        && std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none());
    if empty_dir {
        return Ok(());
    }
    Err(Error::InvalidInput {
        what: "new store",
        reason: format!(
            "{} already exists; give a path where there is nothing yet",
            shown(path)
        ),
    })
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("format_version", &self.format_version)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Entries are equal when their names are: a registry holds one entry per name.
impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Backend {}
