//! What a new user meets first: the help at 80 columns, the README's commands in the
//! README's order, and the exit codes.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use persister_cli::Cli;

use crate::support::{TestResult, persister, run_in, run_with};

/// `persister --help` and every subcommand's `--help`.
fn help_commands() -> Vec<Vec<String>> {
    let mut commands = vec![vec!["--help".to_string()], vec!["-h".to_string()]];
    for sub in Cli::command().get_subcommands() {
        for help in ["--help", "-h"] {
            commands.push(vec![sub.get_name().to_string(), help.to_string()]);
        }
    }
    commands
}

fn widest_line(text: &str) -> (usize, String) {
    text.lines()
        .map(|line| (line.chars().count(), line.to_string()))
        .max()
        .unwrap_or_default()
}

#[test]
fn every_help_fits_80_columns() -> TestResult {
    let commands = help_commands();
    assert!(commands.len() >= 18, "{commands:?}");
    for args in &commands {
        let run = run_with(None, &[("COLUMNS", "80")], args)?.expect(0);
        assert!(run.stdout.lines().count() > 3, "{args:?}: {}", run.stdout);
        let (width, line) = widest_line(&run.stdout);
        assert!(width <= 80, "{args:?}: a line of {width} columns:\n{line}");
    }
    // The width really comes from COLUMNS: wider, some lines use the room, so the
    // 80-column check above is not vacuous.
    let mut wider = 0;
    for args in &commands {
        let run = run_with(None, &[("COLUMNS", "110")], args)?.expect(0);
        let (width, line) = widest_line(&run.stdout);
        assert!(width <= 110, "{args:?}: a line of {width} columns:\n{line}");
        wider = wider.max(width);
    }
    assert!(
        wider > 80,
        "no help line is wider than 80 columns at COLUMNS=110"
    );
    Ok(())
}

#[test]
fn help_names_no_path_of_this_repository_and_lists_every_exit_code() -> TestResult {
    let demo = persister(["demo", "--help"])?.expect(0);
    assert!(!demo.stdout.contains("shared/traces"), "{}", demo.stdout);
    assert!(demo.stdout.contains("--trace"), "{}", demo.stdout);
    let main = persister(["--help"])?.expect(0);
    for code in [
        "0 success",
        "1 error",
        "2 bad usage",
        "3 damaged",
        "4 --skip-damaged",
        "130 interrupted",
    ] {
        assert!(main.stdout.contains(code), "{code}: {}", main.stdout);
    }
    Ok(())
}

/// The workspace root, where the README's commands are run from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `persister` commands of the README's `sh` code blocks, in order, as argument
/// lists (`cargo run --release -p persister-cli -- ARGS` is `persister ARGS`).
fn readme_commands(readme: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_sh = !in_sh && line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.split(" #").next().unwrap_or_default().trim();
        let args = line
            .strip_prefix("cargo run --release -p persister-cli -- ")
            .or_else(|| line.strip_prefix("persister "));
        if let Some(args) = args {
            assert!(
                !args.contains(['"', '\'', '\\']),
                "quoting is not supported here: {line}"
            );
            commands.push(args.split_whitespace().map(String::from).collect());
        }
    }
    commands
}

#[test]
fn the_readmes_commands_run_in_the_readmes_order_in_a_fresh_directory() -> TestResult {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let commands = readme_commands(&readme);
    let demos = commands.iter().filter(|c| c[0] == "demo").count();
    assert!(
        demos >= 3,
        "the README shows {demos} demo commands: {commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.iter().any(|a| a == "--trace")),
        "{commands:?}"
    );
    let dir = tempfile::tempdir()?;
    'commands: for mut args in commands {
        // A trace of this repository is named relative to the workspace root.
        for arg in &mut args {
            if arg.contains("shared/traces/") {
                let trace = root.join(&*arg);
                if !trace.is_file() {
                    println!(
                        "skipping `persister {}`: the trace {} is absent",
                        args.join(" "),
                        trace.display()
                    );
                    continue 'commands;
                }
                *arg = trace.display().to_string();
            }
        }
        let run = run_in(Some(dir.path()), &args)?;
        assert_eq!(
            run.code,
            0,
            "`persister {}` exited {}\n{}\n{}",
            args.join(" "),
            run.code,
            run.stdout,
            run.stderr
        );
    }
    Ok(())
}

#[test]
fn a_malformed_hex_id_is_bad_usage() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("s.redb");
    crate::support::make_store(crate::support::named("redb"), &store)?;
    for bad in ["0xabc", "0xzz"] {
        let run = persister(["info", store.to_str().unwrap(), bad])?.expect(2);
        run.expect_error_lines();
        assert!(run.stderr.contains("hex"), "{}", run.stderr);
        persister(["compact", store.to_str().unwrap(), bad])?.expect(2);
    }
    Ok(())
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_command_with_sigint_and_leaves_the_store_sound() -> TestResult {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir()?;
    let d = dir.path().join("d");
    let mut child = Command::new(env!("CARGO_BIN_EXE_persister"))
        .args(["demo", "--dir", d.to_str().unwrap(), "--edits", "100000000"])
        .env("PERSISTER_PROGRESS", "lines")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Wait until it is editing, then press Ctrl-C.
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().ok_or("the demo ended before editing")??;
        if line.starts_with("editing: 0 of") {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(kill.success());
    let status = child.wait()?;
    // Ended by SIGINT (2), which shells report as exit status 130, as documented.
    assert_eq!(status.signal(), Some(2), "{status:?}");
    // What it wrote up to then is a sound store.
    persister(["verify", d.join("demo.redb").to_str().unwrap()])?.expect(0);
    Ok(())
}

/// `persister migrate --help` names the format version this build writes for each
/// backend: a user with a store of an older version learns from it that the store
/// needs migrating.
#[test]
fn migrate_help_names_the_versions_this_build_writes() -> TestResult {
    let run = persister(["migrate", "--help"])?.expect(0);
    let help = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    let version = |name: &str| crate::support::named(name).format_version();
    let expected = format!(
        "the format version this build writes (redb layout {}, fs version {}, PostgreSQL version {})",
        version("redb"),
        version("fs"),
        version("postgres")
    );
    assert!(help.contains(&expected), "{expected}: {}", run.stdout);
    Ok(())
}

/// Runs `persister` with `args`, its stdout and stderr given.
fn run_to(
    args: &[&str],
    env: &[(&str, &str)],
    stdout: impl Into<std::process::Stdio>,
    stderr: impl Into<std::process::Stdio>,
) -> TestResult<i32> {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_persister"))
        .args(args)
        .env_remove("PERSISTER_PROGRESS")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()?;
    Ok(status.code().unwrap_or(-1))
}

/// A report that cannot be written (stdout on a full disk) fails the command: a script
/// reading `--json` from a file never gets exit code 0 with no JSON.
#[test]
fn a_report_lost_on_a_full_disk_is_an_error() -> TestResult {
    let full = Path::new("/dev/full");
    if !full.exists() {
        println!("skipped: no /dev/full to stand in for a full disk");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("s.redb");
    crate::support::make_store(crate::support::named("redb"), &store)?;
    let store = store.to_str().ok_or("path")?;
    for args in [
        vec!["--json", "ls", store],
        vec!["ls", store],
        vec!["--json", "verify", store],
    ] {
        let mut stderr = tempfile::tempfile()?;
        let code = run_to(
            &args,
            &[],
            std::fs::OpenOptions::new().write(true).open(full)?,
            stderr.try_clone()?,
        )?;
        let mut text = String::new();
        std::io::Seek::rewind(&mut stderr)?;
        std::io::Read::read_to_string(&mut stderr, &mut text)?;
        assert_eq!(code, 1, "{args:?}: {text}");
        assert!(text.contains("standard output"), "{args:?}: {text}");
    }
    Ok(())
}

/// A closed stdout or stderr (`persister ls STORE 2>&1 | head -1`) is not a failure of
/// the command: it runs to its end with its own exit code, and never panics.
#[test]
fn a_closed_stdout_or_stderr_does_not_stop_a_command() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("s.redb");
    crate::support::make_store(crate::support::named("redb"), &store)?;
    let store = store.to_str().ok_or("path")?;
    let closed = || -> TestResult<std::io::PipeWriter> {
        let (reader, writer) = std::io::pipe()?;
        drop(reader);
        Ok(writer)
    };
    let lines = [("PERSISTER_PROGRESS", "lines")];
    let copy = dir.path().join("copy.redb");
    // Progress lines go to stderr from the start of each step.
    let code = run_to(
        &["copy", store, copy.to_str().ok_or("path")?],
        &lines,
        closed()?,
        closed()?,
    )?;
    assert_eq!(code, 0, "copy with stdout and stderr closed");
    crate::support::persister(["verify", copy.to_str().ok_or("path")?])?.expect(0);
    assert_eq!(run_to(&["ls", store], &lines, closed()?, closed()?)?, 0);
    // An error that cannot be shown keeps its exit code.
    let missing = dir.path().join("missing.redb");
    let code = run_to(
        &["ls", missing.to_str().ok_or("path")?],
        &[],
        closed()?,
        closed()?,
    )?;
    assert_eq!(code, 1, "ls of a missing store with stderr closed");
    Ok(())
}
