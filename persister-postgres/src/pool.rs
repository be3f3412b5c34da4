//! The store's connections: opened on demand up to a bound, reused, and dropped when
//! the connection is lost, so the next operation reconnects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use persister_core::Result;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::location::Location;
use crate::sql::{Q, STATEMENTS, Sql};

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    /// Set by the server's warning that a commit's wait for synchronous replication
    /// was cancelled (see [`Location::connect`]).
    unreplicated: Arc<AtomicBool>,
    prepared: Vec<Option<Statement>>,
    /// When it was last given back to the pool.
    idle_since: Instant,
}

/// How long a connection may sit idle before it is checked with a round trip when
/// taken again. A store that keeps its connections busy pays nothing; one that flushes
/// rarely pays a round trip that is small beside its pauses.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(200);

impl Conn {
    /// Runs statement `q`, preparing it on this connection the first time.
    pub fn query(
        &mut self,
        sql: &Sql,
        q: Q,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = match &self.prepared[q as usize] {
            Some(statement) => statement.clone(),
            None => {
                let statement = self.client.prepare(sql.text(q))?;
                self.prepared[q as usize] = Some(statement.clone());
                statement
            }
        };
        self.client.query(&statement, params)
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether the server warned, since the last call, that it cancelled a commit's
    /// wait for synchronous replication.
    pub fn take_unreplicated(&self) -> bool {
        self.unreplicated.swap(false, Ordering::SeqCst)
    }

    /// Whether the connection can be used: not closed, and when it has been idle for
    /// [`CHECK_AFTER_IDLE`] or longer, answering an empty query. The server may have
    /// gone away meanwhile (a primary that failed over); a flush sent on such a
    /// connection would end with an unknown outcome and poison its handle, where a
    /// new connection reaches the new primary.
    fn usable(&mut self, timeout: Duration) -> bool {
        !self.client.is_closed()
            && (self.idle_since.elapsed() < CHECK_AFTER_IDLE
                || self.client.is_valid(timeout).is_ok())
    }
}

#[derive(Default)]
struct State {
    idle: Vec<Conn>,
    open: usize,
}

/// At most `max` connections to one server.
pub(crate) struct Pool {
    state: Mutex<State>,
    freed: Condvar,
    max: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("open", &state.open)
            .field("idle", &state.idle.len())
            .field("max", &self.max)
            .finish()
    }
}

impl Pool {
    pub fn new(max: usize) -> Self {
        Self {
            state: Mutex::default(),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection (checked first when it has been idle a while), a new one,
    /// or the next one freed.
    pub fn get<'a>(&'a self, location: &Location) -> Result<Pooled<'a>> {
        loop {
            let mut state = self.lock();
            let idle = loop {
                if let Some(conn) = state.idle.pop() {
                    break Some(conn);
                }
                if state.open < self.max {
                    state.open += 1;
                    break None;
                }
                state = self
                    .freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            };
            drop(state);
            let Some(mut conn) = idle else {
                let unreplicated = Arc::new(AtomicBool::new(false));
                return match location.connect(&unreplicated).map(prepare_session) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(Conn {
                            client,
                            unreplicated,
                            prepared: vec![None; STATEMENTS],
                            idle_since: Instant::now(),
                        }),
                    }),
                    Err(err) => {
                        self.forget_one();
                        Err(err)
                    }
                };
            };
            if conn.usable(location.check_timeout()) {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            drop(conn);
            self.forget_one();
        }
    }

    /// Counts out a connection that was dropped.
    fn forget_one(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    /// Drops every idle connection without a goodbye to the server: one connection was
    /// found lost, so the others most likely went to the same server (a primary that
    /// failed over), and the next operations open new ones rather than each finding
    /// its connection dead, which for a flush would mean an unknown outcome.
    pub fn discard_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        self.freed.notify_all();
        drop(idle);
    }

    /// Closes every idle connection, returning the first error.
    pub fn close_idle(&self) -> std::result::Result<(), postgres::Error> {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        self.freed.notify_all();
        let mut result = Ok(());
        for conn in idle {
            let closed = conn.client.close();
            if result.is_ok() {
                result = closed;
            }
        }
        result
    }
}

/// Plans the backend's statements once per connection: they are few, prepared, and
/// their plans do not depend on the values, so PostgreSQL's default of planning the
/// first executions again with each value set only costs time. Every statement reaches
/// its rows by primary key, so sequential scans are off: a plan made while a table is
/// small (a store's first flush, before the server has statistics) would otherwise
/// scan the whole table on every execution for as long as the connection lives, and a
/// flush would cost more as the store grows. A server that does not know a setting
/// (another database engine) keeps its default.
fn prepare_session(mut client: Client) -> Client {
    let _ = client.batch_execute("SET plan_cache_mode = force_generic_plan");
    let _ = client.batch_execute("SET enable_seqscan = off");
    client
}

/// A connection taken from the pool; it goes back when dropped, unless it was lost.
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pooled<'_> {
    /// Drops the connection instead of returning it to the pool.
    pub fn discard(mut self) {
        self.conn = None;
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Present until drop or discard, which consume the guard.
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a pooled connection is used after it was given back"),
        }
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a pooled connection is used after it was given back"),
        }
    }
}

impl Drop for Pooled<'_> {
    /// Gives the connection back, unless it was lost or the thread is panicking: a
    /// panic may have left a transaction open on it (between a `BEGIN` and its
    /// `COMMIT`), which the next statement run on it would join.
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.conn.take() {
            Some(mut conn) if !conn.client.is_closed() && !std::thread::panicking() => {
                conn.idle_since = Instant::now();
                state.idle.push(conn);
            }
            _ => state.open -= 1,
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Duration;

    use super::*;

    /// A connection dropped while its thread panics (here inside a transaction) is
    /// closed, not given back: the next statement taken from the pool must not join
    /// the transaction the panic left open.
    #[test]
    fn a_connection_dropped_in_a_panic_is_not_given_back() -> Result<()> {
        let url = match persister_testkit::postgres::shared_schema_url("pool_panic") {
            Ok(Some(url)) => url,
            Ok(None) => return Ok(()),
            Err(why) => panic!("{why}"),
        };
        let url = crate::location::driver_url(&url)?;
        let location = Location::parse(&url, Duration::from_secs(10), Duration::from_secs(30))?;
        let pool = Pool::new(1);
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let mut conn = pool.get(&location).expect("a connection");
            conn.client().batch_execute("BEGIN").expect("BEGIN");
            panic!("between BEGIN and COMMIT");
        }));
        assert!(panicked.is_err());
        assert!(pool.lock().idle.is_empty(), "the connection was given back");
        assert_eq!(pool.lock().open, 0);
        let mut conn = pool.get(&location)?;
        // A savepoint can only be set inside a transaction block.
        let savepoint = conn.client().batch_execute("SAVEPOINT s");
        assert!(
            savepoint.is_err(),
            "the new connection is inside the transaction the panic left open"
        );
        Ok(())
    }
}
