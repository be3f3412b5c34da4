//! `persister migrate STORE`: brings a store an older build wrote to the format version
//! this build writes, in place.

use persister_core::Error;
use serde::Serialize;

use crate::cli::StoreArgs;
use crate::output::{print_json, say};
use crate::{Access, Backend, CliError, OpenStore};

#[derive(Serialize)]
struct Report {
    store: String,
    backend: Backend,
    /// The store's format version before: `None` for a store without one.
    from: Option<u32>,
    /// Its format version now.
    to: Option<u32>,
    /// The version this build writes into new stores.
    current: u32,
    /// Whether the store was migrated.
    migrated: bool,
}

pub(crate) fn run(args: &StoreArgs, json: bool) -> Result<(), CliError> {
    let shown = persister_backends::shown(&args.store);
    let backend = OpenStore::backend_of(&args.store, args.backend)?;
    // The command decides whether to migrate: a URL's own `migrate_format` option
    // would make the read-only open below refuse the URL (`true`) or the migration
    // refuse the store (`false`).
    let store = crate::backend::without_migrate_format(&args.store);
    // Opened read-only first, to learn its version without writing or creating
    // anything: a store that needs no migration is left as it was, and one a backend
    // refuses until migrated names its own version.
    let from = match OpenStore::open_as(&store, backend, Access::Read) {
        Ok(store) => {
            let found = store.format_version();
            store.close()?;
            found
        }
        Err(Error::MigrationNeeded { found, .. }) => Some(found),
        Err(e) => return Err(crate::backend::open_error(e, &args.store, args.backend)),
    };
    let current = backend.format_version();
    let (to, migrated) = match from {
        Some(version) if version < current => {
            let store = OpenStore::open_as(&store, backend, Access::Migrate)
                .map_err(|e| crate::backend::open_error(e, &args.store, args.backend))?;
            let to = store.format_version();
            store.close()?;
            (to, to != from)
        }
        _ => (from, false),
    };
    let report = Report {
        store: shown,
        backend,
        from,
        to,
        migrated,
        current,
    };
    if json {
        return print_json(&report);
    }
    let version = |v: Option<u32>| v.map_or("none".to_string(), |v| v.to_string());
    say(&match (migrated, to) {
        (true, _) => format!(
            "migrated {} store {} from format version {} to {}",
            report.backend,
            report.store,
            version(from),
            version(to)
        ),
        (false, Some(v)) if v < current => format!(
            "{} store {} stays at format version {v}: this build reads and writes it as it is, and does not migrate it (it writes version {current} into new stores; `persister copy` makes a new store of it)",
            report.backend, report.store
        ),
        (false, _) => format!(
            "{} store {} is at format version {}: nothing to migrate",
            report.backend,
            report.store,
            version(to)
        ),
    });
    Ok(())
}
