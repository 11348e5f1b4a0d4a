//! The presenters of a run: they only read the [`RunReport`] (the
//! [`Summary`](crate::summary::Summary) value and the series the charts draw)
//! that [`crate::run()`] produced.
//!
//! * [`text`] — the text summary printed at the end of a run.
//! * [`json`] — `--json` and `summary.json`.
//! * [`html`] — the self-contained `index.html`, drawn with [`svg`].
//! * [`compare`] — `crebito-load compare`: several runs side by side.
//! * [`mod@format`] — money, counts, milliseconds and escaping shared by all of them.

use std::path::Path;

use crate::RunReport;

pub mod compare;
pub mod format;
pub mod html;
pub mod json;
pub mod svg;
pub mod text;

/// Writes `index.html` and `summary.json` into `dir` (created if needed).
pub fn write(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("index.html"), html::render(report))?;
    std::fs::write(dir.join("summary.json"), json::render(&report.summary)?)?;
    Ok(())
}

/// Failed checks listed as the reason of a fine.
pub const TOP_CHECKS: usize = 3;

/// Why a run was fined: one entry per fine, in words, with the failed
/// checks behind it. The text summary and the HTML score box both show it.
#[derive(Debug, Clone, PartialEq)]
pub struct FineReason {
    /// `"fine A"` or `"fine B"` (docs/contract.md §6).
    pub fine: &'static str,
    /// The fine, in US cents.
    pub cents: u64,
    /// What caused it, in words.
    pub because: String,
    /// The most frequent failed checks behind it: (1-based position in
    /// [`Summary::failures`](crate::summary::Summary::failures), which is
    /// the number the presenters show and link to; check name; count).
    pub checks: Vec<(usize, String, u64)>,
    /// Whether the target was not freshly seeded before the run, which
    /// alone fails the opening checks.
    pub not_fresh: bool,
}

/// The reasons of every fine of `summary` (empty for a full payout): fine
/// A with the requests that were slow or failed and the top failed checks;
/// fine B with the top failed consistency checks.
pub fn fine_reasons(summary: &crate::summary::Summary) -> Vec<FineReason> {
    use format::group_thousands;
    let s = &summary.score;
    let top = |inconsistency_only: bool| -> Vec<(usize, String, u64)> {
        summary
            .failures
            .iter()
            .enumerate()
            .filter(|(_, f)| f.inconsistency || !inconsistency_only)
            .take(TOP_CHECKS)
            .map(|(i, f)| (i + 1, f.check.clone(), f.count))
            .collect()
    };
    let not_fresh = summary.starting_state.as_ref().is_some_and(|st| !st.fresh);
    let mut reasons = Vec::new();
    if s.fine_latency_cents > 0 {
        let slow = summary.ranges.from_250_to_1200ms + summary.ranges.over_1200ms;
        reasons.push(FineReason {
            fine: "fine A",
            cents: s.fine_latency_cents,
            because: format!(
                "{:.2} % of requests OK under 250 ms (98 % pays in full): {} OK took 250 ms or more, {} KO",
                summary.pct_under_250ms,
                group_thousands(slow),
                group_thousands(summary.ko)
            ),
            checks: top(false),
            not_fresh,
        });
    }
    if s.fine_inconsistency_cents > 0 {
        reasons.push(FineReason {
            fine: "fine B",
            cents: s.fine_inconsistency_cents,
            because: format!(
                "{} failed consistency check{}",
                group_thousands(s.inconsistencies),
                if s.inconsistencies == 1 { "" } else { "s" }
            ),
            checks: top(true),
            not_fresh,
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Score;
    use crate::stats::FailureGroup;
    use crate::summary::Summary;

    fn failure(check: &str, count: u64, inconsistency: bool) -> FailureGroup {
        FailureGroup {
            check: check.to_string(),
            groups: vec!["débitos".to_string()],
            count,
            inconsistency,
            examples: Vec::new(),
        }
    }

    #[test]
    fn every_fine_names_its_top_checks() {
        let mut summary = Summary {
            requests: 100,
            ok: 88,
            ko: 12,
            failures: vec![
                failure("status.find.in(200)", 6, false),
                failure("jmesPath(saldo.total).find.is(0)", 3, true),
                failure("connection refused", 2, false),
                failure(
                    "jmesPath(saldo).find.ConsistenciaSaldoLimite - Transação",
                    1,
                    true,
                ),
            ],
            ..Summary::default()
        };
        summary.ranges.under_250ms = 80;
        summary.ranges.from_250_to_1200ms = 8;
        summary.set_score(Score::compute(80, 100, 4));
        let reasons = fine_reasons(&summary);
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons[0].fine, "fine A");
        assert_eq!(reasons[0].cents, summary.score.fine_latency_cents);
        assert!(reasons[0]
            .because
            .contains("8 OK took 250 ms or more, 12 KO"));
        let numbers: Vec<usize> = reasons[0].checks.iter().map(|c| c.0).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(reasons[1].fine, "fine B");
        assert!(reasons[1]
            .because
            .starts_with("4 failed consistency checks"));
        assert_eq!(
            reasons[1].checks,
            vec![
                (2, "jmesPath(saldo.total).find.is(0)".to_string(), 3),
                (
                    4,
                    "jmesPath(saldo).find.ConsistenciaSaldoLimite - Transação".to_string(),
                    1
                )
            ]
        );
        // A perfect run has no reason.
        let mut perfect = Summary::default();
        perfect.set_score(Score::compute(10, 10, 0));
        assert!(fine_reasons(&perfect).is_empty());
        assert!(!reasons[0].not_fresh);
        summary.starting_state = Some(crate::starting_state::StartingState::default());
        assert!(fine_reasons(&summary).iter().all(|r| r.not_fresh));
    }
}
