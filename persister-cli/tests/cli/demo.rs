//! `persister demo`.

use crate::support::named;

use crate::support::{TestResult, persister, read_store, run_in, run_with, snapshot_files};

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
            .contains("Replayed 25 of 41 trace transactions"),
        "{}",
        first.stdout
    );
    let second = run("25")?.expect(0);
    assert!(
        second.stdout.contains("equals its final text"),
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
    // Generated typing has a document of its own beside the trace's.
    let typing = persister(["demo", "--dir", d.to_str().unwrap(), "--edits", "5"])?.expect(0);
    assert!(
        typing.stdout.contains("session 1: a new document"),
        "{}",
        typing.stdout
    );
    let ls = persister(["ls", "--json", d.join("demo.redb").to_str().unwrap()])?
        .expect(0)
        .json()?;
    let ids: Vec<&str> = ls["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo", "trace-tiny.json"]);
    Ok(())
}

#[test]
fn the_progress_bar_counts_what_will_really_run_and_every_step_shows_progress() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("tiny.json");
    write_trace(&trace, 41)?;
    let d = dir.path().join("d");
    let run = || {
        run_with(
            None,
            &[("PERSISTER_PROGRESS", "lines")],
            [
                "demo",
                "--dir",
                d.to_str().unwrap(),
                "--trace",
                trace.to_str().unwrap(),
                "--edits",
                "25",
            ],
        )
    };
    let first = run()?.expect(0);
    for line in ["editing: 0 of 25", "editing: done, 25 of 25"] {
        assert!(
            first.stderr.lines().any(|l| l == line),
            "{line}: {}",
            first.stderr
        );
    }
    // 16 transactions are left: the bar is 16 long, and ends full.
    let second = run()?.expect(0);
    for line in ["editing: 0 of 16", "editing: done, 16 of 16"] {
        assert!(
            second.stderr.lines().any(|l| l == line),
            "{line}: {}",
            second.stderr
        );
    }
    assert!(!second.stderr.contains("of 25"), "{}", second.stderr);
    // Every step that can take long shows progress, and ends.
    for step in [
        "reading the trace",
        "opening the store",
        "loading the document",
        "flushing",
        "reopen + check",
    ] {
        for line in [format!("{step}..."), format!("{step}: done")] {
            assert!(
                second.stderr.lines().any(|l| l == line),
                "{line}: {}",
                second.stderr
            );
        }
    }
    // Without a terminal and without PERSISTER_PROGRESS, nothing of it is printed.
    let quiet = persister(["demo", "--dir", d.to_str().unwrap(), "--edits", "5"])?.expect(0);
    assert_eq!(quiet.stderr, "");
    Ok(())
}

#[test]
fn a_run_with_nothing_to_do_says_so_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("tiny.json");
    write_trace(&trace, 41)?;
    for (backend, store) in [(named("redb"), "demo.redb"), (named("fs"), "fs")] {
        let d = dir.path().join(format!("d-{backend}"));
        let args = |json: bool| {
            let mut args = vec![
                "demo",
                "--backend",
                backend.name(),
                "--dir",
                d.to_str().unwrap(),
                "--trace",
                trace.to_str().unwrap(),
            ];
            if json {
                args.push("--json");
            }
            args.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let done = persister(args(true))?.expect(0).json()?;
        assert_eq!(done["trace"]["complete"], true, "{done}");
        // What the store holds, read in full: every change and document, byte for
        // byte. (redb rewrites its header on every open, even to read, so its file
        // bytes are compared through its contents; an fs store's files must not
        // change at all.)
        let contents = read_store(backend, &d.join(store))?;
        let files = snapshot_files(&d)?;
        let unchanged = || -> TestResult<bool> {
            Ok(read_store(backend, &d.join(store))? == contents
                && (backend == named("redb") || snapshot_files(&d)? == files))
        };

        let idle = persister(args(false))?.expect(0);
        assert!(
            idle.stdout
                .contains("nothing to do: the trace is replayed to its end (41 edits in 1 session"),
            "{}",
            idle.stdout
        );
        assert!(
            idle.stdout.contains("the document is left as it was"),
            "{}",
            idle.stdout
        );
        assert!(idle.stdout.contains("--dir "), "{}", idle.stdout);
        assert!(unchanged()?, "an idle run changed the {backend} store");

        let json = persister(args(true))?.expect(0).json()?;
        assert_eq!(json["nothing_to_do"], true, "{json}");
        assert_eq!(json["edits"], 41, "{json}");
        assert_eq!(json["sessions"], 1, "{json}");
        assert!(unchanged()?, "an idle run changed the {backend} store");
    }
    Ok(())
}

#[test]
fn a_document_the_demo_did_not_make_gets_a_hint_naming_a_new_directory() -> TestResult {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    use persister_automerge::PersistentDoc;
    use persister_core::Store;

    let dir = tempfile::tempdir()?;
    let d = dir.path().join("mine");
    std::fs::create_dir(&d)?;
    {
        let store =
            crate::support::open_store(crate::support::named("redb"), &d.join("demo.redb"))?;
        let mut doc = PersistentDoc::load(store.open_document(&"demo".into())?)?;
        doc.edit(|d| d.put(ROOT, "title", "not the demo's"))?;
        doc.close()?;
    }
    let run = persister(["demo", "--dir", d.to_str().unwrap(), "--edits", "5"])?.expect(1);
    run.expect_error_lines();
    assert!(
        run.stderr.contains("was not made by `persister demo`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("such as --dir {}-2", d.display())),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn the_demo_runs_on_yjs_on_every_backend_and_continues() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in ["redb", "sled", "fs"] {
        let run = |session_args: &[&str]| {
            let mut args = vec![
                "demo",
                "--json",
                "--crdt",
                "yjs",
                "--dir",
                dir.path().to_str().unwrap(),
                "--backend",
                backend,
                "--flush-every",
                "50",
            ];
            args.extend_from_slice(session_args);
            persister(args)
        };
        let first = run(&["--edits", "1200"])?.expect(0).json()?;
        assert_eq!(first["crdt"], "yjs", "{first}");
        assert_eq!(first["document"], "demo-yjs", "{first}");
        assert!(first["compactions"].as_u64().unwrap() >= 1, "{first}");
        assert!(first["sizes"]["document"].as_u64().unwrap() > 0, "{first}");
        let chars = first["text_chars"].as_u64().unwrap();
        assert!(chars > 100, "{first}");

        let second = run(&["--edits", "300"])?.expect(0).json()?;
        assert_eq!(second["session"], 2, "{second}");
        assert_eq!(second["previous_edits"], 1200, "{second}");
        assert_eq!(second["loaded_chars"], chars, "{second}");
    }
    // The Yjs documents load with yrs in `info` and `verify`.
    let store = dir.path().join("demo.redb");
    let info = persister(["info", "--json", store.to_str().unwrap(), "demo-yjs"])?
        .expect(0)
        .json()?;
    assert_eq!(info["loads"]["crdt"], "yjs", "{info}");
    persister(["verify", store.to_str().unwrap()])?.expect(0);
    Ok(())
}

#[test]
fn a_trace_with_non_ascii_text_replays_on_yjs() -> TestResult {
    // yrs counts bytes, the trace counts characters: the demo converts.
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("accents.json");
    let mut text: Vec<char> = Vec::new();
    let mut txns = Vec::new();
    for i in 0..60usize {
        let (pos, delete, insert) = match i % 4 {
            0 => (text.len(), 0, "é"),
            1 => (0, 0, "ü€"),
            2 => (text.len() / 2, 0, "a"),
            _ => (text.len() / 3, 1, ""),
        };
        txns.push(format!(r#"{{"patches":[[{pos},{delete},"{insert}"]]}}"#));
        text.splice(pos..pos + delete, insert.chars());
    }
    let end: String = text.iter().collect();
    std::fs::write(
        &trace,
        format!(
            r#"{{"startContent":"","endContent":"{end}","txns":[{}]}}"#,
            txns.join(",")
        ),
    )?;
    let d = dir.path().join("d");
    let run = |edits: &str| {
        persister([
            "demo",
            "--crdt",
            "yjs",
            "--dir",
            d.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--edits",
            edits,
        ])
    };
    run("35")?.expect(0);
    let second = run("35")?.expect(0);
    assert!(
        second.stdout.contains("equals its final text"),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains(&format!("text of {} chars", end.chars().count())),
        "{}",
        second.stdout
    );
    Ok(())
}

/// Starts `persister demo` on an fs store in `dir` with `args`, flushing every edit,
/// and kills it (SIGKILL) once it has said that a tenth of its edits are done, each
/// flushed before it counted: an error if it ends before saying so.
fn killed_demo(dir: &std::path::Path, args: &[&str]) -> TestResult {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_persister"))
        .args(["demo", "--dir", dir.to_str().unwrap(), "--backend", "fs"])
        .args(["--flush-every", "1"])
        .args(args)
        .env("PERSISTER_PROGRESS", "lines")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    // Each line waits for the demo to print it; the first count past 0 is a tenth.
    let counted = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("editing: ") && !line.starts_with("editing: 0 of"));
    child.kill()?;
    let status = child.wait()?;
    if !counted {
        return Err(format!("the demo ended ({status}) before a tenth of its edits").into());
    }
    Ok(())
}

/// A session killed part-way keeps what it flushed. With a trace, the next session
/// finds from the text how far the trace got, counts those edits, and replays the rest
/// to the trace's final text; with generated typing, it says that the killed
/// session's edits are kept but not counted.
#[test]
fn a_session_killed_part_way_is_continued_from_what_it_flushed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("long.json");
    write_trace(&trace, 20_001)?;
    let d = dir.path().join("d");
    let trace_args = ["--trace", trace.to_str().unwrap(), "--edits", "1000000"];
    killed_demo(&d, &trace_args)?;
    let next = persister(
        [
            "demo",
            "--json",
            "--dir",
            d.to_str().unwrap(),
            "--backend",
            "fs",
        ]
        .iter()
        .chain(&trace_args),
    )?
    .expect(0)
    .json()?;
    assert_eq!(next["session"], 2, "{next}");
    assert_eq!(next["cut_short"]["session"], 1, "{next}");
    let recovered = next["cut_short"]["recovered_edits"]
        .as_u64()
        .ok_or("no recovered edits")?;
    assert!(recovered > 0, "{next}");
    // The killed session recorded none of its edits: they are all found in the text.
    assert_eq!(next["previous_edits"], recovered, "{next}");
    assert_eq!(next["edits"], 20_001 - recovered, "{next}");
    assert_eq!(next["trace"]["complete"], true, "{next}");
    // The next run counts every transaction, and has no session to report as cut short.
    let done = persister(
        ["demo", "--dir", d.to_str().unwrap(), "--backend", "fs"]
            .iter()
            .chain(&trace_args),
    )?
    .expect(0);
    assert!(
        done.stdout.contains("(20,001 edits in 2 sessions"),
        "{}",
        done.stdout
    );

    let typed = dir.path().join("typed");
    killed_demo(&typed, &["--edits", "20000"])?;
    let next = persister([
        "demo",
        "--dir",
        typed.to_str().unwrap(),
        "--backend",
        "fs",
        "--edits",
        "10",
    ])?
    .expect(0);
    assert!(
        next.stdout
            .contains("session 1 stopped before its end (Ctrl-C, a kill or a crash): what it flushed is kept; its edits are not counted"),
        "{}",
        next.stdout
    );
    assert!(next.stdout.contains("session 2: loaded"), "{}", next.stdout);
    Ok(())
}
