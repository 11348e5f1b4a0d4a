//! What an `Idempotency-Key` remembers (docs/contract.md §2.6), the same
//! for both ledgers: the first request's fingerprint and outcome, stored
//! atomically with its posting, and the answer a later request with the
//! same key gets.

use super::LedgerError;
use crate::domain::{Balance, PostingError, Transaction};

/// The outcome of the first request with a key (column
/// `idempotency_keys.outcome`; its stored codes convert in
/// [`codes`](super::codes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedOutcome {
    /// Posted (200); the balance right after it is recorded with it.
    Posted,
    /// Refused because the debit would exceed the limit (422); nothing was
    /// posted.
    LimitExceeded,
}

impl RecordedOutcome {
    /// The stored code: `posted` or `limit_exceeded`.
    pub fn code(self) -> &'static str {
        match self {
            RecordedOutcome::Posted => "posted",
            RecordedOutcome::LimitExceeded => "limit_exceeded",
        }
    }
}

/// One recorded key, as read back from `idempotency_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    /// [`Transaction::fingerprint`] of the first request.
    pub fingerprint: String,
    /// What the first request got.
    pub outcome: RecordedOutcome,
    /// Balance right after the posting, cents; `None` unless
    /// [`RecordedOutcome::Posted`].
    pub balance: Option<i64>,
    /// The account's overdraft limit when the key was recorded, cents.
    pub limit: i64,
}

/// What to do with a posting that carries an `Idempotency-Key`, given what
/// is recorded under the key on its account.
#[derive(Debug)]
pub enum NextAction {
    /// The key is new: post, and record the outcome atomically with it.
    Post,
    /// The key is recorded: give this answer and post nothing.
    Replay(Result<Balance, LedgerError>),
}

impl NextAction {
    /// Decides from the key's record (`None` when the key is new).
    ///
    /// A recorded key answers as its first request did — the same balance,
    /// or the same refusal — when `transaction` is that request (same
    /// fingerprint); [`PostingError::IdempotencyKeyReused`] when it is
    /// another; [`LedgerError::Unavailable`] when the record is damaged (a
    /// `posted` outcome without its balance).
    pub fn for_key(recorded: Option<RecordedKey>, transaction: &Transaction) -> NextAction {
        let Some(recorded) = recorded else {
            return NextAction::Post;
        };
        NextAction::Replay(if recorded.fingerprint != transaction.fingerprint() {
            Err(PostingError::IdempotencyKeyReused.into())
        } else {
            match (recorded.outcome, recorded.balance) {
                (RecordedOutcome::Posted, Some(balance)) => Ok(Balance {
                    balance,
                    limit: recorded.limit,
                }),
                (RecordedOutcome::Posted, None) => Err(LedgerError::unavailable_because(
                    "a recorded posted outcome has no balance",
                )),
                (RecordedOutcome::LimitExceeded, _) => Err(PostingError::LimitExceeded.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Description, Kind};

    fn transaction(cents: i64) -> Transaction {
        Transaction {
            amount: Amount::new(cents).unwrap(),
            kind: Kind::Debit,
            description: Description::new("x").unwrap(),
        }
    }

    fn recorded(outcome: RecordedOutcome, balance: Option<i64>) -> Option<RecordedKey> {
        Some(RecordedKey {
            fingerprint: transaction(5).fingerprint(),
            outcome,
            balance,
            limit: 100,
        })
    }

    #[test]
    fn a_new_key_posts() {
        assert!(matches!(
            NextAction::for_key(None, &transaction(5)),
            NextAction::Post
        ));
    }

    #[test]
    fn a_recorded_key_replays_its_answer() {
        let replay = |record, cents| match NextAction::for_key(record, &transaction(cents)) {
            NextAction::Replay(answer) => answer,
            NextAction::Post => panic!("a recorded key must not post"),
        };
        assert_eq!(
            replay(recorded(RecordedOutcome::Posted, Some(-5)), 5).unwrap(),
            Balance {
                balance: -5,
                limit: 100
            }
        );
        assert!(matches!(
            replay(recorded(RecordedOutcome::LimitExceeded, None), 5),
            Err(LedgerError::Refused(PostingError::LimitExceeded))
        ));
        assert!(matches!(
            replay(recorded(RecordedOutcome::Posted, Some(-5)), 6),
            Err(LedgerError::Refused(PostingError::IdempotencyKeyReused))
        ));
        assert!(matches!(
            replay(recorded(RecordedOutcome::Posted, None), 5),
            Err(LedgerError::Unavailable { .. })
        ));
    }
}
