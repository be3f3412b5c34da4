//! Space comes back: logs mostly dead are rewritten at a flush.

use std::fs;

use persister_core::{Batch, DocumentId, Persister, Store};
use persister_fs::{FsOptions, FsStore};

use crate::common::{TestResult, actor};

fn options() -> FsOptions {
    FsOptions::default()
        .with_rewrite_min_len(64 * 1024)
        .with_rewrite_dead_share(0.5)
}

#[test]
fn overwriting_the_document_keeps_the_log_bounded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open_with(dir.path(), options())?;
    let mut p = store.open_document(&id)?;
    p.insert_changes(vec![(actor(1), 1, vec![1; 5000])])?;
    let mut largest = 0;
    for round in 0..500u32 {
        p.set_document(round.to_le_bytes().repeat(2500))?;
        p.flush()?;
        largest = largest.max(fs::metadata(store.log_path(&id).unwrap())?.len());
    }
    // 500 flushes of 10 KB: 5 MB appended, but the log is rewritten once it passes the
    // 64 KiB minimum, since its 15 KB of live bytes are less than half of it.
    assert!(
        largest < 64 * 1024 + 11_000,
        "the log grew to {largest} bytes"
    );
    let sizes = p.sizes();
    drop((p, store));
    let store = FsStore::open_with(dir.path(), options())?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_document()?, Some(499u32.to_le_bytes().repeat(2500)));
    assert_eq!(p.get_changes()?, vec![vec![1; 5000]]);
    assert_eq!(p.sizes(), sizes);
    assert_eq!(p.recovered_bytes(), 0);
    let leftovers = fs::read_dir(dir.path())?.filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    });
    assert_eq!(leftovers.count(), 0);
    Ok(())
}

#[test]
fn compaction_shrinks_the_log_at_the_next_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open_with(dir.path(), options())?;
    let mut p = store.open_document(&id)?;
    for seq in 1..=200 {
        p.insert_changes(vec![(actor(1), seq, vec![seq as u8; 1000])])?;
        p.flush()?;
    }
    let log = store.log_path(&id).unwrap();
    let before = fs::metadata(&log)?.len();
    assert!(before > 200_000);
    let mut compaction = Batch::new().set_document(vec![7; 2000]);
    for seq in 1..=190 {
        compaction = compaction.remove_change(actor(1), seq);
    }
    p.apply(compaction)?;
    let written = p.flush()? as u64;
    let after = fs::metadata(&log)?.len();
    assert_eq!(written, after, "the flush wrote a new log");
    assert!(after < 20_000, "the log is still {after} bytes");
    drop((p, store));
    let store = FsStore::open_with(dir.path(), options())?;
    let p = store.open_document(&id)?;
    assert_eq!(p.get_changes()?.len(), 10);
    assert_eq!(p.get_document()?, Some(vec![7; 2000]));
    Ok(())
}

#[test]
fn small_logs_are_not_rewritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = DocumentId::from("doc");
    let store = FsStore::open(dir.path())?;
    let mut p = store.open_document(&id)?;
    let mut total = 0;
    for round in 0..100u8 {
        p.set_document(vec![round; 1000])?;
        total += p.flush()? as u64;
    }
    // Under the default 1 MiB minimum, every flush appends.
    assert_eq!(fs::metadata(store.log_path(&id).unwrap())?.len(), total);
    Ok(())
}
