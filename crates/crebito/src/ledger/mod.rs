//! Ledger storage: one trait, two implementations.
//!
//! The storage owns the concurrency guarantee (docs/contract.md §3): a posting is one
//! atomic unit that checks the limit, moves the balance and records the row;
//! a statement is one consistent snapshot. Handlers never combine calls.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    AccountId, Balance, HistoryPage, IdempotencyKey, PageSize, PostedTransaction, PostingId,
    Statement, Transaction,
};
use crate::metrics::{PoolStatus, StorageMetrics};

pub mod batch;
pub mod checkpointer;
pub mod codes;
mod error;
pub mod idempotency;
pub mod migrations;
pub mod postgres;
pub mod sqlite;
pub mod writer_lock;

pub use crate::audit::{AccountAudit, AuditReport, PostingRow};
pub use error::{
    BoxError, ConnectFailed, ErrorChain, LedgerError, RowRefused, UnavailableCause, Unhealthy,
    UnsupportedDatabase,
};

/// Ledger storage shared by all request handlers.
///
/// Implementations must be safe under any concurrency, including several
/// processes sharing one database (two API instances behind the load
/// balancer, docs/contract.md §4).
pub trait Ledger: Send + Sync + 'static {
    /// Posts one transaction atomically and returns the balance right after
    /// it. Errors: [`LedgerError::AccountNotFound`], [`LedgerError::Refused`]
    /// with [`PostingError::LimitExceeded`](crate::domain::PostingError) or
    /// `Overflow` (nothing is recorded for any of them) and
    /// [`LedgerError::Unavailable`].
    ///
    /// With a `key`, the outcome (posted, or refused for the limit) is stored
    /// atomically with the posting; a later call with the same key on the
    /// same account returns that outcome without posting again, and
    /// `Refused(IdempotencyKeyReused)` when the transaction differs.
    fn post(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> impl Future<Output = Result<Balance, LedgerError>> + Send;

    /// Deletes idempotency keys first used more than `older_than` ago;
    /// returns how many were deleted.
    fn purge_idempotency_keys(
        &self,
        older_than: std::time::Duration,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// Reads the balance, limit and the last 10 transactions (newest first)
    /// as one snapshot. Errors: [`LedgerError::AccountNotFound`],
    /// [`LedgerError::Unavailable`].
    fn statement(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Statement, LedgerError>> + Send;

    /// Reads one page of the account's history as one snapshot: the
    /// balance, the limit and up to `size` transactions with an id below
    /// `before` (all when `None`), newest first, and whether older ones
    /// remain (docs/contract.md §2.8). Errors:
    /// [`LedgerError::AccountNotFound`], [`LedgerError::Unavailable`].
    fn history(
        &self,
        account: AccountId,
        before: Option<PostingId>,
        size: PageSize,
    ) -> impl Future<Output = Result<HistoryPage, LedgerError>> + Send;

    /// Runs a trivial query; `Ok` when the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Whether this instance can take postings now (`GET /health`,
    /// docs/contract.md §2.8). PostgreSQL: the database answers. SQLite: the
    /// file at the path is still the one opened, and a write commits (so a
    /// read-only file, directory or file system, a full disk and a deleted
    /// file are each reported). Errors: [`Unhealthy`] with a reason for
    /// clients and the cause for the log.
    fn health(&self) -> impl Future<Output = Result<(), Unhealthy>> + Send;

    /// Checks every account's balance against its transactions.
    fn audit(&self) -> impl Future<Output = Result<AuditReport, LedgerError>> + Send;

    /// Every stored transaction, in posting order (for audits against a
    /// client's record of acknowledged postings; reads the whole table).
    fn postings(&self) -> impl Future<Output = Result<Vec<PostingRow>, LedgerError>> + Send;

    /// What the ledger records about its storage (round trips, replays),
    /// exposed at `GET /metrics`; `None` when it records nothing.
    fn storage_metrics(&self) -> Option<&StorageMetrics> {
        None
    }

    /// The state of the ledger's connection pool now; `None` without one.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }

    /// Which backend this is, for `crebito_build_info`: `postgres`,
    /// `sqlite` or `other`.
    fn backend(&self) -> &'static str {
        "other"
    }
}

/// Where the ledger lives, parsed from a `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`, passed to tokio-postgres as is.
    Postgres(String),
    /// `sqlite://path` (relative or absolute file path).
    Sqlite(std::path::PathBuf),
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                Err("sqlite:// URL needs a file path, e.g. sqlite://data/crebito.db".into())
            } else {
                Ok(DatabaseUrl::Sqlite(path.into()))
            }
        } else {
            Err(format!(
                "unsupported database URL {url:?}: expected postgres://… or sqlite://path"
            ))
        }
    }
}

/// How a ledger uses its database, whichever the backend.
///
/// PostgreSQL honours every field but `create_if_missing`; SQLite every one
/// but `query_timeout` (its statements run in this process).
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Most database connections this process opens.
    pub pool_size: usize,
    /// Longest a request waits for a free connection (or for a new one to be
    /// established), for its turn in the posting queue and (SQLite) for
    /// another process's write lock, before it fails with
    /// [`LedgerError::Unavailable`] (503) with nothing applied.
    pub acquire_timeout: Duration,
    /// Longest a request's statement may run. The server cancels it then
    /// (`statement_timeout`, so a cancelled posting is never applied) and
    /// the request fails with [`LedgerError::Unavailable`] (503). A server
    /// that stops answering altogether (frozen, network cut) is given one
    /// more second, then the connection is closed and taken out of the pool;
    /// only in that case may a posting answered 503 still have been applied,
    /// which a retry with the same `Idempotency-Key` resolves.
    pub query_timeout: Duration,
    /// SQLite: whether a missing database file may be created (with the
    /// seeded accounts). Either way a creation is logged as a warning; when
    /// `false`, a missing file is an error. PostgreSQL ignores it.
    pub create_if_missing: bool,
    /// Most postings applied together in one batch (one transaction, one
    /// commit; [`batch`]). At least 1.
    pub max_batch: usize,
    /// Most postings waiting in one posting queue (per account on
    /// PostgreSQL, per instance on SQLite) besides the batch in flight; one
    /// more is answered 503 at once. At least 1.
    pub max_queue: usize,
}

impl LedgerOptions {
    /// The posting queues' limits: `max_batch`, `max_queue`, and
    /// `acquire_timeout` as the longest wait.
    pub fn batch(&self) -> batch::BatchOptions {
        batch::BatchOptions {
            max_batch: self.max_batch,
            max_queue: self.max_queue,
            max_wait: self.acquire_timeout,
        }
    }
}

impl Default for LedgerOptions {
    /// The defaults of `crebito serve` (docs/configuration.md): 4
    /// connections, 2 s to get one, 5 s per statement, batches of at most
    /// 64 postings, 1024 postings waiting per queue.
    fn default() -> Self {
        let batch = batch::BatchOptions::default();
        LedgerOptions {
            pool_size: 4,
            acquire_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
            create_if_missing: true,
            max_batch: batch.max_batch,
            max_queue: batch.max_queue,
        }
    }
}

/// The bounds of one history read (docs/contract.md §2.8) as both
/// ledgers bind them: `(before, fetch)`, the ids below `before`
/// (`i64::MAX` for the newest page) and `fetch` rows, one more than the
/// page, so that the extra row tells whether older ones remain (see
/// [`history_page`]).
pub(crate) fn history_bounds(before: Option<PostingId>, size: PageSize) -> (i64, i64) {
    let before = before.map_or(i64::MAX, PostingId::get);
    let fetch = i64::try_from(size.get() + 1).unwrap_or(i64::MAX);
    (before, fetch)
}

/// A history page from the rows read with [`history_bounds`], newest
/// first (balance and limit in cents): the first `size` of them, and
/// `more` when there was an extra one.
pub(crate) fn history_page(
    balance: i64,
    limit: i64,
    generated_at: DateTime<Utc>,
    mut transactions: Vec<(PostingId, PostedTransaction)>,
    size: PageSize,
) -> HistoryPage {
    let more = transactions.len() > size.get();
    transactions.truncate(size.get());
    HistoryPage {
        balance,
        limit,
        generated_at,
        transactions,
        more,
    }
}

/// A stored `transactions.id` as a [`PostingId`]. One that is not
/// positive means the stored data is broken: [`LedgerError::Unavailable`].
pub(crate) fn stored_posting_id(id: i64) -> Result<PostingId, LedgerError> {
    PostingId::new(id).ok_or_else(|| {
        LedgerError::unavailable_because(format!("stored posting id {id} is not positive"))
    })
}

/// Either ledger, chosen at run time from a [`DatabaseUrl`].
#[derive(Clone)]
pub enum AnyLedger {
    /// PostgreSQL (production).
    Postgres(postgres::PostgresLedger),
    /// Embedded SQLite file (default).
    Sqlite(sqlite::SqliteLedger),
}

impl AnyLedger {
    /// Opens the ledger at `url` and applies pending migrations. Errors:
    /// [`LedgerError::Unavailable`].
    pub async fn open(
        url: &DatabaseUrl,
        options: &LedgerOptions,
    ) -> Result<AnyLedger, LedgerError> {
        Ok(match url {
            DatabaseUrl::Postgres(url) => {
                AnyLedger::Postgres(postgres::PostgresLedger::connect(url, options).await?)
            }
            DatabaseUrl::Sqlite(path) => {
                AnyLedger::Sqlite(sqlite::SqliteLedger::open_with(path, options).await?)
            }
        })
    }

    /// Empties the ledger and seeds it again: every transaction and
    /// idempotency key deleted, the five accounts of docs/contract.md §2.3
    /// at balance 0 (`crebito reset`). Errors: [`LedgerError::Unavailable`].
    pub async fn reset(&self) -> Result<(), LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.reset().await,
            AnyLedger::Sqlite(l) => l.reset().await,
        }
    }

    /// Opens the ledger at `url` without creating or migrating anything
    /// (for read-only tools). Errors: [`LedgerError::Unavailable`].
    pub async fn open_existing(
        url: &DatabaseUrl,
        options: &LedgerOptions,
    ) -> Result<AnyLedger, LedgerError> {
        Ok(match url {
            DatabaseUrl::Postgres(url) => {
                let ledger = postgres::PostgresLedger::new(url, options)?;
                ledger.ping().await?;
                AnyLedger::Postgres(ledger)
            }
            DatabaseUrl::Sqlite(path) => {
                AnyLedger::Sqlite(sqlite::SqliteLedger::open_existing(path, options).await?)
            }
        })
    }
}

impl AnyLedger {
    /// Which ledger this is, for messages: `the SQLite ledger /abs/path`
    /// or `the ledger in PostgreSQL at HOST:PORT (database "…", user "…")`
    /// (never a password).
    pub fn describe(&self) -> String {
        match self {
            AnyLedger::Postgres(l) => format!("the ledger in {}", l.target()),
            AnyLedger::Sqlite(l) => format!("the SQLite ledger {}", l.path()),
        }
    }

    /// Whether opening it created a new ledger: a SQLite file that did not
    /// exist, or a PostgreSQL database that held no ledger (crebito never
    /// creates the database itself), seeded now.
    pub fn created(&self) -> bool {
        match self {
            AnyLedger::Postgres(l) => l.created(),
            AnyLedger::Sqlite(l) => l.created(),
        }
    }

    /// Batches of postings sent since start, by size
    /// ([`batch::SIZE_BUCKETS`]; the same counts as
    /// `crebito_posting_batch_size`, kept with metrics off too).
    pub fn batch_sizes(&self) -> [u64; batch::SIZE_BUCKETS] {
        match self {
            AnyLedger::Postgres(l) => l.batch_sizes(),
            AnyLedger::Sqlite(l) => l.batch_sizes(),
        }
    }
}

impl Ledger for AnyLedger {
    fn storage_metrics(&self) -> Option<&StorageMetrics> {
        match self {
            AnyLedger::Postgres(l) => l.storage_metrics(),
            AnyLedger::Sqlite(l) => l.storage_metrics(),
        }
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        match self {
            AnyLedger::Postgres(l) => l.pool_status(),
            AnyLedger::Sqlite(l) => l.pool_status(),
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            AnyLedger::Postgres(_) => "postgres",
            AnyLedger::Sqlite(_) => "sqlite",
        }
    }

    async fn post(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Result<Balance, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.post(account, transaction, key).await,
            AnyLedger::Sqlite(l) => l.post(account, transaction, key).await,
        }
    }

    async fn purge_idempotency_keys(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.purge_idempotency_keys(older_than).await,
            AnyLedger::Sqlite(l) => l.purge_idempotency_keys(older_than).await,
        }
    }

    async fn statement(&self, account: AccountId) -> Result<Statement, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.statement(account).await,
            AnyLedger::Sqlite(l) => l.statement(account).await,
        }
    }

    async fn history(
        &self,
        account: AccountId,
        before: Option<PostingId>,
        size: PageSize,
    ) -> Result<HistoryPage, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.history(account, before, size).await,
            AnyLedger::Sqlite(l) => l.history(account, before, size).await,
        }
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.ping().await,
            AnyLedger::Sqlite(l) => l.ping().await,
        }
    }

    async fn health(&self) -> Result<(), Unhealthy> {
        match self {
            AnyLedger::Postgres(l) => l.health().await,
            AnyLedger::Sqlite(l) => l.health().await,
        }
    }

    async fn audit(&self) -> Result<AuditReport, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.audit().await,
            AnyLedger::Sqlite(l) => l.audit().await,
        }
    }

    async fn postings(&self) -> Result<Vec<PostingRow>, LedgerError> {
        match self {
            AnyLedger::Postgres(l) => l.postings().await,
            AnyLedger::Sqlite(l) => l.postings().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_schemes() {
        assert_eq!(
            "sqlite://data/crebito.db".parse(),
            Ok(DatabaseUrl::Sqlite("data/crebito.db".into()))
        );
        assert_eq!(
            "sqlite:///tmp/x.db".parse(),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            "postgres://u@localhost/db".parse(),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            "postgresql://u@localhost/db".parse(),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("data.db".parse::<DatabaseUrl>().is_err());
    }
}
