//! New destinations made whole or not at all: built under a temporary name beside the
//! destination, then renamed into place.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::CliError;
use crate::error::io_error;

/// The temporary paths of this process, and whether [`remove_partials`] has run. A
/// temporary path is created ([`Staging::make`]) and moved into place
/// ([`Staging::commit`]) under this lock, so `remove_partials` either runs first, and
/// nothing is created or moved after it, or finds what was created and removes it.
static LIVE: Mutex<Live> = Mutex::new(Live {
    paths: BTreeSet::new(),
    ended: false,
});

/// What [`LIVE`] guards.
struct Live {
    paths: BTreeSet<PathBuf>,
    /// Set by [`remove_partials`]: nothing is created or moved into place after it.
    ended: bool,
}

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many times [`remove_partials`] tries to remove a directory that the command is
/// still writing into.
const REMOVE_ATTEMPTS: usize = 100;

/// Removes every temporary path of this process, for a signal handler that ends the
/// process, and makes [`Staging::make`] and [`Staging::commit`] fail from then on, so
/// that none is created or moved into place between this call and the end of the
/// process.
pub fn remove_partials() {
    let paths = {
        let mut live = live();
        live.ended = true;
        std::mem::take(&mut live.paths)
    };
    for temporary in paths {
        // The command may still be writing into a directory it created (a new file in
        // it makes its removal fail): try again until it is gone. Once it is, nothing
        // can be made inside it, and with `ended` set nothing makes it again. A store on
        // a server is removed in one transaction, which waits for the command's own
        // (its statements then fail): one attempt, so that Ctrl-C with the server out
        // of reach ends after one connection timeout.
        let attempts = if crate::backend::is_url(&temporary) {
            1
        } else {
            REMOVE_ATTEMPTS
        };
        for _ in 0..attempts {
            match remove(&temporary) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(_) => {}
            }
        }
    }
}

fn remove(temporary: &Path) -> std::io::Result<()> {
    if let Some(backend) = crate::backend::url_backend(temporary) {
        return backend
            .remove_store(temporary)
            .map_err(std::io::Error::other);
    }
    // What a backend keeps beside its store under the store's name and a suffix (redb's
    // commit log, `<file>.log`): the temporary name is this process's own, so anything
    // named after it is too.
    remove_siblings(temporary);
    if fs::symlink_metadata(temporary)?.is_dir() {
        fs::remove_dir_all(temporary)
    } else {
        fs::remove_file(temporary)
    }
}

/// Removes the files beside `temporary` whose names are its name and a `.` suffix.
fn remove_siblings(temporary: &Path) {
    let (Some(name), Some(parent)) = (temporary.file_name(), temporary.parent()) else {
        return;
    };
    let mut prefix = name.to_os_string();
    prefix.push(".");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let Ok(entries) = fs::read_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(&prefix)
            && entry.file_type().is_ok_and(|t| !t.is_dir())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The error of a step refused because a signal is ending the process.
fn ending(temporary: &Path) -> CliError {
    CliError::new(
        format!(
            "the command was interrupted before it made {}",
            persister_backends::shown(temporary)
        ),
        "nothing to do: the destination was left as it was",
    )
}

/// A destination being built at a temporary path beside it. Dropping it without
/// [`commit`](Staging::commit) removes the temporary path, so a failed or interrupted
/// (SIGINT, SIGTERM) command leaves the destination as it was. (A killed process
/// leaves the temporary path, `.NAME.partial-*`, which may be deleted.)
///
/// A store on a server (a URL) is built the same way where its backend can build one
/// out of sight (PostgreSQL: in a schema `NAME_partial_*` beside the destination's,
/// renamed into place in one transaction; a killed process leaves that schema, which
/// `persister` never reads and which may be dropped). Where its backend cannot, it is
/// written in place.
#[derive(Debug)]
pub struct Staging {
    destination: PathBuf,
    temporary: PathBuf,
    committed: bool,
    /// Written in place: the destination is a URL whose backend has no staging.
    in_place: bool,
}

impl Staging {
    /// Checks that `destination` can be made: it does not exist (or, for a directory,
    /// is an empty directory) and its parent directory exists; a store on a server
    /// holds no documents. A `/` or `/.` at its end names a directory: refused for a
    /// file, and left out of the path a directory is moved to (`rename` refuses `DIR/.`).
    pub fn new(destination: &Path, is_directory: bool) -> Result<Staging, CliError> {
        if let Some(backend) = crate::backend::url_backend(destination) {
            return Staging::on_server(destination, backend);
        }
        let given = destination;
        let destination = &destination.components().collect::<PathBuf>();
        if let Ok(meta) = fs::symlink_metadata(destination) {
            let empty_dir = meta.is_dir()
                && fs::read_dir(destination)
                    .map(|mut entries| entries.next().is_none())
                    .unwrap_or(false);
            if !(is_directory && empty_dir) {
                return Err(CliError::new(
                    format!("{} already exists", destination.display()),
                    "give a path that does not exist yet (the command never overwrites or merges into existing data)",
                ));
            }
        }
        let given_bytes = given.as_os_str().as_encoded_bytes();
        let ending = ["/", "/."]
            .into_iter()
            .rfind(|e| given_bytes.ends_with(e.as_bytes()));
        if let (false, Some(ending)) = (is_directory, ending) {
            return Err(CliError::new(
                format!(
                    "{} ends with `{ending}`, which names a directory, but what the command makes there is a file",
                    given.display()
                ),
                format!("give the path of the new file without the `{ending}` at its end"),
            ));
        }
        if let Some((store, backend)) = store_holding(destination) {
            return Err(CliError::new(
                format!(
                    "{} is inside the {backend} store {}, whose directory holds only the store's own files: another file there makes the store refuse to open",
                    destination.display(),
                    store.display()
                ),
                "choose a destination outside the store's directory",
            ));
        }
        if let Some(store) = redb_store_logging_to(destination) {
            return Err(CliError::new(
                format!(
                    "{} is the commit log of the redb store {}, which its next write empties",
                    destination.display(),
                    store.display()
                ),
                "choose another name for the destination",
            ));
        }
        let name = destination
            .file_name()
            .ok_or_else(|| {
                CliError::new(
                    format!(
                        "{} does not name a file or directory",
                        destination.display()
                    ),
                    "give the path of the new store or file, such as ./out.redb",
                )
            })?
            .to_string_lossy()
            .into_owned();
        let parent = parent_of(destination);
        if !parent.is_dir() {
            return Err(CliError::new(
                format!("the directory {} does not exist", parent.display()),
                "create it first, or choose another destination",
            ));
        }
        let temporary = parent.join(format!(".{name}.partial-{}", tag().replace('_', "-")));
        Staging::record(destination, temporary)
    }

    /// A staging for a store on a server: at the backend's temporary location (which
    /// refuses a destination that holds documents before anything is built), or in
    /// place when it has none (the store then goes into a schema that must be empty,
    /// which opening it checks).
    fn on_server(
        destination: &Path,
        backend: &persister_backends::Backend,
    ) -> Result<Staging, CliError> {
        match backend.temporary_location(destination, &tag())? {
            Some(temporary) => Staging::record(destination, temporary),
            None => Ok(Staging {
                destination: destination.to_path_buf(),
                temporary: destination.to_path_buf(),
                committed: true,
                in_place: true,
            }),
        }
    }

    /// A staging at `temporary`, recorded for [`remove_partials`].
    fn record(destination: &Path, temporary: PathBuf) -> Result<Staging, CliError> {
        {
            let mut live = live();
            if live.ended {
                return Err(ending(&temporary));
            }
            live.paths.insert(temporary.clone());
        }
        Ok(Staging {
            destination: destination.to_path_buf(),
            temporary,
            committed: false,
            in_place: false,
        })
    }

    /// A staging with nothing to move or remove, to stand in for one that was taken.
    pub(crate) fn done() -> Staging {
        Staging {
            destination: PathBuf::new(),
            temporary: PathBuf::new(),
            committed: true,
            in_place: false,
        }
    }

    /// Where to build. Whatever creates this path runs in [`make`](Self::make); once it
    /// exists, anything may read or write in it.
    pub fn path(&self) -> &Path {
        &self.temporary
    }

    /// Runs `create`, which creates [`path`](Self::path) (or opens it in a way that
    /// creates it when it is missing), so that a signal's [`remove_partials`] runs
    /// either before it, and then `create` is not run, or after it, and then removes
    /// what it created.
    ///
    /// # Errors
    ///
    /// `create`'s error, or an error saying so when a signal is ending the process.
    pub fn make<T>(
        &self,
        create: impl FnOnce(&Path) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        if self.committed {
            // Written in place (a database): there is nothing to remove.
            return create(&self.temporary);
        }
        let live = live();
        if live.ended {
            return Err(ending(&self.temporary));
        }
        let made = create(&self.temporary);
        drop(live);
        made
    }

    /// Whether the destination is written in place (a database), so that a failure
    /// must undo what was written rather than remove a temporary path.
    pub fn is_in_place(&self) -> bool {
        self.in_place
    }

    /// The final destination.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Moves what was built into place and makes the move durable. Everything built
    /// must be closed and synced first.
    pub fn commit(mut self) -> Result<(), CliError> {
        if self.committed {
            // Written in place (a database).
            return Ok(());
        }
        if let Some(backend) = crate::backend::url_backend(&self.destination) {
            // Under the lock, as below. The backend refuses a destination that holds
            // data, and moves the whole store or nothing.
            let mut live = live();
            if live.ended {
                return Err(ending(&self.temporary));
            }
            backend
                .rename_store(&self.temporary, &self.destination)
                .map_err(|e| {
                    CliError::from(e).context(format!(
                        "moving the new store into place at {}",
                        persister_backends::shown(&self.destination)
                    ))
                })?;
            live.paths.remove(&self.temporary);
            self.committed = true;
            return Ok(());
        }
        if fs::symlink_metadata(&self.destination).is_ok_and(|m| !m.is_dir()) {
            return Err(CliError::new(
                format!(
                    "{} appeared while it was being built",
                    self.destination.display()
                ),
                "another program wrote there; remove it or choose another destination",
            ));
        }
        {
            // Under the lock, so that a signal's `remove_partials` either finds the
            // temporary path or finds the destination complete, never a path between.
            let mut live = live();
            if live.ended {
                return Err(ending(&self.temporary));
            }
            fs::rename(&self.temporary, &self.destination)
                .map_err(|e| io_error("move the new data into", &self.destination, e))?;
            live.paths.remove(&self.temporary);
        }
        self.committed = true;
        let parent = parent_of(&self.destination);
        fs::File::open(&parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error("sync", &parent, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Under the lock, so that a signal arriving meanwhile finds the path recorded
        // until it is gone. Best effort: the command already reports why it failed.
        let mut live = live();
        let _ = remove(&self.temporary);
        live.paths.remove(&self.temporary);
    }
}

/// The store whose directory holds `path`, however deep, and its backend, if one does:
/// looked for from the directory `path` is in, resolved (`..` and symbolic links), up.
fn store_holding(path: &Path) -> Option<(PathBuf, crate::Backend)> {
    let parent = fs::canonicalize(parent_of(path)).ok()?;
    parent.ancestors().find_map(|dir| {
        crate::Backend::detect(dir)
            .ok()
            .filter(|backend| backend.is_directory())
            .map(|backend| (dir.to_path_buf(), backend))
    })
}

/// Where a redb store at `path` keeps its commit log: `<file>.log` beside it.
pub(crate) fn redb_log_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".log");
    PathBuf::from(name)
}

/// The redb store whose commit log (`<file>.log`) is at `path`, if there is one.
fn redb_store_logging_to(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.as_encoded_bytes();
    let stem = name.strip_suffix(b".log")?;
    // A prefix of an `OsStr`'s encoded bytes that ends before an ASCII byte is valid.
    let stem = std::str::from_utf8(stem).ok()?;
    let store = path.with_file_name(stem);
    crate::Backend::detect(&store)
        .ok()
        .filter(|backend| backend.name() == "redb")
        .map(|_| store)
}

/// A name part unique to this staging: the process id and the clock's nanoseconds,
/// `PID_NANOS` (lowercase ASCII digits and `_`, as a server's names allow).
fn tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos}", std::process::id())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of this binary that stages destinations: after `remove_partials`
    // the process stages no more.
    #[test]
    fn remove_partials_removes_what_was_made_and_nothing_is_made_or_moved_after_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = |name: &str| dir.path().join(name);
        let names = || -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir.path())
                .expect("listed")
                .map(|e| {
                    e.expect("an entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };

        // Built and moved into place.
        let staging = Staging::new(&file("done"), false).expect("staged");
        staging
            .make(|path| fs::write(path, b"x").map_err(|e| io_error("write", path, e)))
            .expect("made");
        staging.commit().expect("committed");
        assert_eq!(names(), ["done"]);
        // Dropped before the commit: removed.
        let staging = Staging::new(&file("dropped"), true).expect("staged");
        staging
            .make(|path| fs::create_dir(path).map_err(|e| io_error("create", path, e)))
            .expect("made");
        drop(staging);
        assert_eq!(names(), ["done"]);

        // Made, one of them a directory still written into: removed by the signal.
        let made_file = Staging::new(&file("a"), false).expect("staged");
        made_file
            .make(|path| fs::write(path, b"x").map_err(|e| io_error("write", path, e)))
            .expect("made");
        let made_dir = Staging::new(&file("b"), true).expect("staged");
        made_dir
            .make(|path| fs::create_dir(path).map_err(|e| io_error("create", path, e)))
            .expect("made");
        fs::write(made_dir.path().join("inside"), b"y").expect("written");
        let not_made = Staging::new(&file("c"), false).expect("staged");
        remove_partials();
        assert_eq!(names(), ["done"]);

        // Nothing is made, moved into place or staged after it.
        let mut ran = false;
        let refused = not_made.make(|_| {
            ran = true;
            Ok(())
        });
        assert!(refused.is_err() && !ran, "{refused:?}");
        assert!(made_file.commit().is_err());
        assert!(Staging::new(&file("d"), false).is_err());
        drop((made_dir, not_made));
        assert_eq!(names(), ["done"]);
    }
}
