//! Group commit: commits that arrive together share one.
//!
//! [`GroupCommit`] is the queue behind [`EngineStore`](crate::EngineStore)'s group
//! commit, public for backends that keep their own handle (PostgreSQL) so that they
//! share it rather than copy it.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::Error;

/// A queue of jobs (one per document to commit) where whoever finds no commit running
/// leads: it commits every job queued at that moment at once, while jobs that arrive
/// meanwhile wait, and one of their threads leads the next group. Nothing waits for
/// company (no timers): a lone job is committed at once. With
/// [`with_leaders`](GroupCommit::with_leaders), several groups commit at once. A
/// group's end wakes only the threads whose jobs it carried and the one that may lead
/// next.
///
/// A failed group fails every job it carried: the leader's first job gets the error
/// itself, every other job [`Error::Poisoned`] naming it. A panic while committing
/// fails the group the same way, then goes on in the leader's thread, so that no
/// follower waits forever.
///
/// `J` is a job, `T` what committing gives each job, `F` what a failure of the whole
/// group says besides its error (whether its outcome is unknown, say).
///
/// ```
/// use persister_core::GroupCommit;
///
/// let group = GroupCommit::<&str, usize>::new();
/// let commit = |jobs: &mut [&str]| Ok(jobs.iter().map(|j| j.len()).collect());
/// let done = group.commit(vec!["a", "bc"], commit, |error| (error, ()));
/// assert!(matches!(done.as_slice(), [("a", Ok(1)), ("bc", Ok(2))]));
/// assert_eq!(group.counters().commits, 1);
/// ```
pub struct GroupCommit<J, T = (), F = ()> {
    queue: Mutex<Queue<J, T, F>>,
    commits: AtomicU64,
    carried: AtomicU64,
    largest: AtomicU64,
    commit_nanos: AtomicU64,
}

/// What a failed group gives each job it carried: the error, and what the committer
/// says about the failure.
pub type GroupFailure<F> = (Error, F);

/// Jobs waiting to share a commit, and who is committing.
struct Queue<J, T, F> {
    /// Each with its ticket and what wakes the thread that queued it.
    waiting: Vec<(u64, J, Waker)>,
    next_ticket: u64,
    /// The sizes of the groups being committed now, one per leader.
    running: Vec<usize>,
    /// The most groups committed at once.
    max_leaders: usize,
    /// Jobs whose group has committed or failed, by ticket, until their thread takes
    /// them back.
    done: HashMap<u64, Done<J, T, F>>,
}

impl<J, T, F> Queue<J, T, F> {
    /// Whether a thread whose jobs wait may lead a group now: when no group commits, or
    /// when fewer than the most commit and at least as many jobs wait as the smallest
    /// group committing carries. A lone job never waits for company; a second group
    /// starts beside a running one only once it would carry as much, so that groups
    /// stay as large as the load makes them rather than split into many small commits.
    fn may_lead(&self) -> bool {
        match self.running.iter().min() {
            None => true,
            Some(&smallest) => {
                self.running.len() < self.max_leaders && self.waiting.len() >= smallest
            }
        }
    }
}

/// What wakes one thread waiting in [`GroupCommit::commit`]: its own condition
/// variable, so that a group's end wakes only the threads it carried and the one that
/// may lead next, not every thread waiting.
type Waker = Arc<Condvar>;

/// A job back from its group: with what the commit gave it, or the failure's reason and
/// the committer's word on it.
type Done<J, T, F> = (J, Result<T, (String, F)>);

/// How a store's group commits have gone since it was opened: how many jobs (handles'
/// flushes) each commit carried, and the time the commits took. For tests and
/// benchmarks that check that concurrent flushes share their syncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupCommits {
    /// Commits led, failed ones included.
    pub commits: u64,
    /// Handles' flushes those commits carried, in all.
    pub handles: u64,
    /// The most handles one commit carried.
    pub largest: u64,
    /// The time the commits took, in all, ns.
    pub commit_nanos: u64,
}

impl GroupCommits {
    /// Handles per commit, on average (0 before the first commit).
    pub fn mean_handles(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.handles as f64 / self.commits as f64
        }
    }
}

impl<J, T, F: Clone> Default for GroupCommit<J, T, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<J, T, F> GroupCommit<J, T, F> {
    fn lock(&self) -> MutexGuard<'_, Queue<J, T, F>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The commits led so far.
    pub fn counters(&self) -> GroupCommits {
        GroupCommits {
            commits: self.commits.load(Ordering::Relaxed),
            handles: self.carried.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            commit_nanos: self.commit_nanos.load(Ordering::Relaxed),
        }
    }
}

impl<J, T, F> fmt::Debug for GroupCommit<J, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.lock();
        f.debug_struct("GroupCommit")
            .field("waiting", &queue.waiting.len())
            .field("running", &queue.running)
            .field("counters", &self.counters())
            .finish()
    }
}

impl<J, T, F: Clone> GroupCommit<J, T, F> {
    /// An empty queue that commits one group at a time: jobs that arrive while a group
    /// commits wait for it to end.
    pub fn new() -> Self {
        Self::with_leaders(1)
    }

    /// An empty queue that commits up to `leaders` groups at once (at least one): while
    /// fewer groups commit, a thread whose jobs wait leads a group of its own and
    /// whatever else waits, rather than wait for a commit to end, once at least as many
    /// jobs wait as the smallest group committing carries (so a lone job that arrives
    /// while a group of two commits waits for a second job, or for a group to end):
    /// groups stay as large as the load makes them rather than split into many small
    /// commits. For engines whose commits run side by side (a server's connections) and
    /// that never put two jobs of one document in flight at once; engines that
    /// serialise their commits gain nothing.
    pub fn with_leaders(leaders: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                next_ticket: 0,
                running: Vec::new(),
                max_leaders: leaders.max(1),
                done: HashMap::new(),
            }),
            commits: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
        }
    }

    /// How many jobs wait for the commit running now to end.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Commits `jobs` together (in one group, with whatever other jobs are queued when
    /// a group starts) and returns each with its outcome, in order.
    ///
    /// `run` commits one group: it gets every job of the group, this thread's among
    /// them, and returns one result per job, in order (a job's own outcome, such as a
    /// lost lease), or a failure of the whole group. It runs on this thread if this
    /// thread leads the group carrying its jobs, and not at all otherwise. `failed`
    /// makes the group's failure from an error of the queue's own: `run` panicked, or
    /// returned another number of results than jobs.
    pub fn commit(
        &self,
        jobs: Vec<J>,
        run: impl FnOnce(&mut [J]) -> Result<Vec<T>, GroupFailure<F>>,
        failed: impl FnOnce(Error) -> GroupFailure<F>,
    ) -> Vec<(J, Result<T, GroupFailure<F>>)> {
        let waker = Waker::default();
        let mut queue = self.lock();
        let mut tickets = Vec::with_capacity(jobs.len());
        for job in jobs {
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiting.push((ticket, job, waker.clone()));
            tickets.push(ticket);
        }
        let mut run = Some((run, failed));
        // The error of the group this thread led, which its first job gets as it is.
        let mut led_error: Option<(Vec<u64>, Error)> = None;
        // The threads to wake once this thread has let go of the queue, and the panic of
        // the group it led, resumed after that.
        let mut to_wake: Vec<Waker> = Vec::new();
        let mut led_panic = None;
        while !tickets.iter().all(|t| queue.done.contains_key(t)) {
            // A leader takes every job waiting, so this thread's jobs (queued together)
            // still wait exactly when the first job waiting is not newer than its own.
            let own_waiting = queue
                .waiting
                .first()
                .is_some_and(|(first, ..)| tickets.first().is_some_and(|own| first <= own));
            if !own_waiting || !queue.may_lead() {
                queue = waker.wait(queue).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // This thread's jobs are queued and not done, so the group it leads carries
            // them all: it leads at most once.
            let Some((run, failed)) = run.take() else {
                break;
            };
            let mut carried = Vec::with_capacity(queue.waiting.len());
            let mut wakers: Vec<Waker> = Vec::new();
            let mut group = Vec::with_capacity(queue.waiting.len());
            for (ticket, job, waker) in std::mem::take(&mut queue.waiting) {
                carried.push(ticket);
                group.push(job);
                if !wakers.last().is_some_and(|last| Arc::ptr_eq(last, &waker)) {
                    wakers.push(waker);
                }
            }
            let size = group.len();
            queue.running.push(size);
            drop(queue);
            let started = Instant::now();
            let committed = catch_unwind(AssertUnwindSafe(|| run(&mut group)));
            self.count(group.len(), started);
            let (result, panic) = match committed {
                Ok(Ok(results)) if results.len() == group.len() => (Ok(results), None),
                Ok(Ok(results)) => {
                    let reason = format!(
                        "a group commit returned {} outcomes for {} documents",
                        results.len(),
                        group.len()
                    );
                    (Err(failed(Error::Poisoned { reason })), None)
                }
                Ok(Err(failure)) => (Err(failure), None),
                Err(panic) => {
                    let reason = "the commit panicked".to_string();
                    (Err(failed(Error::Poisoned { reason })), Some(panic))
                }
            };
            queue = self.lock();
            match result {
                Ok(results) => {
                    for ((ticket, job), result) in carried.iter().zip(group).zip(results) {
                        queue.done.insert(*ticket, (job, Ok(result)));
                    }
                }
                Err((error, info)) => {
                    let reason = poison_reason(&error);
                    for (ticket, job) in carried.iter().zip(group) {
                        let done = Err((reason.clone(), info.clone()));
                        queue.done.insert(*ticket, (job, done));
                    }
                    led_error = Some((carried, error));
                }
            }
            if let Some(at) = queue.running.iter().position(|&n| n == size) {
                queue.running.swap_remove(at);
            }
            // The threads whose jobs the group carried, and the one whose job waits
            // longest if it may lead now (it is the only one that may). They are woken
            // only once the queue is unlocked below: a thread woken while the queue is
            // still locked would at once block again on the lock, and pay two more
            // context switches for nothing.
            to_wake = wakers;
            to_wake.retain(|other| !Arc::ptr_eq(other, &waker));
            if queue.may_lead()
                && let Some((.., next)) = queue.waiting.first()
            {
                to_wake.push(next.clone());
            }
            led_panic = panic;
        }
        let mut outcomes = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            let Some((job, done)) = queue.done.remove(&ticket) else {
                continue;
            };
            let result = done.map_err(|(reason, info)| {
                let error = match &mut led_error {
                    // The first of this thread's jobs in the group it led gets the error
                    // itself.
                    Some((carried, error)) if carried.contains(&ticket) => {
                        carried.clear();
                        std::mem::replace(error, Error::Poisoned { reason })
                    }
                    _ => Error::Poisoned {
                        reason: format!(
                            "the shared commit that carried this flush failed: {reason}"
                        ),
                    },
                };
                (error, info)
            });
            outcomes.push((job, result));
        }
        drop(queue);
        // A thread woken here that finds its jobs done, or may lead, takes the queue's
        // lock without waiting for it; one that finds it may not lead after all (another
        // thread arrived and led first) waits again, for the group that now carries it.
        to_wake.iter().for_each(|waker| waker.notify_one());
        if let Some(panic) = led_panic {
            resume_unwind(panic);
        }
        outcomes
    }

    fn count(&self, jobs: usize, started: Instant) {
        let jobs = jobs as u64;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.carried.fetch_add(jobs, Ordering::Relaxed);
        self.largest.fetch_max(jobs, Ordering::Relaxed);
        self.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// What poisoned a handle or store, for [`Error::Poisoned`]: the error's message, or
/// the reason of the poisoning it is.
pub(crate) fn poison_reason(err: &Error) -> String {
    match err {
        Error::Poisoned { reason } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use super::*;

    type Group = GroupCommit<u32, u32, &'static str>;

    fn ok(jobs: &mut [u32]) -> Result<Vec<u32>, GroupFailure<&'static str>> {
        Ok(jobs.iter().map(|j| j * 10).collect())
    }

    fn failed(error: Error) -> GroupFailure<&'static str> {
        (error, "queue")
    }

    /// Blocks until `n` jobs wait behind the running commit.
    fn wait_for_waiting(group: &Group, n: usize) {
        while group.waiting() < n {
            thread::yield_now();
        }
    }

    #[test]
    fn a_lone_job_commits_at_once_with_its_own_result() {
        let group = Group::new();
        let done = group.commit(vec![1, 2], ok, failed);
        assert!(
            matches!(done.as_slice(), [(1, Ok(10)), (2, Ok(20))]),
            "{done:?}"
        );
        let counters = group.counters();
        assert_eq!(
            (counters.commits, counters.handles, counters.largest),
            (1, 2, 2)
        );
    }

    /// Jobs queued while a commit runs share the next one, led by one of their threads.
    #[test]
    fn jobs_that_arrive_during_a_commit_share_the_next() {
        let group = Group::new();
        thread::scope(|s| {
            let first = s.spawn(|| {
                group.commit(
                    vec![1],
                    |jobs| {
                        wait_for_waiting(&group, 2);
                        ok(jobs)
                    },
                    failed,
                )
            });
            while group.lock().running.is_empty() {
                thread::yield_now();
            }
            let second = s.spawn(|| group.commit(vec![2], ok, failed));
            let third = s.spawn(|| group.commit(vec![3], ok, failed));
            for (handle, job) in [(first, 1), (second, 2), (third, 3)] {
                let done = handle.join().expect("no panic");
                assert!(matches!(done.as_slice(), [(j, Ok(r))] if *j == job && *r == job * 10));
            }
        });
        let counters = group.counters();
        assert_eq!(
            (counters.commits, counters.handles, counters.largest),
            (2, 3, 2)
        );
    }

    /// With room for two leaders, a job that arrives while one group commits leads its
    /// own at once; a third waits until one of the two ends.
    #[test]
    fn with_two_leaders_a_second_group_commits_beside_the_first() {
        let group = Group::with_leaders(2);
        let release = AtomicBool::new(false);
        let first_saw_waiting = AtomicBool::new(false);
        thread::scope(|s| {
            // The first group runs until released, or until a job queues behind it (which
            // a second leader would not let happen).
            let first = s.spawn(|| {
                group.commit(
                    vec![1],
                    |jobs| {
                        while !release.load(Ordering::SeqCst) {
                            if group.waiting() > 0 {
                                first_saw_waiting.store(true, Ordering::SeqCst);
                                break;
                            }
                            thread::yield_now();
                        }
                        ok(jobs)
                    },
                    failed,
                )
            });
            while group.lock().running.is_empty() {
                thread::yield_now();
            }
            let second = group.commit(vec![2], ok, failed);
            assert!(matches!(second.as_slice(), [(2, Ok(20))]), "{second:?}");
            assert!(!first_saw_waiting.load(Ordering::SeqCst));
            release.store(true, Ordering::SeqCst);
            assert!(matches!(
                first.join().expect("no panic").as_slice(),
                [(1, Ok(10))]
            ));
        });
        let counters = group.counters();
        assert_eq!((counters.commits, counters.largest), (2, 1));

        // Two groups running: the third job waits for one of them.
        let release = &AtomicBool::new(false);
        let group = &group;
        thread::scope(|s| {
            let blocked = move |jobs: &mut [u32]| {
                while !release.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                ok(jobs)
            };
            let a = s.spawn(move || group.commit(vec![3], blocked, failed));
            let b = s.spawn(move || group.commit(vec![4], blocked, failed));
            while group.lock().running.len() < 2 {
                thread::yield_now();
            }
            let c = s.spawn(|| group.commit(vec![5], ok, failed));
            wait_for_waiting(group, 1);
            release.store(true, Ordering::SeqCst);
            for (handle, job) in [(a, 3), (b, 4), (c, 5)] {
                let done = handle.join().expect("no panic");
                assert!(matches!(done.as_slice(), [(j, Ok(r))] if *j == job && *r == job * 10));
            }
        });
        assert_eq!(group.counters().commits, 5);
    }

    /// With room for two leaders, a lone job that arrives while a group of two commits
    /// does not lead a group beside it: it waits until as many jobs wait as that group
    /// carries, or until it ends (what `with_leaders` says).
    #[test]
    fn a_second_group_starts_only_once_it_would_carry_as_much_as_the_first() {
        let group = Group::with_leaders(2);
        // Set by the running group once the lone job waits (true) or leads beside it
        // (false).
        let waited = std::sync::Mutex::new(None);
        thread::scope(|s| {
            let first = s.spawn(|| {
                group.commit(
                    vec![1, 2],
                    |jobs| {
                        let outcome = loop {
                            let queue = group.lock();
                            if !queue.waiting.is_empty() {
                                break true;
                            }
                            // A group beside this one: running, or already done.
                            if queue.running.len() > 1 || group.counters().commits > 0 {
                                break false;
                            }
                            drop(queue);
                            thread::yield_now();
                        };
                        *waited.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
                        ok(jobs)
                    },
                    failed,
                )
            });
            while group.lock().running.is_empty() {
                thread::yield_now();
            }
            let lone = group.commit(vec![3], ok, failed);
            assert!(matches!(lone.as_slice(), [(3, Ok(30))]), "{lone:?}");
            let first = first.join().expect("no panic");
            assert!(matches!(first.as_slice(), [(1, Ok(10)), (2, Ok(20))]));
        });
        assert_eq!(
            *waited.lock().unwrap_or_else(PoisonError::into_inner),
            Some(true),
            "the lone job led a group beside one of two"
        );
    }

    /// A failed group fails every job it carried: the leader's first job gets the error
    /// itself, every other job `Poisoned` naming it, all with the committer's word.
    #[test]
    fn a_failed_group_fails_every_job_it_carried() {
        let group = Group::new();
        let fail =
            |_: &mut [u32]| Err((Error::backend("test", "disk on fire".to_string()), "lost"));
        let done = group.commit(vec![1, 2], fail, failed);
        match done.as_slice() {
            [
                (1, Err((Error::Backend { .. }, "lost"))),
                (2, Err((Error::Poisoned { reason }, "lost"))),
            ] => {
                assert!(reason.contains("disk on fire"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // The next group is unaffected: poisoning is the caller's business.
        assert!(matches!(
            group.commit(vec![3], ok, failed).as_slice(),
            [(3, Ok(30))]
        ));
    }

    /// A panic while committing fails the followers' jobs (they do not wait forever),
    /// then goes on in the leader's thread.
    #[test]
    fn a_panicking_commit_fails_its_group_and_goes_on() {
        let group = Group::new();
        let release = AtomicBool::new(false);
        thread::scope(|s| {
            let leader = s.spawn(|| {
                group.commit(
                    vec![1],
                    |jobs| {
                        while !release.load(Ordering::SeqCst) {
                            thread::yield_now();
                        }
                        ok(jobs)
                    },
                    failed,
                )
            });
            while group.lock().running.is_empty() {
                thread::yield_now();
            }
            let follower = s.spawn(|| group.commit(vec![2], ok, failed));
            let panicker = s.spawn(|| {
                group.commit(
                    vec![3],
                    |_| -> Result<Vec<u32>, _> { panic!("engine bug") },
                    failed,
                )
            });
            wait_for_waiting(&group, 2);
            release.store(true, Ordering::SeqCst);
            assert!(matches!(
                leader.join().expect("no panic").as_slice(),
                [(1, Ok(10))]
            ));
            // Whichever of the two led the second group, it ran its own `run`.
            match (follower.join(), panicker.join()) {
                (Ok(done), Err(_)) => {
                    assert!(
                        matches!(done.as_slice(), [(2, Err((Error::Poisoned { reason }, "queue")))] if reason.contains("panicked")),
                        "{done:?}"
                    );
                }
                (Ok(done), Ok(other)) => {
                    // The follower led with its own `run`, which committed both.
                    assert!(matches!(done.as_slice(), [(2, Ok(20))]), "{done:?}");
                    assert!(matches!(other.as_slice(), [(3, Ok(30))]), "{other:?}");
                }
                (Err(_), _) => panic!("the follower's own commit does not panic"),
            }
        });
    }
}
