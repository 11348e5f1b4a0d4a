//! The ledger's one error type, and how the drivers' errors become it.
//!
//! A database failure keeps its whole source chain (the driver's error, the
//! server's message, the I/O cause) so that the log can show it with
//! [`ErrorChain`]; clients only ever see that the service is unavailable.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use thiserror::Error;

use super::batch::QueueRefusal;
use crate::domain::PostingError;

/// Any error, boxed, as kept in [`LedgerError::Unavailable`].
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Errors a ledger returns.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// No account has this id (docs/contract.md §2.4: 404).
    #[error("account not found")]
    AccountNotFound,
    /// The posting is refused by a rule (limit, overflow, a reused
    /// `Idempotency-Key`); nothing was recorded (docs/contract.md §2.4:
    /// 422).
    #[error(transparent)]
    Refused(#[from] PostingError),
    /// The database cannot be reached, failed, did not answer in time, or
    /// holds a value that cannot be read. `context` says what was being
    /// done or reached (never a password); `source` is the cause, with its
    /// own chain. For logs only, never for clients (HTTP 503).
    #[error("ledger unavailable: {context}")]
    Unavailable {
        /// What failed, e.g. `PostgreSQL at /run/postgresql/.s.PGSQL.5432`.
        context: Cow<'static, str>,
        /// The cause, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl LedgerError {
    /// [`LedgerError::Unavailable`] with `context` and the cause `source`.
    pub fn unavailable(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        LedgerError::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// [`LedgerError::Unavailable`] with `context` and no further cause.
    pub fn unavailable_because(context: impl Into<Cow<'static, str>>) -> Self {
        LedgerError::Unavailable {
            context: context.into(),
            source: None,
        }
    }
}

/// Why a ledger cannot take writes now: `GET /health` answers 503 with
/// [`Unhealthy::reason`] (docs/contract.md §2.8) and logs the cause.
#[derive(Debug, Error)]
#[error("unhealthy: {reason}")]
pub struct Unhealthy {
    /// One fixed sentence, safe to show to clients (no path, host or
    /// server message), e.g. "the database is read-only".
    pub reason: Cow<'static, str>,
    /// What failed, for the log.
    #[source]
    pub cause: Option<LedgerError>,
}

impl Unhealthy {
    /// An [`Unhealthy`] for `reason`, caused by `cause`.
    pub fn new(
        reason: impl Into<Cow<'static, str>>,
        cause: impl Into<Option<LedgerError>>,
    ) -> Self {
        Unhealthy {
            reason: reason.into(),
            cause: cause.into(),
        }
    }
}

/// A database error met while opening a new connection (as opposed to
/// one on an open connection); shown exactly as the error it wraps, and
/// counted as [`UnavailableCause::Connect`].
#[derive(Debug, Error)]
#[error(transparent)]
pub struct ConnectFailed(pub BoxError);

/// A posting's row that the database refused by a constraint other than
/// the balance's `CHECK` (`balance_within_limit`, whose violation is the
/// limit rule): the posting met every rule of the contract
/// (docs/contract.md §2.1), so the schema disagrees with it. The cause of
/// a [`LedgerError::Unavailable`] (503): the batch that held it applied
/// nothing, and the posting queue applies its members again one by one,
/// so that only this posting fails ([`super::batch`]).
#[derive(Debug, Error)]
#[error("the database refused a posting's row (constraint {constraint})")]
pub struct RowRefused {
    /// The constraint's name as the database reports it.
    pub constraint: String,
    /// The driver's error.
    #[source]
    pub source: BoxError,
}

/// A database that cannot hold the contract, such as a PostgreSQL
/// database not encoded in UTF8 (docs/deployment.md): waiting does not
/// help, so `crebito serve` does not retry it at start. The cause of a
/// [`LedgerError::Unavailable`]; the message says what to do.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UnsupportedDatabase(pub String);

/// Why a ledger was unavailable, as counted by `crebito_unavailable_total`
/// (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableCause {
    /// No pooled connection became free within the acquire timeout.
    PoolTimeout,
    /// A new connection could not be opened (refused, no socket, wrong
    /// password, timed out).
    Connect,
    /// The database cancelled the statement at `--query-timeout-ms`.
    QueryTimeout,
    /// The database did not answer at all within the round-trip bound; the
    /// connection was dropped.
    NoAnswer,
    /// SQLite's write lock stayed busy past its busy timeout, or the
    /// writer lock ([`super::writer_lock`]) past the batch's deadline.
    Busy,
    /// Anything else: a connection lost mid-query, a server error, an
    /// unreadable value.
    Database,
    /// `GET /health` found the ledger unable to take writes ([`Unhealthy`]).
    Unhealthy,
    /// The posting queue was full ([`QueueRefusal::Full`]).
    QueueFull,
    /// The posting waited the acquire timeout in its queue without being
    /// taken into a batch ([`QueueRefusal::WaitedTooLong`]).
    QueueTimeout,
}

impl UnavailableCause {
    /// The label value: `pool_timeout`, `connect`, `query_timeout`,
    /// `no_answer`, `busy`, `database`, `unhealthy`, `queue_full` or
    /// `queue_timeout`.
    pub fn label(self) -> &'static str {
        match self {
            UnavailableCause::PoolTimeout => "pool_timeout",
            UnavailableCause::Connect => "connect",
            UnavailableCause::QueryTimeout => "query_timeout",
            UnavailableCause::NoAnswer => "no_answer",
            UnavailableCause::Busy => "busy",
            UnavailableCause::Database => "database",
            UnavailableCause::Unhealthy => "unhealthy",
            UnavailableCause::QueueFull => "queue_full",
            UnavailableCause::QueueTimeout => "queue_timeout",
        }
    }

    /// The first cause in `error`'s source chain that names one.
    fn of(error: &(dyn Error + 'static)) -> Option<UnavailableCause> {
        use deadpool_postgres::{PoolError, TimeoutType};
        use deadpool_sqlite::rusqlite::ErrorCode;
        let pool_cause = |timeout: Option<&TimeoutType>| match timeout {
            Some(TimeoutType::Wait) => UnavailableCause::PoolTimeout,
            _ => UnavailableCause::Connect,
        };
        if error.is::<tokio::time::error::Elapsed>() {
            return Some(UnavailableCause::NoAnswer);
        }
        if error.is::<super::writer_lock::WriterLockBusy>() {
            return Some(UnavailableCause::Busy);
        }
        if error.is::<ConnectFailed>() {
            return Some(UnavailableCause::Connect);
        }
        if let Some(refusal) = error.downcast_ref::<QueueRefusal>() {
            return Some(match refusal {
                QueueRefusal::Full => UnavailableCause::QueueFull,
                QueueRefusal::WaitedTooLong => UnavailableCause::QueueTimeout,
            });
        }
        if let Some(e) = error.downcast_ref::<PoolError>() {
            return Some(match e {
                PoolError::Timeout(kind) => pool_cause(Some(kind)),
                PoolError::Backend(_) | PoolError::PostCreateHook(_) => pool_cause(None),
                _ => UnavailableCause::Database,
            });
        }
        if let Some(e) = error.downcast_ref::<deadpool_sqlite::PoolError>() {
            return Some(match e {
                deadpool_sqlite::PoolError::Timeout(kind) => pool_cause(Some(kind)),
                _ => UnavailableCause::Connect,
            });
        }
        if let Some(e) = error.downcast_ref::<tokio_postgres::Error>() {
            return Some(
                if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
                    UnavailableCause::QueryTimeout
                } else {
                    UnavailableCause::Database
                },
            );
        }
        if let Some(e) = error.downcast_ref::<deadpool_sqlite::rusqlite::Error>() {
            return Some(match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => UnavailableCause::Busy,
                _ => UnavailableCause::Database,
            });
        }
        None
    }
}

impl LedgerError {
    /// True when the source chain holds a [`RowRefused`].
    pub fn row_refused(&self) -> bool {
        self.caused_by::<RowRefused>()
    }

    /// True when waiting cannot help: the database cannot hold the
    /// contract ([`UnsupportedDatabase`] in the source chain), or the
    /// PostgreSQL server answered and refused the login for good — a wrong
    /// password or an unknown role (SQLSTATE class 28), a database that
    /// does not exist (3D000). A server still starting refuses connections
    /// or answers 57P03, never these.
    pub fn is_permanent(&self) -> bool {
        use tokio_postgres::error::{DbError, SqlState};
        self.caused_by::<UnsupportedDatabase>()
            || self.any_cause(|error| {
                // The driver's error, or the server's (a connection error
                // shows the latter only: ConnectFailed is transparent).
                let code = match error.downcast_ref::<tokio_postgres::Error>() {
                    Some(e) => e.code(),
                    None => error.downcast_ref::<DbError>().map(DbError::code),
                };
                code.is_some_and(|code| {
                    code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME
                })
            })
    }

    /// True when an `E` is in the source chain.
    fn caused_by<E: Error + 'static>(&self) -> bool {
        self.any_cause(|error| error.is::<E>())
    }

    /// True when `test` holds for an error in the source chain.
    fn any_cause(&self, test: impl Fn(&(dyn Error + 'static)) -> bool) -> bool {
        let mut next: Option<&(dyn Error + 'static)> = self.source();
        while let Some(error) = next {
            if test(error) {
                return true;
            }
            next = error.source();
        }
        false
    }

    /// Why the ledger was unavailable, read from the source chain; `None`
    /// unless [`LedgerError::Unavailable`].
    pub fn unavailable_cause(&self) -> Option<UnavailableCause> {
        let LedgerError::Unavailable { source, .. } = self else {
            return None;
        };
        let mut next: Option<&(dyn Error + 'static)> = source.as_deref().map(|e| e as _);
        while let Some(error) = next {
            if let Some(cause) = UnavailableCause::of(error) {
                return Some(cause);
            }
            next = error.source();
        }
        Some(UnavailableCause::Database)
    }
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(error: tokio_postgres::Error) -> Self {
        LedgerError::unavailable("PostgreSQL", error)
    }
}

impl From<deadpool_sqlite::rusqlite::Error> for LedgerError {
    fn from(error: deadpool_sqlite::rusqlite::Error) -> Self {
        LedgerError::unavailable("SQLite", error)
    }
}

impl From<deadpool_sqlite::PoolError> for LedgerError {
    fn from(error: deadpool_sqlite::PoolError) -> Self {
        LedgerError::unavailable("no SQLite connection", error)
    }
}

impl From<deadpool_sqlite::InteractError> for LedgerError {
    /// A panic or cancellation of the blocking thread that ran a SQLite
    /// call. Its payload is not `Sync`, so only its description is kept.
    fn from(error: deadpool_sqlite::InteractError) -> Self {
        LedgerError::unavailable_because(format!(
            "SQLite call on a blocking thread failed: {error}"
        ))
    }
}

/// Displays an error and every source below it, `outer: inner: cause`, for
/// logs and operator messages. A source whose text its parent already
/// showed (some errors print their cause in their own message) is not
/// repeated.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(error) = next {
            let text = error.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_shows_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such socket");
        let error = LedgerError::unavailable("PostgreSQL at /run/x", Outer(io));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "ledger unavailable: PostgreSQL at /run/x: outer: no such socket"
        );
        // A cause already printed by its parent is not repeated.
        let io = std::io::Error::other("disk I/O error");
        let error = LedgerError::unavailable("SQLite: disk I/O error", io);
        assert_eq!(
            ErrorChain(&error).to_string(),
            "ledger unavailable: SQLite: disk I/O error"
        );
        assert_eq!(
            ErrorChain(&LedgerError::AccountNotFound).to_string(),
            "account not found"
        );
    }

    #[tokio::test]
    async fn causes_are_read_from_the_source_chain() {
        use deadpool_postgres::{PoolError, TimeoutType};
        let cause = |e: LedgerError| e.unavailable_cause();
        assert_eq!(cause(LedgerError::AccountNotFound), None);
        assert_eq!(
            cause(LedgerError::unavailable(
                "x",
                PoolError::Timeout(TimeoutType::Wait)
            )),
            Some(UnavailableCause::PoolTimeout)
        );
        assert_eq!(
            cause(LedgerError::unavailable(
                "x",
                PoolError::Timeout(TimeoutType::Create)
            )),
            Some(UnavailableCause::Connect)
        );
        let elapsed = tokio::time::timeout(std::time::Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err();
        // Found below another error too.
        assert_eq!(
            cause(LedgerError::unavailable("x", Outer2(elapsed))),
            Some(UnavailableCause::NoAnswer)
        );
        let busy = deadpool_sqlite::rusqlite::Error::SqliteFailure(
            deadpool_sqlite::rusqlite::ffi::Error::new(5), // SQLITE_BUSY
            None,
        );
        assert_eq!(
            cause(LedgerError::unavailable("x", busy)),
            Some(UnavailableCause::Busy)
        );
        assert_eq!(
            cause(LedgerError::unavailable(
                "x",
                ConnectFailed(std::io::Error::other("refused").into())
            )),
            Some(UnavailableCause::Connect)
        );
        assert_eq!(
            cause(LedgerError::unavailable_because("x")),
            Some(UnavailableCause::Database)
        );
        assert_eq!(
            cause(LedgerError::unavailable("x", QueueRefusal::Full)),
            Some(UnavailableCause::QueueFull)
        );
        assert_eq!(
            cause(LedgerError::unavailable("x", QueueRefusal::WaitedTooLong)),
            Some(UnavailableCause::QueueTimeout)
        );
        // A member of a failed batch is counted under the batch's cause.
        let batch = LedgerError::unavailable("x", PoolError::Timeout(TimeoutType::Wait));
        let member = LedgerError::unavailable(
            "y",
            super::super::batch::BatchFailed {
                members: 2,
                error: std::sync::Arc::new(batch),
            },
        );
        assert_eq!(cause(member), Some(UnavailableCause::PoolTimeout));
    }

    #[derive(Debug, Error)]
    #[error("outer")]
    struct Outer2(#[source] tokio::time::error::Elapsed);
}
