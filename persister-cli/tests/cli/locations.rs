//! Store locations the command cannot use: a URL no backend takes, a URL or path of
//! the wrong kind for `--backend`, a new store on a server named by anything but its
//! URL. Each is refused by name, with what to do, and no message shows any piece of a
//! password the location holds.

use crate::support::{TestResult, make_store, named, names_in, persister};

/// The two halves of a password written with a raw `@` between them, which a URL's
/// reader and the PostgreSQL driver split differently.
const HALVES: [&str; 2] = ["Pw7a", "Zq81"];

/// A failing command shows its location without either half of its password, in its
/// message as in its report, and still says what went wrong and what to do.
#[test]
fn no_piece_of_a_password_is_shown_by_a_failing_command() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("a.redb");
    make_store(named("redb"), &store)?;
    let store = store.to_str().unwrap();
    let password = HALVES.join("@");
    // Nothing listens on port 1, so a command that reaches the server fails there.
    let url = format!("postgres://app:{password}@127.0.0.1:1/notes");
    let unknown = format!("mysql://app:{password}@db.example/notes");
    let connection = format!("host=127.0.0.1 port=1 user=app password={password} dbname=notes");
    let quoted = format!("host=127.0.0.1 port=1 user=app password='{password} x' dbname=notes");
    let cases: [(Vec<&str>, &str); 9] = [
        (vec!["ls", &unknown], "which no backend takes"),
        (vec!["verify", &unknown], "which no backend takes"),
        (vec!["copy", store, &unknown], "which no backend takes"),
        (
            vec!["ls", "--backend", "redb", &url],
            "leave out --backend redb",
        ),
        (
            vec!["migrate", "--backend", "fs", &url],
            "leave out --backend fs",
        ),
        // A connection string is the postgres backend's too, when --backend says so.
        (
            vec!["ls", "--backend", "postgres", &connection],
            "check the URL, and that the server is running",
        ),
        (
            vec!["info", "--backend", "postgres", &connection, "notes"],
            "check the URL, and that the server is running",
        ),
        // A new store on a server is built beside its destination, named by its URL.
        (
            vec!["copy", store, "--backend", "postgres", &connection],
            "give the new store as a URL",
        ),
        (
            vec!["copy", store, "--backend", "postgres", &quoted],
            "give the new store as a URL",
        ),
    ];
    for (args, advice) in cases {
        for json in [false, true] {
            let mut args = args.clone();
            if json {
                args.push("--json");
            }
            let run = persister(&args)?.expect(1);
            run.expect_error_lines();
            let shown = format!("{}{}", run.stdout, run.stderr);
            for half in HALVES {
                assert!(!shown.contains(half), "{args:?} shows {half}: {shown}");
            }
            assert!(run.stderr.contains(advice), "{args:?}: {}", run.stderr);
        }
    }
    // A password with a raw `@` and a `/`, which no reading of the URL splits where
    // its writer meant: refused before anything connects, none of it shown.
    let slashed = "postgres://app:Pw7a@Zq/81@127.0.0.1:1/notes";
    for args in [vec!["ls", slashed], vec!["copy", store, slashed]] {
        let run = persister(&args)?.expect(1);
        let shown = format!("{}{}", run.stdout, run.stderr);
        for piece in ["Pw7a", "Zq", "81@"] {
            assert!(!shown.contains(piece), "{args:?} shows {piece}: {shown}");
        }
        assert!(run.stderr.contains("%40"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        names_in(dir.path())?,
        ["a.redb"],
        "a command left something"
    );
    Ok(())
}

/// A path of the wrong kind for `--backend`, and a URL no backend takes (a PostgreSQL
/// URL missing a `/` is one), are refused by name, with advice that fits the mistake.
#[test]
fn a_location_of_the_wrong_kind_names_the_mistake_and_what_to_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a.redb");
    make_store(named("redb"), &file)?;
    let directory = dir.path().join("d");
    std::fs::create_dir(&directory)?;
    let (file, directory) = (file.to_str().unwrap(), directory.to_str().unwrap());
    for (args, cause, advice) in [
        (
            ["ls", directory, "--backend", "redb"],
            "is a directory, and a redb store is one file",
            "leave out --backend redb",
        ),
        (
            ["verify", file, "--backend", "fs"],
            "is a file, and an fs store is a directory",
            "leave out --backend fs",
        ),
        (
            ["compact", file, "--backend", "sled"],
            "is a file, and a sled store is a directory",
            "leave out --backend sled",
        ),
        (
            ["ls", "postgres:/oops", "--backend", "postgres"],
            "invalid PostgreSQL URL",
            "expected postgres://user",
        ),
    ] {
        let run = persister(args)?.expect(1);
        run.expect_error_lines();
        assert!(run.stderr.contains(cause), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(advice), "{args:?}: {}", run.stderr);
    }
    // Written where a relative path would be meant: a URL of a scheme no backend takes,
    // for an existing store as for a new one, and nothing is made.
    for args in [
        vec!["ls", "postgres:/oops"],
        vec!["copy", file, "postgres:/oops"],
        vec!["copy", file, "postgres:/oops", "--backend", "fs"],
    ] {
        let run = persister(&args)?.expect(1);
        run.expect_error_lines();
        for part in ["which no backend takes", "postgres://", "./NAME"] {
            assert!(
                run.stderr.contains(part),
                "{args:?}: {part}: {}",
                run.stderr
            );
        }
    }
    // A new PostgreSQL store given a path.
    let out = dir.path().join("out.redb");
    let run = persister(["copy", file, out.to_str().unwrap(), "--backend", "postgres"])?.expect(1);
    run.expect_error_lines();
    assert!(
        run.stderr.contains("is not a URL of the postgres backend"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("postgres://"), "{}", run.stderr);
    assert_eq!(names_in(dir.path())?, ["a.redb", "d"]);
    // An empty location is bad usage, refused before anything is looked at.
    for args in [
        vec!["ls", ""],
        vec!["copy", file, ""],
        vec!["import", "", file],
    ] {
        let run = persister(&args)?.expect(2);
        assert!(
            run.stderr.contains("a value is required"),
            "{args:?}: {}",
            run.stderr
        );
    }
    Ok(())
}
