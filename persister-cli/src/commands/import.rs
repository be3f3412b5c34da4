//! `persister import FILE STORE`: a new store from an export file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Instant;

use persister_core::StoredSizes;
use serde::Serialize;

use super::export::in_file;
use super::new_store::NewStore;
use super::plural;
use crate::error::io_error;
use crate::export::Decoder;
use crate::output::{duration, millis, print_json, progress, say, thousands};
use crate::{Backend, CliError};

#[derive(Serialize)]
struct Report {
    file: String,
    store: String,
    backend: Backend,
    documents: usize,
    sizes: StoredSizes,
    milliseconds: f64,
}

pub(crate) fn run(file: &Path, store: &Path, backend: Backend, json: bool) -> Result<(), CliError> {
    let backend = Backend::for_destination(store, backend);
    let started = Instant::now();
    let input = File::open(file).map_err(|e| CliError {
        advice: "check the path of the export file, and that it is readable".into(),
        ..io_error("open", file, e)
    })?;
    let len = input.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(len, "importing");
    // The header is checked before the new store is made.
    let decoder =
        Decoder::new(BufReader::new(bar.wrap_read(input))).map_err(|e| in_file(e, file))?;
    let mut target = NewStore::create(store, backend)?;
    // Documents are written as they come; an error at the end of the file still
    // discards the whole new store.
    for dump in decoder {
        target.add(dump.map_err(|e| in_file(e, file))?)?;
    }
    bar.finish_and_clear();
    let documents = target.documents();
    let sizes = target.finish()?;
    let report = Report {
        file: file.display().to_string(),
        store: persister_backends::shown(store),
        backend,
        documents,
        sizes,
        milliseconds: millis(started.elapsed()),
    };
    if json {
        return print_json(&report);
    }
    say(&format!(
        "imported {} ({} bytes) from {} into new {} store {} in {}; every document read back and checked",
        plural(documents as u64, "document", "documents"),
        thousands(sizes.total_bytes()),
        report.file,
        backend,
        report.store,
        duration(started.elapsed())
    ));
    Ok(())
}
