//! The PostgreSQL ledger (production; docs/contract.md §4).
//!
//! * Postings go through the instance's per-account queues
//!   ([`super::batch`]): a batch is ONE call of the `post_batch` function
//!   (migrations/postgres/0006_post_batch.sql, revised by 0007) — one round trip, one
//!   transaction, one commit — which locks the account's row, judges each
//!   posting on the balance left by the ones before it, inserts the rows
//!   and writes the balance once. No interleaving can overdraw or lose an
//!   update; the `CHECK` constraint on `accounts` backs the rule. An account
//!   has at most one batch in flight per instance, so it holds at most one
//!   pooled connection. A batch of one posting without a key — most of
//!   them at light load — is one statement instead (`POST_ONE_SQL`).
//! * A statement is ONE `SELECT` (one snapshot): balance, limit and the last
//!   10 rows cannot disagree.
//! * Connections come from a deadpool pool with bounded waits; each call
//!   returns its connection to the pool before the caller sees the result.
//! * Failover (docs/ha.md): a connection whose server stopped being a
//!   writable primary (read-only, SQLSTATE 25006), went away or stopped
//!   answering is discarded together with every connection opened before
//!   it; the next one is opened afresh, and a multi-host `DATABASE_URL`
//!   with `target_session_attrs=read-write` sends it to whichever host is
//!   the primary now. A batch that failed before it could have been
//!   applied is tried once more on such a fresh connection.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
    Timeouts,
};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::batch::{ApplyBatch, Batcher, Posting, PostingResult, Scope};
use super::migrations::{self, Migration};
use super::{
    history_bounds, history_page, stored_posting_id, AccountAudit, AuditReport, ErrorChain, Ledger,
    LedgerError, LedgerOptions, PostingRow, RowRefused, Unhealthy, UnsupportedDatabase,
};
use crate::domain::{
    AccountId, Balance, HistoryPage, IdempotencyKey, Kind, PageSize, PostedTransaction,
    PostingError, PostingId, Statement, Transaction,
};
use crate::metrics::{PoolStatus, StorageMetrics};

/// Key of the advisory lock that serialises migrations across instances.
const MIGRATION_LOCK: i64 = 0x0063_7265_6269_746f; // "crebito" in ASCII

/// A batch of postings to one account (see the function's own comment in
/// migrations/postgres/0006_post_batch.sql for the shapes; its body now
/// is 0007_post_batch_revised.sql's).
const POST_BATCH_SQL: &str = "\
SELECT outcomes, balances, credit_limit FROM post_batch($1, $2, $3, $4, $5, $6)";

/// A batch of ONE posting without an idempotency key — nearly every batch
/// at the official load — as one statement: a data-modifying CTE whose
/// conditional `UPDATE` takes the row lock (re-checking the condition on
/// the latest row version) and feeds the `INSERT`; a refusal writes
/// nothing. A debit's condition, `balance >= amount - credit_limit`, cannot
/// pass 64-bit cents, so a debit is only ever refused for the limit; only
/// a credit's `balance + amount` can overflow (docs/contract.md §2.4). Measured against `post_batch` for
/// the same batches (scripts/bench-ab, docs/benchmark.md): PostgreSQL spent
/// 50-100 us more CPU per request on the function call.
/// Parameters: account, delta, amount (cents), kind, description.
const POST_ONE_SQL: &str = "\
WITH account AS (
    SELECT credit_limit FROM accounts WHERE id = $1
), moved AS (
    UPDATE accounts SET balance = balance + $2
    WHERE id = $1 AND CASE WHEN $2::bigint < 0 THEN balance >= -$2 - credit_limit ELSE true END
    RETURNING id, balance
), posted AS (
    INSERT INTO transactions (account_id, amount, kind, description)
    SELECT id, $3::bigint, $4::text, $5::text FROM moved
)
SELECT account.credit_limit, moved.balance FROM account LEFT JOIN moved ON true";

const PURGE_KEYS_SQL: &str = "\
DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)";

const STATEMENT_SQL: &str = "\
SELECT a.balance, a.credit_limit, t.amount, t.kind, t.description, t.posted_at
FROM accounts a
LEFT JOIN LATERAL (
    SELECT id, amount, kind, description, posted_at FROM transactions
    WHERE account_id = a.id ORDER BY id DESC LIMIT 10
) t ON true
WHERE a.id = $1
ORDER BY t.id DESC";

/// Session settings for the planner, sent in every connection's startup
/// packet (no extra round trip).
///
/// No bitmap scans. The statement read ([`STATEMENT_SQL`]) is prepared on
/// each connection when the instance starts, and after five executions
/// PostgreSQL keeps a generic plan for the life of the connection, or until
/// the table's statistics change. On a ledger that was never analyzed — a
/// fresh one, until autovacuum first analyzes `transactions`, up to a
/// minute or more into a load — the planner guesses 0.5 % of the rows per
/// account and, with no page marked all-visible yet, prices each heap
/// fetch of the ordered index-only scan as a random read; a bitmap heap
/// scan of EVERY row of the account and a top-10 sort then looks cheaper.
/// That plan stays cached while the table grows: under the load test's
/// profile at 6 times its rate, a statement read cost 1.3-5 ms and 230-750
/// buffer hits instead of about 0.05 ms and 13 (pg_stat_statements,
/// auto_explain; docs/benchmark-log.md, "The statement read's cached
/// plan"). No crebito query gains from a bitmap scan: every read is a
/// point lookup or a short ordered index range, and the audit reads whole
/// tables. With bitmap scans off, the generic plan is the ordered
/// index-only scan under the `LIMIT` from the empty table on (checked
/// with 0, 300 and 50,000 rows, unanalyzed); the test
/// `statement_read_stays_an_ordered_index_scan` (tests/api/query_plans.rs)
/// holds it.
const PLANNER_OPTIONS: &str = "-c enable_bitmapscan=off";

/// One page of an account's history (docs/contract.md §2.8) in one
/// statement (one snapshot): the account's balance and limit, joined with
/// up to $3 of its transactions with an id below $2, newest first. The
/// covering index of migration 0005 makes the inner scan index-only.
const HISTORY_SQL: &str = "\
SELECT a.balance, a.credit_limit, t.id, t.amount, t.kind, t.description, t.posted_at
FROM accounts a
LEFT JOIN LATERAL (
    SELECT id, amount, kind, description, posted_at FROM transactions
    WHERE account_id = a.id AND id < $2 ORDER BY id DESC LIMIT $3
) t ON true
WHERE a.id = $1
ORDER BY t.id DESC";

/// Per account: id, limit, balance, Σ credits ($1) − Σ debits ($2) as
/// text (numeric: cannot overflow), number of transactions.
const AUDIT_SQL: &str = "\
SELECT a.id, a.credit_limit, a.balance,
       COALESCE(SUM(CASE t.kind WHEN $1::text THEN t.amount::numeric WHEN $2::text THEN -t.amount::numeric END), 0)::text,
       COUNT(t.id)
FROM accounts a LEFT JOIN transactions t ON t.account_id = a.id
GROUP BY a.id ORDER BY a.id";

/// Every kind code stored, each read as a [`Kind`] before an audit sums by
/// kind: a code that is neither `c` nor `d` fails the audit's read instead
/// of being summed as either.
const KINDS_SQL: &str = "SELECT DISTINCT kind FROM transactions";

const ORPHANS_SQL: &str = "\
SELECT COUNT(*) FROM transactions t
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.account_id)";

/// A [`Ledger`] on PostgreSQL through a pool of tokio-postgres connections.
#[derive(Clone)]
pub struct PostgresLedger {
    /// The pool, and what every round trip on it shares.
    db: Database,
    /// The per-account posting queues in front of [`PostgresBatches`].
    batcher: Batcher<PostgresBatches>,
    /// Whether opening it seeded a new ledger (the seed migration ran).
    created: bool,
}

/// Applies batches of postings to one account with the `post_batch`
/// function ([`ApplyBatch`]).
#[derive(Clone)]
pub struct PostgresBatches {
    db: Database,
}

/// The pool, and what every round trip on it shares.
#[derive(Clone)]
struct Database {
    pool: Pool,
    /// Where the pool connects, for error messages (no password).
    target: Arc<str>,
    /// Client-side bound of one round trip: the server's
    /// `statement_timeout` plus a second.
    round_trip_timeout: Duration,
    /// Connections opened before this are never handed out again.
    stale: Arc<StaleBefore>,
    /// Round trips and replays, for `/metrics`.
    metrics: StorageMetrics,
}

/// The instant up to which every connection of the pool is suspect. It is
/// set when a connection showed that its server is no longer a writable
/// primary (read-only: a standby or a fenced former primary), went away
/// (connection lost, server shutting down) or stopped answering: the other
/// connections opened by then most likely reach that same server. The
/// pool's pre-recycle hook drops them instead of handing them out, so the
/// next request opens a new connection (docs/ha.md).
#[derive(Debug, Default)]
struct StaleBefore(Mutex<Option<Instant>>);

impl StaleBefore {
    /// Every connection opened until now is stale.
    fn mark(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// True for a connection opened at `created`, at or before the mark.
    fn is_stale(&self, created: Instant) -> bool {
        matches!(*self.0.lock().unwrap_or_else(|e| e.into_inner()), Some(mark) if created <= mark)
    }
}

/// A pooled connection lent to one request or batch for a bounded round
/// trip. It
/// goes back to the pool only through [`Database::release`], once
/// the server has answered. Dropped any other way — the request was
/// cancelled mid-round-trip, e.g. its client hung up — it is closed and
/// taken out of the pool instead: its statement may still be in flight,
/// and the next request on it would wait behind that statement (forever,
/// when the server is unreachable).
struct Lease(Option<Object>);

impl Lease {
    fn into_object(mut self) -> Object {
        self.0
            .take()
            .expect("a lease holds its connection until released")
    }
}

impl std::ops::Deref for Lease {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.0
            .as_ref()
            .expect("a lease holds its connection until released")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Object {
        self.0
            .as_mut()
            .expect("a lease holds its connection until released")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// How an attempt at a batch of postings failed.
#[derive(Debug)]
enum Failed {
    /// Before the database could have applied anything: no connection
    /// could be opened, or the server refused the statement as read-only
    /// (SQLSTATE 25006: a standby, or a former primary). Trying again on a
    /// fresh connection cannot apply a posting twice.
    NotApplied(LedgerError),
    /// Anything else: a timeout, a connection lost after the statement was
    /// sent (the outcome is unknown: a retry with the same
    /// `Idempotency-Key` resolves it).
    Other(LedgerError),
}

impl From<Failed> for LedgerError {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::NotApplied(e) | Failed::Other(e) => e,
        }
    }
}

impl From<LedgerError> for Failed {
    fn from(error: LedgerError) -> Self {
        Failed::Other(error)
    }
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        Failed::Other(error.into())
    }
}

/// True when `error` shows that its connection's server is no longer a
/// writable primary or is gone: the server refused a write as read-only
/// (25006), ended the session (FATAL or PANIC: shutting down, terminated,
/// crash recovery), or never answered (connection closed, I/O error).
fn server_lost(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => {
            db.code() == &SqlState::READ_ONLY_SQL_TRANSACTION
                || matches!(db.severity(), "FATAL" | "PANIC")
        }
        None => true,
    }
}

/// How a bounded round trip ended.
type Bounded<T> = Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>;

impl PostgresLedger {
    /// Builds the pool for `url` (a libpq-style URL or key=value string, see
    /// tokio-postgres' `Config`). No connection is made yet.
    ///
    /// Errors: [`LedgerError::Unavailable`] when the URL cannot be parsed.
    pub fn new(url: &str, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| LedgerError::unavailable("invalid PostgreSQL URL", e))?;
        let target = describe(&config).into();
        let timeout_option = format!(
            "-c statement_timeout={}",
            options.query_timeout.as_millis().max(1)
        );
        // Before the URL's own options, which may override it; the
        // statement timeout after them, which may not.
        let options_text = match config.get_options() {
            Some(existing) => format!("{PLANNER_OPTIONS} {existing} {timeout_option}"),
            None => format!("{PLANNER_OPTIONS} {timeout_option}"),
        };
        config.options(&options_text);
        let round_trip_timeout = options.query_timeout + Duration::from_secs(1);
        // A connection whose server vanished without closing it (host cut
        // off, frozen) is closed by the kernel once data sent on it stays
        // unacknowledged this long, instead of after ~15 minutes of TCP
        // retransmissions. Unix sockets ignore it; a URL may set its own.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(round_trip_timeout);
        }
        let stale = Arc::new(StaleBefore::default());
        let stale_hook = stale.clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .pre_recycle(Hook::sync_fn(move |_, metrics| {
                if stale_hook.is_stale(metrics.created) {
                    Err(HookError::message(
                        "opened before its server stopped being a writable primary",
                    ))
                } else {
                    Ok(())
                }
            }))
            .build()
            .map_err(|e| LedgerError::unavailable("cannot build the PostgreSQL pool", e))?;
        let db = Database {
            pool,
            target,
            round_trip_timeout,
            stale,
            metrics: StorageMetrics::default(),
        };
        Ok(PostgresLedger {
            batcher: Batcher::new(
                PostgresBatches { db: db.clone() },
                Scope::Account,
                options.batch(),
                db.metrics.clone(),
            ),
            db,
            created: false,
        })
    }

    /// Builds the pool, applies pending migrations, opens every connection
    /// and prepares the hot statements on it. Errors:
    /// [`LedgerError::Unavailable`].
    pub async fn connect(url: &str, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let mut ledger = Self::new(url, options)?;
        ledger.check_encoding().await?;
        ledger.created = ledger.migrate().await?;
        // Serving cold is slower for the first requests, never wrong: a
        // warm-up that fails or takes too long is only worth a warning.
        match tokio::time::timeout(ledger.db.round_trip_timeout, ledger.warm_up()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(
                error = %ErrorChain(&error),
                "could not warm up the pooled connections; serving without"
            ),
            Err(_) => tracing::warn!(
                after_ms = ledger.db.round_trip_timeout.as_millis() as u64,
                "warming up the pooled connections took too long; serving without"
            ),
        }
        Ok(ledger)
    }

    /// Opens every connection of the pool, prepares the hot statements on
    /// each and runs each once in a transaction that is rolled back, so
    /// that the first burst of requests (the official test opens with 25
    /// simultaneous postings on one account) does not pay for connection
    /// set-up, planning and the first call of `post_batch` in a session,
    /// which compiles the function (about 4 ms here against 0.3 ms for the
    /// next call; docs/benchmark.md). The statements run on
    /// [`WARM_UP_ACCOUNT`], an account the warm-up's own transaction
    /// creates and rolls back, so the warm-up reads no stored balance,
    /// waits on no lock of a served account and records nothing. A
    /// connection is only given back to the pool once its round trips have
    /// ended ([`Lease`]): [`Self::connect`] bounds the warm-up and may drop
    /// it midway.
    async fn warm_up(&self) -> Result<(), LedgerError> {
        let mut held = Vec::with_capacity(self.db.pool.status().max_size);
        for _ in 0..self.db.pool.status().max_size {
            let mut client = self.db.lease().await?;
            for sql in [POST_ONE_SQL, POST_BATCH_SQL, STATEMENT_SQL, HISTORY_SQL] {
                client.prepare_cached(sql).await?;
            }
            warm_up_statements(&mut client).await?;
            // Held until all are open, so each round opens a new one.
            held.push(client);
        }
        for client in held {
            drop(client.into_object());
        }
        Ok(())
    }

    /// Refuses a database whose encoding is not UTF8 (docs/deployment.md):
    /// in any other, `char_length` does not count the characters of a
    /// `descricao` (SQL_ASCII counts bytes), so the schema's check would
    /// refuse valid postings (docs/contract.md §2.1). Errors:
    /// [`LedgerError::Unavailable`] with an [`UnsupportedDatabase`] cause
    /// that names the encoding and how to create a database that works.
    pub async fn check_encoding(&self) -> Result<(), LedgerError> {
        let client = self.db.client().await?;
        let row = client
            .query_one(
                "SELECT current_database()::text, pg_encoding_to_char(encoding)::text
                 FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        let (database, encoding): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if encoding == "UTF8" {
            return Ok(());
        }
        Err(LedgerError::unavailable(
            format!("{} cannot hold the ledger", self.db.target),
            UnsupportedDatabase(format!(
                "database {database:?} is encoded {encoding}, and crebito needs UTF8 (a \
                 descricao is 1 to 10 characters, which only a UTF8 database counts as \
                 characters); create the database with \
                 CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0 \
                 (see docs/deployment.md)"
            )),
        ))
    }

    /// Applies the embedded migrations that are not yet recorded, under a
    /// session advisory lock so that instances starting together take turns.
    /// True when it seeded the accounts: the database held no ledger.
    pub async fn migrate(&self) -> Result<bool, LedgerError> {
        let mut client = self.db.client().await?;
        // Waiting for another instance's migrations is not a slow request.
        client.batch_execute("SET statement_timeout = 0").await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = apply_migrations(&mut client, migrations::POSTGRES).await;
        // Unlock even when a migration failed; the session ends with the
        // connection anyway, but the pooled connection may be reused.
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let reset = client.batch_execute("RESET statement_timeout").await;
        let seeded = result?;
        unlock?;
        reset?;
        Ok(seeded)
    }

    /// Whether [`PostgresLedger::connect`] seeded a new ledger in a
    /// database that held none.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Deletes every transaction and idempotency key and every account,
    /// then seeds the five accounts again (docs/contract.md §2.3), in one
    /// transaction: the ledger is as freshly created. Instances serving
    /// the database meanwhile wait for it (`TRUNCATE` locks the tables).
    /// Errors: [`LedgerError::Unavailable`].
    pub async fn reset(&self) -> Result<(), LedgerError> {
        let mut client = self.db.client().await?;
        client.batch_execute("SET statement_timeout = 0").await?;
        let tx = client.transaction().await?;
        tx.batch_execute("TRUNCATE transactions, idempotency_keys, accounts RESTART IDENTITY")
            .await?;
        tx.batch_execute(migrations::seed(migrations::POSTGRES))
            .await?;
        tx.commit().await?;
        client.batch_execute("RESET statement_timeout").await?;
        Ok(())
    }

    /// Batches of postings sent so far, by size
    /// ([`super::batch::SIZE_BUCKETS`]).
    pub fn batch_sizes(&self) -> [u64; super::batch::SIZE_BUCKETS] {
        self.batcher.batch_sizes()
    }

    /// The storage behind the posting queues: applies a given batch
    /// directly (tests compare it with postings applied one by one).
    pub fn batches(&self) -> &PostgresBatches {
        self.batcher.storage()
    }

    /// Where it connects, for messages: `PostgreSQL at HOST:PORT (database
    /// "…", user "…")`, never the password.
    pub fn target(&self) -> &str {
        &self.db.target
    }
}

impl Database {
    /// Ends `lease`'s bounded round trip. The connection goes back to the
    /// pool when the server answered and is still a writable primary;
    /// when the bound elapsed (the connection may still be busy) or the
    /// error shows the server is read-only or gone ([`server_lost`]), it is
    /// closed, and every connection opened before it is marked stale.
    fn release<T>(
        &self,
        lease: Lease,
        outcome: Bounded<T>,
    ) -> Result<Result<T, tokio_postgres::Error>, LedgerError> {
        match outcome {
            Ok(result) => {
                if matches!(&result, Err(e) if server_lost(e)) {
                    self.stale.mark();
                    drop(lease);
                } else {
                    drop(lease.into_object());
                }
                Ok(result)
            }
            Err(elapsed) => {
                self.stale.mark();
                drop(lease);
                Err(LedgerError::unavailable(
                    "PostgreSQL did not answer in time; connection discarded",
                    elapsed,
                ))
            }
        }
    }

    /// A pooled connection, waiting as long as the pool's own timeouts
    /// (the acquire timeout). Errors: as [`Self::client_within`].
    async fn client(&self) -> Result<Object, Failed> {
        self.client_within(&self.pool.timeouts()).await
    }

    /// A pooled connection, waiting at most `timeouts`. Errors:
    /// [`Failed::NotApplied`] when opening a new one failed (refused, no
    /// such socket, authentication failed, no host takes writes),
    /// [`Failed::Other`] when none was free or opening one timed out; both
    /// name where it tried to connect, with the cause.
    async fn client_within(&self, timeouts: &Timeouts) -> Result<Object, Failed> {
        self.pool.timeout_get(timeouts).await.map_err(|e| {
            let target = &self.target;
            match e {
                // Kept as the source: it tells a full pool (Wait) from a
                // connection that could not be opened in time (Create).
                timeout @ PoolError::Timeout(_) => Failed::Other(LedgerError::unavailable(
                    format!("no connection to {target}"),
                    timeout,
                )),
                PoolError::Backend(e) => Failed::NotApplied(LedgerError::unavailable(
                    format!("cannot connect to {target}"),
                    super::ConnectFailed(e.into()),
                )),
                other => Failed::Other(LedgerError::unavailable(
                    format!("no connection to {target}"),
                    other,
                )),
            }
        })
    }

    /// One bounded read: `sql` with `params` on a leased connection, in a
    /// task of its own, and the rows it returned. A caller that goes away
    /// mid-round-trip (its client hung up) no longer takes the connection
    /// with it: the task ends the round trip and hands the connection back
    /// to the pool, where a cancelled [`Lease`] would close it and the next
    /// request would open another (a storm of hang-ups would churn
    /// connections up to the server's `max_connections`). Postings get the
    /// same from their queue's own task ([`super::batch`]). `label` names
    /// the round trip in `/metrics`. Errors: [`LedgerError::Unavailable`]
    /// as [`Self::lease`] and [`Self::release`] give them, or the server's
    /// error.
    async fn read(
        &self,
        label: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Vec<Row>, LedgerError> {
        let db = self.clone();
        tokio::spawn(async move {
            let client = db.lease().await?;
            let started = Instant::now();
            let outcome = tokio::time::timeout(db.round_trip_timeout, async {
                let statement = client.prepare_cached(sql).await?;
                let params: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                client.query(&statement, &params).await
            })
            .await;
            db.metrics.round_trip(label, started.elapsed());
            Ok(db.release(client, outcome)??)
        })
        .await
        .map_err(|e| LedgerError::unavailable("a PostgreSQL round trip's task failed", e))?
    }

    /// [`Self::client`] for one bounded round trip.
    async fn lease(&self) -> Result<Lease, Failed> {
        Ok(Lease(Some(self.client().await?)))
    }

    /// [`Self::client_within`] for one bounded round trip, waiting for a
    /// connection (a free one, or a new one opened) until `deadline` at
    /// most.
    async fn lease_until(&self, deadline: tokio::time::Instant) -> Result<Lease, Failed> {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeouts = Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        };
        Ok(Lease(Some(self.client_within(&timeouts).await?)))
    }
}

/// The account the warm-up runs the hot statements on: the largest id an
/// account can have, an account no ledger serves (they hold accounts 1 to
/// 5, docs/contract.md §2.4). The warm-up's transaction creates it with
/// balance 0 and limit 0 and rolls it back, so that every statement of the
/// posting paths, `post_batch`'s inner ones included, runs once and is
/// planned, on a row no request can see, lock or have moved. (An id that
/// finds no row would leave `post_batch` before its inner statements and
/// put their planning on the first real postings, the opening bursts.)
const WARM_UP_ACCOUNT: i32 = i32::MAX;

/// Runs each hot statement once on `client` — a posting alone, a batch
/// with and without an idempotency key, a statement, a history page — on
/// [`WARM_UP_ACCOUNT`], in a transaction that creates it and is rolled
/// back (see [`PostgresLedger::warm_up`]). Where a row with that id exists
/// already (made by hand: the ledger never makes one), only the reads run,
/// so that no stored balance is ever posted to.
async fn warm_up_statements(client: &mut Lease) -> Result<(), LedgerError> {
    let tx = client.transaction().await?;
    let account = WARM_UP_ACCOUNT;
    let description = "warm-up";
    let created = tx
        .execute(
            "INSERT INTO accounts (id, credit_limit) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING",
            &[&account],
        )
        .await?
        == 1;
    if created {
        tx.query(
            &tx.prepare_cached(POST_ONE_SQL).await?,
            &[&account, &1_i64, &1_i64, &Kind::Credit, &description],
        )
        .await?;
        let post_batch = tx.prepare_cached(POST_BATCH_SQL).await?;
        for key in [None, Some("warm-up")] {
            tx.query(
                &post_batch,
                &[
                    &account,
                    &vec![1_i64],
                    &vec![Kind::Credit],
                    &vec![description],
                    &vec![key],
                    &vec![key.map(|_| "warm-up")],
                ],
            )
            .await?;
        }
    }
    tx.query(&tx.prepare_cached(STATEMENT_SQL).await?, &[&account])
        .await?;
    tx.query(
        &tx.prepare_cached(HISTORY_SQL).await?,
        &[&account, &i64::MAX, &11_i64],
    )
    .await?;
    tx.rollback().await?;
    Ok(())
}

/// Applies the migrations of `list` not yet recorded; true when the seed
/// migration was one of them.
async fn apply_migrations(client: &mut Object, list: &[Migration]) -> Result<bool, LedgerError> {
    let mut seeded = false;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
            migrations::TABLE
        ))
        .await?;
    for migration in list {
        let tx = client.transaction().await?;
        let applied = tx
            .query_opt(
                &format!("SELECT 1 FROM {} WHERE version = $1", migrations::TABLE),
                &[&migration.version],
            )
            .await?
            .is_some();
        if !applied {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applying migration"
            );
            tx.batch_execute(migration.sql).await.map_err(|e| {
                LedgerError::unavailable(
                    format!(
                        "migration {} ({}) failed",
                        migration.version, migration.name
                    ),
                    e,
                )
            })?;
            tx.execute(
                &format!(
                    "INSERT INTO {} (version, name) VALUES ($1, $2)",
                    migrations::TABLE
                ),
                &[&migration.version, &migration.name],
            )
            .await?;
            seeded |= migration.name == "seed";
        }
        tx.commit().await?;
    }
    Ok(seeded)
}

/// Where `config` connects, for messages: each host with its port (a unix
/// socket as its socket file), the database and the user — never the
/// password.
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => dir
                .join(format!(".s.PGSQL.{}", port(i)))
                .display()
                .to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "no host".to_owned()
    } else {
        hosts.join(", ")
    };
    format!(
        "PostgreSQL at {hosts} (database {:?}, user {:?})",
        config.get_dbname().unwrap_or_default(),
        config.get_user().unwrap_or_default()
    )
}

impl ApplyBatch for PostgresBatches {
    /// See [`ApplyBatch::apply_batch`]: one call of `post_batch` for
    /// postings to one account. An attempt that failed before it could
    /// have been applied (`Failed::NotApplied`: no connection could be
    /// opened, or the server refused the batch as read-only) is made once
    /// more on a fresh connection, which reaches the current primary when
    /// the URL lists every host with `target_session_attrs=read-write`
    /// (docs/ha.md). Any other failure leaves the outcome unknown (a
    /// connection lost after the call was sent, no answer in time) or
    /// certain to be nothing (the server cancelled it): `Err`, and every
    /// member is answered 503.
    async fn apply_batch(
        &self,
        postings: &[Posting],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<PostingResult>, LedgerError> {
        let Some(first) = postings.first() else {
            return Ok(Vec::new());
        };
        let account = first.account;
        if postings.iter().any(|p| p.account != account) {
            return Err(LedgerError::unavailable_because(
                "a PostgreSQL batch must hold one account's postings",
            ));
        }
        match self.attempt(account, postings, deadline).await {
            Err(Failed::NotApplied(error)) => {
                tracing::warn!(
                    error = %ErrorChain(&error),
                    postings = postings.len(),
                    "batch not applied (no writable primary on that connection); trying once more on a fresh connection"
                );
                Ok(self.attempt(account, postings, deadline).await?)
            }
            other => Ok(other?),
        }
    }
}

impl PostgresBatches {
    /// One attempt at a batch of postings to `account`: [`POST_ONE_SQL`]
    /// for a lone posting without a key, `post_batch` otherwise.
    async fn attempt(
        &self,
        account: AccountId,
        postings: &[Posting],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<PostingResult>, Failed> {
        let client = self.db.lease_until(deadline).await?;
        if let [Posting {
            transaction,
            key: None,
            ..
        }] = postings
        {
            return Ok(vec![self.post_one(client, account, transaction).await?]);
        }
        let n = postings.len();
        let mut amounts = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut descriptions = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut fingerprints = Vec::with_capacity(n);
        for posting in postings {
            let transaction = &posting.transaction;
            amounts.push(transaction.amount.cents());
            kinds.push(transaction.kind);
            descriptions.push(transaction.description.as_str());
            keys.push(posting.key.as_ref().map(IdempotencyKey::as_str));
            fingerprints.push(posting.key.as_ref().map(|_| transaction.fingerprint()));
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.db.round_trip_timeout, async {
            let statement = client.prepare_cached(POST_BATCH_SQL).await?;
            client
                .query_one(
                    &statement,
                    &[
                        &account.get(),
                        &amounts,
                        &kinds,
                        &descriptions,
                        &keys,
                        &fingerprints,
                    ],
                )
                .await
        })
        .await;
        self.db.metrics.round_trip("post", started.elapsed());
        // statement_timeout, the CHECK, a read-only server: nothing applied;
        // a lost connection: unknown.
        let row = self.db.release(client, outcome)?.map_err(batch_error)?;
        let Some(limit) = row.try_get::<_, Option<i64>>(2)? else {
            return Ok((0..n).map(|_| Err(LedgerError::AccountNotFound)).collect());
        };
        let outcomes: Vec<&str> = row.try_get(0)?;
        let balances: Vec<Option<i64>> = row.try_get(1)?;
        if outcomes.len() != n || balances.len() != n {
            return Err(LedgerError::unavailable_because(format!(
                "post_batch answered {} of {n} postings",
                outcomes.len()
            ))
            .into());
        }
        let mut replays = 0;
        let results = outcomes
            .into_iter()
            .zip(balances)
            .map(|(outcome, balance)| {
                let (result, replayed) = batch_outcome(outcome, balance, limit);
                replays += u64::from(replayed);
                result
            })
            .collect();
        self.db.metrics.replays(replays);
        Ok(results)
    }
}

/// The constraint of `accounts` that backs the limit rule
/// (migrations/postgres/0001_schema.sql): its violation is a debit past the
/// limit; any other constraint's is a row the schema refuses
/// ([`RowRefused`]).
const BALANCE_CONSTRAINT: &str = "balance_within_limit";

/// The constraint `error` reports as violated (SQLSTATE class 23:
/// integrity constraint violation), `unnamed` when the server names none;
/// `None` for any other error.
fn violated_constraint(error: &tokio_postgres::Error) -> Option<&str> {
    let db = error.as_db_error()?;
    db.code()
        .code()
        .starts_with("23")
        .then(|| db.constraint().unwrap_or("unnamed"))
}

/// Maps the errors a posting's statement (`post_batch` or
/// [`POST_ONE_SQL`]) can raise. Any error aborts the whole call, so nothing
/// of the batch was applied; only a server that takes no writes
/// (read-only, SQLSTATE 25006) is worth a retry on a fresh connection right
/// away. A row refused by a constraint other than [`BALANCE_CONSTRAINT`]
/// is a [`RowRefused`], so that the queue applies the batch's postings one
/// by one and only that posting fails.
fn batch_error(error: tokio_postgres::Error) -> Failed {
    if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
        return Failed::NotApplied(error.into());
    }
    let refused = violated_constraint(&error)
        .filter(|constraint| *constraint != BALANCE_CONSTRAINT)
        .map(str::to_owned);
    match refused {
        Some(constraint) => Failed::Other(LedgerError::unavailable(
            "PostgreSQL refused a posting",
            RowRefused {
                constraint,
                source: error.into(),
            },
        )),
        // statement_timeout, the balance CHECK (a second line of defence
        // that a correct batch never reaches), a server error: 503 for all.
        None => Failed::Other(error.into()),
    }
}

impl PostgresBatches {
    /// A lone posting without a key, with [`POST_ONE_SQL`]: its answer, or
    /// `Err` when the statement failed as a whole (nothing applied, or an
    /// unknown outcome when the connection was lost).
    async fn post_one(
        &self,
        client: Lease,
        account: AccountId,
        transaction: &Transaction,
    ) -> Result<PostingResult, Failed> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.db.round_trip_timeout, async {
            let statement = client.prepare_cached(POST_ONE_SQL).await?;
            client
                .query(
                    &statement,
                    &[
                        &account.get(),
                        &transaction.delta(),
                        &transaction.amount.cents(),
                        &transaction.kind,
                        &transaction.description.as_str(),
                    ],
                )
                .await
        })
        .await;
        self.db.metrics.round_trip("post", started.elapsed());
        let rows = match self.db.release(client, outcome)? {
            Ok(rows) => rows,
            // bigint overflow of balance + delta: refused, nothing applied.
            Err(e) if e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => {
                return Ok(Err(PostingError::Overflow.into()));
            }
            // The balance CHECK, the second line of defence: refused.
            Err(e) if violated_constraint(&e) == Some(BALANCE_CONSTRAINT) => {
                return Ok(Err(PostingError::LimitExceeded.into()));
            }
            // A read-only server, statement_timeout, a lost connection,
            // another constraint.
            Err(e) => return Err(batch_error(e)),
        };
        Ok(match rows.first() {
            None => Err(LedgerError::AccountNotFound),
            Some(row) => match row.try_get::<_, Option<i64>>(1)? {
                Some(balance) => Ok(Balance {
                    balance,
                    limit: row.try_get(0)?,
                }),
                None => Err(PostingError::LimitExceeded.into()),
            },
        })
    }
}

/// One posting's outcome code from `post_batch`, with its balance and the
/// account's limit (cents): the posting's answer, and whether it was
/// answered from its recorded `Idempotency-Key` (a replay, counted in
/// `crebito_idempotent_replays_total`; docs/contract.md §2.6).
fn batch_outcome(outcome: &str, balance: Option<i64>, limit: i64) -> (PostingResult, bool) {
    let (outcome, replayed) = match outcome.strip_prefix("replayed_") {
        Some(recorded) => (recorded, true),
        None => (outcome, outcome == "key_reused"),
    };
    let result = match (outcome, balance) {
        ("posted", Some(balance)) => Ok(Balance { balance, limit }),
        ("limit_exceeded", _) => Err(PostingError::LimitExceeded.into()),
        ("overflow", _) if !replayed => Err(PostingError::Overflow.into()),
        ("key_reused", _) => Err(PostingError::IdempotencyKeyReused.into()),
        (other, balance) => Err(LedgerError::unavailable_because(format!(
            "post_batch answered {other:?} (replayed: {replayed}) with balance {balance:?}"
        ))),
    };
    (result, replayed)
}

impl Ledger for PostgresLedger {
    fn storage_metrics(&self) -> Option<&StorageMetrics> {
        Some(&self.db.metrics)
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::from_deadpool(self.db.pool.status()))
    }

    async fn post(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Result<Balance, LedgerError> {
        let posting = Posting::new(account, transaction, key);
        self.batcher.post(posting).await
    }

    async fn purge_idempotency_keys(&self, older_than: Duration) -> Result<u64, LedgerError> {
        let client = self.db.client().await?;
        Ok(client
            .execute(PURGE_KEYS_SQL, &[&older_than.as_secs_f64()])
            .await?)
    }

    async fn statement(&self, account: AccountId) -> Result<Statement, LedgerError> {
        let rows = self
            .db
            .read("statement", STATEMENT_SQL, vec![Box::new(account.get())])
            .await?;
        let generated_at = Utc::now();
        let first = rows.first().ok_or(LedgerError::AccountNotFound)?;
        let mut transactions = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(amount) = row.get::<_, Option<i64>>(2) else {
                continue; // the LEFT JOIN row of an account with no transactions
            };
            transactions.push(PostedTransaction {
                amount,
                kind: row.try_get(3)?,
                description: row.get::<_, String>(4),
                posted_at: row.get::<_, DateTime<Utc>>(5),
            });
        }
        Ok(Statement {
            balance: first.get(0),
            limit: first.get(1),
            generated_at,
            transactions,
        })
    }

    async fn history(
        &self,
        account: AccountId,
        before: Option<PostingId>,
        size: PageSize,
    ) -> Result<HistoryPage, LedgerError> {
        let (before, fetch) = history_bounds(before, size);
        let rows = self
            .db
            .read(
                "history",
                HISTORY_SQL,
                vec![Box::new(account.get()), Box::new(before), Box::new(fetch)],
            )
            .await?;
        let generated_at = Utc::now();
        let first = rows.first().ok_or(LedgerError::AccountNotFound)?;
        let mut transactions = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(id) = row.get::<_, Option<i64>>(2) else {
                continue; // the LEFT JOIN row of a page without transactions
            };
            transactions.push((
                stored_posting_id(id)?,
                PostedTransaction {
                    amount: row.get(3),
                    kind: row.try_get(4)?,
                    description: row.get::<_, String>(5),
                    posted_at: row.get::<_, DateTime<Utc>>(6),
                },
            ));
        }
        Ok(history_page(
            first.get(0),
            first.get(1),
            generated_at,
            transactions,
            size,
        ))
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let client = self.db.lease().await?;
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.db.round_trip_timeout, client.simple_query("SELECT 1")).await;
        self.db.metrics.round_trip("ping", started.elapsed());
        self.db.release(client, outcome)??;
        Ok(())
    }

    /// Healthy when the database answers (see [`Ledger::health`]).
    /// Healthy when a pooled connection's server takes writes: the
    /// session's `transaction_read_only` is off. It is on for a standby and
    /// for a server made read-only with `default_transaction_read_only`, as
    /// a fenced former primary may be; then every connection opened so far
    /// is marked stale, so that the next request opens a new one (which a
    /// multi-host URL sends to the current primary, docs/ha.md).
    async fn health(&self) -> Result<(), Unhealthy> {
        let unanswered = |e: LedgerError| Unhealthy::new("the database does not answer", e);
        let client = self.db.lease().await.map_err(|e| unanswered(e.into()))?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.db.round_trip_timeout,
            client.simple_query("SHOW transaction_read_only"),
        )
        .await;
        self.db.metrics.round_trip("health", started.elapsed());
        let messages = self
            .db
            .release(client, outcome)
            .map_err(unanswered)?
            .map_err(|e| unanswered(e.into()))?;
        let read_only = messages.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
        });
        if read_only {
            self.db.stale.mark();
            return Err(Unhealthy::new(
                "the database takes no writes",
                LedgerError::unavailable_because(format!(
                    "{} is read-only (transaction_read_only is on: a standby or a fenced former primary)",
                    self.db.target
                )),
            ));
        }
        Ok(())
    }

    async fn postings(&self) -> Result<Vec<PostingRow>, LedgerError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT account_id, kind, amount, description FROM transactions ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(PostingRow {
                    account: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    amount: row.try_get(2)?,
                    description: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    async fn audit(&self) -> Result<AuditReport, LedgerError> {
        let mut client = self.db.client().await?;
        // Both queries read one snapshot.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        for row in tx.query(KINDS_SQL, &[]).await? {
            row.try_get::<_, Kind>(0)?;
        }
        let tx_rows = tx.query(AUDIT_SQL, &[&Kind::Credit, &Kind::Debit]).await?;
        let orphans: i64 = tx.query_one(ORPHANS_SQL, &[]).await?.get(0);
        tx.commit().await?;
        drop(client);
        let mut accounts = Vec::with_capacity(tx_rows.len());
        for row in tx_rows {
            let sum: String = row.get(3);
            accounts.push(AccountAudit {
                account: row.get(0),
                limit: row.get(1),
                balance: row.get(2),
                transactions_sum: sum.parse().map_err(|e| {
                    LedgerError::unavailable(format!("sum of transactions out of range: {sum}"), e)
                })?,
                transactions: row.get(4),
            });
        }
        Ok(AuditReport {
            accounts,
            orphan_transactions: orphans,
        })
    }
}
