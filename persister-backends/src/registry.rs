//! The registry: every backend a program knows, found by name or by a store's path.

use std::path::Path;

use persister_core::{DynStore, Error, Result};

use crate::shown::{shown, url_scheme};
use crate::{Access, Backend, StoreKind};

/// The backends a program knows, in the order it lists them; one per name.
///
/// [`Registry::standard`] holds the workspace's backends; [`Registry::with`] adds one
/// of your own (or replaces one of the same name).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    backends: Vec<Backend>,
}

impl Registry {
    /// A registry that knows no backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The workspace's backends: redb (the default for new stores), sled, fs and
    /// postgres.
    pub fn standard() -> Self {
        Self::new()
            .with(Backend::redb())
            .with(Backend::sled())
            .with(Backend::fs())
            .with(Backend::postgres())
    }

    /// The same registry with `backend` added last, or in place of the entry of the
    /// same name.
    pub fn with(mut self, backend: Backend) -> Self {
        self.add(backend);
        self
    }

    /// Adds `backend` last, or in place of the entry of the same name.
    pub fn add(&mut self, backend: Backend) {
        match self.backends.iter_mut().find(|b| **b == backend) {
            Some(existing) => *existing = backend,
            None => self.backends.push(backend),
        }
    }

    /// Every backend, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Backend> {
        self.backends.iter()
    }

    /// The backend called `name`, if the registry knows it.
    pub fn get(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name() == name)
    }

    /// The backend called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the backends it knows, if it knows no `name`.
    pub fn backend(&self, name: &str) -> Result<&Backend> {
        self.get(name).ok_or_else(|| Error::InvalidInput {
            what: "backend",
            reason: format!(
                "there is no backend called {name:?}; the known backends are {}",
                self.names().join(", ")
            ),
        })
    }

    /// The names of every backend, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.backends.iter().map(Backend::name).collect()
    }

    /// The URL backend that recognises `location` as its URL, if any: such a location
    /// is never a path, and names its backend even before the store exists.
    pub fn url_backend(&self, location: impl AsRef<Path>) -> Option<&Backend> {
        let location = location.as_ref();
        self.backends
            .iter()
            .find(|b| b.kind() == StoreKind::Url && b.recognises(location))
    }

    /// The backend whose store is at `location`: the URL backend its URL names, or
    /// the file or directory backend that recognises what is there. Reads only what
    /// the recognisers read.
    pub fn recognise(&self, location: impl AsRef<Path>) -> Option<&Backend> {
        let location = location.as_ref();
        self.url_backend(location).or_else(|| {
            self.backends.iter().find(|b| {
                matches!(b.kind(), StoreKind::File | StoreKind::Directory) && b.recognises(location)
            })
        })
    }

    /// The backend whose store is at `location`, as [`recognise`](Registry::recognise)
    /// finds it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `location` is empty, or is a URL (`scheme://...`)
    /// that no URL backend of the registry takes, naming the scheme and the URL
    /// backends it knows; [`Error::NotFound`] if nothing is at `location`;
    /// [`Error::NotAStore`] if what is there is no store of a backend the registry
    /// knows. No message holds a password the location holds.
    pub fn detect(&self, location: impl AsRef<Path>) -> Result<&Backend> {
        let location = location.as_ref();
        if location.as_os_str().is_empty() {
            return Err(crate::backend::empty_location());
        }
        if let Some(backend) = self.recognise(location) {
            return Ok(backend);
        }
        if let Some(scheme) = url_scheme(location) {
            let known: Vec<String> = self
                .backends
                .iter()
                .filter(|b| b.kind() == StoreKind::Url)
                .map(|b| match b.description() {
                    "" => b.name().to_string(),
                    description => format!("{} ({description})", b.name()),
                })
                .collect();
            let known = match known.is_empty() {
                true => "this registry knows no URL backend".to_string(),
                false => format!("the URL backends are: {}", known.join("; ")),
            };
            return Err(Error::InvalidInput {
                what: "store location",
                reason: format!(
                    "{} is a URL of scheme {scheme:?}, which no backend takes; {known} (a relative path that starts like a URL is written ./NAME)",
                    shown(location),
                ),
            });
        }
        if std::fs::symlink_metadata(location).is_err() {
            return Err(Error::NotFound {
                what: format!("a store at {}", shown(location)),
            });
        }
        Err(Error::NotAStore {
            what: "a store of a known backend",
            path: shown(location).into(),
        })
    }

    /// Opens the existing store at `location` with the backend
    /// [`detect`](Registry::detect) finds. To make a new store, pick its backend by
    /// name and use [`Backend::open`].
    ///
    /// # Errors
    ///
    /// As [`detect`](Registry::detect) and [`Backend::open`].
    pub fn open(&self, location: impl AsRef<Path>, access: Access) -> Result<DynStore> {
        let location = location.as_ref();
        self.detect(location)?.open(location, access)
    }
}

impl<'a> IntoIterator for &'a Registry {
    type Item = &'a Backend;
    type IntoIter = std::slice::Iter<'a, Backend>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
