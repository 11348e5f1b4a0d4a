//! Stored codes: the one place where a value kept in the database as a
//! short text code is converted to and from its type, for both drivers
//! (tokio-postgres and rusqlite).
//!
//! | type | column | codes |
//! |---|---|---|
//! | [`Kind`] | `transactions.kind` | `c`, `d` (docs/contract.md §2.1) |
//! | [`RecordedOutcome`] | `idempotency_keys.outcome` | `posted`, `limit_exceeded` |
//!
//! A code that is none of these (the migrations' `CHECK` constraints keep
//! them out, so only a damaged or hand-edited database has one) is an error
//! when read — [`UnknownCode`], which the ledger reports as
//! [`LedgerError::Unavailable`](super::LedgerError::Unavailable) — and never
//! read as some other value.

use std::error::Error;

use bytes::BytesMut;
use deadpool_sqlite::rusqlite::types::{
    FromSql as SqliteFromSql, FromSqlError, FromSqlResult, ToSql as SqliteToSql, ToSqlOutput,
    ValueRef,
};
use thiserror::Error;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use super::idempotency::RecordedOutcome;
use crate::domain::Kind;

/// A stored code that names no value of its type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stored {what} {code:?} is not one of {expected:?}")]
pub struct UnknownCode {
    /// What the code stands for, e.g. `transaction kind`.
    pub what: &'static str,
    /// The code as read from the database.
    pub code: String,
    /// The codes that are known.
    pub expected: Vec<&'static str>,
}

/// A type stored as one of a fixed set of text codes.
pub trait StoredCode: Sized + Copy + 'static {
    /// What the code stands for, for error messages.
    const WHAT: &'static str;
    /// Every value, to list the known codes and to decode.
    const ALL: &'static [Self];
    /// The code stored for this value.
    fn code(self) -> &'static str;

    /// The value whose code is `code`. Errors: [`UnknownCode`].
    fn from_code(code: &str) -> Result<Self, UnknownCode> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.code() == code)
            .ok_or_else(|| UnknownCode {
                what: Self::WHAT,
                code: code.to_owned(),
                expected: Self::ALL.iter().map(|value| value.code()).collect(),
            })
    }
}

impl StoredCode for Kind {
    const WHAT: &'static str = "transaction kind";
    const ALL: &'static [Self] = &[Kind::Credit, Kind::Debit];
    fn code(self) -> &'static str {
        Kind::code(self)
    }
}

impl StoredCode for RecordedOutcome {
    const WHAT: &'static str = "idempotency outcome";
    const ALL: &'static [Self] = &[RecordedOutcome::Posted, RecordedOutcome::LimitExceeded];
    fn code(self) -> &'static str {
        RecordedOutcome::code(self)
    }
}

/// Implements both drivers' conversions for a [`StoredCode`] type.
macro_rules! stored_code {
    ($type:ty) => {
        impl ToSql for $type {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
                ToSql::to_sql(&StoredCode::code(*self), ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $type {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                let code = <&str as FromSql>::from_sql(ty, raw)?;
                Ok(<$type as StoredCode>::from_code(code)?)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }

        impl SqliteToSql for $type {
            fn to_sql(&self) -> deadpool_sqlite::rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(StoredCode::code(*self)))
            }
        }

        impl SqliteFromSql for $type {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                <$type as StoredCode>::from_code(value.as_str()?)
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

stored_code!(Kind);
stored_code!(RecordedOutcome);

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres_round_trip<T>(value: T) -> T
    where
        T: ToSql + for<'a> FromSql<'a>,
    {
        let mut out = BytesMut::new();
        value.to_sql_checked(&Type::TEXT, &mut out).unwrap();
        T::from_sql(&Type::TEXT, &out).unwrap()
    }

    #[test]
    fn kinds_round_trip_through_both_drivers() {
        for kind in [Kind::Credit, Kind::Debit] {
            assert_eq!(postgres_round_trip(kind), kind);
            let stored = SqliteToSql::to_sql(&kind).unwrap();
            let ToSqlOutput::Borrowed(value) = stored else {
                panic!("a text code is borrowed");
            };
            assert_eq!(Kind::column_result(value).unwrap(), kind);
        }
        let mut out = BytesMut::new();
        Kind::Credit.to_sql_checked(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"c");
    }

    #[test]
    fn outcomes_round_trip_through_both_drivers() {
        for outcome in [RecordedOutcome::Posted, RecordedOutcome::LimitExceeded] {
            assert_eq!(postgres_round_trip(outcome), outcome);
            let ToSqlOutput::Borrowed(value) = SqliteToSql::to_sql(&outcome).unwrap() else {
                panic!("a text code is borrowed");
            };
            assert_eq!(RecordedOutcome::column_result(value).unwrap(), outcome);
        }
    }

    #[test]
    fn an_unknown_code_is_an_error_not_a_debit() {
        for bad in ["x", "", "C", "D", "debit", "c "] {
            let error = <Kind as FromSql>::from_sql(&Type::TEXT, bad.as_bytes()).unwrap_err();
            assert!(
                error.to_string().contains("stored transaction kind"),
                "{error}"
            );
            assert!(Kind::column_result(ValueRef::Text(bad.as_bytes())).is_err());
        }
        for bad in ["", "Posted", "refused"] {
            assert!(<RecordedOutcome as FromSql>::from_sql(&Type::TEXT, bad.as_bytes()).is_err());
            assert!(RecordedOutcome::column_result(ValueRef::Text(bad.as_bytes())).is_err());
        }
        // Not a text value at all.
        assert!(Kind::column_result(ValueRef::Integer(1)).is_err());
        assert!(!<Kind as FromSql>::accepts(&Type::INT4));
    }
}
