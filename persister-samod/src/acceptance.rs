//! The storage adapter acceptance suite of automerge-repo (`runStorageAdapterTests`),
//! ported to samod's [`Storage`] trait, with cases of its own for what samod stores:
//! real changes, compressed changes, bundles, two snapshots at once, forked actors, and
//! prefixes that are prefixes of each other as strings.
//!
//! Each case is a plain `async fn` on any `&impl Storage` that starts empty; run them
//! all for an adapter with [`acceptance_tests!`](crate::acceptance_tests), which
//! expands to one `#[test]` per case, driven by [`block_on`] (no async runtime):
//!
//! ```
//! mod samod_in_memory {
//!     persister_samod::acceptance_tests!((samod::storage::InMemoryStorage::new(), ()));
//! }
//! ```
//!
//! The macro's argument is evaluated once per case and gives the storage and a guard
//! kept alive while the case runs (a temporary directory, say).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use samod::storage::{Storage, StorageKey};

/// What a case returns: `Err` says what did not hold.
pub type Outcome = Result<(), String>;

/// The names of every case, in the order [`acceptance_tests!`](crate::acceptance_tests)
/// runs them.
pub const CASES: &[&str] = &[
    "load_of_a_missing_key_is_none",
    "saved_data_loads",
    "composite_keys_load",
    "a_large_payload_loads",
    "load_range_of_nothing_is_empty",
    "load_range_returns_every_key_under_nested_prefixes",
    "load_range_of_the_empty_prefix_returns_everything",
    "removing_everything_leaves_a_usable_store",
    "load_range_returns_only_matching_keys",
    "removed_keys_are_gone",
    "saving_twice_overwrites",
    "remove_range_removes_the_range",
    "remove_range_keeps_other_keys",
    "prefixes_compare_whole_components",
    "load_range_of_a_whole_key_returns_it",
    "changes_of_every_kind_round_trip",
    "two_snapshots_are_two_keys",
    "forked_actors_keep_both_changes",
];

const PAYLOAD_A: &[u8] = &[0, 1, 127, 99, 154, 235];
const PAYLOAD_B: &[u8] = &[1, 76, 160, 53, 57, 10, 230];
const PAYLOAD_C: &[u8] = &[2, 111, 74, 131, 236, 96, 142, 193];

/// 100,000 bytes that look random and are the same every run.
fn large_payload() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_be_bytes()[0]
        })
        .collect()
}

/// A key from its components.
pub fn key(parts: &[&str]) -> StorageKey {
    match StorageKey::from_parts(parts) {
        Ok(key) => key,
        // Every key of this suite is valid; an invalid one is a bug in the suite.
        Err(_) => panic!("invalid key in the acceptance suite: {parts:?}"),
    }
}

fn check<T: PartialEq + std::fmt::Debug>(what: &str, found: T, expected: T) -> Outcome {
    if found == expected {
        Ok(())
    } else {
        Err(format!("{what}: found {found:?}, expected {expected:?}"))
    }
}

fn range(entries: &[(&[&str], &[u8])]) -> HashMap<StorageKey, Vec<u8>> {
    entries.iter().map(|(k, v)| (key(k), v.to_vec())).collect()
}

/// Removes every key under `prefix` (automerge-repo's `removeRange`).
pub async fn remove_range(storage: &impl Storage, prefix: StorageKey) {
    for key in storage.load_range(prefix).await.into_keys() {
        storage.delete(key).await;
    }
}

/// automerge-repo: load, "should return undefined if there is no data".
pub async fn load_of_a_missing_key_is_none(storage: &impl Storage) -> Outcome {
    check(
        "load",
        storage.load(key(&["AAAAA", "sync-state", "xxxxx"])).await,
        None,
    )
}

/// automerge-repo: save and load, "should return data that was saved".
pub async fn saved_data_loads(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["storage-adapter-id"]), PAYLOAD_A.to_vec())
        .await;
    check(
        "load",
        storage.load(key(&["storage-adapter-id"])).await,
        Some(PAYLOAD_A.to_vec()),
    )
}

/// automerge-repo: save and load, "should work with composite keys".
pub async fn composite_keys_load(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    check(
        "load",
        storage.load(key(&["AAAAA", "sync-state", "xxxxx"])).await,
        Some(PAYLOAD_A.to_vec()),
    )
}

/// automerge-repo: save and load, "should work with a large payload" (100,000 bytes).
pub async fn a_large_payload_loads(storage: &impl Storage) -> Outcome {
    let large = large_payload();
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), large.clone())
        .await;
    check(
        "load",
        storage.load(key(&["AAAAA", "sync-state", "xxxxx"])).await,
        Some(large),
    )
}

/// automerge-repo: loadRange, "should return an empty array if there is no data".
pub async fn load_range_of_nothing_is_empty(storage: &impl Storage) -> Outcome {
    check(
        "load_range",
        storage.load_range(key(&["AAAAA"])).await,
        HashMap::new(),
    )
}

/// automerge-repo: save and loadRange, "should return all the data that matches the
/// key", at two depths of prefix.
pub async fn load_range_returns_every_key_under_nested_prefixes(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "snapshot", "yyyyy"]), PAYLOAD_B.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "sync-state", "zzzzz"]), PAYLOAD_C.to_vec())
        .await;
    check(
        "load_range [AAAAA]",
        storage.load_range(key(&["AAAAA"])).await,
        range(&[
            (&["AAAAA", "sync-state", "xxxxx"], PAYLOAD_A),
            (&["AAAAA", "snapshot", "yyyyy"], PAYLOAD_B),
            (&["AAAAA", "sync-state", "zzzzz"], PAYLOAD_C),
        ]),
    )?;
    check(
        "load_range [AAAAA, sync-state]",
        storage.load_range(key(&["AAAAA", "sync-state"])).await,
        range(&[
            (&["AAAAA", "sync-state", "xxxxx"], PAYLOAD_A),
            (&["AAAAA", "sync-state", "zzzzz"], PAYLOAD_C),
        ]),
    )
}

/// automerge-repo: "should enumerate every chunk for the empty prefix".
pub async fn load_range_of_the_empty_prefix_returns_everything(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["storage-adapter-id"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_B.to_vec())
        .await;
    storage
        .put(key(&["BBBBB", "snapshot", "yyyyy"]), PAYLOAD_C.to_vec())
        .await;
    check(
        "load_range []",
        storage.load_range(key(&[])).await,
        range(&[
            (&["storage-adapter-id"], PAYLOAD_A),
            (&["AAAAA", "sync-state", "xxxxx"], PAYLOAD_B),
            (&["BBBBB", "snapshot", "yyyyy"], PAYLOAD_C),
        ]),
    )
}

/// automerge-repo: "should remove every chunk for the empty prefix and stay usable".
pub async fn removing_everything_leaves_a_usable_store(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["storage-adapter-id"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_B.to_vec())
        .await;
    remove_range(storage, key(&[])).await;
    check(
        "load_range [] after removing it",
        storage.load_range(key(&[])).await,
        HashMap::new(),
    )?;
    storage
        .put(key(&["CCCCC", "snapshot", "zzzzz"]), PAYLOAD_C.to_vec())
        .await;
    check(
        "load",
        storage.load(key(&["CCCCC", "snapshot", "zzzzz"])).await,
        Some(PAYLOAD_C.to_vec()),
    )
}

/// automerge-repo: "should only load values that match they key".
pub async fn load_range_returns_only_matching_keys(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["BBBBB", "sync-state", "zzzzz"]), PAYLOAD_C.to_vec())
        .await;
    check(
        "load_range [AAAAA]",
        storage.load_range(key(&["AAAAA"])).await,
        range(&[(&["AAAAA", "sync-state", "xxxxx"], PAYLOAD_A)]),
    )
}

/// automerge-repo: save and remove, "after removing, should be empty".
pub async fn removed_keys_are_gone(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "snapshot", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage.delete(key(&["AAAAA", "snapshot", "xxxxx"])).await;
    check(
        "load_range",
        storage.load_range(key(&["AAAAA"])).await,
        HashMap::new(),
    )?;
    check(
        "load",
        storage.load(key(&["AAAAA", "snapshot", "xxxxx"])).await,
        None,
    )
}

/// automerge-repo: save and save, "should overwrite data saved with the same key".
pub async fn saving_twice_overwrites(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_B.to_vec())
        .await;
    check(
        "load_range",
        storage.load_range(key(&["AAAAA", "sync-state"])).await,
        range(&[(&["AAAAA", "sync-state", "xxxxx"], PAYLOAD_B)]),
    )
}

/// automerge-repo: removeRange, "should remove a range of records".
pub async fn remove_range_removes_the_range(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "snapshot", "yyyyy"]), PAYLOAD_B.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "sync-state", "zzzzz"]), PAYLOAD_C.to_vec())
        .await;
    remove_range(storage, key(&["AAAAA", "sync-state"])).await;
    check(
        "load_range",
        storage.load_range(key(&["AAAAA"])).await,
        range(&[(&["AAAAA", "snapshot", "yyyyy"], PAYLOAD_B)]),
    )
}

/// automerge-repo: removeRange, "should not remove records that don't match".
pub async fn remove_range_keeps_other_keys(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "sync-state", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["BBBBB", "sync-state", "zzzzz"]), PAYLOAD_B.to_vec())
        .await;
    remove_range(storage, key(&["AAAAA"])).await;
    check(
        "load_range",
        storage.load_range(key(&["BBBBB"])).await,
        range(&[(&["BBBBB", "sync-state", "zzzzz"], PAYLOAD_B)]),
    )
}

/// `["a"]` is not a prefix of `["ab"]`, at any depth, and a one-component key is not
/// under another's range.
pub async fn prefixes_compare_whole_components(storage: &impl Storage) -> Outcome {
    let keys: &[&[&str]] = &[
        &["a"],
        &["ab"],
        &["a", "b"],
        &["a", "bc"],
        &["ab", "b"],
        &["a", "b", "c"],
        &["a", "bc", "c"],
    ];
    for (i, k) in keys.iter().enumerate() {
        storage.put(key(k), vec![i as u8]).await;
    }
    let under = |prefix: &[&str]| {
        keys.iter()
            .enumerate()
            .filter(|(_, k)| k.len() >= prefix.len() && k[..prefix.len()] == *prefix)
            .map(|(i, k)| (key(k), vec![i as u8]))
            .collect::<HashMap<_, _>>()
    };
    for prefix in [
        &["a"][..],
        &["ab"],
        &["a", "b"],
        &["a", "bc"],
        &["a", "b", "c"],
        &["b"],
    ] {
        check(
            &format!("load_range {prefix:?}"),
            storage.load_range(key(prefix)).await,
            under(prefix),
        )?;
    }
    check(
        "load_range []",
        storage.load_range(key(&[])).await,
        under(&[]),
    )
}

/// A prefix that is a whole key returns that key.
pub async fn load_range_of_a_whole_key_returns_it(storage: &impl Storage) -> Outcome {
    storage
        .put(key(&["AAAAA", "snapshot", "xxxxx"]), PAYLOAD_A.to_vec())
        .await;
    storage
        .put(key(&["AAAAA", "incremental", "yyyyy"]), PAYLOAD_B.to_vec())
        .await;
    check(
        "load_range of the snapshot key",
        storage
            .load_range(key(&["AAAAA", "snapshot", "xxxxx"]))
            .await,
        range(&[(&["AAAAA", "snapshot", "xxxxx"], PAYLOAD_A)]),
    )?;
    check(
        "load_range of the incremental key",
        storage
            .load_range(key(&["AAAAA", "incremental", "yyyyy"]))
            .await,
        range(&[(&["AAAAA", "incremental", "yyyyy"], PAYLOAD_B)]),
    )
}

fn edit(doc: &mut Automerge, field: &str, value: &str) -> Result<automerge::ChangeHash, String> {
    let mut tx = doc.transaction();
    tx.put(ROOT, field, value).map_err(|e| e.to_string())?;
    tx.commit().0.ok_or_else(|| "empty transaction".to_string())
}

fn change_bytes(
    doc: &Automerge,
    hash: &automerge::ChangeHash,
) -> Result<automerge::Change, String> {
    doc.get_change_by_hash(hash)
        .ok_or_else(|| format!("no change {hash}"))
}

/// What samod stores, and what it may: plain and compressed change chunks under their
/// hash, a bundle, a whole document and garbage under incremental keys, a change under
/// a hash that is not its own; all load back exactly, by key and by range, and delete.
pub async fn changes_of_every_kind_round_trip(storage: &impl Storage) -> Outcome {
    let mut doc = Automerge::new().with_actor(ActorId::from([1u8; 16]));
    let small = edit(&mut doc, "a", "x")?;
    let big = edit(&mut doc, "b", &"long text ".repeat(500))?;
    let third = edit(&mut doc, "c", "y")?;
    let mut big_change = change_bytes(&doc, &big)?;
    let compressed = big_change.bytes().into_owned();
    if compressed == big_change.raw_bytes() {
        return Err("the big change did not compress; the case needs a compressed chunk".into());
    }
    let bundle = doc
        .bundle([small, third])
        .map_err(|e| e.to_string())?
        .bytes()
        .to_vec();
    let small_bytes = change_bytes(&doc, &small)?.raw_bytes().to_vec();
    let third_bytes = change_bytes(&doc, &third)?.raw_bytes().to_vec();
    let (small, big, third) = (small.to_string(), big.to_string(), third.to_string());
    let entries: Vec<(Vec<&str>, Vec<u8>)> = vec![
        (vec!["doc", "incremental", &small], small_bytes.clone()),
        (vec!["doc", "incremental", &big], compressed),
        (vec!["doc", "incremental", "bundle"], bundle),
        (vec!["doc", "incremental", "whole"], doc.save()),
        (vec!["doc", "incremental", "garbage"], PAYLOAD_A.to_vec()),
        // A change under another change's hash is not that change.
        (vec!["doc", "incremental", &third], small_bytes),
        (vec!["doc", "snapshot", "s"], doc.save()),
    ];
    for (k, v) in &entries {
        storage.put(key(k), v.clone()).await;
    }
    let expected: HashMap<_, _> = entries.iter().map(|(k, v)| (key(k), v.clone())).collect();
    check(
        "load_range [doc]",
        storage.load_range(key(&["doc"])).await,
        expected.clone(),
    )?;
    for (k, v) in &entries {
        check(
            &format!("load {k:?}"),
            storage.load(key(k)).await,
            Some(v.clone()),
        )?;
    }
    // Overwriting a key held elsewhere moves it.
    storage
        .put(key(&["doc", "incremental", &third]), third_bytes.clone())
        .await;
    check(
        "load after overwrite",
        storage.load(key(&["doc", "incremental", &third])).await,
        Some(third_bytes),
    )?;
    for (k, _) in &entries {
        storage.delete(key(k)).await;
    }
    check(
        "load_range after deleting",
        storage.load_range(key(&["doc"])).await,
        HashMap::new(),
    )
}

/// Two snapshots under different hashes are two keys until one is deleted, whichever
/// is deleted first.
pub async fn two_snapshots_are_two_keys(storage: &impl Storage) -> Outcome {
    let s = |name: &str| key(&["doc", "snapshot", name]);
    storage.put(s("one"), PAYLOAD_A.to_vec()).await;
    storage.put(s("two"), PAYLOAD_B.to_vec()).await;
    storage.put(s("three"), PAYLOAD_C.to_vec()).await;
    check(
        "load_range",
        storage.load_range(key(&["doc", "snapshot"])).await,
        range(&[
            (&["doc", "snapshot", "one"], PAYLOAD_A),
            (&["doc", "snapshot", "two"], PAYLOAD_B),
            (&["doc", "snapshot", "three"], PAYLOAD_C),
        ]),
    )?;
    storage.delete(s("three")).await;
    check(
        "load_range after deleting the newest",
        storage.load_range(key(&["doc", "snapshot"])).await,
        range(&[
            (&["doc", "snapshot", "one"], PAYLOAD_A),
            (&["doc", "snapshot", "two"], PAYLOAD_B),
        ]),
    )?;
    storage.delete(s("one")).await;
    check(
        "load two",
        storage.load(s("two")).await,
        Some(PAYLOAD_B.to_vec()),
    )?;
    check("load one", storage.load(s("one")).await, None)?;
    storage.put(s("two"), PAYLOAD_C.to_vec()).await;
    storage.delete(s("two")).await;
    check(
        "load_range after deleting all",
        storage.load_range(key(&["doc"])).await,
        HashMap::new(),
    )
}

/// Two different changes with the same actor and seq (an actor id reused by two
/// processes) are both kept.
pub async fn forked_actors_keep_both_changes(storage: &impl Storage) -> Outcome {
    let actor = ActorId::from([7u8; 16]);
    let mut left = Automerge::new().with_actor(actor.clone());
    let mut right = Automerge::new().with_actor(actor);
    let l = edit(&mut left, "side", "left")?;
    let r = edit(&mut right, "side", "right")?;
    let lb = change_bytes(&left, &l)?.raw_bytes().to_vec();
    let rb = change_bytes(&right, &r)?.raw_bytes().to_vec();
    let (l, r) = (l.to_string(), r.to_string());
    storage
        .put(key(&["doc", "incremental", &l]), lb.clone())
        .await;
    storage
        .put(key(&["doc", "incremental", &r]), rb.clone())
        .await;
    let expected: HashMap<_, _> = [
        (key(&["doc", "incremental", &l]), lb),
        (key(&["doc", "incremental", &r]), rb),
    ]
    .into();
    check(
        "load_range",
        storage.load_range(key(&["doc", "incremental"])).await,
        expected,
    )?;
    storage.delete(key(&["doc", "incremental", &l])).await;
    check(
        "load of the deleted one",
        storage.load(key(&["doc", "incremental", &l])).await,
        None,
    )?;
    check(
        "load_range after delete",
        storage.load_range(key(&["doc", "incremental"])).await.len(),
        1,
    )
}

/// Runs a future to completion on this thread, with no runtime: the suite needs
/// nothing from an executor.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// One `#[test]` per case of the [acceptance suite](crate::acceptance) for a storage.
///
/// The argument is an expression evaluated anew for each case, giving `(storage,
/// guard)`: a storage with nothing stored, and anything to keep alive until the case
/// ends.
#[macro_export]
macro_rules! acceptance_tests {
    ($setup:expr) => {
        $crate::acceptance_tests!(@cases $setup;
            load_of_a_missing_key_is_none,
            saved_data_loads,
            composite_keys_load,
            a_large_payload_loads,
            load_range_of_nothing_is_empty,
            load_range_returns_every_key_under_nested_prefixes,
            load_range_of_the_empty_prefix_returns_everything,
            removing_everything_leaves_a_usable_store,
            load_range_returns_only_matching_keys,
            removed_keys_are_gone,
            saving_twice_overwrites,
            remove_range_removes_the_range,
            remove_range_keeps_other_keys,
            prefixes_compare_whole_components,
            load_range_of_a_whole_key_returns_it,
            changes_of_every_kind_round_trip,
            two_snapshots_are_two_keys,
            forked_actors_keep_both_changes
        );
    };
    (@cases $setup:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let (storage, guard) = $setup;
                let outcome = $crate::acceptance::block_on($crate::acceptance::$case(&storage));
                drop(storage);
                drop(guard);
                if let Err(what) = outcome {
                    panic!("{}: {what}", stringify!($case));
                }
            }
        )*
    };
}
