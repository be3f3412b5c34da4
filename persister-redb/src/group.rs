//! Group commit: flushes of different handles that arrive together share one write
//! transaction and one sync.
//!
//! A flushing handle hands its pending writes (a [`Job`]) to the store's queue. If no
//! commit is running, it becomes the leader: it takes every job queued at that moment,
//! its own included, writes them all in one transaction, commits it with
//! `Durability::Immediate` (one sync), and hands each job back with the outcome. Jobs
//! queued while a commit runs wait for it to end, then one of their handles leads the
//! next group. Nobody waits for company: a lone flusher leads at once, so a single
//! handle's flush costs what it did before.
//!
//! A failed commit fails every job it carried: each of those handles is poisoned, and
//! so is the store (redb refuses further writes after a failed commit).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex};

use persister_core::{DocumentId, Error, Result, StoredSizes};
use redb::{Durability, WriteTransaction};

use crate::error::RedbResultExt;
use crate::layout::{self, CHANGES, COMPACTED, DOCUMENTS, DocumentRecord, SYNC_STATES};
use crate::overlay::Overlay;
use crate::shared::{Shared, lock, poison_reason};

/// One handle's pending writes, on their way to the file.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: DocumentId,
    /// The document's number in the file; set by the commit for a new document.
    pub number: Option<u64>,
    pub sizes: StoredSizes,
    pub overlay: Overlay,
}

/// What became of a job: it comes back to its handle either way.
pub(crate) struct Outcome {
    pub job: Job,
    pub result: Result<()>,
}

/// The queue of jobs and who is committing.
#[derive(Debug, Default)]
pub(crate) struct Committer {
    state: Mutex<Queue>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<(u64, Job)>,
    next_ticket: u64,
    /// A leader is committing a group now.
    leading: bool,
    /// Jobs whose group has committed or failed, by ticket, until their handle takes them.
    done: HashMap<u64, (Job, std::result::Result<(), String>)>,
}

impl Shared {
    /// Commits `jobs` durably, sharing the transaction and its sync with whatever other
    /// handles are flushing, and returns each job's outcome, in order.
    pub fn commit_jobs(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let committer = &self.committer;
        let mut queue = lock(&committer.state);
        let mut tickets = Vec::with_capacity(jobs.len());
        for job in jobs {
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiting.push((ticket, job));
            tickets.push(ticket);
        }
        // The error of a group this thread led, which it returns as it is; the other
        // handles of that group get it as the reason they are poisoned.
        let mut led_error: Option<(Vec<u64>, Error)> = None;
        while !tickets.iter().all(|t| queue.done.contains_key(t)) {
            if queue.leading {
                queue = committer
                    .finished
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            queue.leading = true;
            let mut group = std::mem::take(&mut queue.waiting);
            drop(queue);
            // A panic inside redb (a damaged file can cause one) must not leave the
            // followers waiting forever: they get an error, then the panic goes on.
            let committed = self.commit_group_apart(&mut group);
            let (result, panic) = match committed {
                Ok(result) => (result, None),
                Err(panic) => {
                    let err = self.poison_with(Error::Poisoned {
                        reason: format!(
                            "redb panicked while committing to {}",
                            self.path.display()
                        ),
                    });
                    (Err(err), Some(panic))
                }
            };
            queue = lock(&committer.state);
            let failure = result.as_ref().err().map(poison_reason);
            let carried: Vec<u64> = group.iter().map(|(ticket, _)| *ticket).collect();
            for (ticket, job) in group {
                queue
                    .done
                    .insert(ticket, (job, failure.clone().map_or(Ok(()), Err)));
            }
            if let Err(err) = result {
                led_error = Some((carried, err));
            }
            queue.leading = false;
            committer.finished.notify_all();
            if let Some(panic) = panic {
                drop(queue);
                resume_unwind(panic);
            }
        }
        let mut outcomes = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            let Some((job, result)) = queue.done.remove(&ticket) else {
                continue;
            };
            let result = result.map_err(|reason| match &mut led_error {
                Some((carried, err)) if carried.contains(&ticket) => {
                    // The first of this thread's jobs gets the error itself.
                    carried.clear();
                    std::mem::replace(err, Error::Poisoned { reason })
                }
                _ => Error::Poisoned {
                    reason: format!("the shared commit that carried this flush failed: {reason}"),
                },
            });
            outcomes.push(Outcome { job, result });
        }
        outcomes
    }

    /// [`commit_group`](Self::commit_group) on a thread of its own, which the leader
    /// waits for; a panic comes back as the `Err` of `catch_unwind`.
    ///
    /// The thread is for the heap, not for concurrency: redb allocates the pages a
    /// commit writes and keeps them in its cache, and made on the application's thread
    /// those allocations land between the application's own. With glibc's malloc, a
    /// thread other than the main one allocates from an arena of its own, so the pages
    /// stay apart and the application's data (a Yjs document's items, say) stays
    /// packed. Should no thread start, the commit runs on the leader's.
    fn commit_group_apart(&self, group: &mut [(u64, Job)]) -> std::thread::Result<Result<()>> {
        let mut group = Some(group);
        let outcome = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("persister-redb commit".into())
                .spawn_scoped(scope, || {
                    let group = group.take();
                    group.map(|group| self.commit_group(group))
                });
            spawned.ok().map(|handle| handle.join())
        });
        match outcome {
            Some(Ok(Some(result))) => Ok(result),
            Some(Err(panic)) => Err(panic),
            // The thread did not start: commit here.
            Some(Ok(None)) | None => match group {
                Some(group) => catch_unwind(AssertUnwindSafe(|| self.commit_group(group))),
                None => Ok(Err(Error::Poisoned {
                    reason: "a commit thread ended without committing".into(),
                })),
            },
        }
    }

    /// Writes every job of `group` in one transaction and commits it durably.
    fn commit_group(&self, group: &mut [(u64, Job)]) -> Result<()> {
        let result = self.begin_write().and_then(|txn| {
            let mut numbers = Vec::with_capacity(group.len());
            for (_, job) in group.iter() {
                numbers.push(self.write_job(&txn, job)?);
            }
            self.commit(txn, Durability::Immediate)?;
            for ((_, job), number) in group.iter_mut().zip(numbers) {
                job.number = Some(number);
            }
            Ok(())
        });
        // A failure before the commit drops the transaction, which aborts it; the store
        // is poisoned all the same, since a failed write may have been latched by redb.
        result.map_err(|err| self.poison_with(err))
    }

    /// Writes one job into `txn` and returns the document's number.
    fn write_job(&self, txn: &WriteTransaction, job: &Job) -> Result<u64> {
        let path = &self.path;
        let n = match job.number {
            Some(n) => n,
            None => self.allocate_number(txn)?,
        };
        let overlay = &job.overlay;
        if overlay.has_changes() {
            let mut table = txn.open_table(CHANGES).or_store("write to", path)?;
            let mut key = Vec::new();
            for (actor, seq, value) in overlay.changes() {
                layout::encode_change_key(&mut key, n, actor.as_bytes(), seq);
                match value {
                    Some(value) => table.insert(key.as_slice(), value).map(drop),
                    None => table.remove(key.as_slice()).map(drop),
                }
                .or_store("write to", path)?;
            }
        }
        if let Some(document) = overlay.document() {
            let mut table = txn.open_table(COMPACTED).or_store("write to", path)?;
            table
                .insert(layout::document_key(n).as_slice(), document)
                .or_store("write to", path)?;
        }
        if overlay.has_sync_states() {
            let mut table = txn.open_table(SYNC_STATES).or_store("write to", path)?;
            for (peer, value) in overlay.sync_states() {
                let key = layout::sync_state_key(n, peer);
                match value {
                    Some(value) => table.insert(key.as_slice(), value).map(drop),
                    None => table.remove(key.as_slice()).map(drop),
                }
                .or_store("write to", path)?;
            }
        }
        let record = DocumentRecord {
            number: n,
            sizes: job.sizes,
        };
        let mut table = txn.open_table(DOCUMENTS).or_store("write to", path)?;
        table
            .insert(job.id.as_bytes(), record.encode().as_slice())
            .or_store("write to", path)?;
        Ok(n)
    }
}
