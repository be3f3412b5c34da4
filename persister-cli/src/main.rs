//! The `persister` command; everything but parsing lives in the `persister_cli` library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use persister_cli::{Cli, run};

fn main() -> ExitCode {
    persister_cli::clean_up_on_signals();
    let result = run(Cli::parse());
    while persister_cli::interrupted() {
        // The signal handler ends the process once it has cleaned up.
        std::thread::park();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`, which panics on a stderr that cannot be written.
            let _ = writeln!(std::io::stderr().lock(), "{error}");
            ExitCode::from(error.code)
        }
    }
}
