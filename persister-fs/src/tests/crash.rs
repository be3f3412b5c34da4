//! Simulated power loss at every I/O call of a workload, and of the recovery after it.
//!
//! For each [`CrashMode`] and each seed, the workload ([`workload`]) runs once to
//! count its I/O calls, then once per call, crashing there. After each crash the store
//! is reopened and every document must hold the state after some prefix of its batches
//! that includes every batch acknowledged by a flush or a removal ([`recover`]); one
//! more batch is then flushed, unsynced data is dropped again, and it must be there.
//!
//! `PERSISTER_SIM_SEEDS=n` runs n seeds instead of 10.

use super::workload::{Failure, Histories, recover, workload};
use crate::sim::{CrashMode, Rng, SimFs};

const DEFAULT_SEEDS: u64 = 10;

type Outcome<T = ()> = std::result::Result<T, String>;

fn seeds() -> u64 {
    persister_testkit::env_count("PERSISTER_SIM_SEEDS", DEFAULT_SEEDS)
}

/// Reopens after a crash (which must work), then drops what is unsynced and reopens
/// again (which must find the batch flushed by the first reopen, and no torn tail).
/// Returns whether the first reopen dropped a torn tail.
fn recover_fully(fs: &SimFs, history: &mut Histories) -> Outcome<bool> {
    let dropped = recover(fs, history).map_err(|e| format!("reopening: {e}"))?;
    fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
    match recover(fs, history) {
        Ok(false) => Ok(dropped),
        Ok(true) => Err("a log recovered and flushed since had a torn tail".into()),
        Err(e) => Err(format!("reopening after recovery: {e}")),
    }
}

/// Runs the workload and crashes it at I/O call `crash_at`, then reboots with `mode`.
fn crashed_workload(
    seed: u64,
    crash_at: u64,
    mode: CrashMode,
    break_dir_syncs: bool,
) -> Outcome<(SimFs, Histories)> {
    let fs = SimFs::new();
    if break_dir_syncs {
        fs.ignore_dir_syncs();
    }
    fs.crash_at(crash_at);
    let mut history = Histories::default();
    if workload(&fs, seed, &mut history).is_ok() {
        return Err(format!(
            "seed {seed}: the run went past I/O call {crash_at}"
        ));
    }
    fs.reboot(mode, &mut Rng::new(seed << 32 | crash_at));
    Ok((fs, history))
}

/// The I/O calls an uninterrupted run of the workload makes, and whether its failed
/// sync was a log's (which reopening the store rewrote whole).
fn calls(seed: u64) -> Outcome<(u64, bool)> {
    let fs = SimFs::new();
    let mut history = Histories::default();
    workload(&fs, seed, &mut history).map_err(|e| format!("seed {seed}: {e}"))?;
    let rewrote = history.iter().any(|h| h.rewritten_after_failed_sync);
    // The marker and three new logs are renamed into place; the rest are rewrites.
    if fs.renames() < 4 + 2 {
        return Err(format!(
            "seed {seed}: the workload rewrote fewer than 2 logs"
        ));
    }
    Ok((fs.ops(), rewrote))
}

/// Crashes the workload at every I/O call (and once after its last) for `seeds`
/// seeds, and checks each crash. Returns the number of crash points checked.
fn crash_everywhere(mode: CrashMode, seeds: u64, break_dir_syncs: bool) -> Outcome<u64> {
    let mut points = 0;
    for seed in 0..seeds {
        let (calls, _) = calls(seed)?;
        for crash_at in 0..=calls {
            let (fs, mut history) = if crash_at == calls {
                let fs = SimFs::new();
                let mut history = Histories::default();
                workload(&fs, seed, &mut history).map_err(|e| e.to_string())?;
                fs.reboot(mode, &mut Rng::new(seed));
                (fs, history)
            } else {
                crashed_workload(seed, crash_at, mode, break_dir_syncs)?
            };
            recover_fully(&fs, &mut history).map_err(|e| {
                format!("{mode:?}, seed {seed}, crash at I/O call {crash_at} of {calls}: {e}")
            })?;
            points += 1;
        }
    }
    Ok(points)
}

fn run(mode: CrashMode) -> Outcome {
    let seeds = seeds();
    let points = crash_everywhere(mode, seeds, false)?;
    println!("{mode:?}: {seeds} seeds, {points} crash points, every one recovered");
    assert!(
        points > seeds * 40,
        "the workload makes too few I/O calls: {points}"
    );
    Ok(())
}

/// The workload's failed sync is a log's in some seeds (reopening then rewrites the log
/// whole before writing to it; the workload checks that it did), and a new log's in
/// others (a rewrite on flush), so the crash loops cover both.
#[test]
fn the_workload_s_failed_sync_hits_a_log_in_some_seeds_and_a_new_log_in_others() -> Outcome {
    // At least the default seeds, whatever the crash loops run: one run each.
    let seeds = seeds().max(DEFAULT_SEEDS);
    let mut rewrote = 0;
    for seed in 0..seeds {
        rewrote += u64::from(calls(seed)?.1);
    }
    println!("{rewrote} of {seeds} seeds failed a log's sync");
    assert!(rewrote > 0, "no seed failed the sync of a log");
    assert!(rewrote < seeds, "every seed failed the sync of a log");
    Ok(())
}

#[test]
fn power_loss_dropping_unsynced_data_loses_nothing_flushed() -> Outcome {
    run(CrashMode::DropUnsynced)
}

#[test]
fn power_loss_keeping_some_unsynced_sectors_loses_nothing_flushed() -> Outcome {
    run(CrashMode::KeepSomeSectors)
}

#[test]
fn power_loss_tearing_the_last_write_loses_nothing_flushed() -> Outcome {
    run(CrashMode::TearLastWrite)
}

/// A second crash, keeping some unsynced sectors, at every I/O call of each recovery
/// that truncated a torn tail (and flushed a batch after it): the truncation must be
/// durable before new records follow it, or the old tail could come back behind them.
#[test]
fn power_loss_during_recovery_loses_nothing_flushed() -> Outcome {
    let (mut first, mut second) = (0, 0);
    let modes = [CrashMode::KeepSomeSectors, CrashMode::TearLastWrite];
    for (seed, mode) in (0..seeds()).flat_map(|seed| modes.map(|mode| (seed, mode))) {
        for crash_at in 0..calls(seed)?.0 {
            let (fs, history) = crashed_workload(seed, crash_at, mode, false)?;
            let disk = fs.snapshot();
            let mut probe = history.clone();
            let dropped = recover(&fs, &mut probe).map_err(|e| e.to_string())?;
            if !dropped {
                continue;
            }
            first += 1;
            for crash2 in 0..fs.ops() {
                let at = format!(
                    "{mode:?}, seed {seed}, crash at {crash_at}, then at {crash2} of recovery"
                );
                let fs = disk.snapshot();
                fs.crash_at(crash2);
                let mut history = history.clone();
                match recover(&fs, &mut history) {
                    Err(Failure::Io(_)) if fs.crashed() => {}
                    other => return Err(format!("{at}: {other:?}")),
                }
                fs.reboot(CrashMode::KeepSomeSectors, &mut Rng::new(crash2));
                recover_fully(&fs, &mut history).map_err(|e| format!("{at}: {e}"))?;
                second += 1;
            }
        }
    }
    println!("{first} recoveries that truncated a tail, crashed at {second} points");
    assert!(first > 0 && second > first, "no recovery truncated a tail");
    Ok(())
}

/// The control: on a disk whose directory syncs do nothing, the same loop finds an
/// acknowledged write lost, so the loop can fail.
#[test]
fn crash_loop_catches_a_store_whose_directory_syncs_do_nothing() {
    let result = crash_everywhere(CrashMode::DropUnsynced, 1, true);
    assert!(
        matches!(&result, Err(e) if e.contains("acknowledged")),
        "{result:?}"
    );
}

/// A crash at every I/O call of a session that reopens a cleanly closed store, checks
/// it, writes and flushes to each document and closes it again: the removal of the
/// clean-close record before the first write, and the new record at the close, must
/// never leave a record that disagrees with the logs.
#[test]
fn power_loss_after_reopening_a_cleanly_closed_store_loses_nothing_flushed() -> Outcome {
    let mut points = 0;
    let modes = [
        CrashMode::DropUnsynced,
        CrashMode::KeepSomeSectors,
        CrashMode::TearLastWrite,
    ];
    for (seed, mode) in (0..seeds()).flat_map(|seed| modes.map(|mode| (seed, mode))) {
        let fs = SimFs::new();
        let mut history = Histories::default();
        workload(&fs, seed, &mut history).map_err(|e| e.to_string())?;
        // Everything was synced by the clean close: the reboot only resets the disk.
        fs.reboot(CrashMode::DropUnsynced, &mut Rng::new(0));
        let probe = fs.snapshot();
        let mut probe_history = history.clone();
        let dropped = recover(&probe, &mut probe_history).map_err(|e| e.to_string())?;
        if dropped {
            return Err(format!(
                "seed {seed}: a cleanly closed store had a torn tail"
            ));
        }
        for crash_at in 0..probe.ops() {
            let at = format!("{mode:?}, seed {seed}, crash at {crash_at} of the session");
            let disk = fs.snapshot();
            disk.crash_at(crash_at);
            let mut history = history.clone();
            match recover(&disk, &mut history) {
                Err(Failure::Io(_)) if disk.crashed() => {}
                other => return Err(format!("{at}: {other:?}")),
            }
            disk.reboot(mode, &mut Rng::new(seed << 32 | crash_at));
            recover_fully(&disk, &mut history).map_err(|e| format!("{at}: {e}"))?;
            points += 1;
        }
    }
    println!("{points} crash points in sessions after a clean close, every one recovered");
    assert!(points > seeds() * 3 * 10, "too few crash points: {points}");
    Ok(())
}
