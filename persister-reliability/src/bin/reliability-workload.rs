//! The child process of the kill tests and the corruption sweep.
//!
//! ```text
//! reliability-workload workload --backend B --dir D --seed S --len N --docs K
//!                               [--pause-at STEP] [--payload-only true]
//! reliability-workload corrupt --backend B --pristine P --work W --seed S
//!                              --random N --exhaustive BYTES --from I
//! reliability-workload concurrent --backend B --dir D --seed S --threads T --docs K
//! reliability-workload build --backend B --dir D
//! reliability-workload show --seed S --len N --docs K
//! reliability-workload dump --backend B --dir D
//! reliability-workload overwrite --backend B --dir D [--second-len N] [--empty-peer true]
//! ```
//!
//! `workload` runs the deterministic workload of a seed on a store and prints a line
//! after every step (see `persister_reliability::kill`); `corrupt` runs corruption
//! cases (see `persister_reliability::corruption`); `concurrent` runs writer threads
//! on many documents until killed (see `persister_reliability::concurrent`); `build` makes the corruption
//! sweep's store, to look at or to seed the fuzzers with; `show` prints the steps of a
//! workload and `dump` the contents of a store, to read a kill test's failure;
//! `overwrite` loops on one document until killed (see [`overwrite`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use persister_reliability::Backend;
use persister_reliability::corruption::{SweepConfig, sweep_child};
use persister_reliability::kill::{ChildArgs, run_child};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reliability-workload: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or("missing command: workload or corrupt")?;
    let mut options = HashMap::new();
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?
            .to_string();
        let value = args
            .next()
            .ok_or_else(|| format!("--{name} needs a value"))?;
        options.insert(name, value);
    }
    let get = |name: &str| -> Result<&String, String> {
        options.get(name).ok_or_else(|| format!("missing --{name}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        get(name)?.parse().map_err(|e| format!("--{name}: {e}"))
    };
    if command == "show" {
        let ops = persister_reliability::workload(
            number("seed")?,
            number("len")? as usize,
            number("docs")? as usize,
        );
        for (i, op) in ops.iter().enumerate() {
            println!("{i}: {op:?}");
        }
        return Ok(());
    }
    let backend = persister_reliability::backend::from_name(get("backend")?)
        .ok_or_else(|| format!("unknown backend {:?}", get("backend")))?;
    let stdout = std::io::stdout();
    match command.as_str() {
        "workload" => run_child(
            &ChildArgs {
                backend,
                dir: PathBuf::from(get("dir")?),
                seed: number("seed")?,
                len: number("len")? as usize,
                docs: number("docs")? as usize,
                payload_only: options.get("payload-only").is_some_and(|v| v == "true"),
                pause_at: match options.get("pause-at").map(String::as_str) {
                    None | Some("none") => None,
                    Some(_) => Some(number("pause-at")? as usize),
                },
                skip_step: None,
            },
            &mut stdout.lock(),
        ),
        "corrupt" => {
            let config = SweepConfig {
                seed: number("seed")?,
                random: number("random")?,
                exhaustive: number("exhaustive")?,
                memory_limit_kib: 0,
            };
            sweep_child(
                backend,
                &PathBuf::from(get("pristine")?),
                &PathBuf::from(get("work")?),
                &config,
                number("from")? as usize,
                &mut stdout.lock(),
            )
        }
        "dump" => dump(backend, &PathBuf::from(get("dir")?)),
        "concurrent" => concurrent(
            backend,
            &PathBuf::from(get("dir")?),
            persister_reliability::concurrent::Sizes {
                threads: number("threads")? as usize,
                docs: number("docs")? as usize,
            },
            number("seed")?,
        ),
        "overwrite" => overwrite(
            backend,
            &PathBuf::from(get("dir")?),
            options
                .get("second-len")
                .map_or(Ok(0), |_| number("second-len"))? as usize,
            options.get("empty-peer").is_some_and(|v| v == "true"),
            &mut stdout.lock(),
        ),
        "build" => persister_reliability::corruption::build(backend, &PathBuf::from(get("dir")?))
            .map_err(|e| format!("building the store: {e}")),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Runs the concurrent workload on the store in `dir`, opened as its own type so that
/// its own `flush_documents` is the one used, until killed.
fn concurrent(
    backend: Backend,
    dir: &std::path::Path,
    sizes: persister_reliability::concurrent::Sizes,
    seed: u64,
) -> Result<(), String> {
    use persister_reliability::concurrent::run_child;
    let out = std::sync::Mutex::new(std::io::stdout());
    let location = persister_reliability::Location::new(backend, dir);
    let path = location.path();
    let open = |e: persister_core::Error| format!("opening the store: {e}");
    // Runs until the parent kills it; the bound only stops a child left behind.
    let steps = 10_000_000;
    // The workspace's disk backends as their own types, so that their group commit
    // across handles is what runs: a boxed store flushes its handles one by one.
    match backend.name() {
        "redb" => run_child(
            &persister_redb::RedbStore::open(path).map_err(open)?,
            sizes,
            seed,
            steps,
            &out,
        ),
        "sled" => run_child(
            &persister_sled::SledStore::open(path).map_err(open)?,
            sizes,
            seed,
            steps,
            &out,
        ),
        "fs" => run_child(
            &persister_fs::FsStore::open(path).map_err(open)?,
            sizes,
            seed,
            steps,
            &out,
        ),
        "memory" => Err("the memory backend cannot be killed and reopened".into()),
        // Any other backend of the registry, through its entry.
        _ => run_child(&location.open().map_err(open)?, sizes, seed, steps, &out),
    }
}

/// Prints every document of the store: its changes' keys and lengths, its document's
/// length, its sync states and its sizes.
fn dump(backend: Backend, dir: &std::path::Path) -> Result<(), String> {
    use persister_core::Store;
    let store = persister_reliability::Location::new(backend, dir)
        .open()
        .map_err(|e| format!("opening the store: {e}"))?;
    let ids = store
        .list_documents()
        .map_err(|e| format!("listing: {e}"))?;
    for id in ids {
        let p = store
            .open_document(&id)
            .map_err(|e| format!("opening {id}: {e}"))?;
        let contents =
            persister_reliability::Contents::read(&p).map_err(|e| format!("reading {id}: {e}"))?;
        println!("document {id:?}: {:?}", contents.sizes);
        for (actor, seq, value) in &contents.changes {
            println!("  change {actor}/{seq}: {value:?}");
        }
        println!("  document: {:?}", contents.document);
        for (peer, state) in &contents.sync_states {
            println!("  sync state {peer:?}: {state:?}");
        }
    }
    Ok(())
}

/// Until killed, for `r` = 0, 1, ...: sets document `"doc"` and the sync state of a
/// peer to 63 bytes of `r + 1` in one batch, flushes, prints `ack A r`; sets the
/// document to `second_len` zero bytes, flushes, prints `ack B r`; removes the sync
/// state, flushes, prints `ack C r`; inserts a change without flushing. The peer id is
/// empty when `empty_peer`. With `second_len` 0 or an empty peer, batches B and C carry
/// no payload byte: the focused reproduction of lost acknowledged writes (see the
/// findings tests).
fn overwrite(
    backend: Backend,
    dir: &std::path::Path,
    second_len: usize,
    empty_peer: bool,
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    use persister_core::{ActorId, Batch, Persister, Store};
    let store = persister_reliability::Location::new(backend, dir)
        .open()
        .map_err(|e| format!("opening the store: {e}"))?;
    let mut doc = store
        .open_document(&"doc".into())
        .map_err(|e| format!("opening the document: {e}"))?;
    let mut say = |line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing: {e}"))
    };
    let peer = if empty_peer {
        Vec::new()
    } else {
        b"p".to_vec()
    };
    say("ready".into())?;
    for round in 0..u64::MAX {
        let e = |e: persister_core::Error| format!("round {round}: {e}");
        let full = vec![(round % 255) as u8 + 1; 63];
        let steps = [
            (
                "A",
                Batch::new()
                    .set_document(full.clone())
                    .set_sync_state(peer.clone(), full),
            ),
            ("B", Batch::new().set_document(vec![0; second_len])),
            ("C", Batch::new().remove_sync_state(peer.clone())),
        ];
        for (name, batch) in steps {
            doc.apply(batch).map_err(e)?;
            doc.flush().map_err(e)?;
            say(format!("ack {name} {round}"))?;
        }
        doc.insert_changes(vec![(ActorId::new([1]), round, vec![7; 20])])
            .map_err(e)?;
    }
    Ok(())
}
