//! The ledger's one error type, and how the drivers' errors become it.
//!
//! A database failure keeps its whole source chain (the driver's error, the
//! server's message, the I/O cause) so that the log can show it with
//! [`ErrorChain`]; clients only ever see that the service is unavailable.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use thiserror::Error;

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
}
