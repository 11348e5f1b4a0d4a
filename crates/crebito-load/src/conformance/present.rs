//! The check report as text (one block per check) and as JSON (`--json`).

use std::fmt::Write as _;

use super::{CheckReport, Origin, Status, Tally};

/// The report as text: the targets, the starting state, then per check its
/// status, name, rule and source, and on failure why, with the exact
/// requests and responses; a count line at the end.
pub fn text(report: &CheckReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "crebito-load check {} — docs/contract.md against {}",
        env!("CARGO_PKG_VERSION"),
        report.base_urls.join(", ")
    );
    if report.starting_state.fresh {
        let _ = writeln!(o, "ledger: freshly seeded");
    } else {
        let _ = writeln!(
            o,
            "ledger: not freshly seeded ({}); the checks about the seed are skipped",
            report.starting_state.problems().join("; ")
        );
    }
    for c in &report.checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        let whose = match (c.origin, c.challenge_allows) {
            (Origin::Challenge, _) => "the challenge's rule".to_string(),
            (Origin::Project, Some(allows)) => {
                format!("this project's stricter choice; {allows}")
            }
            (Origin::Project, None) => "this project's stricter choice".to_string(),
        };
        let _ = writeln!(o, "\n{tag}  {}: {}", c.name, c.rule);
        let _ = writeln!(o, "      source: {} ({whose})", c.source);
        let label = match c.status {
            Status::Fail => "why",
            _ => "found",
        };
        let _ = writeln!(o, "      {label}: {}", c.detail);
        for ex in &c.evidence {
            for line in ex.render().lines() {
                let _ = writeln!(o, "        | {line}");
            }
        }
    }
    let tally = |t: &Tally| {
        let mut line = format!("{}/{} passed", t.passed, t.checks);
        if t.failed > 0 {
            let _ = write!(line, ", {} failed", t.failed);
        }
        if t.skipped > 0 {
            let _ = write!(line, ", {} skipped", t.skipped);
        }
        line
    };
    let c = &report.challenge_rules;
    let p = &report.stricter_rules;
    let _ = writeln!(o);
    let _ = writeln!(o, "the challenge's rules: {}", tally(c));
    if p.checks > 0 {
        let counted = if report.strict {
            "counted in the verdict (--strict)"
        } else {
            "not counted in the verdict; --strict counts them"
        };
        let _ = writeln!(
            o,
            "stricter rules (this project's choices, where the challenge leaves room): {} — {counted}",
            tally(p)
        );
    }
    let verdict = if report.ok() { "PASS" } else { "FAIL" };
    let why = match (c.failed, p.failed, report.strict) {
        (0, 0, _) => "no rule failed".to_string(),
        (0, n, false) => format!(
            "every rule of the challenge holds ({n} stricter rule{} failed, not counted)",
            if n == 1 { "" } else { "s" }
        ),
        (0, n, true) => format!(
            "{n} stricter rule{} failed (--strict)",
            if n == 1 { "" } else { "s" }
        ),
        (n, _, _) => format!("{n} of the challenge's rules failed",),
    };
    let _ = writeln!(
        o,
        "verdict: {verdict} — {why}; {} checks: {} passed, {} failed, {} skipped",
        report.checks.len(),
        report.passed,
        report.failed,
        report.skipped
    );
    o
}

/// The report as pretty JSON with a final newline.
///
/// Errors: only if serde_json refuses a value (never in practice).
pub fn json(report: &CheckReport) -> std::io::Result<String> {
    serde_json::to_string_pretty(report)
        .map(|j| j + "\n")
        .map_err(std::io::Error::other)
}
