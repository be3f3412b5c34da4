//! Timing on a shared machine: wall time, and wall time without the time other
//! processes took from the timed thread.
//!
//! On a busy machine a thread that could run often waits in the kernel's run queue
//! for a CPU. Linux counts that wait per thread (the second field of
//! `/proc/thread-self/schedstat`); taking it out of the wall time leaves what the
//! timed code cost on its own, waits for the disk included. That is what the table
//! reports; the plain wall times are in the JSON.

use std::time::{Duration, Instant};

/// Runs `op` until `time` has passed, at least once: returns how many times it ran and
/// the wall time that took (past `time` by the last run).
pub fn repeat_for(
    time: Duration,
    mut op: impl FnMut() -> crate::Result<()>,
) -> crate::Result<(usize, Duration)> {
    let started = Instant::now();
    let mut count = 0;
    loop {
        op()?;
        count += 1;
        let took = started.elapsed();
        if took >= time {
            return Ok((count, took));
        }
    }
}

/// A running timer.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    start: Instant,
    waited: Duration,
}

/// What a [`Stopwatch`] measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lap {
    /// Wall time.
    pub wall: Duration,
    /// Wall time minus the timed thread's run-queue wait.
    pub own: Duration,
}

impl Stopwatch {
    /// Starts timing the calling thread.
    pub fn start() -> Self {
        Self {
            waited: run_queue_wait(),
            start: Instant::now(),
        }
    }

    /// The time since [`start`](Self::start). Call it on the thread that started it.
    pub fn lap(&self) -> Lap {
        let wall = self.start.elapsed();
        let waited = run_queue_wait().saturating_sub(self.waited);
        Lap {
            wall,
            own: wall.saturating_sub(waited),
        }
    }
}

impl std::ops::Sub for Lap {
    type Output = Lap;

    fn sub(self, earlier: Lap) -> Lap {
        Lap {
            wall: self.wall.saturating_sub(earlier.wall),
            own: self.own.saturating_sub(earlier.own),
        }
    }
}

impl std::ops::AddAssign for Lap {
    fn add_assign(&mut self, other: Lap) {
        self.wall += other.wall;
        self.own += other.own;
    }
}

/// How long the calling thread has waited in the run queue so far; zero where the
/// kernel does not say (then own time is wall time).
pub fn run_queue_wait() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().nth(1)?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_time_is_at_most_wall_time() {
        let watch = Stopwatch::start();
        let mut x = 0u64;
        while watch.lap().wall < Duration::from_millis(20) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let lap = watch.lap();
        assert!(x > 0);
        assert!(lap.own <= lap.wall);
        assert!(lap.wall >= Duration::from_millis(20));
    }
}
