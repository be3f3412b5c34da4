//! The reliability harness's model test: random operations on the store and on the
//! model side by side, with reopens that may lose only unflushed batches.

use std::collections::BTreeMap;

use persister_core::{BoxedStore, DynPersister, DynStore, Store};
use persister_postgres::{PostgresOptions, PostgresStore};
use persister_reliability::ops::{Op, document_id, workload_of};
use persister_reliability::{Contents, Rng, StoreModel, apply_to_handle, env_count};

use crate::cluster::{fresh_schema, server};

const DOCS: usize = 4;

#[test]
fn random_operations_match_the_model() -> Result<(), String> {
    let steps = env_count("PERSISTER_PG_STEPS", 300) as usize;
    let seed = env_count("PERSISTER_PG_SEED", 0x0de1_0015);
    let options = PostgresOptions::default().schema(fresh_schema());
    let open = || -> Result<DynStore, String> {
        PostgresStore::open_with(&server().url(), options.clone())
            .map(|s| Box::new(BoxedStore(s)) as DynStore)
            .map_err(|e| e.to_string())
    };
    let mut rng = Rng::new(seed);
    let mut store = open()?;
    let mut handles: BTreeMap<usize, DynPersister> = BTreeMap::new();
    let mut model = StoreModel::new();
    let (mut reopens, mut checks) = (0, 0);
    for (i, op) in workload_of(seed, steps, DOCS, false)
        .into_iter()
        .enumerate()
    {
        let context = |e: String| format!("step {i} (seed {seed}) {op:?}: {e}");
        if rng.chance(1, 25) {
            handles.clear();
            drop(store);
            store = open()?;
            model.adopt_store(&store).map_err(context)?;
            reopens += 1;
        }
        match &op {
            Op::FlushAll => {
                for (doc, p) in &mut handles {
                    p.flush().map_err(|e| context(e.to_string()))?;
                    model.doc_mut(*doc).durable();
                }
            }
            Op::RemoveDocument { doc } => {
                handles.remove(doc);
                store
                    .remove_document(&document_id(*doc))
                    .map_err(|e| context(e.to_string()))?;
                model.doc_mut(*doc).remove();
            }
            Op::Reopen => {}
            Op::Apply { doc, .. }
            | Op::Single { doc, .. }
            | Op::Compact { doc, .. }
            | Op::Refused { doc, .. }
            | Op::Flush { doc } => {
                if !handles.contains_key(doc) {
                    let p = store
                        .open_document(&document_id(*doc))
                        .map_err(|e| context(e.to_string()))?;
                    handles.insert(*doc, p);
                }
                if let Some(p) = handles.get_mut(doc) {
                    apply_to_handle(p, &op).map_err(|e| context(e.to_string()))?;
                    if let Some((_, batch)) = op.batch() {
                        model.doc_mut(*doc).apply(batch);
                    }
                    if matches!(op, Op::Flush { .. }) {
                        model.doc_mut(*doc).durable();
                    }
                    let found = Contents::read(p).map_err(|e| context(e.to_string()))?;
                    let expected = Contents::of(model.doc(*doc).current());
                    if found != expected {
                        return Err(context(format!(
                            "document differs: {}",
                            found.diff(&expected)
                        )));
                    }
                    checks += 1;
                }
            }
        }
    }
    println!("postgres model test: {steps} steps, {reopens} reopens, {checks} checks");
    Ok(())
}
