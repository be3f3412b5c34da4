//! Printing: numbers, durations, tables, JSON, progress bars.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::CliError;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    HumanCount(n).to_string()
}

/// A duration in the unit that reads best: `850 µs`, `12.3 ms`, `4.56 s`.
pub fn duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 100_000 {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if micros < 1_000_000 {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else if micros < 10_000_000 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Milliseconds, for JSON.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        CliError::new(
            format!("cannot write JSON: {e}"),
            "this is a bug in persister: please report it",
        )
    })?;
    say(&text);
    Ok(())
}

/// The first error writing to stdout, other than a closed pipe: the command then ends
/// with it ([`stdout_result`]) rather than exit 0 over a report that was lost.
static STDOUT_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Prints a line on stdout. A closed stdout (`persister ls STORE | head`) is not an
/// error worth a panic: the rest of the output is dropped. Any other failure (a full
/// disk under `> report.json`) is kept for [`stdout_result`].
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // Flushed here, so that a failure is seen at once and not only at exit.
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    note_stdout(written);
}

fn note_stdout(written: std::io::Result<()>) {
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        let mut first = STDOUT_ERROR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert_with(|| e.to_string());
    }
}

/// Flushes stdout, and fails if anything printed there was lost (other than to a
/// closed pipe), so that a lost report never ends with exit code 0.
pub fn stdout_result() -> Result<(), CliError> {
    use std::io::Write;
    note_stdout(std::io::stdout().lock().flush());
    // Taken: a later run in this process starts without it.
    let first = STDOUT_ERROR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match first {
        None => Ok(()),
        Some(e) => Err(CliError::new(
            format!("cannot write the report to standard output: {e}"),
            "the command ran to its end (what copy, export, import, compact, migrate or demo write is written) but its report is lost or incomplete: check where standard output goes (a full disk?); `persister ls` or `persister verify` shows the result",
        )),
    }
}

/// Prints a line on stderr, for progress and errors. A stderr that cannot be written
/// (a closed pipe after `2>&1 | head`) must not end the command half way, as
/// `eprintln!` would with a panic: the line is dropped.
fn say_on_stderr(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A table: a header row, then rows. `align` has one letter a column, `l` (left) or
/// `r` (right); missing letters are `r`.
pub fn table(header: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let left: Vec<bool> = (0..header.len())
        .map(|i| align.as_bytes().get(i) == Some(&b'l'))
        .collect();
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            if i > 0 {
                out.push_str("   ");
            }
            if left[i] {
                out.push_str(cell);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(cell);
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The environment variable that prints progress as lines (`lines`), for logs and
/// for terminals that do not redraw.
pub const PROGRESS_ENV: &str = "PERSISTER_PROGRESS";

/// Progress of one step on stderr: a bar over a known number of units, or a spinner
/// for a step whose length is unknown. Drawn when stderr is a terminal, hidden
/// otherwise; with `PERSISTER_PROGRESS=lines`, printed as lines: `WHAT: 0 of N` at the
/// start, one line at every tenth, and `WHAT: done, P of N` at the end (a spinner:
/// `WHAT...` and `WHAT: done`).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    what: std::borrow::Cow<'static, str>,
    lines: bool,
    /// The last tenth printed, in lines mode.
    tenth: std::cell::Cell<u64>,
}

impl Progress {
    fn new(len: Option<u64>, what: std::borrow::Cow<'static, str>) -> Progress {
        let lines = std::env::var(PROGRESS_ENV).is_ok_and(|v| v == "lines");
        let bar = if lines || !std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden())
        } else {
            let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
            let template = match len {
                Some(_) => "{msg:>10} [{bar:30}] {human_pos}/{human_len} ({eta})",
                None => "{spinner} {msg} ({elapsed})",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            if len.is_none() {
                bar.enable_steady_tick(Duration::from_millis(100));
            }
            bar
        };
        bar.set_message(what.clone());
        let first = match len {
            Some(len) => format!("{what}: 0 of {}", thousands(len)),
            None => format!("{what}..."),
        };
        let progress = Progress {
            bar,
            what,
            lines,
            tenth: std::cell::Cell::new(0),
        };
        progress.line(first);
        progress
    }

    fn line(&self, text: String) {
        if self.lines {
            say_on_stderr(&text);
        }
    }

    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(len) = self.bar.length().filter(|&l| l > 0) {
            let tenth = self.bar.position().min(len) * 10 / len;
            if tenth > self.tenth.get() && tenth < 10 {
                self.tenth.set(tenth);
                self.line(format!(
                    "{}: {} of {}",
                    self.what,
                    thousands(self.bar.position()),
                    thousands(len)
                ));
            }
        }
    }

    /// Wraps a reader so that the bytes read count as units done.
    pub fn wrap_read<R: std::io::Read>(&self, read: R) -> indicatif::ProgressBarIter<R> {
        self.bar.wrap_read(read)
    }

    /// Ends the step and clears the bar.
    pub fn finish_and_clear(self) {
        self.bar.finish_and_clear();
        self.line(match self.bar.length() {
            Some(len) => format!(
                "{}: done, {} of {}",
                self.what,
                thousands(self.bar.position()),
                thousands(len)
            ),
            None => format!("{}: done", self.what),
        });
    }
}

/// A progress bar over `len` units (see [`Progress`]).
pub fn progress(len: u64, what: &'static str) -> Progress {
    Progress::new(Some(len), what.into())
}

/// A spinner, for a step whose length is unknown (see [`Progress`]).
pub fn spinner(what: impl Into<std::borrow::Cow<'static, str>>) -> Progress {
    Progress::new(None, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(duration(Duration::from_millis(456)), "456 ms");
        assert_eq!(duration(Duration::from_millis(1_556)), "1.56 s");
        assert_eq!(duration(Duration::from_secs(12)), "12.0 s");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["name", "n"],
            "lr",
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "1,000".into()],
            ],
        );
        assert_eq!(t, "name       n\na          1\nbbb    1,000");
    }
}
