//! The PostgreSQL ledger (production; docs/contract.md §4).
//!
//! * A posting is ONE statement: a data-modifying CTE whose conditional
//!   `UPDATE … WHERE balance + delta >= -credit_limit` takes the account's row
//!   lock (serialising postings per account, re-checking the condition on the
//!   latest row version) and feeds the `INSERT` of the transaction row. No
//!   interleaving can overdraw or lose an update; the `CHECK` constraint on
//!   `accounts` backs the rule.
//! * A statement is ONE `SELECT` (one snapshot): balance, limit and the last
//!   10 rows cannot disagree.
//! * Connections come from a deadpool pool with bounded waits; each call
//!   returns its connection to the pool before the caller sees the result.
//! * Failover (docs/ha.md): a connection whose server stopped being a
//!   writable primary (read-only, SQLSTATE 25006), went away or stopped
//!   answering is discarded together with every connection opened before
//!   it; the next one is opened afresh, and a multi-host `DATABASE_URL`
//!   with `target_session_attrs=read-write` sends it to whichever host is
//!   the primary now. A posting that failed before it could have been
//!   applied is tried once more on such a fresh connection.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::idempotency::{NextAction, RecordedKey};
use super::migrations::{self, Migration};
use super::{
    AccountAudit, AuditReport, ErrorChain, Ledger, LedgerError, LedgerOptions, PostingRow,
    Unhealthy,
};
use crate::domain::{
    AccountId, Balance, HistoryPage, IdempotencyKey, Kind, PageSize, PostedTransaction,
    PostingError, PostingId, Statement, Transaction,
};
use crate::metrics::{PoolStatus, StorageMetrics};

/// Key of the advisory lock that serialises migrations across instances.
const MIGRATION_LOCK: i64 = 0x0063_7265_6269_746f; // "crebito" in ASCII

const POST_SQL: &str = "\
WITH account AS (
    SELECT credit_limit FROM accounts WHERE id = $1
), moved AS (
    UPDATE accounts SET balance = balance + $2
    WHERE id = $1 AND balance + $2 >= -credit_limit
    RETURNING id, balance
), posted AS (
    INSERT INTO transactions (account_id, amount, kind, description)
    SELECT id, $3, $4, $5 FROM moved
)
SELECT account.credit_limit, moved.balance FROM account LEFT JOIN moved ON true";

/// [`POST_SQL`] with an idempotency key ($6) and request fingerprint ($7):
/// nothing moves when the key is already recorded (`previous`), and the
/// outcome is recorded in the same statement. Two concurrent requests with
/// one new key both try to insert it: the second fails on the primary key
/// (unique violation), which rolls its whole statement back, posting
/// included; it then reads the first one's recorded outcome.
const POST_IDEMPOTENT_SQL: &str = "\
WITH account AS (
    SELECT credit_limit FROM accounts WHERE id = $1
), previous AS (
    SELECT fingerprint, outcome, balance FROM idempotency_keys
    WHERE account_id = $1 AND key = $6
), moved AS (
    UPDATE accounts SET balance = balance + $2
    WHERE id = $1 AND balance + $2 >= -credit_limit
      AND NOT EXISTS (SELECT 1 FROM previous)
    RETURNING id, balance
), posted AS (
    INSERT INTO transactions (account_id, amount, kind, description)
    SELECT id, $3, $4, $5 FROM moved
), remembered AS (
    INSERT INTO idempotency_keys (account_id, key, fingerprint, outcome, balance, credit_limit)
    SELECT $1, $6, $7,
           CASE WHEN moved.balance IS NULL THEN 'limit_exceeded' ELSE 'posted' END,
           moved.balance, account.credit_limit
    FROM account LEFT JOIN moved ON true
    WHERE NOT EXISTS (SELECT 1 FROM previous)
)
SELECT account.credit_limit, moved.balance,
       previous.fingerprint, previous.outcome, previous.balance
FROM account LEFT JOIN moved ON true LEFT JOIN previous ON true";

const RECORDED_KEY_SQL: &str = "\
SELECT k.fingerprint, k.outcome, k.balance, k.credit_limit
FROM idempotency_keys k WHERE k.account_id = $1 AND k.key = $2";

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
       COALESCE(SUM(CASE t.kind WHEN $1 THEN t.amount::numeric WHEN $2 THEN -t.amount::numeric END), 0)::text,
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
    pool: Pool,
    /// Where the pool connects, for error messages (no password).
    target: Arc<str>,
    /// Client-side bound of one request's round trips: the server's
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

/// A pooled connection lent to one request for a bounded round trip. It
/// goes back to the pool only through [`PostgresLedger::release`], once
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

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// How a posting attempt failed.
#[derive(Debug)]
enum Failed {
    /// Before the database could have applied anything: no connection
    /// could be opened, or the server refused the statement as read-only
    /// (SQLSTATE 25006: a standby, or a former primary). Trying again on a
    /// fresh connection cannot apply the posting twice.
    NotApplied(LedgerError),
    /// Anything else: a rule, a timeout, a connection lost after the
    /// statement was sent (the outcome is unknown: a retry with the same
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

/// What the idempotent posting statement came back with.
enum IdempotentAnswer {
    /// The statement's own rows.
    Rows(Vec<tokio_postgres::Row>),
    /// The outcome recorded by a concurrent request with the same key.
    Recorded(Option<tokio_postgres::Row>),
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
        let options_text = match config.get_options() {
            Some(existing) => format!("{existing} {timeout_option}"),
            None => timeout_option,
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
        Ok(PostgresLedger {
            pool,
            target,
            round_trip_timeout,
            stale,
            metrics: StorageMetrics::default(),
        })
    }

    /// Builds the pool, applies pending migrations, opens every connection
    /// and prepares the hot statements on it. Errors:
    /// [`LedgerError::Unavailable`].
    pub async fn connect(url: &str, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let ledger = Self::new(url, options)?;
        ledger.migrate().await?;
        ledger.warm_up().await?;
        Ok(ledger)
    }

    /// Opens every connection of the pool and prepares the hot statements
    /// on each, so that the first burst of requests (the official test
    /// opens with 25 simultaneous postings) does not pay for connection
    /// set-up and planning.
    async fn warm_up(&self) -> Result<(), LedgerError> {
        let mut held = Vec::with_capacity(self.pool.status().max_size);
        for _ in 0..self.pool.status().max_size {
            let client = self.client().await?;
            for sql in [POST_SQL, POST_IDEMPOTENT_SQL, STATEMENT_SQL, HISTORY_SQL] {
                client.prepare_cached(sql).await?;
            }
            // Held until all are open, so each round opens a new one.
            held.push(client);
        }
        Ok(())
    }

    /// Applies the embedded migrations that are not yet recorded, under a
    /// session advisory lock so that instances starting together take turns.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        let mut client = self.client().await?;
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
        result?;
        unlock?;
        reset?;
        Ok(())
    }

    /// Deletes every transaction and idempotency key and every account,
    /// then seeds the five accounts again (docs/contract.md §2.3), in one
    /// transaction: the ledger is as freshly created. Instances serving
    /// the database meanwhile wait for it (`TRUNCATE` locks the tables).
    /// Errors: [`LedgerError::Unavailable`].
    pub async fn reset(&self) -> Result<(), LedgerError> {
        let mut client = self.client().await?;
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

    /// A pooled connection. Errors: [`Failed::NotApplied`] when opening a
    /// new one failed (refused, no such socket, authentication failed, no
    /// host takes writes), [`Failed::Other`] when none was free or opening
    /// one timed out; both name where it tried to connect, with the cause.
    async fn client(&self) -> Result<Object, Failed> {
        self.pool.get().await.map_err(|e| {
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

    /// [`Self::client`] for one bounded round trip.
    async fn lease(&self) -> Result<Lease, Failed> {
        Ok(Lease(Some(self.client().await?)))
    }
}

async fn apply_migrations(client: &mut Object, list: &[Migration]) -> Result<(), LedgerError> {
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
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Maps the errors a posting statement can raise: bigint overflow, the
/// balance CHECK (the second line of defence), a server that takes no
/// writes (read-only: nothing applied), anything else.
fn posting_error(error: tokio_postgres::Error) -> Failed {
    match error.code() {
        Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => Failed::Other(PostingError::Overflow.into()),
        Some(&SqlState::CHECK_VIOLATION) => Failed::Other(PostingError::LimitExceeded.into()),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Failed::NotApplied(error.into()),
        // statement_timeout: cancelled by the server, nothing applied.
        _ => Failed::Other(error.into()),
    }
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

/// The key recorded in `row`'s columns `at`, `at + 1` and `at + 2`
/// (fingerprint, outcome, balance), for an account whose limit is `limit`;
/// `None` when the fingerprint is NULL (the key is new).
fn recorded_key(
    row: &Row,
    at: usize,
    limit: i64,
) -> Result<Option<RecordedKey>, tokio_postgres::Error> {
    let Some(fingerprint) = row.try_get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(RecordedKey {
        fingerprint,
        outcome: row.try_get(at + 1)?,
        balance: row.try_get(at + 2)?,
        limit,
    }))
}

impl PostgresLedger {
    async fn post_idempotent(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: &IdempotencyKey,
    ) -> Result<Balance, Failed> {
        let client = self.lease().await?;
        let fingerprint = transaction.fingerprint();
        let params = PostingParams::new(account, transaction);
        let [account_id, delta, amount, kind, description] = params.as_sql();
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.round_trip_timeout, async {
            let statement = client.prepare_cached(POST_IDEMPOTENT_SQL).await?;
            let result = client
                .query(
                    &statement,
                    &[
                        account_id,
                        delta,
                        amount,
                        kind,
                        description,
                        &key.as_str(),
                        &fingerprint,
                    ],
                )
                .await;
            match result {
                // A concurrent request with the same key committed first:
                // this statement was rolled back; read what it recorded.
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => client
                    .query_opt(RECORDED_KEY_SQL, &[&account.get(), &key.as_str()])
                    .await
                    .map(IdempotentAnswer::Recorded),
                other => other.map(IdempotentAnswer::Rows),
            }
        })
        .await;
        self.metrics.round_trip("post", started.elapsed());
        let rows = match self.release(client, outcome)?.map_err(posting_error)? {
            IdempotentAnswer::Rows(rows) => rows,
            IdempotentAnswer::Recorded(row) => {
                let vanished = || LedgerError::unavailable_because("idempotency key vanished");
                let row = row.ok_or_else(vanished)?;
                let limit = row.try_get(3)?;
                return match NextAction::for_key(recorded_key(&row, 0, limit)?, transaction) {
                    NextAction::Replay(answer) => {
                        self.metrics.replay();
                        Ok(answer?)
                    }
                    NextAction::Post => Err(vanished().into()),
                };
            }
        };
        let row = rows.first().ok_or(LedgerError::AccountNotFound)?;
        let limit: i64 = row.get(0);
        match NextAction::for_key(recorded_key(row, 2, limit)?, transaction) {
            NextAction::Replay(answer) => {
                self.metrics.replay();
                Ok(answer?)
            }
            NextAction::Post => Ok(posting_outcome(row.get(1), limit)?),
        }
    }

    /// One attempt at a posting, with or without a key.
    async fn post_once(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Result<Balance, Failed> {
        if let Some(key) = key {
            return self.post_idempotent(account, transaction, key).await;
        }
        let client = self.lease().await?;
        let params = PostingParams::new(account, transaction);
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.round_trip_timeout, async {
            let statement = client.prepare_cached(POST_SQL).await?;
            client.query(&statement, &params.as_sql()).await
        })
        .await;
        self.metrics.round_trip("post", started.elapsed());
        let rows = self.release(client, outcome)?.map_err(posting_error)?;
        let row = rows.first().ok_or(LedgerError::AccountNotFound)?;
        Ok(posting_outcome(row.get(1), row.get(0))?)
    }
}

/// Parameters `$1`–`$5` of [`POST_SQL`] and [`POST_IDEMPOTENT_SQL`]:
/// account id, signed delta (cents), amount (cents), kind code, description.
struct PostingParams<'a> {
    account: i32,
    delta: i64,
    amount: i64,
    kind: Kind,
    description: &'a str,
}

impl<'a> PostingParams<'a> {
    fn new(account: AccountId, transaction: &'a Transaction) -> Self {
        PostingParams {
            account: account.get(),
            delta: transaction.delta(),
            amount: transaction.amount.cents(),
            kind: transaction.kind,
            description: transaction.description.as_str(),
        }
    }

    fn as_sql(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.account,
            &self.delta,
            &self.amount,
            &self.kind,
            &self.description,
        ]
    }
}

/// What a posting statement returned: the new balance (cents), or NULL when
/// the conditional `UPDATE` refused it for the limit.
fn posting_outcome(balance: Option<i64>, limit: i64) -> Result<Balance, LedgerError> {
    match balance {
        Some(balance) => Ok(Balance { balance, limit }),
        None => Err(PostingError::LimitExceeded.into()),
    }
}

impl Ledger for PostgresLedger {
    fn storage_metrics(&self) -> Option<&StorageMetrics> {
        Some(&self.metrics)
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::from_deadpool(self.pool.status()))
    }

    /// See [`Ledger::post`]. A posting that failed before it could have
    /// been applied (`Failed::NotApplied`: no connection could be opened,
    /// or the server refused it as read-only) is tried once more on a fresh
    /// connection, which reaches the current primary when the URL lists
    /// every host with `target_session_attrs=read-write` (docs/ha.md).
    async fn post(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Result<Balance, LedgerError> {
        match self.post_once(account, transaction, key).await {
            Err(Failed::NotApplied(error)) => {
                tracing::warn!(
                    error = %ErrorChain(&error),
                    "posting not applied (no writable primary on that connection); trying once more on a fresh connection"
                );
                Ok(self.post_once(account, transaction, key).await?)
            }
            other => Ok(other?),
        }
    }

    async fn purge_idempotency_keys(&self, older_than: Duration) -> Result<u64, LedgerError> {
        let client = self.client().await?;
        Ok(client
            .execute(PURGE_KEYS_SQL, &[&older_than.as_secs_f64()])
            .await?)
    }

    async fn statement(&self, account: AccountId) -> Result<Statement, LedgerError> {
        let client = self.lease().await?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.round_trip_timeout, async {
            let statement = client.prepare_cached(STATEMENT_SQL).await?;
            client.query(&statement, &[&account.get()]).await
        })
        .await;
        self.metrics.round_trip("statement", started.elapsed());
        let rows = self.release(client, outcome)??;
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
        let client = self.lease().await?;
        let before = before.map_or(i64::MAX, PostingId::get);
        // One row more than the page: tells whether older ones remain.
        let fetch = i64::try_from(size.get() + 1).unwrap_or(i64::MAX);
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.round_trip_timeout, async {
            let statement = client.prepare_cached(HISTORY_SQL).await?;
            client
                .query(&statement, &[&account.get(), &before, &fetch])
                .await
        })
        .await;
        self.metrics.round_trip("history", started.elapsed());
        let rows = self.release(client, outcome)??;
        let generated_at = Utc::now();
        let first = rows.first().ok_or(LedgerError::AccountNotFound)?;
        let mut transactions = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(id) = row.get::<_, Option<i64>>(2) else {
                continue; // the LEFT JOIN row of a page without transactions
            };
            let id = PostingId::new(id).ok_or_else(|| {
                LedgerError::unavailable_because(format!("stored posting id {id} is not positive"))
            })?;
            transactions.push((
                id,
                PostedTransaction {
                    amount: row.get(3),
                    kind: row.try_get(4)?,
                    description: row.get::<_, String>(5),
                    posted_at: row.get::<_, DateTime<Utc>>(6),
                },
            ));
        }
        let more = transactions.len() > size.get();
        transactions.truncate(size.get());
        Ok(HistoryPage {
            balance: first.get(0),
            limit: first.get(1),
            generated_at,
            transactions,
            more,
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let client = self.lease().await?;
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.round_trip_timeout, client.simple_query("SELECT 1")).await;
        self.metrics.round_trip("ping", started.elapsed());
        self.release(client, outcome)??;
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
        let client = self.lease().await.map_err(|e| unanswered(e.into()))?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.round_trip_timeout,
            client.simple_query("SHOW transaction_read_only"),
        )
        .await;
        self.metrics.round_trip("health", started.elapsed());
        let messages = self
            .release(client, outcome)
            .map_err(unanswered)?
            .map_err(|e| unanswered(e.into()))?;
        let read_only = messages.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
        });
        if read_only {
            self.stale.mark();
            return Err(Unhealthy::new(
                "the database takes no writes",
                LedgerError::unavailable_because(format!(
                    "{} is read-only (transaction_read_only is on: a standby or a fenced former primary)",
                    self.target
                )),
            ));
        }
        Ok(())
    }

    async fn postings(&self) -> Result<Vec<PostingRow>, LedgerError> {
        let client = self.client().await?;
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
        let mut client = self.client().await?;
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
