//! The thresholds a fault scenario sets on a run (`--allow`, `--max-ms`,
//! `--min-share`, `--min-count`, `--require-final`, `--min-refused`,
//! `--max-unavailable-ms`), judged
//! against the run's [`Summary`]. Each check yields one line, `ok: …` or
//! `FAIL: …`, so that `scripts/faults` prints them and needs no JSON tool.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Summary;

/// The attempt kinds that are a final answer to a posting.
const FINAL: [&str; 2] = ["200", "422"];

/// A set of attempt kinds joined by `+` (`200+422`), with a number:
/// `200+422=90`. Kinds are those of the summary's `attempts` (`200`, `503`,
/// `timeout`, `connect`, `io`, …); `lost` stands for every attempt that got
/// no final answer (anything but 200 and 422).
#[derive(Debug, Clone, PartialEq)]
pub struct KindsAt {
    /// The kinds, as given.
    pub kinds: Vec<String>,
    /// The number after `=`: milliseconds, a percentage or a count.
    pub value: f64,
}

impl FromStr for KindsAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kinds, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KIND[+KIND...]=NUMBER"))?;
        let kinds: Vec<String> = kinds.split('+').map(str::to_owned).collect();
        if kinds.iter().any(|k| k.is_empty()) {
            return Err(format!("{s:?}: empty attempt kind"));
        }
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{s:?}: {value:?} is not a number >= 0"))?;
        Ok(Self { kinds, value })
    }
}

impl fmt::Display for KindsAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kinds.join("+"))
    }
}

/// The thresholds of one run. Empty: only the contract is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// Attempt kinds allowed; any other kind fails the run. Empty: any.
    pub allow: Vec<String>,
    /// The slowest attempt of these kinds must take less than this, ms.
    pub max_ms: Vec<KindsAt>,
    /// Attempts of these kinds must be at least this share of all, percent.
    pub min_share: Vec<KindsAt>,
    /// At least this many attempts of these kinds.
    pub min_count: Vec<KindsAt>,
    /// Every posting must get a final answer (no `unknown` outcome).
    pub require_final: bool,
    /// At least this many postings refused (422).
    pub min_refused: Option<u64>,
    /// The longest stretch between two final answers (200 or 422), as the
    /// clients saw it, must be shorter than this, milliseconds.
    pub max_unavailable_ms: Option<f64>,
}

/// One judged check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether it held.
    pub ok: bool,
    /// What was checked and what was seen.
    pub message: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.ok { "ok" } else { "FAIL" };
        write!(f, "{tag}: {}", self.message)
    }
}

/// Whether attempt `kind` is one of `kinds` (`lost`: any non-final kind).
fn matches(kind: &str, kinds: &[String]) -> bool {
    kinds
        .iter()
        .any(|k| k == kind || (k == "lost" && !FINAL.contains(&kind)))
}

/// Attempts of `kinds` in `attempts`.
fn count(attempts: &BTreeMap<String, u64>, kinds: &[String]) -> u64 {
    attempts
        .iter()
        .filter(|(kind, _)| matches(kind, kinds))
        .map(|(_, n)| n)
        .sum()
}

/// `200: 80, 422: 10`.
fn listing(attempts: &BTreeMap<String, u64>) -> String {
    attempts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Thresholds {
    /// Judges `summary`: first the contract (no violation recorded), then
    /// each threshold in the order of the fields above.
    pub fn judge(&self, summary: &Summary) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let mut check = |ok: bool, message: String| verdicts.push(Verdict { ok, message });
        check(
            summary.contract_violations.is_empty(),
            match summary.contract_violations.len() {
                0 => "no answer broke the contract".to_owned(),
                n => format!(
                    "{n} answers broke the contract, e.g. {}",
                    summary.contract_violations[0]
                ),
            },
        );
        if !self.allow.is_empty() {
            let others: BTreeMap<String, u64> = summary
                .attempts
                .iter()
                .filter(|(k, _)| !self.allow.contains(k))
                .map(|(k, n)| (k.clone(), *n))
                .collect();
            let not_allowed = if others.is_empty() {
                String::new()
            } else {
                format!("; not allowed: {}", listing(&others))
            };
            check(
                others.is_empty(),
                format!(
                    "every attempt answered {} (seen {}){not_allowed}",
                    self.allow.join("/"),
                    listing(&summary.attempts),
                ),
            );
        }
        for limit in &self.max_ms {
            let slowest = summary
                .max_latency_ms
                .iter()
                .filter(|(kind, _)| matches(kind, &limit.kinds))
                .map(|(_, ms)| *ms)
                .reduce(f64::max);
            let message = match slowest {
                None => format!("no {limit} attempt, so none slower than {} ms", limit.value),
                Some(ms) => format!(
                    "slowest {limit} attempt {ms:.0} ms (limit: under {} ms)",
                    limit.value
                ),
            };
            check(slowest.is_none_or(|ms| ms < limit.value), message);
        }
        let total: u64 = summary.attempts.values().sum();
        for share in &self.min_share {
            let n = count(&summary.attempts, &share.kinds);
            let percent = if total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / total as f64
            };
            check(
                total > 0 && percent >= share.value,
                format!(
                    "{n} of {total} attempts {share} ({percent:.1} %, at least {} %)",
                    share.value
                ),
            );
        }
        for min in &self.min_count {
            let n = count(&summary.attempts, &min.kinds);
            check(
                n as f64 >= min.value,
                format!("{n} attempts {min} (at least {})", min.value),
            );
        }
        if self.require_final {
            check(
                summary.unknown == 0,
                format!(
                    "every posting got a final answer ({} of {} without one)",
                    summary.unknown, summary.postings
                ),
            );
        }
        if let Some(min) = self.min_refused {
            check(
                summary.refused >= min,
                format!(
                    "{} postings refused (422), at least {min}: refusals are part of the record",
                    summary.refused
                ),
            );
        }
        if let Some(max) = self.max_unavailable_ms {
            let longest = summary.availability.longest_gap_ms;
            check(
                longest < max,
                format!(
                    "longest stretch without a final answer {longest:.0} ms (limit: under {max} ms)"
                ),
            );
        }
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(attempts: &[(&str, u64, f64)]) -> Summary {
        let mut s = Summary {
            postings: 10,
            acknowledged: 8,
            refused: 2,
            ..Summary::default()
        };
        for (kind, n, max) in attempts {
            s.attempts.insert((*kind).to_owned(), *n);
            s.max_latency_ms.insert((*kind).to_owned(), *max);
        }
        s.availability.longest_gap_ms = 1499.0;
        s
    }

    fn failed(verdicts: &[Verdict]) -> Vec<String> {
        verdicts
            .iter()
            .filter(|v| !v.ok)
            .map(|v| v.message.clone())
            .collect()
    }

    #[test]
    fn parses_kinds_with_a_number() {
        assert_eq!(
            "200+422=90".parse::<KindsAt>(),
            Ok(KindsAt {
                kinds: vec!["200".into(), "422".into()],
                value: 90.0
            })
        );
        assert_eq!("503=2999.5".parse::<KindsAt>().unwrap().value, 2999.5);
        for bad in ["200", "=5", "200+=5", "200=x", "200=-1", "200=inf"] {
            assert!(bad.parse::<KindsAt>().is_err(), "{bad}");
        }
    }

    #[test]
    fn no_thresholds_checks_only_the_contract() {
        let mut s = summary(&[("200", 8, 5.0), ("500", 1, 1.0)]);
        assert!(failed(&Thresholds::default().judge(&s)).is_empty());
        s.contract_violations.push("unexpected 500: null".into());
        assert_eq!(
            failed(&Thresholds::default().judge(&s)),
            ["1 answers broke the contract, e.g. unexpected 500: null"]
        );
    }

    #[test]
    fn each_threshold_fails_just_past_its_bound() {
        let s = summary(&[
            ("200", 80, 12.0),
            ("422", 10, 9.0),
            ("503", 5, 2999.0),
            ("timeout", 5, 2000.0),
        ]);
        let holds = Thresholds {
            allow: ["200", "422", "503", "timeout"].map(String::from).to_vec(),
            max_ms: vec!["503=3000".parse().unwrap(), "200+422=13".parse().unwrap()],
            min_share: vec!["200+422=90".parse().unwrap()],
            min_count: vec!["503=5".parse().unwrap(), "lost=10".parse().unwrap()],
            require_final: true,
            min_refused: Some(2),
            max_unavailable_ms: Some(1500.0),
        };
        assert!(failed(&holds.judge(&s)).is_empty(), "{:?}", holds.judge(&s));

        let breaks = Thresholds {
            allow: ["200", "422", "503"].map(String::from).to_vec(),
            max_ms: vec!["503=2999".parse().unwrap(), "200+422=12".parse().unwrap()],
            min_share: vec!["200+422=90.1".parse().unwrap()],
            min_count: vec!["503=6".parse().unwrap(), "lost=11".parse().unwrap()],
            require_final: true,
            min_refused: Some(3),
            max_unavailable_ms: Some(1499.0),
        };
        let mut unknown = s.clone();
        unknown.unknown = 1;
        let failures = failed(&breaks.judge(&unknown));
        assert_eq!(
            failures,
            [
                "every attempt answered 200/422/503 (seen 200: 80, 422: 10, 503: 5, timeout: 5); not allowed: timeout: 5",
                "slowest 503 attempt 2999 ms (limit: under 2999 ms)",
                "slowest 200+422 attempt 12 ms (limit: under 12 ms)",
                "90 of 100 attempts 200+422 (90.0 %, at least 90.1 %)",
                "5 attempts 503 (at least 6)",
                "10 attempts lost (at least 11)",
                "every posting got a final answer (1 of 10 without one)",
                "2 postings refused (422), at least 3: refusals are part of the record",
                "longest stretch without a final answer 1499 ms (limit: under 1499 ms)",
            ]
        );
    }

    #[test]
    fn a_kind_never_seen_passes_a_latency_bound_and_fails_a_count() {
        let s = summary(&[("200", 10, 1.0)]);
        let t = Thresholds {
            max_ms: vec!["503=3000".parse().unwrap()],
            min_count: vec!["503=1".parse().unwrap()],
            min_share: vec!["timeout+io=40".parse().unwrap()],
            ..Thresholds::default()
        };
        let verdicts = t.judge(&s);
        assert!(verdicts[1].ok, "{}", verdicts[1]);
        assert_eq!(
            verdicts[1].to_string(),
            "ok: no 503 attempt, so none slower than 3000 ms"
        );
        assert_eq!(
            failed(&verdicts),
            [
                "0 of 10 attempts timeout+io (0.0 %, at least 40 %)",
                "0 attempts 503 (at least 1)"
            ]
        );
    }
}
