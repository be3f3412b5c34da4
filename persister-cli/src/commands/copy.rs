//! `persister copy SRC DST`: every document into a new store of any backend.

use std::path::Path;
use std::time::Instant;

use persister_core::StoredSizes;
use serde::Serialize;

use super::new_store::NewStore;
use super::{Skipped, count_of, each_document, say_skipped, skipped_result};
use crate::output::{duration, millis, print_json, say, thousands};
use crate::{Access, Backend, CliError, OpenStore};

#[derive(Serialize)]
struct Report {
    source: String,
    source_backend: Backend,
    destination: String,
    destination_backend: Backend,
    documents: usize,
    sizes: StoredSizes,
    skipped: Vec<Skipped>,
    milliseconds: f64,
}

pub(crate) fn run(
    src: &Path,
    src_backend: Option<Backend>,
    dst: &Path,
    dst_backend: Backend,
    skip_damaged: bool,
    json: bool,
) -> Result<(), CliError> {
    let started = Instant::now();
    let dst_backend = Backend::for_destination(dst, dst_backend);
    let source = OpenStore::existing(src, src_backend, Access::Read)?;
    let ids = source.list()?;
    let mut target = NewStore::create(dst, dst_backend)?;
    let skipped = each_document(&source, &ids, skip_damaged, "copying", |dump| {
        target.add(dump)
    })?;
    let documents = target.documents();
    let sizes = target.finish()?;
    let report = Report {
        source: persister_backends::shown(src),
        source_backend: source.backend(),
        destination: persister_backends::shown(dst),
        destination_backend: dst_backend,
        documents,
        sizes,
        skipped,
        milliseconds: millis(started.elapsed()),
    };
    if json {
        print_json(&report)?;
        return skipped_result(&report.skipped, documents, dst);
    }
    say(&format!(
        "copied {} ({} bytes) from {} store {} to new {} store {} in {}; every document read back and checked",
        count_of(documents, &report.skipped),
        thousands(sizes.total_bytes()),
        report.source_backend,
        report.source,
        dst_backend,
        report.destination,
        duration(started.elapsed())
    ));
    say_skipped(&report.skipped);
    skipped_result(&report.skipped, documents, dst)
}
