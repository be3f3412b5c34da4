//! What protects a sled store from sled's own recovery: a damaged store is refused
//! without a byte of it changed (sled's recovery runs on a copy first), and a read-only
//! open reads a copy, never writes the store, and leaves no copy behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persister_core::{Error, Persister, Result, Store};
use persister_sled::SledStore;
use persister_testkit::Rng;

use crate::corruption::{damage, write_store};

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    all
}

#[test]
fn a_damaged_store_is_refused_untouched() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let pristine = root.path().join("pristine");
    write_store(&pristine, 3)?;
    let mut refused = 0;
    for seed in 0..60 {
        let dir = root.path().join(format!("damaged-{seed}"));
        crate::raw::copy_dir(&pristine, &dir);
        damage(&dir, &mut Rng::new(seed));
        let before = files(&dir);
        if let Err(e) = SledStore::open(&dir) {
            refused += 1;
            assert!(
                !e.to_string().contains("persister-sled-copy"),
                "the error names the copy: {e}"
            );
            assert!(
                files(&dir) == before,
                "seed {seed}: a refused open changed the store"
            );
        }
    }
    println!("{refused} of 60 damaged stores refused, each untouched");
    assert!(
        refused > 0,
        "no damage made the open fail: the test checked nothing"
    );
    Ok(())
}

#[test]
fn a_read_only_open_writes_nothing_and_leaves_no_copy() -> Result<()> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dir = root.path().join("store");
    let versions = write_store(&dir, 2)?;
    let before = files(&dir);
    {
        let store = SledStore::open_read_only(&dir)?;
        let ids = store.list_documents()?;
        assert_eq!(ids.len(), versions.len());
        for id in &ids {
            let mut p = store.open_document(id)?;
            p.get_changes()?;
            p.get_document()?;
            let refused = p.set_document(b"x".to_vec());
            assert!(
                matches!(&refused, Err(Error::InvalidInput { .. })),
                "a write to a read-only store gave {refused:?}"
            );
            assert_eq!(p.flush()?, 0);
        }
        assert!(matches!(
            store.remove_document(&ids[0]),
            Err(Error::InvalidInput { .. })
        ));
        // A second reader at the same time, with a copy of its own.
        let second = SledStore::open_read_only(&dir)?;
        let copies = [store.copy_path().unwrap(), second.copy_path().unwrap()];
        assert_ne!(copies[0], copies[1]);
        assert!(!copies[0].starts_with(&dir));
        drop((second, store));
        for copy in copies {
            assert!(!copy.exists(), "{} was left behind", copy.display());
        }
    }
    assert!(files(&dir) == before, "a read-only open changed the store");

    // A store open for writing cannot be read meanwhile.
    let writer = SledStore::open(&dir)?;
    assert!(matches!(
        SledStore::open_read_only(&dir),
        Err(Error::Locked { .. })
    ));
    drop(writer);
    Ok(())
}
