//! `persister demo`.

use crate::support::{TestResult, persister, run_in};

#[test]
fn demo_with_no_flags_makes_persister_demo_in_the_current_directory() -> TestResult {
    // The README's first command, as written (cargo runs it from the workspace root).
    let dir = tempfile::tempdir()?;
    let run = run_in(Some(dir.path()), ["demo"])?.expect(0);
    assert!(
        run.stdout.contains("session 1: a new document"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("5,000 edits"), "{}", run.stdout);
    assert!(run.stdout.contains("matches"), "{}", run.stdout);
    assert!(dir.path().join("persister-demo/demo.redb").is_file());
    Ok(())
}

#[test]
fn a_second_run_continues_the_same_document() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path().join("d");
    let args = |extra: &[&str]| {
        let mut args = vec!["demo", "--dir", d.to_str().unwrap(), "--edits", "300"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let first = persister(args(&["--json"]))?.expect(0).json()?;
    assert_eq!(first["session"], 1);
    assert_eq!(first["edits"], 300);
    let chars = first["text_chars"].as_u64().unwrap();
    assert!(chars > 100, "{first}");
    let second = persister(args(&[]))?.expect(0);
    assert!(
        second.stdout.contains(&format!(
            "session 2: loaded 300 edits from the previous run, text now {chars} chars"
        )),
        "{}",
        second.stdout
    );
    let third = persister(args(&["--json"]))?.expect(0).json()?;
    assert_eq!(third["session"], 3);
    assert_eq!(third["previous_edits"], 600);
    Ok(())
}

#[test]
fn the_demo_runs_on_every_backend_flushing_and_compacting() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in ["sled", "fs", "redb"] {
        let run = persister([
            "demo",
            "--json",
            "--dir",
            dir.path().to_str().unwrap(),
            "--backend",
            backend,
            "--edits",
            "1200",
            "--flush-every",
            "50",
        ])?
        .expect(0)
        .json()?;
        assert_eq!(run["backend"], backend);
        // 1,200 edits and the closing write, 50 a flush, and the flush on close.
        assert!(run["flushes"].as_u64().unwrap() >= 24, "{run}");
        assert!(run["compactions"].as_u64().unwrap() >= 1, "{run}");
        assert!(run["sizes"]["document"].as_u64().unwrap() > 0, "{run}");
        assert!(run["disk_bytes"].as_u64().unwrap() > 0, "{run}");
    }
    // One store per backend, side by side.
    assert!(dir.path().join("demo.redb").is_file());
    assert!(dir.path().join("sled").is_dir() && dir.path().join("fs").is_dir());
    Ok(())
}

/// A trace of `n` transactions typing "ab" n/2 times, with one deletion at the end.
fn write_trace(path: &std::path::Path, n: usize) -> TestResult<String> {
    let mut text = String::new();
    let mut txns = Vec::new();
    for i in 0..n - 1 {
        let c = if i % 2 == 0 { "a" } else { "b" };
        txns.push(format!(r#"{{"patches":[[{},0,"{c}"]]}}"#, text.len()));
        text.push_str(c);
    }
    txns.push(r#"{"patches":[[0,1,""]]}"#.to_string());
    text.remove(0);
    let json = format!(
        r#"{{"startContent":"","endContent":"{text}","txns":[{}]}}"#,
        txns.join(",")
    );
    std::fs::write(path, json)?;
    Ok(text)
}

#[test]
fn a_trace_is_replayed_across_sessions_to_its_end() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("tiny.json");
    let end = write_trace(&trace, 41)?;
    let d = dir.path().join("d");
    let run = |edits: &str| {
        persister([
            "demo",
            "--dir",
            d.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--edits",
            edits,
        ])
    };
    let first = run("25")?.expect(0);
    assert!(
        first
            .stdout
            .contains("replayed 25 of 41 trace transactions"),
        "{}",
        first.stdout
    );
    let second = run("25")?.expect(0);
    assert!(
        second.stdout.contains("equals its endContent"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("16 edits"), "{}", second.stdout);
    assert!(
        second
            .stdout
            .contains(&format!("text of {} chars", end.len())),
        "{}",
        second.stdout
    );
    // A document typed from a trace is not continued by generated typing.
    let other = persister(["demo", "--dir", d.to_str().unwrap(), "--edits", "5"])?.expect(1);
    other.expect_error_lines();
    assert!(other.stderr.contains("trace tiny.json"), "{}", other.stderr);
    Ok(())
}

#[test]
fn bad_demo_arguments_are_usage_errors() -> TestResult {
    persister(["demo", "--flush-every", "0"])?.expect(2);
    persister(["demo", "--backend", "lmdb"])?.expect(2);
    let missing = persister(["demo", "--trace", "/nonexistent/trace.json.gz"])?.expect(1);
    missing.expect_error_lines();
    Ok(())
}
