//! The entries of the workspace's backends, and a memory backend for tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use persister_core::{BoxedStore, DynStore, Error, MemoryStore, Store};
use persister_fs::{FsOptions, FsStore};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_redb::{RedbOptions, RedbStore};
use persister_sled::SledStore;

use crate::{Access, Backend, StoreKind};

/// Refuses `store` as the place of a new store when it holds documents.
fn refuse_documents(store: &PostgresStore) -> Result<(), Error> {
    if store.list_documents()?.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidInput {
        what: "new store",
        reason: format!(
            "{} already holds documents; give an empty schema (add ?schema=NAME to the URL) or an empty database",
            store.description()
        ),
    })
}

/// `location` as the text of a PostgreSQL URL or connection string: one that is not
/// UTF-8 is refused rather than read with its bytes replaced, which would name
/// another database, user or host than the one asked for.
fn url_text(location: &Path) -> Result<&str, Error> {
    location.to_str().ok_or_else(|| Error::InvalidInput {
        what: "PostgreSQL URL",
        reason: "it is not valid UTF-8; write any other byte percent-encoded (%XX)".into(),
    })
}

/// `store` with its handles boxed.
fn boxed<S: Store + 'static>(store: S) -> DynStore {
    Box::new(BoxedStore(store))
}

impl Backend {
    /// `persister-redb`: one redb file, recognised by redb's magic number.
    pub fn redb() -> Self {
        Backend::new(
            "redb",
            StoreKind::File,
            persister_redb::FORMAT_VERSION,
            |path, access| {
                Ok(match access {
                    Access::ReadOnly => boxed(RedbStore::open_read_only(path)?),
                    Access::ReadWrite | Access::Create => boxed(RedbStore::open(path)?),
                    Access::Migrate => boxed(RedbStore::open_with(
                        path,
                        RedbOptions::default().migrate_format(true),
                    )?),
                })
            },
        )
        .with_recogniser(|path| persister_redb::is_redb_file(path))
        .with_description("One redb file")
    }

    /// `persister-sled`: a sled directory, recognised by sled's `conf` and `db` files.
    /// A read-only open reads a copy of the store that it makes and removes.
    pub fn sled() -> Self {
        Backend::new(
            "sled",
            StoreKind::Directory,
            persister_sled::FORMAT_VERSION,
            |path, access| {
                Ok(match access {
                    Access::ReadOnly => boxed(SledStore::open_read_only(path)?),
                    // Format version 1 is the only one there is.
                    Access::ReadWrite | Access::Create | Access::Migrate => {
                        boxed(SledStore::open(path)?)
                    }
                })
            },
        )
        .with_recogniser(|path| persister_sled::is_sled_store(path))
        .with_description("A sled directory")
        .with_reads_through_copy()
    }

    /// `persister-fs`: a directory of logs, recognised by its `STORE` marker.
    pub fn fs() -> Self {
        Backend::new(
            "fs",
            StoreKind::Directory,
            persister_fs::FORMAT_VERSION,
            |path, access| {
                Ok(match access {
                    Access::ReadOnly => boxed(FsStore::open_read_only(path)?),
                    Access::ReadWrite | Access::Create => boxed(FsStore::open(path)?),
                    Access::Migrate => boxed(FsStore::open_with(
                        path,
                        FsOptions::default().with_migrate_format(true),
                    )?),
                })
            },
        )
        .with_recogniser(|path| persister_fs::is_fs_store(path))
        .with_description("A persister-fs directory")
        .with_what("an fs store")
    }

    /// `persister-postgres`: a schema of a PostgreSQL database, named by a
    /// `postgres://` or `postgresql://` URL (`?schema=NAME`, default `persister`) or
    /// a connection string (`schema=NAME`). Only URLs are recognised: a connection
    /// string opens through this entry but is not told from a path.
    ///
    /// A read-only open creates no schema, and refuses a URL that asks for a migration
    /// (`migrate_format=true`); [`Access::Create`] refuses a schema that holds
    /// documents.
    pub fn postgres() -> Self {
        Self::postgres_with(PostgresOptions::default())
    }

    /// [`Backend::postgres`] opening its stores with `options` (a lease duration, say);
    /// whether a missing schema is created still follows the access.
    pub fn postgres_with(options: PostgresOptions) -> Self {
        // For the staging below: the options to look at a destination with, and the
        // schema of a URL that names none.
        let staging_options = options.clone().create_if_missing(false);
        let schema = options.schema.clone();
        let to_schema = schema.clone();
        Backend::new(
            "postgres",
            StoreKind::Url,
            persister_postgres::FORMAT_VERSION,
            move |location, access| {
                let url = url_text(location)?;
                // The URL's option overrides the options' `migrate_format`.
                if access == Access::ReadOnly
                    && persister_postgres::migrate_format_in(url)? == Some(true)
                {
                    return Err(Error::InvalidInput {
                        what: "read-only open",
                        reason: "the URL asks for a migration (migrate_format=true), which writes to the store; remove the option to read the store as it is, or open it to migrate it".into(),
                    });
                }
                let mut options = options
                    .clone()
                    .create_if_missing(matches!(access, Access::ReadWrite | Access::Create));
                if access == Access::Migrate {
                    options = options.migrate_format(true);
                }
                let store = PostgresStore::open_with(url, options)?;
                if access == Access::Create {
                    refuse_documents(&store)?;
                }
                Ok(boxed(store))
            },
        )
        .with_recogniser(|location| {
            let text = location.to_string_lossy();
            text.starts_with("postgres://") || text.starts_with("postgresql://")
        })
        // A new store is built in a schema of its own beside the destination's
        // (`NAME_partial_TAG`, the name cut so that the whole fits PostgreSQL's 63
        // bytes), then renamed to the destination's schema in one transaction. A
        // destination holding documents is refused before anything is built (the
        // rename would refuse it at the end); one that does not open (no store there
        // yet, a server out of reach) is for the build to find out about.
        .with_staging(
            move |destination, tag| {
                let url = url_text(destination)?;
                // Only looked at: a URL asking for a migration would have the look
                // migrate the destination, so such a destination is left to the
                // rename, which refuses one holding documents as well.
                if persister_postgres::migrate_format_in(url)? != Some(true)
                    && let Ok(store) = PostgresStore::open_with(url, staging_options.clone())
                {
                    refuse_documents(&store)?;
                }
                let schema = persister_postgres::schema_in(url)?
                    .unwrap_or_else(|| schema.clone());
                let suffix = format!("_partial_{tag}");
                let mut keep = 63usize.saturating_sub(suffix.len()).min(schema.len());
                // A schema of the options is checked only when a store opens: cut it
                // where a character starts (a name that is not plain ASCII is then
                // refused by `url_with_schema`).
                while !schema.is_char_boundary(keep) {
                    keep -= 1;
                }
                let temporary = format!("{}{suffix}", &schema[..keep]);
                Ok(PathBuf::from(persister_postgres::url_with_schema(url, &temporary)?))
            },
            move |from, to| {
                let to = persister_postgres::schema_in(url_text(to)?)?
                    .unwrap_or_else(|| to_schema.clone());
                PostgresStore::rename(url_text(from)?, &to)
            },
            |location| PostgresStore::destroy(url_text(location)?),
        )
        .with_description(
            "A schema of a PostgreSQL database, given as a `postgres://` URL (`?schema=NAME`, default `persister`)",
        )
        .with_what("a PostgreSQL store")
    }

    /// `persister_core::MemoryStore`s kept by this entry, one per path: opening a
    /// path again (after the previous store was dropped, or not) is reopening the same
    /// store, and clones of the entry share them. Nothing is on disk and nothing
    /// survives the process; the stores live as long as the entry. For tests that
    /// compare a disk backend with the reference. It has no read-only mode, and its
    /// format version is 0 (it writes no format).
    pub fn memory() -> Self {
        let stores: Arc<Mutex<HashMap<PathBuf, MemoryStore>>> = Arc::default();
        Backend::new("memory", StoreKind::Memory, 0, move |path, access| {
            let mut stores = stores.lock().unwrap_or_else(PoisonError::into_inner);
            match access {
                Access::ReadOnly => Err(Error::InvalidInput {
                    what: "access",
                    reason: "a memory store has no read-only mode".into(),
                }),
                Access::Create if stores.contains_key(path) => Err(Error::InvalidInput {
                    what: "new store",
                    reason: format!(
                        "a memory store named {} exists already; give another name",
                        path.display()
                    ),
                }),
                Access::Migrate if !stores.contains_key(path) => Err(Error::InvalidInput {
                    what: "store",
                    reason: format!(
                        "there is no memory store named {} to migrate",
                        path.display()
                    ),
                }),
                Access::ReadWrite | Access::Create | Access::Migrate => {
                    let store = stores.entry(path.to_path_buf()).or_default();
                    Ok(boxed(store.clone()))
                }
            }
        })
        .with_description("Memory of this process: nothing is kept on disk")
    }
}
