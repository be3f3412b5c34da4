//! The commit log: what a crash leaves is replayed, a torn tail is dropped and
//! reported, damage and a missing log are errors, a clean close leaves one file.
//!
//! A crash is taken as a copy of the store's file and its log while the store is open
//! and holds commits only the log has: what a killed process leaves on disk.

use std::fs;
use std::path::{Path, PathBuf};

use persister_core::{ActorId, Error, Persister, Result, Store};
use persister_redb::{FORMAT_VERSION, RedbOptions, RedbStore};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tempfile::TempDir;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("persister_meta");

fn temp_dir() -> Result<TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("create", "a temporary directory", e))
}

fn log_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.log", path.display()))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("copy", path, e)
}

/// Copies the store at `from` and its log, as a crash would leave them, to `to`.
fn copy_as_crashed(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map_err(io(from))?;
    fs::copy(log_of(from), log_of(to)).map_err(io(from))?;
    Ok(())
}

fn actor() -> ActorId {
    ActorId::new([7; 16])
}

/// Writes `flushes` flushes of one change into each of `docs` documents, one document
/// per flush in turn, and checks the log holds them (the file does not).
fn write(store: &RedbStore, docs: usize, flushes: u64) -> Result<()> {
    let mut handles = Vec::new();
    for doc in 0..docs {
        handles.push(store.open_document(&format!("doc {doc}").into())?);
    }
    for seq in 1..=flushes {
        for (doc, handle) in handles.iter_mut().enumerate() {
            handle.insert_changes(vec![(actor(), seq, format!("{doc}:{seq}").into_bytes())])?;
            handle.flush()?;
        }
    }
    Ok(())
}

fn check(store: &RedbStore, docs: usize, flushes: u64) -> Result<()> {
    assert_eq!(store.list_documents()?.len(), docs);
    for doc in 0..docs {
        let handle = store.open_document(&format!("doc {doc}").into())?;
        let changes = handle.get_changes()?;
        let expected: Vec<Vec<u8>> = (1..=flushes)
            .map(|seq| format!("{doc}:{seq}").into_bytes())
            .collect();
        assert_eq!(changes, expected, "doc {doc}");
        assert_eq!(handle.sizes().change_count, flushes);
    }
    Ok(())
}

#[test]
fn a_crash_with_the_log_open_replays_every_flushed_commit() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 5, 20)?;
    assert!(log_of(&path).exists());
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    let read_only = dir.path().join("read-only.redb");
    copy_as_crashed(&path, &read_only)?;
    drop(store);

    // A read-only open replays the log into a copy and changes neither file.
    let before = (
        fs::read(&read_only).map_err(io(&read_only))?,
        fs::read(log_of(&read_only)).map_err(io(&read_only))?,
    );
    {
        let store = RedbStore::open_read_only(&read_only)?;
        check(&store, 5, 20)?;
        assert!(store.recovered().is_empty());
    }
    let after = (
        fs::read(&read_only).map_err(io(&read_only))?,
        fs::read(log_of(&read_only)).map_err(io(&read_only))?,
    );
    assert!(
        before == after,
        "a read-only open changed the store or its log"
    );

    let store = RedbStore::open(&crashed)?;
    check(&store, 5, 20)?;
    assert!(store.recovered().is_empty());
    // Replayed into the file: the log is gone, and the store goes on.
    assert!(!log_of(&crashed).exists());
    let mut handle = store.open_document(&"doc 0".into())?;
    handle.insert_changes(vec![(actor(), 21, b"0:21".to_vec())])?;
    handle.flush()?;
    drop(handle);
    store.close()?;
    let store = RedbStore::open(&crashed)?;
    assert_eq!(
        store.open_document(&"doc 0".into())?.sizes().change_count,
        21
    );
    Ok(())
}

/// A file larger than the cache it is checked through is checked, closed and opened
/// again; read-only, the second open reads what the first left in memory (a repair, a
/// replay), and neither touches the file.
#[test]
fn a_large_store_opens_read_only_whether_closed_or_crashed() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("large.redb");
    let store = RedbStore::open(&path)?;
    let values: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1 << 20]).collect();
    let mut handle = store.open_document(&"large".into())?;
    for (seq, value) in (1..).zip(&values) {
        handle.insert_changes(vec![(actor(), seq, value.clone())])?;
        handle.flush()?;
    }
    // And small commits, which go through the log.
    handle.insert_changes(vec![(actor(), 7, b"small".to_vec())])?;
    handle.flush()?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(handle);
    store.close()?;
    let mut expected = values;
    expected.push(b"small".to_vec());
    for file in [&path, &crashed] {
        let before = fs::read(file).map_err(io(file))?;
        assert!(before.len() > 5 << 20, "{} is small", file.display());
        {
            let store = RedbStore::open_read_only(file)?;
            let handle = store.open_document(&"large".into())?;
            assert!(handle.get_changes()? == expected, "{}", file.display());
        }
        let after = fs::read(file).map_err(io(file))?;
        assert!(
            before == after,
            "a read-only open changed {}",
            file.display()
        );
    }
    Ok(())
}

/// Flushes of documents that already have their numbers are appended to the log alone,
/// and their operations reach redb later, many at once: every read sees them at once,
/// and a crash before they reach redb loses none of them.
#[test]
fn reads_see_commits_whose_operations_wait_for_redb() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    let mut doc = store.open_document(&"doc".into())?;
    let mut other = store.open_document(&"other".into())?;
    let mut expected = Vec::new();
    for seq in 1..=200u64 {
        let value = format!("change {seq}").into_bytes();
        doc.insert_changes(vec![(actor(), seq, value.clone())])?;
        doc.flush()?;
        expected.push(value);
        if seq % 50 == 0 {
            assert_eq!(doc.get_changes()?, expected, "after {seq} flushes");
            assert_eq!(doc.sizes().change_count, seq);
            // The other document's first commit gives it its number, which applies
            // what waits first; its later commits wait too.
            other.insert_changes(vec![(actor(), seq, b"other".to_vec())])?;
            other.flush()?;
            assert_eq!(store.list_documents()?.len(), 2);
        }
    }
    for seq in 201..=210u64 {
        doc.insert_changes(vec![(actor(), seq, format!("change {seq}").into_bytes())])?;
        doc.flush()?;
    }
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    let entries = doc.get_change_entries()?;
    assert_eq!(entries.len(), 210);
    let other_entries = other.get_change_entries()?;
    assert_eq!(other_entries.len(), 4);
    drop((doc, other, store));
    let reopened = RedbStore::open(&crashed)?;
    assert_eq!(
        reopened
            .open_document(&"doc".into())?
            .get_change_entries()?,
        entries
    );
    assert_eq!(
        reopened
            .open_document(&"other".into())?
            .get_change_entries()?,
        other_entries
    );
    Ok(())
}

/// What waits reaches redb with a commit of 32 KiB or more, and once it passes 4 MiB;
/// each records how many of the log's records the file then holds, so that a replay
/// after a crash goes on from exactly there: nothing missing, nothing twice.
#[test]
fn a_crash_after_what_waited_reached_redb_replays_exactly_the_rest() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    let mut doc = store.open_document(&"doc".into())?;
    let mut expected = Vec::new();
    let mut seq = 0;
    let mut flush = |doc: &mut persister_redb::RedbPersister, len: usize| -> Result<()> {
        seq += 1;
        let value = vec![seq as u8; len];
        doc.insert_changes(vec![(actor(), seq, value.clone())])?;
        doc.flush()?;
        expected.push(value);
        Ok(())
    };
    for _ in 0..3 {
        flush(&mut doc, 100)?;
    }
    // 40 KiB: applies what waits, its own included, while the log syncs.
    flush(&mut doc, 40 * 1024)?;
    for _ in 0..3 {
        flush(&mut doc, 100)?;
    }
    // Past 4 MiB of waiting operations, in commits of 16 KiB.
    for _ in 0..300 {
        flush(&mut doc, 16 * 1024)?;
    }
    for _ in 0..3 {
        flush(&mut doc, 100)?;
    }
    // Removals replayed must find what they remove.
    doc.apply(persister_core::Batch::new().remove_change(actor(), 2))?;
    doc.flush()?;
    expected.remove(1);
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop((doc, store));
    let store = RedbStore::open(&crashed)?;
    let doc = store.open_document(&"doc".into())?;
    assert!(
        doc.get_changes()? == expected,
        "the replayed changes differ"
    );
    assert_eq!(doc.sizes().change_count, expected.len() as u64);
    Ok(())
}

#[test]
fn a_torn_tail_is_dropped_and_reported_and_the_rest_replayed() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 10)?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(store);
    // The last flush's record, cut short by a crash while it was written: the last
    // flush (doc 1, seq 10) is gone, everything before it is there.
    let log = log_of(&crashed);
    let bytes = fs::read(&log).map_err(io(&log))?;
    let cut = records_end(&bytes) - 5;
    fs::write(&log, &bytes[..cut]).map_err(io(&log))?;

    let store = RedbStore::open(&crashed)?;
    check_prefix(&store)?;
    let recovered = store.recovered();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].document, None);
    assert_eq!(recovered[0].path, log);
    assert_eq!(recovered[0].offset + recovered[0].bytes, cut as u64);
    assert!(recovered[0].truncated);
    Ok(())
}

/// The length of a log's header (see the layout in `src/log.rs`): 48 bytes in log
/// format version 2, with the key, and 32 in version 1.
fn header_len(log: &[u8]) -> usize {
    match log[8..12] == 2u32.to_be_bytes() {
        true => 48,
        false => 32,
    }
}

/// Where the records of a log end: after the header, records of a 44-byte header
/// starting `REC2` with the payload length at 36 (version 2), or of a 28-byte header
/// starting `REC1` with the length at 20 (version 1).
fn records_end(log: &[u8]) -> usize {
    let (tag, len_at, head) = match header_len(log) {
        48 => (b"REC2", 36, 44),
        _ => (b"REC1", 20, 28),
    };
    let mut at = header_len(log);
    while log.get(at..at + 4) == Some(tag) {
        let len = u32::from_be_bytes(log[at + len_at..at + len_at + 4].try_into().unwrap());
        at += head + len as usize;
    }
    at
}

fn check_prefix(store: &RedbStore) -> Result<()> {
    assert_eq!(
        store.open_document(&"doc 0".into())?.sizes().change_count,
        10
    );
    let doc1 = store.open_document(&"doc 1".into())?;
    assert_eq!(doc1.sizes().change_count, 9);
    assert_eq!(doc1.get_changes()?.last(), Some(&b"1:9".to_vec()));
    Ok(())
}

#[test]
fn damage_before_a_valid_record_or_a_missing_log_is_refused() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 10)?;
    let damaged = dir.path().join("damaged.redb");
    copy_as_crashed(&path, &damaged)?;
    let missing = dir.path().join("missing.redb");
    fs::copy(&path, &missing).map_err(io(&path))?;
    drop(store);

    let log = log_of(&damaged);
    let mut bytes = fs::read(&log).map_err(io(&log))?;
    // A byte of the first record's payload (after the 48-byte header and its own 44).
    bytes[48 + 44 + 3] ^= 0x10;
    fs::write(&log, &bytes).map_err(io(&log))?;
    for result in [
        RedbStore::open(&damaged),
        RedbStore::open_read_only(&damaged),
    ] {
        match result {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // Refusing changed nothing.
    assert_eq!(fs::read(&log).map_err(io(&log))?, bytes);

    match RedbStore::open(&missing) {
        Err(err @ Error::Corrupt { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("missing.redb.log") && message.contains("missing"),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn closing_checkpoints_and_leaves_one_file() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 3, 5)?;
    store.close()?;
    assert!(!log_of(&path).exists());
    // The file alone holds everything: copied without a log, it opens whole.
    let copy = dir.path().join("copy.redb");
    fs::copy(&path, &copy).map_err(io(&path))?;
    check(&RedbStore::open(&copy)?, 3, 5)?;
    // So does dropping.
    let store = RedbStore::open(&path)?;
    write(&store, 3, 6)?;
    drop(store);
    assert!(!log_of(&path).exists());
    check(&RedbStore::open(&path)?, 3, 6)?;
    Ok(())
}

#[test]
fn checkpoints_keep_the_log_short_and_lose_nothing() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let options = RedbOptions::default().checkpoint_log_bytes(4096);
    let store = RedbStore::open_with(&path, options)?;
    write(&store, 4, 100)?;
    let log = fs::read(log_of(&path)).map_err(io(&path))?;
    let len = records_end(&log);
    assert!(len <= 4096 + 200, "the log's records take {len} bytes");
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(store);
    check(&RedbStore::open(&crashed)?, 4, 100)?;
    Ok(())
}

/// Removals, compactions, sync states and document removal replay as they were made.
#[test]
fn every_kind_of_write_replays() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    let mut kept = store.open_document(&"kept".into())?;
    for seq in 1..=6 {
        kept.insert_changes(vec![(actor(), seq, vec![seq as u8; 10])])?;
    }
    kept.flush()?;
    kept.apply(
        persister_core::Batch::new()
            .set_document(b"compacted".to_vec())
            .remove_change(actor(), 1)
            .remove_change(actor(), 2)
            .remove_change(actor(), 3),
    )?;
    kept.set_sync_state(b"peer".to_vec(), b"state".to_vec())?;
    kept.set_sync_state(b"gone".to_vec(), b"x".to_vec())?;
    kept.flush()?;
    kept.remove_sync_states(&[b"gone"])?;
    kept.flush()?;
    let mut removed = store.open_document(&"removed".into())?;
    removed.insert_changes(vec![(actor(), 1, b"x".to_vec())])?;
    removed.flush()?;
    drop(removed);
    store.remove_document(&"removed".into())?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    let expected_sizes = kept.sizes();
    drop(kept);
    drop(store);

    let store = RedbStore::open(&crashed)?;
    assert_eq!(store.list_documents()?, vec!["kept".into()]);
    let kept = store.open_document(&"kept".into())?;
    assert_eq!(kept.get_document()?, Some(b"compacted".to_vec()));
    assert_eq!(
        kept.get_changes()?,
        (4..=6u8).map(|seq| vec![seq; 10]).collect::<Vec<_>>()
    );
    assert_eq!(kept.get_sync_state(b"peer")?, Some(b"state".to_vec()));
    assert_eq!(kept.get_sync_state(b"gone")?, None);
    assert_eq!(kept.sizes(), expected_sizes);
    Ok(())
}

/// A store of layout 1 has no log: it is read and written as it is, and stays layout 1.
#[test]
fn a_store_of_layout_1_commits_without_a_log() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("old.redb");
    RedbStore::open(&path)?.close()?;
    let redb_err = |e: redb::Error| Error::backend("redb", e.to_string());
    {
        let db = redb::Database::open(&path).map_err(|e| redb_err(e.into()))?;
        let txn = db.begin_write().map_err(|e| redb_err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| redb_err(e.into()))?;
            meta.insert("format_version", 1u32.to_be_bytes().as_slice())
                .map_err(|e| redb_err(e.into()))?;
            meta.remove("log").map_err(|e| redb_err(e.into()))?;
        }
        txn.commit().map_err(|e| redb_err(e.into()))?;
    }
    let store = RedbStore::open(&path)?;
    write(&store, 2, 3)?;
    assert!(!log_of(&path).exists());
    drop(store);
    check(&RedbStore::open(&path)?, 2, 3)?;
    let db = redb::Database::open(&path).map_err(|e| redb_err(e.into()))?;
    let txn = db.begin_read().map_err(|e| redb_err(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| redb_err(e.into()))?;
    let version = meta
        .get("format_version")
        .map_err(|e| redb_err(e.into()))?
        .map(|v| v.value().to_vec());
    assert_eq!(version, Some(1u32.to_be_bytes().to_vec()));
    assert_ne!(FORMAT_VERSION, 1);
    Ok(())
}

/// A durable commit of 1 MiB or more goes to the file directly: the log holds no
/// record of it, and a crash right after it loses nothing.
#[test]
fn a_large_commit_goes_to_the_file_and_empties_the_log() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 3)?;
    let before = records_end(&fs::read(log_of(&path)).map_err(io(&path))?);
    assert!(before > 48, "small commits are logged");
    let mut big = store.open_document(&"big".into())?;
    big.insert_changes(vec![(actor(), 1, vec![5; 1_100_000])])?;
    big.flush()?;
    assert_eq!(
        records_end(&fs::read(log_of(&path)).map_err(io(&path))?),
        48
    );
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(big);
    drop(store);
    let store = RedbStore::open(&crashed)?;
    assert_eq!(
        store.open_document(&"big".into())?.get_changes()?,
        vec![vec![5; 1_100_000]]
    );
    assert_eq!(store.list_documents()?.len(), 3);
    Ok(())
}

/// A store written by a build before the commit log (layout 1, made here by hand with
/// redb): it reads, takes writes without a log, and stays layout 1.
#[test]
fn a_store_of_layout_1_with_documents_reads_and_writes_as_before() -> Result<()> {
    const DOCUMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("persister_documents");
    const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("persister_changes");
    const COMPACTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("persister_compacted");
    const SYNC_STATES: TableDefinition<&[u8], &[u8]> =
        TableDefinition::new("persister_sync_states");
    let redb_err = |e: redb::Error| Error::backend("redb", e.to_string());
    let dir = temp_dir()?;
    let path = dir.path().join("old.redb");
    {
        let db = redb::Database::create(&path).map_err(|e| redb_err(e.into()))?;
        let txn = db.begin_write().map_err(|e| redb_err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| redb_err(e.into()))?;
            for (key, value) in [
                ("format", b"persister-redb".to_vec()),
                ("format_version", 1u32.to_be_bytes().to_vec()),
                ("next_document", 2u64.to_be_bytes().to_vec()),
            ] {
                meta.insert(key, value.as_slice())
                    .map_err(|e| redb_err(e.into()))?;
            }
            // Document 1, "notes": one change of 5 bytes by actor [7; 16], seq 1.
            let mut record = Vec::new();
            for field in [1u64, 5, 0, 0, 1, 0] {
                record.extend_from_slice(&field.to_be_bytes());
            }
            txn.open_table(DOCUMENTS)
                .map_err(|e| redb_err(e.into()))?
                .insert(b"notes".as_slice(), record.as_slice())
                .map_err(|e| redb_err(e.into()))?;
            let mut key = 1u64.to_be_bytes().to_vec();
            key.extend_from_slice(&[7; 16]);
            key.extend_from_slice(&[0, 0]);
            key.extend_from_slice(&1u64.to_be_bytes());
            txn.open_table(CHANGES)
                .map_err(|e| redb_err(e.into()))?
                .insert(key.as_slice(), b"hello".as_slice())
                .map_err(|e| redb_err(e.into()))?;
            for table in [COMPACTED, SYNC_STATES] {
                txn.open_table(table).map_err(|e| redb_err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| redb_err(e.into()))?;
    }
    let store = RedbStore::open(&path)?;
    let mut notes = store.open_document(&"notes".into())?;
    assert_eq!(notes.get_changes()?, vec![b"hello".to_vec()]);
    assert_eq!(notes.sizes().changes, 5);
    notes.insert_changes(vec![(actor(), 2, b"again".to_vec())])?;
    notes.flush()?;
    drop(notes);
    assert!(!log_of(&path).exists());
    store.close()?;
    let store = RedbStore::open(&path)?;
    let notes = store.open_document(&"notes".into())?;
    assert_eq!(
        notes.get_changes()?,
        vec![b"hello".to_vec(), b"again".to_vec()]
    );
    assert_eq!(notes.sizes().change_count, 2);
    Ok(())
}

/// Log records as `src/log.rs` lays them out, for `epochs` and `seqs`, each with a
/// one-byte payload: bytes an application may store in a change value (values are
/// opaque), with every part a record has but the log's key, which it cannot know
/// (zeroes in its place), and records of format version 1, which had no key.
fn forged_records(epochs: std::ops::RangeInclusive<u64>, seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for epoch in epochs {
        for (seq, tag, key) in seqs
            .clone()
            .flat_map(|seq| [(seq, b"REC2", &[0u8; 16][..]), (seq, b"REC1", &[][..])])
        {
            let mut head = Vec::new();
            head.extend_from_slice(tag);
            head.extend_from_slice(&seq.to_be_bytes());
            head.extend_from_slice(&epoch.to_be_bytes());
            head.extend_from_slice(key);
            head.extend_from_slice(&1u32.to_be_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&head), b"x");
            head.extend_from_slice(&crc.to_be_bytes());
            head.push(b'x');
            out.extend_from_slice(&head);
        }
    }
    out
}

/// A change value whose bytes look like commit-log records stays in the log's file
/// after a checkpoint (the log is reused, its old records are left where they are);
/// a crash after the next flush must still reopen with every flush, not refuse the
/// log as damaged.
#[test]
fn a_value_holding_bytes_of_log_records_does_not_make_a_crashed_store_refuse_to_open() -> Result<()>
{
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let options = RedbOptions::default().checkpoint_log_bytes(1024);
    let store = RedbStore::open_with(&path, options)?;
    let mut doc = store.open_document(&"d".into())?;
    doc.insert_changes(vec![(actor(), 1, b"first".to_vec())])?;
    doc.flush()?;
    let mut value = vec![0xaa; 2000];
    value.extend_from_slice(&forged_records(0..=8, 0..4));
    doc.insert_changes(vec![(actor(), 2, value.clone())])?;
    doc.flush()?;
    doc.insert_changes(vec![(actor(), 3, b"third".to_vec())])?;
    doc.flush()?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(doc);
    drop(store);

    let store = RedbStore::open(&crashed)?;
    let doc = store.open_document(&"d".into())?;
    assert_eq!(
        doc.get_changes()?,
        vec![b"first".to_vec(), value, b"third".to_vec()]
    );
    Ok(())
}

/// Bytes that look like record headers (the tag, a length), left in the log's file
/// by an earlier epoch, must not make the reopen after a crash take time that grows
/// with the square of the log: the search for a valid record after the end checksummed
/// each candidate's whole claimed payload (37 s for this 8 MiB log, the default
/// checkpoint bound, before the fix; under 1 s after).
#[test]
fn header_like_bytes_in_the_log_do_not_make_recovery_quadratic() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    let mut doc = store.open_document(&"d".into())?;
    doc.insert_changes(vec![(actor(), 0, b"first".to_vec())])?;
    doc.flush()?;
    // Fake headers claiming 4 MiB payloads, 44 bytes each, in values of 900 KB (under
    // the 1 MiB of a direct commit, so logged), until the log passes its 8 MiB and
    // checkpoints: the file is reused, the old records stay after the new ones.
    // Their epochs cycle through the first few, so that some name the current one
    // (with a seq past every record). They lack the log's key, which a value cannot
    // know, so they are no records; the log's own records of older epochs, which
    // have it, are also candidates.
    let mut fakes = Vec::new();
    for epoch in 0..4u64 {
        fakes.extend_from_slice(b"REC2");
        fakes.extend_from_slice(&(1u64 << 40).to_be_bytes());
        fakes.extend_from_slice(&epoch.to_be_bytes());
        fakes.extend_from_slice(&[0; 16]);
        fakes.extend_from_slice(&(4u32 << 20).to_be_bytes());
        fakes.extend_from_slice(&[0; 4]);
    }
    let value: Vec<u8> = fakes.iter().copied().cycle().take(900_000).collect();
    for seq in 1..=10 {
        doc.insert_changes(vec![(actor(), seq, value.clone())])?;
        doc.flush()?;
    }
    doc.insert_changes(vec![(actor(), 11, b"last".to_vec())])?;
    doc.flush()?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(doc);
    drop(store);

    let (sender, receiver) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        let result = RedbStore::open(&crashed).and_then(|store| {
            let doc = store.open_document(&"d".into())?;
            Ok(doc.sizes().change_count)
        });
        let _ = sender.send(result);
    });
    let opened = receiver
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reopening after the crash took over 10 s");
    eprintln!("reopened in {:?}", started.elapsed());
    assert_eq!(opened?, 12);
    Ok(())
}

/// The same without a checkpoint: a crash while the last flush's record was written
/// (its record cut short, what a kill during the write or a power loss leaves) must
/// drop that record as a torn tail, even when its value holds bytes that look like
/// later records; it was refused as damage, and the store did not open.
#[test]
fn a_torn_record_whose_value_holds_bytes_of_log_records_is_a_torn_tail() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    let mut doc = store.open_document(&"d".into())?;
    for seq in 1..=3 {
        doc.insert_changes(vec![(actor(), seq, format!("{seq}").into_bytes())])?;
        doc.flush()?;
    }
    let mut value = forged_records(0..=8, 0..8);
    value.extend_from_slice(&[0xaa; 4000]);
    doc.insert_changes(vec![(actor(), 4, value)])?;
    doc.flush()?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(doc);
    drop(store);
    // Cut inside the last record, after the bytes that look like records.
    let log = log_of(&crashed);
    let bytes = fs::read(&log).map_err(io(&log))?;
    let cut = records_end(&bytes) - 2000;
    fs::write(&log, &bytes[..cut]).map_err(io(&log))?;

    let store = RedbStore::open(&crashed)?;
    let doc = store.open_document(&"d".into())?;
    assert_eq!(
        doc.get_changes()?,
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
    assert_eq!(store.recovered().len(), 1);
    Ok(())
}

/// A store's commit log is `<file>.log`; a file already there that is no commit log
/// (another store, an application's own log file) is not the store's to destroy. It
/// was truncated by the store's first flush, used as its log, and removed at close.
#[test]
fn a_file_of_another_program_at_the_log_s_path_is_not_destroyed() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("app");
    // Another store whose name is the first's with `.log` appended.
    let other = dir.path().join("app.log");
    {
        let store = RedbStore::open(&other)?;
        let mut doc = store.open_document(&"kept".into())?;
        doc.insert_changes(vec![(actor(), 1, b"precious".to_vec())])?;
        doc.flush()?;
        doc.close()?;
        store.close()?;
    }
    let before = fs::read(&other).map_err(io(&other))?;
    {
        let store = RedbStore::open(&path)?;
        let mut doc = store.open_document(&"d".into())?;
        doc.insert_changes(vec![(actor(), 1, b"x".to_vec())])?;
        // Refusing the flush is fine; destroying the other file is not.
        let _ = doc.flush();
        drop(doc);
        let _ = store.close();
    }
    assert!(other.exists(), "{} was removed", other.display());
    assert_eq!(
        fs::read(&other).map_err(io(&other))?,
        before,
        "{} was changed",
        other.display()
    );
    let store = RedbStore::open(&other)?;
    let doc = store.open_document(&"kept".into())?;
    assert_eq!(doc.get_changes()?, vec![b"precious".to_vec()]);
    Ok(())
}

fn redb_err(e: impl Into<redb::Error>) -> Error {
    Error::backend("redb", e.into().to_string())
}

/// The value of `key` in the `persister_meta` table of the closed store at `path`.
fn meta_value(path: &Path, key: &str) -> Result<Option<Vec<u8>>> {
    let db = redb::Database::open(path).map_err(redb_err)?;
    let txn = db.begin_read().map_err(redb_err)?;
    let meta = txn.open_table(META).map_err(redb_err)?;
    let value = meta.get(key).map_err(redb_err)?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// Rewrites the store at `path` (closed, or as a crash left it) and its log, if it has
/// one, as a build of layout 2 wrote them: `format_version` 2, the `"log"` entry
/// without its key (17 bytes), and a log of format version 1, whose records have a
/// 28-byte header (`REC1`, number, epoch, length, checksum) and no key, and whose end
/// mark is 28 zero bytes.
fn as_layout_2(path: &Path) -> Result<()> {
    let entry = meta_value(path, "log")?.expect("a store of layout 3 has a log entry");
    assert_eq!(entry.len(), 33, "layout 3's log entry");
    let key = entry[17..].to_vec();
    {
        let db = redb::Database::open(path).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("format_version", 2u32.to_be_bytes().as_slice())
                .map_err(redb_err)?;
            meta.insert("log", &entry[..17]).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
    }
    let log = log_of(path);
    if !log.exists() {
        return Ok(());
    }
    let bytes = fs::read(&log).map_err(io(&log))?;
    // The header without the key: magic, version, zeroes, epoch, checksum, zeroes.
    let mut old = bytes[..24].to_vec();
    old[8..12].copy_from_slice(&1u32.to_be_bytes());
    let crc = crc32c::crc32c(&old);
    old.extend_from_slice(&crc.to_be_bytes());
    old.extend_from_slice(&[0; 4]);
    let mut at = 48;
    while bytes.get(at..at + 4) == Some(b"REC2") && bytes[at + 20..at + 36] == key[..] {
        let len = u32::from_be_bytes(bytes[at + 36..at + 40].try_into().unwrap()) as usize;
        let payload = &bytes[at + 44..at + 44 + len];
        let mut head = b"REC1".to_vec();
        head.extend_from_slice(&bytes[at + 4..at + 20]);
        head.extend_from_slice(&(len as u32).to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), payload);
        head.extend_from_slice(&crc.to_be_bytes());
        old.extend_from_slice(&head);
        old.extend_from_slice(payload);
        at += 44 + len;
    }
    old.extend_from_slice(&[0; 28]);
    fs::write(&log, &old).map_err(io(&log))
}

/// The log format version in a log's header.
fn log_version(path: &Path) -> Result<[u8; 4]> {
    let bytes = fs::read(log_of(path)).map_err(io(path))?;
    Ok(bytes[8..12].try_into().unwrap())
}

/// A store of layout 2 (its log without a key) that crashed with flushes only its log
/// holds: a read-only open replays the log into memory and changes nothing; a writable
/// open asked to migrate replays it, makes the store layout 3, and the store goes on
/// with a log of the new format, through another crash.
#[test]
fn a_crashed_store_of_layout_2_migrates_when_asked_after_replaying_its_log() -> Result<()> {
    assert_eq!(FORMAT_VERSION, 3);
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 3, 10)?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    let read_only = dir.path().join("read-only.redb");
    copy_as_crashed(&path, &read_only)?;
    drop(store);
    as_layout_2(&crashed)?;
    as_layout_2(&read_only)?;
    assert_eq!(log_version(&crashed)?, 1u32.to_be_bytes());

    let before = (
        fs::read(&read_only).map_err(io(&read_only))?,
        fs::read(log_of(&read_only)).map_err(io(&read_only))?,
    );
    check(&RedbStore::open_read_only(&read_only)?, 3, 10)?;
    let after = (
        fs::read(&read_only).map_err(io(&read_only))?,
        fs::read(log_of(&read_only)).map_err(io(&read_only))?,
    );
    assert!(
        before == after,
        "a read-only open changed the store or its log"
    );

    let migrate = RedbOptions::default().migrate_format(true);
    let store = RedbStore::open_with(&crashed, migrate)?;
    check(&store, 3, 10)?;
    assert_eq!(store.format_version(), Some(FORMAT_VERSION));
    assert!(store.recovered().is_empty());
    assert!(!log_of(&crashed).exists());
    // The first commit names the log open; the second is its first record.
    let mut doc = store.open_document(&"doc 0".into())?;
    for seq in [11, 12] {
        doc.insert_changes(vec![(actor(), seq, format!("0:{seq}").into_bytes())])?;
        doc.flush()?;
    }
    assert_eq!(log_version(&crashed)?, 2u32.to_be_bytes());
    let log = fs::read(log_of(&crashed)).map_err(io(&crashed))?;
    assert!(records_end(&log) > 48, "the new log holds a record");
    let again = dir.path().join("again.redb");
    copy_as_crashed(&crashed, &again)?;
    drop(doc);
    store.close()?;
    assert_eq!(
        meta_value(&crashed, "format_version")?,
        Some(3u32.to_be_bytes().to_vec())
    );
    assert_eq!(meta_value(&crashed, "log")?.map(|e| e.len()), Some(33));

    let store = RedbStore::open(&again)?;
    let doc = store.open_document(&"doc 0".into())?;
    assert_eq!(doc.sizes().change_count, 12);
    assert_eq!(doc.get_changes()?.last(), Some(&b"0:12".to_vec()));
    Ok(())
}

/// A store of layout 2 closed cleanly becomes layout 3 at a writable open asked to
/// migrate, and reads as before; a read-only open leaves it layout 2.
#[test]
fn a_closed_store_of_layout_2_migrates_when_asked() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 4)?;
    store.close()?;
    as_layout_2(&path)?;
    let read_only = RedbStore::open_read_only(&path)?;
    check(&read_only, 2, 4)?;
    assert_eq!(read_only.format_version(), Some(2));
    drop(read_only);
    assert_eq!(
        meta_value(&path, "format_version")?,
        Some(2u32.to_be_bytes().to_vec())
    );
    let store = RedbStore::open(&path)?;
    assert_eq!(store.format_version(), Some(2));
    store.close()?;
    let store = RedbStore::open_with(&path, RedbOptions::default().migrate_format(true))?;
    check(&store, 2, 4)?;
    assert_eq!(store.format_version(), Some(FORMAT_VERSION));
    store.close()?;
    assert_eq!(
        meta_value(&path, "format_version")?,
        Some(3u32.to_be_bytes().to_vec())
    );
    assert_eq!(meta_value(&path, "log")?.map(|e| e.len()), Some(33));
    check(&RedbStore::open(&path)?, 2, 4)?;
    Ok(())
}

/// A store that crashed with its log open, whose log's path now holds another file
/// (an application's own log, moved there by mistake): the flushes only the log held
/// cannot be replayed, so the open is refused as damage, and the other file is left as
/// it was. It was read as an empty log: the store opened with `Ok`, without those
/// flushes, and deleted the file.
#[test]
fn a_crashed_store_whose_log_was_replaced_by_another_file_is_refused() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 5)?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(store);
    let log = log_of(&crashed);
    let foreign = b"2026-12-07 application started\n".repeat(100);
    fs::write(&log, &foreign).map_err(io(&log))?;
    for result in [
        RedbStore::open(&crashed),
        RedbStore::open_read_only(&crashed),
    ] {
        match result {
            Err(err @ Error::Corrupt { .. }) => {
                assert!(err.to_string().contains("crashed.redb.log"), "{err}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(fs::read(&log).map_err(io(&log))?, foreign);
    Ok(())
}

/// A store of layout 2, closed or crashed, opened without being asked to migrate: it
/// is read and written as layout 2, with logs of format version 1 that a crash
/// replays, and stays readable by the builds that wrote it (no silent migration).
#[test]
fn a_store_of_layout_2_is_written_as_layout_2_unless_asked_to_migrate() -> Result<()> {
    let dir = temp_dir()?;
    let path = dir.path().join("live.redb");
    let store = RedbStore::open(&path)?;
    write(&store, 2, 4)?;
    let crashed = dir.path().join("crashed.redb");
    copy_as_crashed(&path, &crashed)?;
    drop(store);
    as_layout_2(&path)?;
    as_layout_2(&crashed)?;
    for store_path in [&path, &crashed] {
        let store = RedbStore::open(store_path)?;
        check(&store, 2, 4)?;
        let mut doc = store.open_document(&"doc 0".into())?;
        for seq in 5..=7 {
            doc.insert_changes(vec![(actor(), seq, format!("0:{seq}").into_bytes())])?;
            doc.flush()?;
        }
        assert_eq!(log_version(store_path)?, 1u32.to_be_bytes());
        let again = dir.path().join("again.redb");
        copy_as_crashed(store_path, &again)?;
        drop(doc);
        store.close()?;
        for closed_or_crashed in [store_path, &again] {
            assert_eq!(
                meta_value(closed_or_crashed, "format_version")?,
                Some(2u32.to_be_bytes().to_vec()),
                "{}",
                closed_or_crashed.display()
            );
            let store = RedbStore::open(closed_or_crashed)?;
            let doc = store.open_document(&"doc 0".into())?;
            assert_eq!(doc.sizes().change_count, 7);
            assert_eq!(doc.get_changes()?.last(), Some(&b"0:7".to_vec()));
            drop(doc);
            store.close()?;
        }
        fs::remove_file(&again).map_err(io(&again))?;
    }
    Ok(())
}

/// Two stores crashed in their first session (both logs at checkpoint 0); one's log
/// ends up at the other's log path. It is not the store's log: recovery refuses it
/// and leaves it as it is. It was read as an empty log with a torn tail, the store
/// opened without the flushes only its own log held, and the file was deleted.
#[test]
fn a_crashed_store_whose_log_was_replaced_by_another_store_s_log_is_refused() -> Result<()> {
    let dir = temp_dir()?;
    let (a, b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let store_a = RedbStore::open(&a)?;
    write(&store_a, 2, 5)?;
    let store_b = RedbStore::open(&b)?;
    write(&store_b, 2, 5)?;
    let (crashed_a, crashed_b) = (dir.path().join("ca.redb"), dir.path().join("cb.redb"));
    copy_as_crashed(&a, &crashed_a)?;
    copy_as_crashed(&b, &crashed_b)?;
    drop(store_a);
    drop(store_b);
    let foreign = fs::read(log_of(&crashed_a)).map_err(io(&crashed_a))?;
    fs::write(log_of(&crashed_b), &foreign).map_err(io(&crashed_b))?;
    for result in [
        RedbStore::open(&crashed_b),
        RedbStore::open_read_only(&crashed_b),
    ] {
        match result {
            Err(err @ Error::Corrupt { .. }) => {
                assert!(err.to_string().contains("another store's log"), "{err}");
            }
            Ok(store) => panic!(
                "opened with Ok: {} documents, recovered {:?}",
                store.list_documents()?.len(),
                store.recovered()
            ),
            Err(other) => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(
        fs::read(log_of(&crashed_b)).map_err(io(&crashed_b))?,
        foreign,
        "the other store's log was changed"
    );
    Ok(())
}
