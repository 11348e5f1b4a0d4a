//! `crebito audit`: checking a ledger's books, read-only.
//!
//! * [`report`] — what a ledger's audit finds (each account's balance
//!   against its transactions, every stored posting); the ledgers fill it.
//! * [`record`] — checking a client's record of postings (as written by
//!   `crebito-faults`) against the stored postings.
//! * [`table`] — the findings as text tables.
//!
//! [`run`] puts them together for the command line.

use std::io::{self, Write};
use std::path::PathBuf;

use thiserror::Error;

use crate::config::AuditSettings;
use crate::ledger::{AnyLedger, Ledger, LedgerError};

pub mod record;
pub mod report;
pub mod table;

pub use record::{check, parse_records, ClientRecord, Outcome, RecordCheck, RecordLineError};
pub use report::{AccountAudit, AuditReport, PostingRow};

/// Why an audit could not run at all (`crebito audit` exits 2).
#[derive(Debug, Error)]
pub enum AuditError {
    /// The ledger cannot be opened or read; names what it tried to reach.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The client record file cannot be read.
    #[error("cannot read {}", path.display())]
    ReadRecord {
        /// The file given with `--acknowledged`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line of the client record is not a record.
    #[error("cannot read {}", path.display())]
    ParseRecord {
        /// The file given with `--acknowledged`.
        path: PathBuf,
        /// Which line, and why.
        #[source]
        source: RecordLineError,
    },
    /// The report cannot be written (e.g. stdout closed).
    #[error("cannot write the report")]
    Output(#[from] io::Error),
}

/// Opens the ledger read-only (nothing created or migrated), names it on
/// `out` (a SQLite file by its absolute path), writes the account table, and with `settings.acknowledged` checks that
/// client record too; ends with `audit passed` or `audit FAILED`.
///
/// Returns whether everything holds (docs/configuration.md: exit 0 or 1).
/// Errors: [`AuditError`] when the audit cannot run (exit 2).
pub async fn run(settings: &AuditSettings, out: &mut impl Write) -> Result<bool, AuditError> {
    let ledger = AnyLedger::open_existing(&settings.database_url, &settings.ledger).await?;
    writeln!(out, "auditing {}", ledger.describe())?;
    let report = ledger.audit().await?;
    table::write_accounts(out, &report)?;
    let mut holds = report.holds();
    if let Some(path) = &settings.acknowledged {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::ReadRecord {
            path: path.clone(),
            source,
        })?;
        let records = parse_records(&text).map_err(|source| AuditError::ParseRecord {
            path: path.clone(),
            source,
        })?;
        let postings = ledger.postings().await?;
        let check = check(&records, &postings);
        table::write_record_check(out, path, &check)?;
        holds &= check.holds();
    }
    writeln!(
        out,
        "{}",
        if holds {
            "audit passed"
        } else {
            "audit FAILED"
        }
    )?;
    Ok(holds)
}
