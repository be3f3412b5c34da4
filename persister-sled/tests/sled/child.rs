//! Child processes: this test binary run again with `PERSISTER_SLED_CHILD` naming what
//! to do. [`command`] builds the command line; [`child_entry_point`] is the one test the
//! child runs, which does nothing in an ordinary test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use persister_core::Result;

const MODE: &str = "PERSISTER_SLED_CHILD";
const DIR: &str = "PERSISTER_SLED_DIR";

/// A command that runs `mode` on the store at `dir` in a child process, its stdout
/// piped. The child's temporary directory (`TMPDIR`, where an open copies the store
/// first) is beside `dir`, so that a copy a killed child leaves goes with the test's
/// own directory.
pub fn command(mode: &str, dir: &Path) -> Command {
    let exe = std::env::current_exe().expect("the path of the test binary");
    let mut tmp = dir.as_os_str().to_os_string();
    tmp.push(".tmp");
    std::fs::create_dir_all(&tmp).expect("the child's temporary directory");
    let mut command = Command::new(exe);
    command.env("TMPDIR", &tmp);
    command
        .args([
            "--exact",
            "child::child_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

/// [`command`], run with files limited to `blocks` 512-byte blocks (`ulimit -f`) and
/// `SIGXFSZ` ignored, so that writing past that fails with `EFBIG` as a full disk
/// refuses a write.
#[cfg(unix)]
pub fn command_with_file_limit(mode: &str, dir: &Path, blocks: u32) -> Command {
    let inner = command(mode, dir);
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (name, value) in inner.get_envs() {
        if let Some(value) = value {
            limited.env(name, value);
        }
    }
    limited
}

/// Runs the child mode named by `PERSISTER_SLED_CHILD`; without it (an ordinary test
/// run), returns at once.
#[test]
fn child_entry_point() -> Result<()> {
    let Ok(mode) = std::env::var(MODE) else {
        return Ok(());
    };
    let dir = PathBuf::from(std::env::var_os(DIR).expect("PERSISTER_SLED_DIR"));
    match mode.as_str() {
        "crash-writer" => crate::crash::writer(&dir),
        "try-open" => {
            crate::store::try_open(&dir);
            Ok(())
        }
        "try-open-read-only" => {
            crate::protect::try_open_read_only(&dir);
            Ok(())
        }
        other => panic!("unknown child mode {other}"),
    }
}
