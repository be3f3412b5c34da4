//! A store held open by another process (this test process) is refused clearly.

use crate::support::{TestResult, backends, make_store, open_store, persister, store_path};

#[test]
fn every_command_refuses_a_store_held_open_elsewhere() -> TestResult {
    let dir = tempfile::tempdir()?;
    for backend in backends() {
        let path = store_path(dir.path(), backend);
        make_store(backend, &path)?;
        let store = path.to_str().unwrap();
        let out = dir.path().join(format!("out-{}", backend.name()));
        let out = out.to_str().unwrap();
        let held = open_store(backend, &path)?;
        for args in [
            vec!["ls", store],
            vec!["info", store, "notes"],
            vec!["verify", store],
            vec!["compact", store],
            vec!["copy", store, out],
            vec!["export", store, out],
        ] {
            let run = persister(&args)?.expect(1);
            run.expect_error_lines();
            assert!(
                run.stderr
                    .contains(&format!("the store at {store} is locked")),
                "{args:?} on {}: {}",
                backend.name(),
                run.stderr
            );
            assert!(run.stderr.contains("close the program"), "{}", run.stderr);
            assert!(!std::path::Path::new(out).exists());
        }
        drop(held);
        persister(["ls", store])?.expect(0);
    }
    Ok(())
}
