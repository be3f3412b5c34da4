//! Minimal reproductions of what the harness found, and of the cases it suspected
//! and cleared. A reproduction of an open bug is `#[ignore]`d with its reason, so that
//! `main` stays green; run those with `cargo test -p persister-reliability -- --ignored`.

use persister_core::{ActorId, Error, Persister, Store};
use persister_reliability::{Backend, Location, scratch_dir};

/// Dropping a sled store (with no handle open) and opening it again at once, as an
/// application closing and reopening a store does, must not fail with `Locked`. It
/// does, every other time on a memory file system, and seldom on a slow disk: sled's
/// lock on its `db` file is released a moment after the store is dropped.
#[test]
#[ignore = "open bug in persister-sled: the lock outlives the dropped store for a moment"]
fn sled_reopen_right_after_drop_is_not_locked() -> Result<(), Error> {
    let dir = scratch_dir().map_err(|e| Error::io("create", "scratch", e))?;
    let mut locked = 0;
    for round in 0..200u64 {
        // Straight to the backend: `Location::open` would wait for the lock.
        let store = match Backend::Sled.open_dir(dir.path()) {
            Ok(store) => store,
            Err(Error::Locked { .. }) => {
                locked += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut doc = store.open_document(&"doc".into())?;
        doc.insert_changes(vec![(ActorId::new([1]), round, b"x".to_vec())])?;
        doc.flush()?;
    }
    assert_eq!(locked, 0, "{locked} of 200 reopens failed with Locked");
    Ok(())
}

/// A record length field of an fs log overwritten with 2^32-1, in a record that is
/// not the last, must make the document fail to load with `Corrupt`: the records
/// after it were flushed, so dropping them as a torn tail would silently lose durable
/// data (contract point 6). (Passes: kept as the sweep's targeted case in miniature.)
#[test]
fn fs_hostile_length_in_a_middle_record_is_corruption_not_a_torn_tail() -> Result<(), Error> {
    use persister_reliability::corruption::fs_length_fields;
    let dir = scratch_dir().map_err(|e| Error::io("create", "scratch", e))?;
    let location = Location::new(Backend::Fs, dir.path());
    let store = location.open()?;
    let mut doc = store.open_document(&"a".into())?;
    for seq in 1..=3 {
        doc.insert_changes(vec![(ActorId::new([1]), seq, vec![seq as u8; 10])])?;
        doc.flush()?;
    }
    drop((doc, store));

    let log = Backend::Fs.store_path(dir.path()).join("d61.log");
    let mut bytes = std::fs::read(&log).map_err(|e| Error::io("read", &log, e))?;
    let fields = fs_length_fields(&bytes);
    // The id length, then one length field per record.
    assert_eq!(fields.len(), 4, "expected three records: {fields:?}");
    let second = fields[2] as usize;
    bytes[second..second + 4].copy_from_slice(&[0xff; 4]);
    std::fs::write(&log, &bytes).map_err(|e| Error::io("write", &log, e))?;

    let store = location.open()?;
    let loaded = store
        .open_document(&"a".into())
        .and_then(|doc| doc.get_changes());
    match loaded {
        Err(e) => assert!(e.is_corrupt(), "expected Corrupt, got {e}"),
        Ok(changes) => panic!(
            "the damaged log loaded as {} of its 3 flushed changes, without an error",
            changes.len()
        ),
    }
    Ok(())
}
