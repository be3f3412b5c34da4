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
        // A job larger than a statement is split into pieces, each written by a
        // statement of its own (all in one transaction): every array stays far below
        // the server's 1 GiB limit for a value and for a message.
        let mut chunks = Vec::new();
        let mut parts = vec![0usize; group.len()];
        let mut current: Vec<Piece<'_>> = Vec::new();
        let mut bytes = 0;
        let limit = self.statement_bytes();
        for (at, job) in group.iter().enumerate() {
            for piece in Piece::split(at, job, limit) {
                parts[at] += 1;
                // Two pieces of one job never share a statement.
                if !current.is_empty()
                    && (bytes + piece.bytes > limit || current.iter().any(|p| p.at == at))
                {
                    chunks.push(Params::new(&std::mem::take(&mut current)));
                    bytes = 0;
                }
                bytes += piece.bytes;
                current.push(piece);
            }
        }
        chunks.push(Params::new(&current));
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
            conn.take_unreplicated();
            let mut hits = vec![(0usize, None); group.len()];
            if let [chunk] = chunks.as_slice() {
                chunk.run(conn, self, ms, &mut hits)?;
                let written = hits.into_iter().map(|(_, expires)| expires).collect();
                return Ok(Some((written, conn.take_unreplicated())));
            }
            conn.client().batch_execute("BEGIN")?;
            let statements = chunks
                .iter()
                .try_for_each(|chunk| chunk.run(conn, self, ms, &mut hits));
            // Each piece of a job checks its lease; they cannot disagree (the first
            // locks the lease row), but should they, nothing is committed.
            let agree = hits
                .iter()
                .zip(&parts)
                .all(|((hit, _), parts)| *hit == 0 || hit == parts);
            if statements.is_ok() && !agree {
                conn.client().batch_execute("ROLLBACK")?;
                return Ok(None);
            }
            match statements.and_then(|()| conn.client().batch_execute("COMMIT")) {
                Ok(()) => {
                    let written = hits
                        .into_iter()
                        .map(|(hit, expires)| expires.filter(|_| hit > 0))
                        .collect();
                    Ok(Some((written, conn.take_unreplicated())))
                }
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
            // The server committed, but cancelled the wait for its synchronous standbys:
            // a failover may lose the commit, so it is not acknowledged.
            Ok(Ok(Some((_, true)))) => Err(Failure {
                lost: true,
                error: crate::error::flush_failed(&place, crate::error::UNREPLICATED),
            }),
            Ok(Ok(Some((written, false)))) => Ok(written),
            Ok(Ok(None)) => Err(Failure {
                lost: false,
                error: crate::error::flush_failed(
                    &place,
                    "the lease checks of the statements of one document disagreed; nothing was committed",
                ),
            }),
            Ok(Err(err)) => Err(Failure {
                lost: is_connection_lost(&err),
                error: self.error(&err, "flush", &place),
            }),
            // No connection: nothing was sent.
            Err(error) => Err(Failure { lost: false, error }),
        }
    }

    /// The most payload bytes one flush statement carries: [`STATEMENT_BYTES`], or less
    /// where a test asked for it.
    fn statement_bytes(&self) -> usize {
        #[cfg(feature = "fault-injection")]
        match self
            .statement_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            0 => {}
            set => return set,
        }
        STATEMENT_BYTES
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
            let mut hits = vec![(0, None); chunk.positions.iter().max().map_or(0, |m| m + 1)];
            let _ = chunk.run(&mut conn, self, ms, &mut hits);
            conn.discard();
        }
        Failure {
            lost: true,
            error: crate::error::flush_failed(
                place,
                "the connection was closed before COMMIT (injected fault)",
            ),
        }
    }
}

/// A change a handle holds: its key, and its value or `None` (removed).
type HeldChange<'a> = (&'a (ActorId, u64), &'a Option<Vec<u8>>);

/// A part of one job's writes, written by one statement: a job whose writes pass
/// [`STATEMENT_BYTES`] is split into several, each checking and renewing the lease and
/// carrying the document's sizes; only the first writes its row of `documents`.
struct Piece<'a> {
    /// The job's position in its group.
    at: usize,
    job: &'a Job,
    first: bool,
    changes: Vec<HeldChange<'a>>,
    sync_states: Vec<(&'a Vec<u8>, &'a Option<Vec<u8>>)>,
    /// The bytes it sends, roughly: values, keys and a little for each row.
    bytes: usize,
}

impl<'a> Piece<'a> {
    /// Splits `job`'s writes into pieces of at most `limit` bytes each (or one write,
    /// when that is larger).
    fn split(at: usize, job: &'a Job, limit: usize) -> Vec<Piece<'a>> {
        let empty = |first| Piece {
            at,
            job,
            first,
            changes: Vec::new(),
            sync_states: Vec::new(),
            bytes: 0,
        };
        let mut pieces = Vec::new();
        let mut piece = empty(true);
        piece.bytes = job.held.document.as_ref().map_or(0, Vec::len);
        for (key, value) in &job.held.changes {
            let size = key.0.as_bytes().len() + value.as_ref().map_or(0, Vec::len) + 24;
            if piece.bytes > 0 && piece.bytes + size > limit {
                pieces.push(std::mem::replace(&mut piece, empty(false)));
            }
            piece.bytes += size;
            piece.changes.push((key, value));
        }
        for (peer, state) in &job.held.sync_states {
            let size = peer.len() + state.as_ref().map_or(0, Vec::len) + 16;
            if piece.bytes > 0 && piece.bytes + size > limit {
                pieces.push(std::mem::replace(&mut piece, empty(false)));
            }
            piece.bytes += size;
            piece.sync_states.push((peer, state));
        }
        pieces.push(piece);
        pieces
    }
}

/// Changes to store: document positions, actors, seqs, values.
type PutChanges<'a> = (Vec<i64>, Vec<&'a [u8]>, Vec<i64>, Vec<&'a [u8]>);

/// The parameters of one flush statement for a run of jobs: one array per column, the
/// rows of each document's writes tagged with its (1-based) position in `documents`.
struct Params<'a> {
    /// The position in the group of the job of each document.
    positions: Vec<usize>,
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
    fn new(pieces: &[Piece<'a>]) -> Self {
        let mut p = Params {
            positions: Vec::with_capacity(pieces.len()),
            documents: Vec::with_capacity(pieces.len()),
            tokens: Vec::with_capacity(pieces.len()),
            seen: Vec::with_capacity(pieces.len()),
            remove_change: Default::default(),
            put_change: Default::default(),
            remove_state: Default::default(),
            put_state: Default::default(),
            records: Default::default(),
            sizes: Default::default(),
        };
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (i, piece) in pieces.iter().enumerate() {
            let job = piece.job;
            let i = i as i64 + 1;
            p.positions.push(piece.at);
            p.documents.push(job.id.as_bytes());
            p.tokens.push(job.token);
            p.seen.push(job.expires);
            for &((actor, seq), value) in &piece.changes {
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
            for &(peer, state) in &piece.sync_states {
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
            if piece.first && (!job.stored || job.held.document.is_some()) {
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

    /// Runs the statement; counts a hit, and keeps the new `expires_at`, for the job
    /// of each document of this run whose lease held.
    fn run(
        &self,
        conn: &mut Conn,
        shared: &Shared,
        ms: i64,
        hits: &mut [(usize, Option<SystemTime>)],
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
                .and_then(|i| self.positions.get(i))
                .and_then(|&at| hits.get_mut(at));
            if let Some((hit, slot)) = slot {
                *hit += 1;
                *slot = Some(expires);
            }
        }
        Ok(())
    }
}
