//! The peer of row 7 for Yjs: `yrs-kvstore` 0.3 on LMDB (`yrs-lmdb` 0.3), the
//! persistence that yrs' own project publishes, which is on yrs 0.19 (renamed `yrs019`
//! here so that it cannot be mistaken for the workspace's yrs).
//!
//! The replay does what `yrs-lmdb`'s documentation shows, batched as `persister-yrs` is:
//! every transaction's update is stored with `push_update` in an LMDB write transaction
//! that commits (LMDB syncs on commit) every `flush_every` edits, and the stored updates
//! are merged into the document state with `flush_doc_with` whenever `push_update`
//! returns a multiple of [`COMPACT_EVERY`]. Its baseline is the same replay on a plain
//! yrs 0.19 `Doc`, since the two yrs versions differ in speed.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use lmdb_rs::core::DbCreate;
use lmdb_rs::{DbHandle, Environment};
use yrs_kvstore::DocOps;
use yrs_lmdb::LmdbStore;
use yrs019::updates::decoder::Decode;
use yrs019::{Doc, GetString, Text, TextRef, Transact, TransactionMut, Update};

use crate::Result;
use crate::clock::Stopwatch;
use crate::rows::trace::Edits;
use crate::rows::yjs::{TEXT, check};

/// Stored updates merged into the document state once `push_update` returns a multiple
/// of this: about as often as `persister-yrs`' default trigger compacts in this replay
/// (65 times against 68).
pub const COMPACT_EVERY: u32 = 4_000;
/// The document's name in the store. `yrs-kvstore` 0.3 takes the counter of a new
/// update from the last key at or before the document's updates, which before the
/// first one is the key that maps the name to a number (`0 0 name 0`): shorter than
/// five bytes, for a name of one or two bytes, that overflows (a panic in a debug
/// build), so the name here is longer.
const NAME: &str = "automerge-paper";
/// LMDB's map: the largest the store may grow, reserved as address space only.
const MAP_SIZE: u64 = 1 << 30;

/// Applies one edit in `txn`: `rows::yjs`' own, written again for yrs 0.19's types.
fn apply(
    txn: &mut TransactionMut<'_>,
    text: &TextRef,
    (pos, delete, insert): &(usize, usize, String),
) {
    if *delete > 0 {
        text.remove_range(txn, *pos as u32, *delete as u32);
    }
    if !insert.is_empty() {
        text.insert(txn, *pos as u32, insert);
    }
}

/// The peer's baseline: every edit as one transaction on a plain yrs 0.19 `Doc`; own
/// time, s.
pub fn replay_plain(edits: &Edits) -> Result<f64> {
    let watch = Stopwatch::start();
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT);
    for edit in &edits.edits {
        apply(&mut doc.transact_mut(), &text, edit);
    }
    let own = watch.lap().own.as_secs_f64();
    check(&text.get_string(&doc.transact()), &edits.end_text)?;
    Ok(own)
}

fn open(dir: &Path) -> Result<(Environment, DbHandle)> {
    let env = Environment::new()
        .autocreate_dir(true)
        .map_size(MAP_SIZE)
        .max_dbs(1)
        .open(dir, 0o600)
        .map_err(|e| format!("LMDB: {e:?}"))?;
    let db = env
        .create_db("yrs", DbCreate)
        .map_err(|e| format!("LMDB: {e:?}"))?;
    Ok((env, db))
}

fn lmdb<T>(result: std::result::Result<T, impl std::fmt::Debug>) -> Result<T> {
    result.map_err(|e| format!("yrs-lmdb: {e:?}").into())
}

/// Every edit as one transaction through `yrs-kvstore` on LMDB in `dir`; own time (s)
/// and compactions.
pub fn replay_persisted(flush_every: usize, dir: &Path, edits: &Edits) -> Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let (env, db) = open(dir)?;
    let watch = Stopwatch::start();
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT);
    let captured: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = Arc::clone(&captured);
    let _subscription = lmdb(doc.observe_update_v1(move |_, event| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.update.clone());
    }))?;
    let options = doc.options().clone();
    let mut compactions = 0;
    let mut txn = lmdb(env.new_transaction())?;
    for (i, edit) in edits.edits.iter().enumerate() {
        apply(&mut doc.transact_mut(), &text, edit);
        let store = LmdbStore::from(txn.bind(&db));
        for update in captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let seq = lmdb(store.push_update(NAME, &update))?;
            if seq % COMPACT_EVERY == 0 {
                lmdb(store.flush_doc_with(NAME, options.clone()))?;
                compactions += 1;
            }
        }
        if (i + 1) % flush_every == 0 {
            lmdb(txn.commit())?;
            txn = lmdb(env.new_transaction())?;
        }
    }
    lmdb(txn.commit())?;
    let own = watch.lap().own.as_secs_f64();
    check(&text.get_string(&doc.transact()), &edits.end_text)?;
    Ok((own, compactions))
}

/// Opens the store in `dir` and loads the document with `load_doc`, then decodes the
/// same bytes (the document state and the updates, applied in one transaction) with
/// yrs 0.19 alone, alternating; the fastest of `times` of each, ms of own time.
pub fn reload(dir: &Path, expected: &str, times: usize) -> Result<(f64, f64)> {
    let (mut reload_ms, mut decode_ms) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..times {
        let watch = Stopwatch::start();
        let (env, db) = open(dir)?;
        let doc = Doc::new();
        {
            let reader = lmdb(env.get_reader())?;
            let store = LmdbStore::from(reader.bind(&db));
            lmdb(store.load_doc(NAME, &mut doc.transact_mut()))?;
        }
        reload_ms = reload_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        let text = doc.get_or_insert_text(TEXT);
        check(&text.get_string(&doc.transact()), expected)?;
        let updates = stored_updates(&env, &db)?;
        drop((env, db));

        let watch = Stopwatch::start();
        let plain = Doc::new();
        {
            let mut txn = plain.transact_mut();
            for update in &updates {
                txn.apply_update(lmdb(Update::decode_v1(update))?);
            }
        }
        decode_ms = decode_ms.min(watch.lap().own.as_secs_f64() * 1e3);
        let text = plain.get_or_insert_text(TEXT);
        check(&text.get_string(&plain.transact()), expected)?;
    }
    Ok((reload_ms, decode_ms))
}

/// The document state and every update the store holds (its only document), as
/// `load_doc` reads them, in key order: each one Yjs v1 update. `yrs-kvstore`'s keys
/// are `0 0 name 0` (the name's number), `0 1 number:4 0` (the state), `0 1 number:4 1`
/// (the state vector) and `0 1 number:4 2 counter:4 0` (an update).
fn stored_updates(env: &Environment, db: &DbHandle) -> Result<Vec<Vec<u8>>> {
    let reader = lmdb(env.get_reader())?;
    let bound = reader.bind(db);
    let mut values = Vec::new();
    for entry in lmdb(bound.iter())? {
        let key: &[u8] = entry.get_key();
        if let [0, 1, _, _, _, _, 0 | 2, ..] = key {
            let value: &[u8] = entry.get_value();
            values.push(value.to_vec());
        }
    }
    Ok(values)
}
