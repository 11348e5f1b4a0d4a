//! What an audit finds in a ledger: each account's stored balance against
//! its transactions, and every stored posting. The ledgers fill these
//! ([`Ledger::audit`](crate::ledger::Ledger::audit),
//! [`Ledger::postings`](crate::ledger::Ledger::postings)); they depend on
//! the domain only.

use crate::domain::Kind;

/// One row of an audit: an account's stored balance against the sum of its
/// posted transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAudit {
    /// The account.
    pub account: i32,
    /// Overdraft limit, cents.
    pub limit: i64,
    /// Stored balance, cents.
    pub balance: i64,
    /// Σ credits − Σ debits over the account's transactions, cents
    /// (computed in 128-bit arithmetic, so it cannot overflow).
    pub transactions_sum: i128,
    /// How many transactions the account has.
    pub transactions: i64,
}

impl AccountAudit {
    /// True when the balance equals the sum of the account's transactions
    /// and is not below `-limit` (docs/contract.md §3).
    pub fn holds(&self) -> bool {
        i128::from(self.balance) == self.transactions_sum && self.balance >= -self.limit
    }
}

/// One stored transaction row, as listed by [`Ledger::postings`](crate::ledger::Ledger::postings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRow {
    /// The account.
    pub account: i32,
    /// Credit or debit.
    pub kind: Kind,
    /// Amount, cents.
    pub amount: i64,
    /// Description as posted.
    pub description: String,
}

/// Result of [`Ledger::audit`](crate::ledger::Ledger::audit): every account, plus transaction rows that
/// reference no account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// One entry per account, by id.
    pub accounts: Vec<AccountAudit>,
    /// Transactions whose `account_id` names no account.
    pub orphan_transactions: i64,
}

impl AuditReport {
    /// True when every account holds and there is no orphan transaction.
    pub fn holds(&self) -> bool {
        self.orphan_transactions == 0 && self.accounts.iter().all(AccountAudit::holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_holds_only_when_sum_matches_and_within_limit() {
        let row = |balance, sum| AccountAudit {
            account: 1,
            limit: 100,
            balance,
            transactions_sum: sum,
            transactions: 1,
        };
        assert!(row(-100, -100).holds());
        assert!(!row(-101, -101).holds());
        assert!(!row(5, 6).holds());
        let report = AuditReport {
            accounts: vec![row(0, 0)],
            orphan_transactions: 1,
        };
        assert!(!report.holds());
    }
}
