//! Stores written by an earlier build open with this one and read exactly as written.
//!
//! `fixtures/redb-4.6/demo.redb` was written by this project's redb backend when it
//! was built on redb 4.6 (`persister demo`, an Automerge and a Yjs document, one of
//! them compacted), and `fixtures/redb-4.6/copy-fs` is its copy into an fs store made
//! by the same build (`persister copy --backend fs`), whose format does not depend on
//! redb. Both files are redb file format 3, which redb 5 reads and writes unchanged.

use std::path::{Path, PathBuf};

use persister_core::{ActorId, Batch, BoxedStore, DynStore, Persister, Store};
use persister_testkit::Contents;

use crate::support::store_contents;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/redb-4.6")
        .join(name)
}

/// Copies the directory `from` into the new directory `to` (the fixtures are never
/// opened in place: opening a store may write to it).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_redb_store_written_with_redb_4_reads_exactly_as_its_fs_copy_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let redb_path = dir.path().join("demo.redb");
    std::fs::copy(fixture("demo.redb"), &redb_path).unwrap();
    let fs_path = dir.path().join("copy-fs");
    copy_dir(&fixture("copy-fs"), &fs_path);

    let redb: DynStore = Box::new(BoxedStore(
        persister_redb::RedbStore::open(&redb_path).unwrap(),
    ));
    let fs: DynStore = Box::new(BoxedStore(persister_fs::FsStore::open(&fs_path).unwrap()));
    let written = store_contents(&redb).unwrap();
    assert_eq!(written, store_contents(&fs).unwrap());
    // What the fixture holds, so that an empty read cannot pass.
    let summary: Vec<(String, usize, bool)> = written
        .iter()
        .map(|(id, contents, _)| {
            let id = String::from_utf8(id.as_bytes().to_vec()).unwrap();
            (id, contents.changes.len(), contents.document.is_some())
        })
        .collect();
    assert_eq!(
        summary,
        [("demo".into(), 12, true), ("demo-yjs".into(), 32, false)]
    );

    // The store takes new writes, and reads them back after it is opened again.
    let id = written[0].0.clone();
    let mut p = redb.open_document(&id).unwrap();
    let batch = Batch::new().insert_change(ActorId::new(vec![0xab; 16]), 1, b"new".to_vec());
    p.apply(batch).unwrap();
    p.close().unwrap();
    redb.close().unwrap();
    let reopened = persister_redb::RedbStore::open(&redb_path).unwrap();
    let p = reopened.open_document(&id).unwrap();
    let mut expected = written[0].1.clone();
    expected
        .changes
        .push((ActorId::new(vec![0xab; 16]), 1, b"new".to_vec()));
    expected.changes.sort();
    assert_eq!(Contents::read(&p).unwrap(), expected);
}
