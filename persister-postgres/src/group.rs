//! Group commit: flushes of different handles of one store that arrive together share
//! one transaction and one commit.
//!
//! A flushing handle hands its held writes (a [`Job`]) to the store's queue, core's
//! [`GroupCommit`]. If no commit is running, it becomes the leader: it takes every job
//! queued at that moment, its own included, writes them all with one statement (see
//! `FLUSH` in `sql.rs`), whose implicit transaction commits with `synchronous_commit`
//! on, and hands each job back with its outcome. Jobs queued while a commit runs wait
//! for it to end, then one of their handles leads the next group; up to
//! `concurrent_commits` groups run at once, each on its own connection (a second starts
//! once as many jobs wait as the running group carries). Nobody waits for company: a
//! lone flusher leads at once, so a single handle's flush costs what it did before.
//!
//! Each document's lease is checked inside the shared statement exactly as a flush of
//! one document checks it: a document whose lease no longer holds writes nothing and
//! its handle gets `LeaseLost`, while the others of the group commit. A failed commit
//! fails every job it carried.

use std::time::SystemTime;

use persister_core::{ActorId, DocumentId, Error, GroupCommit, StoredSizes};
use postgres::types::ToSql;

use crate::error::is_connection_lost;
use crate::pool::Conn;
use crate::shared::Shared;
use crate::sql::{FLUSH_CHANGES_PARAMS, FLUSH_PARAMS, Q, seq_to_sql};

/// The most payload bytes one statement carries; a larger group (a store-wide flush of
/// many large handles) is written by several statements in one explicit transaction,
/// which keeps every array parameter far below the server's 1 GiB limit for a value.
const STATEMENT_BYTES: usize = 64 << 20;

/// The writes a handle holds until its next flush: the newest value of each key it
/// wrote, `None` where it removed the key.
#[derive(Default)]
pub(crate) struct Held {
    pub changes: std::collections::BTreeMap<(ActorId, u64), Option<Vec<u8>>>,
    pub document: Option<Vec<u8>>,
    pub sync_states: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Held {
    /// The bytes of the values held, for splitting large groups.
    fn bytes(&self) -> usize {
        let values = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
        let changes: usize = self.changes.values().map(values).sum();
        let states: usize = self
            .sync_states
            .iter()
            .map(|(peer, state)| peer.len() + values(state))
            .sum();
        changes + states + self.document.as_ref().map_or(0, Vec::len)
    }
}

/// Counts, not contents: a handle may hold megabytes.
impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("changes", &self.changes.len())
            .field("document", &self.document.as_ref().map(Vec::len))
            .field("sync_states", &self.sync_states.len())
            .finish()
    }
}

/// One handle's held writes, on their way to the server, with what its lease check
/// needs.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: DocumentId,
    /// The fencing token of the handle's lease.
    pub token: i64,
    /// The lease's `expires_at` as the handle last wrote it.
    pub expires: SystemTime,
    /// The document's sizes after these writes.
    pub sizes: StoredSizes,
    /// Whether the document has its row in `documents` (else this flush creates it).
    pub stored: bool,
    pub held: Held,
}

/// What became of a job.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Committed; the lease now expires at `expires`.
    Written { expires: SystemTime },
    /// The lease no longer held: nothing of this job was written (the rest of its group
    /// was).
    LeaseLost,
    /// The commit carrying the job failed; when `lost`, the connection was lost while
    /// committing and the outcome is unknown (all of the group or none of it).
    Failed { lost: bool, error: Error },
}

/// The store's queue of jobs: core's group commit, each job's result the lease's new
/// `expires_at` (`None`: the lease no longer held), a failure saying whether the
/// connection was lost while committing.
pub(crate) type Committer = GroupCommit<Job, Option<SystemTime>, bool>;

/// A group's commit failed: every job it carried failed with it.
struct Failure {
    lost: bool,
    error: Error,
}

impl Shared {
    /// Commits `jobs` durably, sharing the transaction and its commit with whatever
    /// other handles of the store are flushing, and returns each job with its outcome,
    /// in order. The jobs of one call always share one transaction.
    pub fn commit_jobs(&self, jobs: Vec<Job>) -> Vec<(Job, Outcome)> {
        let run = |group: &mut [Job]| {
            self.commit_group(group)
                .map_err(|Failure { lost, error }| (error, lost))
        };
        // A panic must not leave the followers waiting forever: they get an error (the
        // outcome is unknown), then the panic goes on.
        let failed = |error: Error| {
            let reason = format!("{error} while flushing to {}", self.place);
            (Error::Poisoned { reason }, true)
        };
        let outcomes = self.committer.commit(jobs, run, failed);
        outcomes
            .into_iter()
            .map(|(job, result)| {
                let outcome = match result {
                    Ok(Some(expires)) => Outcome::Written { expires },
                    Ok(None) => Outcome::LeaseLost,
                    Err((error, lost)) => Outcome::Failed { lost, error },
                };
                (job, outcome)
            })
            .collect()
    }

    /// Writes every job of `group` in one transaction and commits it durably. Returns,
    /// for each job in order, the lease's new `expires_at`, or `None` where the lease no
    /// longer held (nothing of that job was written).
    fn commit_group(&self, group: &[Job]) -> Result<Vec<Option<SystemTime>>, Failure> {
        let place = self.group_place(group);
        let ms = self.lease_ms();
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut bytes = 0;
        for (i, job) in group.iter().enumerate() {
            let size = job.held.bytes();
            if i > start && bytes + size > STATEMENT_BYTES {
                chunks.push(Params::new(&group[start..i]));
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        chunks.push(Params::new(&group[start..]));
        #[cfg(feature = "fault-injection")]
        if self
            .fail_next_flush
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(self.fail_in_flight(&chunks[0], ms, &place));
        }
        // A statement the server rolled back for a conflict (40001, 40P01) is run
        // again, the whole transaction; a lost connection is not: its outcome is
        // unknown.
        let result = self.run(false, |conn| {
            let mut written = vec![None; group.len()];
            if let [chunk] = chunks.as_slice() {
                chunk.run(conn, self, ms, 0, &mut written)?;
                return Ok(written);
            }
            conn.client().batch_execute("BEGIN")?;
            let mut offset = 0;
            let statements = chunks.iter().try_for_each(|chunk| {
                chunk.run(conn, self, ms, offset, &mut written)?;
                offset += chunk.len();
                Ok(())
            });
            match statements.and_then(|()| conn.client().batch_execute("COMMIT")) {
                Ok(()) => Ok(written),
                Err(err) => {
                    if !is_connection_lost(&err) {
                        // Leaves no failed transaction open on a connection going back
                        // to the pool.
                        let _ = conn.client().batch_execute("ROLLBACK");
                    }
                    Err(err)
                }
            }
        });
        match result {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(err)) => Err(Failure {
                lost: is_connection_lost(&err),
                error: self.error(&err, "flush", &place),
            }),
            // No connection: nothing was sent.
            Err(error) => Err(Failure { lost: false, error }),
        }
    }

    /// The place of a group in messages: its document, or its first and how many more.
    fn group_place(&self, group: &[Job]) -> String {
        match group {
            [job] => self.document_place(&job.id),
            [first, rest @ ..] => format!(
                "{} and {} other documents flushed with it",
                self.document_place(&first.id),
                rest.len()
            ),
            [] => self.place.clone(),
        }
    }

    /// Fails as a connection lost while committing would: the statement runs inside a
    /// transaction whose connection is then closed before `COMMIT`, so the server rolls
    /// it back.
    #[cfg(feature = "fault-injection")]
    fn fail_in_flight(&self, chunk: &Params<'_>, ms: i64, place: &str) -> Failure {
        if let Ok(mut conn) = self.pool.get(&self.location) {
            let _ = conn.client().batch_execute("BEGIN");
            let mut written = vec![None; chunk.len()];
            let _ = chunk.run(&mut conn, self, ms, 0, &mut written);
            conn.discard();
        }
        Failure {
            lost: true,
            error: crate::error::connection_lost(
                place,
                "the connection was closed before COMMIT (injected fault)",
            ),
        }
    }
}

/// Changes to store: document positions, actors, seqs, values.
type PutChanges<'a> = (Vec<i64>, Vec<&'a [u8]>, Vec<i64>, Vec<&'a [u8]>);

/// The parameters of one flush statement for a run of jobs: one array per column, the
/// rows of each document's writes tagged with its (1-based) position in `documents`.
struct Params<'a> {
    documents: Vec<&'a [u8]>,
    tokens: Vec<i64>,
    seen: Vec<SystemTime>,
    remove_change: (Vec<i64>, Vec<&'a [u8]>, Vec<i64>),
    put_change: PutChanges<'a>,
    remove_state: (Vec<i64>, Vec<&'a [u8]>),
    put_state: (Vec<i64>, Vec<&'a [u8]>, Vec<&'a [u8]>),
    /// Rows of `documents` to write: positions, and the compacted document or `None`
    /// (keep the stored one).
    records: (Vec<i64>, Vec<Option<&'a [u8]>>),
    sizes: [Vec<i64>; 5],
}

impl<'a> Params<'a> {
    fn new(jobs: &'a [Job]) -> Self {
        let mut p = Params {
            documents: Vec::with_capacity(jobs.len()),
            tokens: Vec::with_capacity(jobs.len()),
            seen: Vec::with_capacity(jobs.len()),
            remove_change: Default::default(),
            put_change: Default::default(),
            remove_state: Default::default(),
            put_state: Default::default(),
            records: Default::default(),
            sizes: Default::default(),
        };
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (i, job) in jobs.iter().enumerate() {
            let i = i as i64 + 1;
            p.documents.push(job.id.as_bytes());
            p.tokens.push(job.token);
            p.seen.push(job.expires);
            for ((actor, seq), value) in &job.held.changes {
                match value {
                    Some(value) => {
                        p.put_change.0.push(i);
                        p.put_change.1.push(actor.as_bytes());
                        p.put_change.2.push(seq_to_sql(*seq));
                        p.put_change.3.push(value);
                    }
                    None => {
                        p.remove_change.0.push(i);
                        p.remove_change.1.push(actor.as_bytes());
                        p.remove_change.2.push(seq_to_sql(*seq));
                    }
                }
            }
            for (peer, state) in &job.held.sync_states {
                match state {
                    Some(state) => {
                        p.put_state.0.push(i);
                        p.put_state.1.push(peer);
                        p.put_state.2.push(state);
                    }
                    None => {
                        p.remove_state.0.push(i);
                        p.remove_state.1.push(peer);
                    }
                }
            }
            if !job.stored || job.held.document.is_some() {
                p.records.0.push(i);
                p.records.1.push(job.held.document.as_deref());
            }
            let s = job.sizes;
            let sizes = [
                s.changes,
                s.document,
                s.sync_states,
                s.change_count,
                s.sync_state_count,
            ];
            for (column, value) in p.sizes.iter_mut().zip(sizes) {
                column.push(int(value));
            }
        }
        p
    }

    fn len(&self) -> usize {
        self.documents.len()
    }

    /// Runs the statement; sets `written[offset + i]` to the new `expires_at` of each
    /// document `i` of this run whose lease held.
    fn run(
        &self,
        conn: &mut Conn,
        shared: &Shared,
        ms: i64,
        offset: usize,
        written: &mut [Option<SystemTime>],
    ) -> Result<(), postgres::Error> {
        let [
            changes,
            document,
            sync_states,
            change_count,
            sync_state_count,
        ] = &self.sizes;
        // In the order of `FLUSH` in `sql.rs`; `FLUSH_CHANGES` takes the first ones.
        let params: [&(dyn ToSql + Sync); FLUSH_PARAMS] = [
            &self.documents,
            &self.tokens,
            &ms,
            &self.seen,
            changes,
            document,
            sync_states,
            change_count,
            sync_state_count,
            &self.put_change.0,
            &self.put_change.1,
            &self.put_change.2,
            &self.put_change.3,
            &self.records.0,
            &self.records.1,
            &self.remove_change.0,
            &self.remove_change.1,
            &self.remove_change.2,
            &self.remove_state.0,
            &self.remove_state.1,
            &self.put_state.0,
            &self.put_state.1,
            &self.put_state.2,
        ];
        let only_changes = self.records.0.is_empty()
            && self.remove_change.0.is_empty()
            && self.remove_state.0.is_empty()
            && self.put_state.0.is_empty();
        let (q, params) = if only_changes {
            (Q::FlushChanges, &params[..FLUSH_CHANGES_PARAMS])
        } else {
            (Q::Flush, &params[..])
        };
        for row in conn.query(&shared.sql, q, params)? {
            let i: i64 = row.try_get(0)?;
            let expires: SystemTime = row.try_get(1)?;
            let slot = usize::try_from(i - 1)
                .ok()
                .and_then(|i| written.get_mut(offset + i));
            if let Some(slot) = slot {
                *slot = Some(expires);
            }
        }
        Ok(())
    }
}
