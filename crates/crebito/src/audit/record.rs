//! Checking a client's record of postings against the ledger: every
//! acknowledged posting must be stored exactly once, nothing refused may be
//! stored, and a posting whose answer was lost is stored at most once.
//!
//! Used by `crebito audit --acknowledged FILE` after fault tests.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::PostingRow;

/// What the client learned about one posting it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered 200: it must be stored exactly once.
    Acknowledged,
    /// Answered 422 (limit): it must not be stored.
    Refused,
    /// No answer (timeouts, connection errors, 5xx after every retry): it
    /// may be stored, at most once.
    Unknown,
}

/// One line of a client record (JSON Lines): a posting identified by its
/// account and unique `descricao`, with the wire names of docs/contract.md §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Account id.
    pub account: i32,
    /// Unique description of the posting.
    pub descricao: String,
    /// `"c"` or `"d"`.
    pub tipo: String,
    /// Amount, cents.
    pub valor: i64,
    /// What the client learned.
    pub outcome: Outcome,
}

/// Result of [`check`]: counts and the first violations found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordCheck {
    /// Acknowledged postings found exactly once.
    pub acknowledged_ok: usize,
    /// Refused postings (correctly) absent.
    pub refused_ok: usize,
    /// Unknown-outcome postings that were stored (once).
    pub unknown_stored: usize,
    /// Unknown-outcome postings that were not stored.
    pub unknown_absent: usize,
    /// Human-readable violations (at most 20 kept), empty when all holds.
    pub violations: Vec<String>,
    /// Total number of violations.
    pub violation_count: usize,
}

impl RecordCheck {
    /// True when no record was violated.
    pub fn holds(&self) -> bool {
        self.violation_count == 0
    }

    fn violation(&mut self, message: String) {
        self.violation_count += 1;
        if self.violations.len() < 20 {
            self.violations.push(message);
        }
    }
}

/// Checks `records` against the stored `postings`.
pub fn check(records: &[ClientRecord], postings: &[PostingRow]) -> RecordCheck {
    let mut stored: HashMap<(i32, &str), Vec<&PostingRow>> = HashMap::new();
    for row in postings {
        stored
            .entry((row.account, row.description.as_str()))
            .or_default()
            .push(row);
    }
    let mut result = RecordCheck::default();
    for record in records {
        let rows = stored
            .get(&(record.account, record.descricao.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let what = format!("account {} {:?}", record.account, record.descricao);
        let matches =
            |row: &&PostingRow| row.amount == record.valor && row.kind.code() == record.tipo;
        match (record.outcome, rows.len()) {
            (Outcome::Acknowledged, 1) if rows.iter().all(matches) => result.acknowledged_ok += 1,
            (Outcome::Acknowledged, 1) => {
                result.violation(format!("{what}: stored with another amount or kind"))
            }
            (Outcome::Acknowledged, 0) => {
                result.violation(format!("{what}: acknowledged but missing"))
            }
            (Outcome::Acknowledged, n) => {
                result.violation(format!("{what}: acknowledged once, stored {n} times"))
            }
            (Outcome::Refused, 0) => result.refused_ok += 1,
            (Outcome::Refused, n) => {
                result.violation(format!("{what}: refused but stored {n} times"))
            }
            (Outcome::Unknown, 0) => result.unknown_absent += 1,
            (Outcome::Unknown, 1) => result.unknown_stored += 1,
            (Outcome::Unknown, n) => result.violation(format!("{what}: stored {n} times")),
        }
    }
    result
}

/// A line of a client record that is not a [`ClientRecord`].
#[derive(Debug, Error)]
#[error("line {line}")]
pub struct RecordLineError {
    /// The line's number, from 1.
    pub line: usize,
    /// Why it is not a record.
    #[source]
    pub source: serde_json::Error,
}

/// Parses a JSON Lines client record; blank lines are skipped.
/// Errors: the first line that is not a [`ClientRecord`], with its number.
pub fn parse_records(text: &str) -> Result<Vec<ClientRecord>, RecordLineError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| RecordLineError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;

    fn row(account: i32, description: &str, amount: i64) -> PostingRow {
        PostingRow {
            account,
            kind: Kind::Credit,
            amount,
            description: description.into(),
        }
    }

    fn record(account: i32, descricao: &str, outcome: Outcome) -> ClientRecord {
        ClientRecord {
            account,
            descricao: descricao.into(),
            tipo: "c".into(),
            valor: 5,
            outcome,
        }
    }

    #[test]
    fn each_outcome_has_its_rule() {
        let postings = [
            row(1, "a", 5),
            row(1, "b", 5),
            row(1, "b", 5),
            row(2, "a", 6),
            row(1, "u", 5),
        ];
        let ok = check(
            &[
                record(1, "a", Outcome::Acknowledged),
                record(1, "r", Outcome::Refused),
                record(1, "u", Outcome::Unknown),
                record(1, "v", Outcome::Unknown),
            ],
            &postings,
        );
        assert!(ok.holds(), "{ok:?}");
        assert_eq!(
            (
                ok.acknowledged_ok,
                ok.refused_ok,
                ok.unknown_stored,
                ok.unknown_absent
            ),
            (1, 1, 1, 1)
        );

        let bad = check(
            &[
                record(1, "b", Outcome::Acknowledged), // twice
                record(1, "missing", Outcome::Acknowledged),
                record(2, "a", Outcome::Acknowledged), // amount 6, not 5
                record(1, "a", Outcome::Refused),      // stored
                record(1, "b", Outcome::Unknown),      // twice
            ],
            &postings,
        );
        assert_eq!(bad.violation_count, 5, "{bad:?}");
        assert!(!bad.holds());
    }

    #[test]
    fn records_parse_from_json_lines() {
        let text = "{\"account\":1,\"descricao\":\"x\",\"tipo\":\"c\",\"valor\":5,\"outcome\":\"acknowledged\"}\n\n\
                    {\"account\":2,\"descricao\":\"y\",\"tipo\":\"d\",\"valor\":7,\"outcome\":\"unknown\"}\n";
        let records = parse_records(text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].outcome, Outcome::Unknown);
        let error = parse_records("\n{\"account\":1}").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().starts_with("line 2"));
    }
}
