//! Every SQL statement of the backend, and the table layout they work on.
//!
//! The schema name is the only identifier written into SQL text (checked by
//! [`check_schema_name`]); every value, document id, actor and peer id is a parameter.

use persister_core::{Error, Result};

/// The version of the table layout this build reads and writes (`format_version` in
/// `meta`).
pub const FORMAT_VERSION: u32 = 2;

/// The value of `format` in `meta`, which tells a store from other tables.
pub(crate) const FORMAT_NAME: &str = "persister-postgres";

/// The statements, by name; [`Sql::text`] gives each one's text for a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Q {
    /// `$1` document, `$2` holder, `$3` lease in ms: the new token, or no row when the
    /// lease is held.
    TakeLease,
    /// `$1` document, `$2` token, `$3` lease in ms: one row when renewed.
    RenewLease,
    /// `$1` document, `$2` token.
    ReleaseLease,
    /// `$1` document: holder and seconds left of the lease.
    LeaseHolder,
    /// `$1` document: whether a document is stored, and the five sizes (no row when the
    /// document has no record).
    Record,
    /// `$1` document: `(actor, seq, value)` in key order.
    Changes,
    /// `$1` document: the compacted document.
    Document,
    /// `$1` document, `$2` peer: every peer in order with the length of its state, and
    /// the state of `$2`.
    SyncState,
    /// `$1` document: peer ids in order, with the length of each one's state.
    Peers,
    /// `$1` document, `$2` actors: each actor with its highest stored seq.
    MaxSeqs,
    /// `$1` document, `$2` actors, `$3` seqs: the length of each stored one.
    ChangeLengths,
    /// `$1` document, `$2` peers: the length of each stored state.
    SyncStateLengths,
    /// The flush of a group of documents: see [`FLUSH`].
    Flush,
    /// The flush of a group that only stores changes: see [`FLUSH_CHANGES`].
    FlushChanges,
    /// Every document id, in order.
    List,
    /// `$1` document, `$2` holder: takes the lease of a document to remove when it is
    /// free (one row), inside the removal's transaction.
    Remove,
    /// `$1` document: deletes its rows, after [`Q::Remove`] took its lease, in a
    /// statement of its own so that it sees every write committed before the lease was
    /// taken.
    RemoveData,
    /// `key, value` of `meta`.
    Meta,
}

const COUNT: usize = Q::Meta as usize + 1;

/// Turns `synchronous_commit` on for the statement's own transaction, unless it is
/// already `on` or `remote_apply`: a commit that writes the store waits until the WAL is
/// on disk, and on every synchronous standby when the server has them; the setting is
/// only ever raised, never lowered.
pub(crate) const SYNC_ON: &str = "set_config('synchronous_commit', CASE current_setting('synchronous_commit') WHEN 'remote_apply' THEN 'remote_apply' ELSE 'on' END, true)";

/// The server's clock in milliseconds since 1970, the floor of a new fencing token.
const TOKEN_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::int8";

/// A new token is the server's clock in milliseconds since 1970, or the previous token
/// plus one when that is larger: it always grows, and a token taken on a primary that
/// then failed over before its standby received it is not issued again by the standby
/// (whose clock has moved on), unless the two clocks differ by more than the failover
/// took.
const TAKE_LEASE: &str = "
WITH sc AS (SELECT SYNC_ON AS v)
INSERT INTO S.leases AS l (document, token, holder, expires_at)
SELECT $1, TOKEN_NOW, $2, now() + $3::int8 * interval '1 millisecond' FROM sc
ON CONFLICT (document) DO UPDATE
    SET token = greatest(l.token + 1, TOKEN_NOW), holder = excluded.holder,
        expires_at = excluded.expires_at
    WHERE l.expires_at <= now()
RETURNING token, expires_at";

/// Renews only a lease whose `expires_at` is not older than the one this handle last
/// wrote: an older one means the server lost an acknowledged write of this handle (an
/// asynchronous standby promoted without it), and the handle must not write on top.
/// A newer one is this handle's own renewal whose answer was lost. Committed
/// synchronously: the handle takes the new `expires_at` as written, and a renewal a
/// server crash lost would make its next flush find an older one and be refused.
const RENEW_LEASE: &str = "
WITH sc AS (SELECT SYNC_ON AS v)
UPDATE S.leases SET expires_at = now() + $3::int8 * interval '1 millisecond'
WHERE document = $1 AND token = $2 AND expires_at > now() AND expires_at >= $4
    AND EXISTS (SELECT 1 FROM sc)
RETURNING expires_at";

const RELEASE_LEASE: &str = "
UPDATE S.leases SET expires_at = now()
WHERE document = $1 AND token = $2 AND expires_at > now()";

const LEASE_HOLDER: &str = "
SELECT holder, greatest(extract(epoch FROM expires_at - now()), 0)::float8
FROM S.leases WHERE document = $1";

/// A document's record is its row in `documents`, with its sizes in its lease's row
/// (which every open has taken first, and nothing deletes): whether the document is
/// stored, its five sizes, and whether it has rows of changes or sync states although
/// it has no row in `documents` (damage: its reads must fail, not find it empty).
const RECORD: &str = "
SELECT d.document IS NOT NULL, l.changes_bytes, l.document_bytes, l.sync_state_bytes,
    l.change_count, l.sync_state_count,
    d.document IS NULL AND (EXISTS (SELECT 1 FROM S.changes c WHERE c.document = $1)
        OR EXISTS (SELECT 1 FROM S.sync_states s WHERE s.document = $1))
FROM S.leases l LEFT JOIN S.documents d ON d.document = l.document WHERE l.document = $1";

/// The reads of a handle start from its document's lease row, whose token they return
/// (one row even when nothing else is found), so that a handle whose lease was taken
/// over never reads the new holder's data as its own.
const CHANGES: &str = "
SELECT l.token, c.actor, c.seq, c.value
FROM S.leases l LEFT JOIN S.changes c ON c.document = l.document
WHERE l.document = $1 ORDER BY c.actor, c.seq";

const DOCUMENT: &str = "
SELECT l.token, d.data
FROM S.leases l LEFT JOIN S.documents d ON d.document = l.document
WHERE l.document = $1";

/// Every peer's length comes with the one state asked for, so that the read checks
/// the count and the bytes of the document's sync states against its sizes record: a
/// state shortened or deleted by hand is damage, not a shorter state or none.
const SYNC_STATE: &str = "
SELECT l.token, s.peer, octet_length(s.state)::int8, CASE WHEN s.peer = $2 THEN s.state END
FROM S.leases l LEFT JOIN S.sync_states s ON s.document = l.document
WHERE l.document = $1 ORDER BY s.peer";

const PEERS: &str = "
SELECT l.token, s.peer, octet_length(s.state)::int8
FROM S.leases l LEFT JOIN S.sync_states s ON s.document = l.document
WHERE l.document = $1 ORDER BY s.peer";

const MAX_SEQS: &str = "
SELECT a.actor, (SELECT max(c.seq) FROM S.changes c WHERE c.document = $1 AND c.actor = a.actor)
FROM unnest($2::bytea[]) AS a(actor)";

const CHANGE_LENGTHS: &str = "
SELECT c.actor, c.seq, octet_length(c.value)::int8
FROM S.changes c JOIN unnest($2::bytea[], $3::int8[]) AS k(actor, seq)
    ON c.actor = k.actor AND c.seq = k.seq
WHERE c.document = $1";

const SYNC_STATE_LENGTHS: &str = "
SELECT peer, octet_length(state)::int8 FROM S.sync_states
WHERE document = $1 AND peer = ANY($2::bytea[])";

/// One statement, so one round trip and one implicit transaction, writes the flushes
/// of a group of documents (one document when a handle flushes alone; see
/// `group.rs`): it turns `synchronous_commit` on for its own commit, renews each
/// document's lease only if that document's fencing token still holds it, and does
/// each document's writes only if its lease was renewed, exactly as a flush of that
/// document alone would. Parameters, one array element per document: `$1` documents,
/// `$2` tokens, `$4` each lease's `expires_at` as its handle last wrote it (see
/// [`RENEW_LEASE`]), `$5..$9` its sizes after the flush, written into its lease's row
/// with the renewal; `$3` the lease in ms. Then the writes, each row tagged with its
/// document's 1-based position in `$1`: `$10..$13` changes to store (position, actor,
/// seq, value). Then, in [`FLUSH`] only: `$14, $15` documents whose row in `documents`
/// to write (position, the compacted document or `NULL`): a document's first flush
/// creates the row, and a new compacted document replaces the stored one (a flush never
/// removes it); `$16..$18` changes to remove (position, actor, seq); `$19, $20` sync
/// states to remove (position, peer); `$21..$23` sync states to store (position, peer,
/// state). Returns one row per document whose lease held: its position and the lease's
/// new `expires_at`; the writes of the others are not done. `leases` and `sync_states`
/// are also reached through `document = ANY($1)`, so that the generic plan (planned
/// once) looks their rows up by primary key rather than scan the table, and a flush
/// costs no more as the store grows.
///
/// A group that only stores changes of documents that already have their row (the
/// common flush) runs [`FLUSH_CHANGES`] instead: the same statement without the parts
/// that write `documents`, remove changes and write sync states, since every part of a
/// statement costs the server CPU to set up even when it has no rows (about a tenth of
/// the server's CPU for a group of 8 documents). The sizes ride on the lease's renewal,
/// which a flush writes anyway (format version 2: version 1 upserted the row in
/// `documents` with the sizes on every flush; moving them let row 8 of the benchmark
/// make 5% to 17% more writes durable per second, and raised its ratio to the server's
/// single-row commits from a median of 3.64x to about 4.0x).
const FLUSH: [&str; 4] = [
    FLUSH_LEASE,
    FLUSH_PUT_CHANGES,
    FLUSH_DOCUMENTS_REMOVALS_AND_SYNC_STATES,
    FLUSH_END,
];

/// [`FLUSH`] for a group that stores changes of documents that have their row, and
/// nothing else: parameters `$1..$13` only.
const FLUSH_CHANGES: [&str; 3] = [FLUSH_LEASE, FLUSH_PUT_CHANGES, FLUSH_END];

/// The parameters of [`FLUSH`]; [`FLUSH_CHANGES`] takes the first
/// [`FLUSH_CHANGES_PARAMS`].
pub(crate) const FLUSH_PARAMS: usize = 23;

/// The parameters of [`FLUSH_CHANGES`].
pub(crate) const FLUSH_CHANGES_PARAMS: usize = 13;

/// The start of [`FLUSH`]: the documents of the group, and the leases that held,
/// renewed and carrying the documents' sizes.
const FLUSH_LEASE: &str = "
WITH sc AS (SELECT SYNC_ON AS v),
docs AS (
    SELECT * FROM unnest($1::bytea[], $2::int8[], $4::timestamptz[], $5::int8[], $6::int8[],
            $7::int8[], $8::int8[], $9::int8[])
        WITH ORDINALITY AS k(document, token, seen, changes_bytes, document_bytes,
            sync_state_bytes, change_count, sync_state_count, i)),
lease AS (
    UPDATE S.leases l SET expires_at = now() + $3::int8 * interval '1 millisecond',
        changes_bytes = k.changes_bytes, document_bytes = k.document_bytes,
        sync_state_bytes = k.sync_state_bytes, change_count = k.change_count,
        sync_state_count = k.sync_state_count
    FROM docs k
    WHERE l.document = ANY($1::bytea[]) AND l.document = k.document AND l.token = k.token
        AND l.expires_at > now() AND l.expires_at >= k.seen AND EXISTS (SELECT 1 FROM sc)
    RETURNING k.i, l.document, l.expires_at)";

/// The changes stored.
const FLUSH_PUT_CHANGES: &str = ",
pc AS (
    INSERT INTO S.changes (document, actor, seq, value)
    SELECT lease.document, k.actor, k.seq, k.value
    FROM unnest($10::int8[], $11::bytea[], $12::int8[], $13::bytea[]) AS k(i, actor, seq, value)
    JOIN lease ON lease.i = k.i
    ON CONFLICT (document, actor, seq) DO UPDATE SET value = excluded.value
    RETURNING 1)";

/// The part of [`FLUSH`] that writes rows of `documents`, removes changes and writes
/// sync states.
const FLUSH_DOCUMENTS_REMOVALS_AND_SYNC_STATES: &str = ",
d AS (
    INSERT INTO S.documents AS d (document, data)
    SELECT lease.document, k.data
    FROM unnest($14::int8[], $15::bytea[]) AS k(i, data)
    JOIN lease ON lease.i = k.i
    ON CONFLICT (document) DO UPDATE SET data = excluded.data WHERE excluded.data IS NOT NULL
    RETURNING 1),
dc AS (
    DELETE FROM S.changes c
    USING unnest($16::int8[], $17::bytea[], $18::int8[]) AS k(i, actor, seq), lease
    WHERE lease.i = k.i AND c.document = lease.document AND c.actor = k.actor
        AND c.seq = k.seq
    RETURNING 1),
ds AS (
    DELETE FROM S.sync_states s USING unnest($19::int8[], $20::bytea[]) AS k(i, peer), lease
    WHERE s.document = ANY($1::bytea[]) AND s.peer = ANY($20::bytea[]) AND lease.i = k.i
        AND s.document = lease.document AND s.peer = k.peer
    RETURNING 1),
ps AS (
    INSERT INTO S.sync_states (document, peer, state)
    SELECT lease.document, k.peer, k.state
    FROM unnest($21::int8[], $22::bytea[], $23::bytea[]) AS k(i, peer, state)
    JOIN lease ON lease.i = k.i
    ON CONFLICT (document, peer) DO UPDATE SET state = excluded.state
    RETURNING 1)";

/// The end of [`FLUSH`]: which leases held.
const FLUSH_END: &str = "
SELECT i, expires_at FROM lease";

const LIST: &str = "SELECT document FROM S.documents ORDER BY document";

/// Takes the lease only when it is free, moving the token on (which fences out any
/// old holder) and leaving it expired. Runs in the removal's transaction, followed by
/// [`REMOVE_DATA`] only if it took the lease: the deletes must not share this
/// statement's snapshot, which is taken before the statement may wait for the lease
/// row (a holder's flush in flight) and so misses the rows that flush commits. The
/// sizes the lease's row carries are then no one's: [`RECORD`] finds no row in
/// `documents`, and the document's next flush creates that row and writes the sizes.
const REMOVE: &str = "
WITH sc AS (SELECT SYNC_ON AS v)
INSERT INTO S.leases AS l (document, token, holder, expires_at)
SELECT $1, TOKEN_NOW, $2, now() FROM sc
ON CONFLICT (document) DO UPDATE
    SET token = greatest(l.token + 1, TOKEN_NOW), holder = excluded.holder,
        expires_at = now()
    WHERE l.expires_at <= now()
RETURNING token";

/// Deletes a document's rows, once [`REMOVE`] took its lease in the same transaction.
const REMOVE_DATA: &str = "
WITH dc AS (DELETE FROM S.changes WHERE document = $1 RETURNING 1),
ds AS (DELETE FROM S.sync_states WHERE document = $1 RETURNING 1)
DELETE FROM S.documents WHERE document = $1";

const META: &str = "SELECT key, value FROM S.meta";

/// Creates the schema and its tables where missing, in one transaction.
const CREATE: &str = "
BEGIN;
CREATE SCHEMA IF NOT EXISTS S;
CREATE TABLE IF NOT EXISTS S.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS S.documents (document bytea PRIMARY KEY, data bytea);
CREATE TABLE IF NOT EXISTS S.changes (
    document bytea NOT NULL,
    actor bytea NOT NULL,
    seq int8 NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (document, actor, seq));
CREATE TABLE IF NOT EXISTS S.sync_states (
    document bytea NOT NULL,
    peer bytea NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (document, peer));
CREATE TABLE IF NOT EXISTS S.leases (
    document bytea PRIMARY KEY,
    token int8 NOT NULL,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL,
    changes_bytes int8 NOT NULL DEFAULT 0,
    document_bytes int8 NOT NULL DEFAULT 0,
    sync_state_bytes int8 NOT NULL DEFAULT 0,
    change_count int8 NOT NULL DEFAULT 0,
    sync_state_count int8 NOT NULL DEFAULT 0);
INSERT INTO S.meta (key, value) VALUES ('format', 'persister-postgres'), ('format_version', '2')
    ON CONFLICT (key) DO NOTHING;
COMMIT;";

/// Migrates a store of format version 1 in place, in one transaction that only one
/// process runs (the others wait on the format record's row lock, then find version 2):
/// the sizes move from each row of `documents` into its lease's row, where every flush
/// now writes them with the lease's renewal. Dropping the columns from `documents`
/// makes the flushes and opens of a process still running version 1 fail with the
/// server's error, rather than write sizes nobody reads or read sizes nobody writes.
/// Adding columns with a constant default and dropping columns rewrite no table. Each
/// lock is waited for at most 10 s, so that a long transaction on the tables fails the
/// migration rather than queue every other statement on them behind it.
const MIGRATE_1_TO_2: &str = "
DO $migrate$
BEGIN
    PERFORM set_config('lock_timeout', '10s', true);
    PERFORM 1 FROM S.meta WHERE key = 'format_version' AND value = '1' FOR UPDATE;
    IF FOUND THEN
        ALTER TABLE S.leases
            ADD COLUMN changes_bytes int8 NOT NULL DEFAULT 0,
            ADD COLUMN document_bytes int8 NOT NULL DEFAULT 0,
            ADD COLUMN sync_state_bytes int8 NOT NULL DEFAULT 0,
            ADD COLUMN change_count int8 NOT NULL DEFAULT 0,
            ADD COLUMN sync_state_count int8 NOT NULL DEFAULT 0;
        -- Every stored document has had a lease; should one have none, it gets a free one.
        INSERT INTO S.leases (document, token, holder, expires_at)
            SELECT document, TOKEN_NOW, 'the migration to format version 2', now()
            FROM S.documents
            ON CONFLICT (document) DO NOTHING;
        UPDATE S.leases l SET changes_bytes = d.changes_bytes,
            document_bytes = d.document_bytes, sync_state_bytes = d.sync_state_bytes,
            change_count = d.change_count, sync_state_count = d.sync_state_count
            FROM S.documents d WHERE d.document = l.document;
        ALTER TABLE S.documents
            DROP COLUMN changes_bytes, DROP COLUMN document_bytes,
            DROP COLUMN sync_state_bytes, DROP COLUMN change_count,
            DROP COLUMN sync_state_count;
        UPDATE S.meta SET value = '2' WHERE key = 'format_version';
    END IF;
END
$migrate$";

/// The statement texts for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    texts: Vec<String>,
    create: String,
    migrate: String,
    schema: String,
}

impl Sql {
    /// The statements for `schema`, which must pass [`check_schema_name`].
    pub fn new(schema: &str) -> Self {
        let quoted = format!("\"{schema}\"");
        let subst = |text: &str| {
            text.replace("S.", &format!("{quoted}."))
                .replace(" S;", &format!(" {quoted};"))
                .replace("TOKEN_NOW", TOKEN_NOW)
                .replace("SYNC_ON", SYNC_ON)
        };
        let flush = FLUSH.concat();
        let flush_changes = FLUSH_CHANGES.concat();
        let texts = [
            TAKE_LEASE,
            RENEW_LEASE,
            RELEASE_LEASE,
            LEASE_HOLDER,
            RECORD,
            CHANGES,
            DOCUMENT,
            SYNC_STATE,
            PEERS,
            MAX_SEQS,
            CHANGE_LENGTHS,
            SYNC_STATE_LENGTHS,
            &flush,
            &flush_changes,
            LIST,
            REMOVE,
            REMOVE_DATA,
            META,
        ]
        .map(subst)
        .to_vec();
        debug_assert_eq!(texts.len(), COUNT);
        Self {
            texts,
            create: subst(CREATE),
            migrate: subst(MIGRATE_1_TO_2),
            schema: schema.to_string(),
        }
    }

    pub fn text(&self, q: Q) -> &str {
        &self.texts[q as usize]
    }

    pub fn create(&self) -> &str {
        &self.create
    }

    /// The migration of a store of format version 1 to this build's.
    pub fn migrate(&self) -> &str {
        &self.migrate
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}

/// The number of statements, for per-connection caches.
pub(crate) const STATEMENTS: usize = COUNT;

/// Refuses a schema name that is not a plain lowercase identifier.
pub(crate) fn check_schema_name(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "schema name",
            reason: format!(
                "{schema:?} is not 1 to 63 lowercase ASCII letters, digits and `_`, starting with a letter or `_`"
            ),
        })
    }
}

/// A seq as stored: `u64` with its top bit flipped, as `int8`, so that the column orders
/// seqs as unsigned numbers.
pub(crate) fn seq_to_sql(seq: u64) -> i64 {
    i64::from_be_bytes((seq ^ (1 << 63)).to_be_bytes())
}

/// The inverse of [`seq_to_sql`].
pub(crate) fn seq_from_sql(stored: i64) -> u64 {
    u64::from_be_bytes(stored.to_be_bytes()) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_seqs_order_as_unsigned() {
        let seqs = [
            0,
            1,
            255,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for pair in seqs.windows(2) {
            assert!(seq_to_sql(pair[0]) < seq_to_sql(pair[1]));
        }
        for seq in seqs {
            assert_eq!(seq_from_sql(seq_to_sql(seq)), seq);
        }
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["persister", "_x", "a1_b"] {
            assert!(check_schema_name(good).is_ok());
        }
        for bad in ["", "1a", "A", "a-b", "a\"b", "a.b", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    /// The highest `$n` of a statement.
    fn params(text: &str) -> usize {
        text.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_flush_statements_take_the_parameters_the_code_passes() {
        let sql = Sql::new("s1");
        assert_eq!(params(sql.text(Q::Flush)), FLUSH_PARAMS);
        assert_eq!(params(sql.text(Q::FlushChanges)), FLUSH_CHANGES_PARAMS);
        // Every parameter of the shorter statement is used, so the server can type it.
        for n in 1..=FLUSH_CHANGES_PARAMS {
            let used = |text: &str| {
                text.match_indices(&format!("${n}"))
                    .any(|(at, m)| !text[at + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
            };
            assert!(used(sql.text(Q::FlushChanges)), "${n}");
        }
    }

    #[test]
    fn every_statement_names_the_schema_and_no_placeholder_remains() {
        let sql = Sql::new("s1");
        for i in 0..STATEMENTS {
            let text = &sql.texts[i];
            assert!(text.contains("\"s1\"."), "{text}");
            assert!(!text.contains(" S."), "{text}");
            assert!(!text.contains("TOKEN_NOW"), "{text}");
            assert!(!text.contains("SYNC_ON"), "{text}");
        }
        assert!(sql.create().contains("CREATE SCHEMA IF NOT EXISTS \"s1\";"));
        assert!(!sql.migrate().contains(" S."));
        assert!(!sql.migrate().contains("TOKEN_NOW"));
    }
}
