//! The audit's report as text tables, as `crebito audit` prints them.

use std::io::{self, Write};
use std::path::Path;

use super::{AuditReport, RecordCheck};

/// One line per account (limit, balance, Σ of its postings, count, `ok` or
/// `FAILED`; amounts in cents), then the number of transactions without an
/// account.
pub fn write_accounts(out: &mut impl Write, report: &AuditReport) -> io::Result<()> {
    writeln!(
        out,
        "{:>8} {:>14} {:>16} {:>20} {:>8}  result",
        "account", "limit", "balance", "sum of postings", "postings"
    )?;
    for a in &report.accounts {
        writeln!(
            out,
            "{:>8} {:>14} {:>16} {:>20} {:>8}  {}",
            a.account,
            a.limit,
            a.balance,
            a.transactions_sum,
            a.transactions,
            if a.holds() { "ok" } else { "FAILED" }
        )?;
    }
    writeln!(
        out,
        "transactions without an account: {}",
        report.orphan_transactions
    )
}

/// The counts of a client record's check against the ledger (read from
/// `path`), then each violation kept, one per line.
pub fn write_record_check(
    out: &mut impl Write,
    path: &Path,
    check: &RecordCheck,
) -> io::Result<()> {
    writeln!(
        out,
        "client record {}: {} acknowledged stored once, {} refused absent, \
         {} unknown stored, {} unknown absent, {} violations",
        path.display(),
        check.acknowledged_ok,
        check.refused_ok,
        check.unknown_stored,
        check.unknown_absent,
        check.violation_count
    )?;
    for violation in &check.violations {
        writeln!(out, "  {violation}")?;
    }
    Ok(())
}
