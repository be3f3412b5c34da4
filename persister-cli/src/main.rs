//! The `persister` command. For now it has one subcommand, `demo`, on the in-memory
//! backend; the disk backends, inspection and migration come with their crates.

use std::process::ExitCode;

use persister_core::{
    ActorId, AutoFlush, Batch, CompactionTrigger, FlushPolicy, MemoryStore, Persister, Store,
};

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("demo") => match demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: persister demo");
            ExitCode::from(2)
        }
    }
}

fn demo() -> persister_core::Result<()> {
    let store = MemoryStore::new();
    let mut doc = AutoFlush::new(
        store.open_document(&"demo".into())?,
        FlushPolicy::EveryWrites(100),
    );
    let trigger = CompactionTrigger::default();
    let actor = ActorId::new([1; 16]);
    let mut compactions = 0;
    for seq in 1..=5_000u64 {
        doc.insert_changes(vec![(actor.clone(), seq, vec![b'x'; 64])])?;
        if trigger.should_compact(&doc.sizes()) {
            let mut batch = Batch::new().set_document(vec![b'd'; 2_000]);
            for (a, s, _) in doc.get_change_entries()? {
                batch = batch.remove_change(a, s);
            }
            doc.apply(batch)?;
            compactions += 1;
        }
    }
    doc.flush()?;
    let sizes = doc.sizes();
    println!("backend: memory (disk backends arrive with their crates)");
    println!("changes written: 5000, compactions: {compactions}");
    println!(
        "stored now: {} changes ({} bytes), document {} bytes",
        sizes.change_count, sizes.changes, sizes.document
    );
    Ok(())
}
