//! Random puts, deletes, loads, ranges and reopens on every local backend, checked
//! against a map: the layout (changes under their actor and seq, the snapshot in the
//! document slot, everything else as entries) never shows samod other than a
//! key-value store. `PERSISTER_SAMOD_MODEL_SEEDS` runs more seeds.

use std::collections::HashMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use persister_backends::StoreKind;
use persister_samod::acceptance::{block_on, key};
use persister_samod::{Options, SamodStorage};
use persister_testkit::Rng;
use samod::storage::{Storage, StorageKey};

use crate::support::{Result, named, storage};

/// Named values: changes (two actors, one of them forked so two changes share an actor
/// and seq) under their hash, whole documents and garbage.
fn values() -> Result<Vec<(String, Vec<u8>)>> {
    let mut values = Vec::new();
    for (n, actor) in [1u8, 2, 2].into_iter().enumerate() {
        let mut doc = Automerge::new().with_actor(ActorId::from([actor; 16]));
        for i in 0..3 {
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), format!("{n}-{i}"))?;
            let hash = tx.commit().0.ok_or("an empty change")?;
            let change = doc.get_change_by_hash(&hash).ok_or("no change")?;
            values.push((hash.to_string(), change.raw_bytes().to_vec()));
        }
        values.push((format!("save{n}"), doc.save()));
    }
    values.push(("garbage".into(), vec![1, 2, 3]));
    Ok(values)
}

#[test]
fn random_operations_match_a_map_across_reopens() -> Result {
    let seeds = persister_testkit::env_count("PERSISTER_SAMOD_MODEL_SEEDS", 3);
    let values = values()?;
    for name in ["memory", "redb", "fs", "sled"] {
        let backend = named(name);
        for seed in 0..seeds {
            let dir = tempfile::tempdir()?;
            let mut rng = Rng::new(seed);
            let mut st: SamodStorage = storage(&backend, dir.path(), Options::new())?;
            let mut model: HashMap<StorageKey, Vec<u8>> = HashMap::new();
            let mut log = Vec::new();
            for _ in 0..200 {
                let doc = ["A", "B"][rng.index(2)];
                let kind = ["incremental", "snapshot", "sync-state"][rng.index(3)];
                let (mut hash, value) = values[rng.index(values.len())].clone();
                if rng.chance(1, 3) {
                    // A value under another value's name: a change under a foreign hash.
                    hash = values[rng.index(values.len())].0.clone();
                }
                let k = key(&[doc, kind, &hash]);
                match rng.index(10) {
                    0..=3 => {
                        log.push(format!("put {k} ({} bytes)", value.len()));
                        block_on(st.put(k.clone(), value.clone()));
                        model.insert(k, value);
                    }
                    4 | 5 => {
                        log.push(format!("delete {k}"));
                        block_on(st.delete(k.clone()));
                        model.remove(&k);
                    }
                    6 => {
                        let found = block_on(st.load(k.clone()));
                        assert_eq!(
                            found.as_ref(),
                            model.get(&k),
                            "{name} seed {seed}: load {k} after {log:#?}"
                        );
                    }
                    7 => {
                        let prefix = match rng.index(4) {
                            0 => key(&[]),
                            1 => key(&[doc]),
                            2 => key(&[doc, kind]),
                            _ => k,
                        };
                        let expected: HashMap<_, _> = model
                            .iter()
                            .filter(|(k, _)| prefix.is_prefix_of(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let found = block_on(st.load_range(prefix.clone()));
                        assert_eq!(
                            found, expected,
                            "{name} seed {seed}: range {prefix} after {log:#?}"
                        );
                    }
                    _ if backend.kind() != StoreKind::Memory => {
                        log.push("reopen".into());
                        st.close()?;
                        st = storage(&backend, dir.path(), Options::new())?;
                    }
                    _ => {}
                }
            }
            st.close()?;
        }
    }
    Ok(())
}
