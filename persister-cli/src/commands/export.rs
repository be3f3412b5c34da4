//! `persister export STORE FILE`: every document into a portable file.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Instant;

use persister_core::StoredSizes;
use serde::Serialize;

use super::ls::add;
use super::{Skipped, count_of, each_document, say_skipped, skipped_result};
use crate::cli::StoreArgs;
use crate::error::io_error;
use crate::export::{Decoder, Encoder};
use crate::output::{duration, millis, print_json, say, thousands};
use crate::place::Staging;
use crate::{Access, Backend, CliError, OpenStore};

#[derive(Serialize)]
struct Report {
    store: String,
    backend: Backend,
    file: String,
    file_bytes: u64,
    format_version: u32,
    documents: usize,
    sizes: StoredSizes,
    skipped: Vec<Skipped>,
    milliseconds: f64,
}

pub(crate) fn run(
    args: &StoreArgs,
    file: &Path,
    skip_damaged: bool,
    json: bool,
) -> Result<(), CliError> {
    let started = Instant::now();
    let store = OpenStore::existing(&args.store, args.backend, Access::Read)?;
    let ids = store.list()?;
    let staging = Staging::new(file, false)?;
    let out = staging.make(|path| create_private(path).map_err(|e| io_error("create", file, e)))?;
    let mut encoder = Encoder::new(BufWriter::new(out)).map_err(|e| in_file(e, file))?;
    let mut digests = Vec::new();
    let mut sizes = StoredSizes::default();
    let skipped = each_document(&store, &ids, skip_damaged, "exporting", |dump| {
        encoder
            .write_document(&dump)
            .map_err(|e| in_file(e, file))?;
        add(&mut sizes, &dump.sizes());
        digests.push(dump.digest());
        Ok(())
    })?;
    let out = encoder
        .finish()
        .map_err(|e| in_file(e, file))?
        .into_inner()
        .map_err(|e| io_error("write", file, e.into_error()))?;
    out.sync_all().map_err(|e| io_error("sync", file, e))?;
    drop(out);

    // Read the file back before it takes its name.
    let input = File::open(staging.path()).map_err(|e| io_error("read back", file, e))?;
    let mut read_back = Vec::new();
    for dump in Decoder::new(BufReader::new(input)).map_err(|e| in_file(e, file))? {
        read_back.push(dump.map_err(|e| in_file(e, file))?.digest());
    }
    if read_back != digests {
        return Err(CliError::new(
            format!(
                "{} reads back different from what was written",
                file.display()
            ),
            "nothing was written to the destination; this is a bug in persister: please report it",
        ));
    }
    let file_bytes = crate::disk_usage(staging.path());
    staging.commit()?;
    let report = Report {
        store: persister_backends::shown(&args.store),
        backend: store.backend(),
        file: file.display().to_string(),
        file_bytes,
        format_version: crate::export::VERSION,
        documents: digests.len(),
        sizes,
        skipped,
        milliseconds: millis(started.elapsed()),
    };
    if json {
        print_json(&report)?;
        return skipped_result(&report.skipped, report.documents, file);
    }
    say(&format!(
        "exported {} ({} bytes) from {} store {} to {} ({} bytes, export format version {}) in {}; read back and checked",
        count_of(report.documents, &report.skipped),
        thousands(sizes.total_bytes()),
        report.backend,
        report.store,
        report.file,
        thousands(file_bytes),
        report.format_version,
        duration(started.elapsed())
    ));
    say_skipped(&report.skipped);
    skipped_result(&report.skipped, report.documents, file)
}

pub(crate) fn in_file(e: crate::export::Error, file: &Path) -> CliError {
    CliError::from(e).context(file.display())
}

/// Creates a new file only its owner can read: it holds every document of the store.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
