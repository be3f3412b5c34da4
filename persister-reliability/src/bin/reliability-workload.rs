//! The child process of the kill tests and the corruption sweep.
//!
//! ```text
//! reliability-workload workload --backend B --dir D --seed S --len N --docs K
//!                               [--pause-at STEP]
//! reliability-workload corrupt --backend B --pristine P --work W --seed S
//!                              --random N --exhaustive BYTES --from I
//! reliability-workload build --backend B --dir D
//! reliability-workload show --seed S --len N --docs K
//! reliability-workload dump --backend B --dir D
//! ```
//!
//! `workload` runs the deterministic workload of a seed on a store and prints a line
//! after every step (see `persister_reliability::kill`); `corrupt` runs corruption
//! cases (see `persister_reliability::corruption`); `build` makes the corruption
//! sweep's store, to look at or to seed the fuzzers with; `show` prints the steps of a
//! workload and `dump` the contents of a store, to read a kill test's failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use persister_reliability::Backend;
use persister_reliability::corruption::{SweepConfig, sweep_child};
use persister_reliability::kill::run_child;

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
    let backend = Backend::from_name(get("backend")?)
        .ok_or_else(|| format!("unknown backend {:?}", get("backend")))?;
    let stdout = std::io::stdout();
    match command.as_str() {
        "workload" => run_child(
            backend,
            &PathBuf::from(get("dir")?),
            number("seed")?,
            number("len")? as usize,
            number("docs")? as usize,
            match options.get("pause-at").map(String::as_str) {
                None | Some("none") => None,
                Some(_) => Some(number("pause-at")? as usize),
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
        "build" => persister_reliability::corruption::build(backend, &PathBuf::from(get("dir")?))
            .map_err(|e| format!("building the store: {e}")),
        other => Err(format!("unknown command {other:?}")),
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
