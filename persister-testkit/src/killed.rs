//! A child process killed with `SIGKILL` after some of its acknowledgements: the
//! kill tests of the document crates.

use std::error::Error;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

/// What a child run by [`run_and_kill`] reported before it was killed or exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KilledRun {
    /// The number on its `start <n>` line.
    pub start: usize,
    /// The number on its last `ack <n>` line (0 if none).
    pub last_ack: usize,
    /// Whether it was killed (rather than exiting on its own, successfully).
    pub killed: bool,
}

/// Runs `child` with its output piped, reading lines `start <n>` (once) and `ack <n>`
/// (after each acknowledged flush) from its stdout; after `kill_after` acks it waits
/// `delay` more, so that the kill lands anywhere in what follows, and kills it.
///
/// Fails when the child exits unsuccessfully other than by the kill (with its stderr),
/// or never printed `start`.
pub fn run_and_kill(
    child: &mut Command,
    kill_after: u64,
    delay: Duration,
) -> Result<KilledRun, Box<dyn Error>> {
    let mut child = child
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (mut acks, mut last_ack, mut start) = (0, 0, None);
    let mut killed = false;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if !read_line(&line, &mut start, &mut last_ack, &mut acks)? {
            continue;
        }
        if acks >= kill_after {
            // Not a wait for a condition: a random extra delay that moves the kill into
            // the middle of the child's work.
            std::thread::sleep(delay);
            child.kill()?;
            killed = true;
            break;
        }
    }
    let status = child.wait()?;
    // What the child printed before it died: every `ack` there was printed after its
    // flush returned, so the last one is the last acknowledgement.
    for line in lines {
        read_line(&line?, &mut start, &mut last_ack, &mut acks)?;
    }
    if !(status.success() || killed && status.signal() == Some(SIGKILL)) {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr)?;
        }
        return Err(format!("child failed ({status}): {stderr}").into());
    }
    Ok(KilledRun {
        start: start.ok_or("the child never started")?,
        last_ack,
        killed: killed && !status.success(),
    })
}

/// Reads one line of the child: `start <n>` sets `start`, `ack <n>` sets `last_ack` and
/// counts in `acks`. Returns whether it was one of them.
fn read_line(
    line: &str,
    start: &mut Option<usize>,
    last_ack: &mut usize,
    acks: &mut u64,
) -> Result<bool, Box<dyn Error>> {
    if let Some(n) = line.strip_prefix("start ") {
        *start = Some(n.parse()?);
    } else if let Some(n) = line.strip_prefix("ack ") {
        *last_ack = n.parse()?;
        *acks += 1;
    } else {
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that prints its start and three acknowledgements in one write, then
    /// waits to be killed: killed after the first, it still reports the third, which
    /// was printed before it died.
    #[test]
    fn acknowledgements_printed_before_the_kill_count() -> Result<(), Box<dyn Error>> {
        let mut child = Command::new("sh");
        child.args([
            "-c",
            "/usr/bin/printf 'start 0\\nack 1\\nack 2\\nack 3\\n'; exec sleep 600",
        ]);
        let run = run_and_kill(&mut child, 1, Duration::ZERO)?;
        assert_eq!(
            run,
            KilledRun {
                start: 0,
                last_ack: 3,
                killed: true
            }
        );
        Ok(())
    }

    /// A child that fails on its own is an error, with what it wrote to stderr.
    #[test]
    fn a_failing_child_is_an_error() {
        let mut child = Command::new("sh");
        child.args(["-c", "echo 'start 0'; echo broken >&2; exit 3"]);
        let e = run_and_kill(&mut child, 5, Duration::ZERO).map(|_| ());
        assert!(
            e.as_ref().is_err_and(|e| e.to_string().contains("broken")),
            "{e:?}"
        );
    }
}
