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
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(n) = line.strip_prefix("start ") {
            start = Some(n.parse::<usize>()?);
        } else if let Some(n) = line.strip_prefix("ack ") {
            last_ack = n.parse()?;
            acks += 1;
        } else {
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
