//! The run's summary: the figures of docs/contract.md §6 and the per-group
//! statistics, as JSON (`--json`, `summary.json`) and as a text table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::score::{format_usd, group_thousands, usd, Score};
use crate::stats::{FailureGroup, GatlingLatency, GroupStats, Latency, Ranges};

/// Scheduling lag above which a run is not trustworthy, in ms (p99).
pub const LAG_P99_LIMIT_MS: f64 = 5.0;

/// Per-group statistics, keyed by ASCII group name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Groups {
    /// "débitos".
    pub debitos: GroupStats,
    /// "créditos".
    pub creditos: GroupStats,
    /// "extratos".
    pub extratos: GroupStats,
    /// "validações".
    pub validacoes: GroupStats,
}

impl Groups {
    /// The four groups in report order.
    pub fn all(&self) -> [&GroupStats; 4] {
        [
            &self.debitos,
            &self.creditos,
            &self.extratos,
            &self.validacoes,
        ]
    }
}

/// How the run was configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Target base URL.
    pub base_url: String,
    /// `--scale`.
    pub scale: f64,
    /// `--rate`.
    pub rate: f64,
    /// `--seed`.
    pub seed: u64,
    /// Length of each open-model step (ramp, constant), in s.
    pub step_seconds: u64,
    /// Requests the plan sends (61,503 at scale 1, rate 1).
    pub planned_requests: u64,
    /// Wall-clock start, RFC 3339 UTC.
    pub started_at: String,
    /// From the first request's start to the last response, in s.
    pub duration_s: f64,
    /// crebito-load version.
    pub version: String,
}

/// The load generator's own health: is the run trustworthy?
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Generator {
    /// Open-model users whose start lag was measured.
    pub users: u64,
    /// Median lag of a user's actual start behind its planned arrival, in
    /// ms. Tokio's timers have a 1 ms granularity (a deadline is rounded up
    /// to the next millisecond), so about 1 to 2 ms is the floor.
    pub lag_p50_ms: f64,
    /// 99th percentile of that lag, in ms.
    pub lag_p99_ms: f64,
    /// Maximum of that lag, in ms.
    pub lag_max_ms: f64,
    /// Whether `lag_p99_ms` ≤ 5 ms; if not, the generator was a bottleneck
    /// and the run is not trustworthy.
    pub trustworthy: bool,
    /// CPU time used by the generator during the run (user + system), in s.
    pub cpu_s: f64,
    /// Its user part, in s.
    pub cpu_user_s: f64,
    /// Its system part, in s (on loopback it includes kernel TCP work done
    /// on the server's behalf in the generator's context).
    pub cpu_sys_s: f64,
    /// That CPU time per request, in µs.
    pub cpu_us_per_request: f64,
    /// Tokio worker threads.
    pub threads: usize,
}

/// Everything `--json` and `summary.json` contain.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Requests sent.
    pub requests: u64,
    /// Requests whose checks all passed.
    pub ok: u64,
    /// Failed requests (check, connection error, 60 s timeout).
    pub ko: u64,
    /// Failed consistency checks (docs/contract.md §6).
    pub inconsistencies: u64,
    /// Share of all requests that were OK and faster than 250 ms, in %,
    /// two decimals (docs/contract.md §6 `pct`).
    pub pct_under_250ms: f64,
    /// Fine A, in USD.
    pub fine_latency_usd: f64,
    /// Fine B, in USD.
    pub fine_inconsistency_usd: f64,
    /// Payout, in USD.
    pub payout_usd: f64,
    /// Response times of all requests, in ms (µs resolution).
    pub latency_ms: Latency,
    /// The same in whole ms, as Gatling shows them.
    pub gatling_ms: GatlingLatency,
    /// Mean requests/s over the run.
    pub requests_per_s: f64,
    /// Response-time ranges over all requests.
    pub ranges: Ranges,
    /// The same per group.
    pub groups: Groups,
    /// Failed checks by name, most frequent first, with examples.
    pub failures: Vec<FailureGroup>,
    /// The generator's own lag and CPU.
    pub generator: Generator,
    /// Configuration of the run.
    pub run: RunInfo,
    /// The score, exact (cents).
    pub score: Score,
}

impl Default for Score {
    fn default() -> Score {
        Score::compute(0, 0, 0)
    }
}

impl Summary {
    /// Fills the score fields from `score`.
    pub fn set_score(&mut self, score: Score) {
        self.score = score;
        self.inconsistencies = score.inconsistencies;
        self.pct_under_250ms = score.pct();
        self.fine_latency_usd = usd(score.fine_latency_cents);
        self.fine_inconsistency_usd = usd(score.fine_inconsistency_cents);
        self.payout_usd = usd(score.payout_cents);
    }

    /// The text summary printed at the end of a run.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let rule = |o: &mut String, title: &str| {
            let _ = writeln!(
                o,
                "---- {title} {}",
                "-".repeat(86usize.saturating_sub(title.len()))
            );
        };
        let r = &self.run;
        let _ = writeln!(o, "{}", "=".repeat(92));
        let _ = writeln!(
            o,
            "crebito-load {} — Rinha de Backend 2024/Q1 official load test (docs/contract.md §5)",
            r.version
        );
        let _ = writeln!(
            o,
            "target {}  scale {} ({} s ramp + {} s constant)  rate ×{}  seed {}",
            r.base_url, r.scale, r.step_seconds, r.step_seconds, r.rate, r.seed
        );
        let _ = writeln!(
            o,
            "started {}  duration {:.1} s  requests {} of {} planned",
            r.started_at,
            r.duration_s,
            group_thousands(self.requests),
            group_thousands(r.planned_requests)
        );
        rule(&mut o, "Response time, ms (µs resolution)");
        let _ = writeln!(
            o,
            "{:<11}{:>7}{:>7}{:>6}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}{:>7}",
            "group",
            "count",
            "OK",
            "KO",
            "min",
            "mean",
            "stddev",
            "p50",
            "p75",
            "p95",
            "p99",
            "max",
            "req/s"
        );
        let all = self.all_stats();
        for g in self.groups.all().into_iter().chain(std::iter::once(&all)) {
            let l = &g.latency_ms;
            let _ = writeln!(
                o,
                "{:<11}{:>7}{:>7}{:>6}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}{:>7.1}",
                g.name,
                g.requests,
                g.ok,
                g.ko,
                ms(l.min),
                ms(l.mean),
                ms(l.stddev),
                ms(l.p50),
                ms(l.p75),
                ms(l.p95),
                ms(l.p99),
                ms(l.max),
                g.requests_per_s
            );
        }
        rule(&mut o, "Response time as Gatling shows it, whole ms");
        let _ = writeln!(
            o,
            "{:<11}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}",
            "group", "min", "mean", "stddev", "p50", "p75", "p95", "p99", "max"
        );
        for g in self.groups.all().into_iter().chain(std::iter::once(&all)) {
            let l = &g.gatling_ms;
            let _ = writeln!(
                o,
                "{:<11}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}",
                g.name, l.min, l.mean, l.stddev, l.p50, l.p75, l.p95, l.p99, l.max
            );
        }
        rule(&mut o, "Response time ranges");
        let total = self.requests.max(1) as f64;
        for (label, n) in [
            ("t < 250 ms", self.ranges.under_250ms),
            ("250 ms <= t < 1200 ms", self.ranges.from_250_to_1200ms),
            ("t >= 1200 ms", self.ranges.over_1200ms),
            ("failed", self.ranges.failed),
        ] {
            let _ = writeln!(
                o,
                "{label:<24}{:>10} ({:>6.2} %)",
                group_thousands(n),
                100.0 * n as f64 / total
            );
        }
        rule(&mut o, "Failed checks and errors");
        if self.failures.is_empty() {
            let _ = writeln!(o, "none");
        }
        for f in &self.failures {
            let tag = if f.inconsistency {
                "  [inconsistency]"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "{:>8} × {}  ({}){tag}",
                group_thousands(f.count),
                f.check,
                f.groups.join(", ")
            );
            for e in f.examples.iter().take(2) {
                let _ = writeln!(o, "           e.g. {}", e.request);
                match (&e.status, &e.response) {
                    (Some(status), Some(body)) => {
                        let _ = writeln!(o, "                → {status} {}", one_line(body, 100));
                        let _ = writeln!(o, "                  {}", one_line(&e.message, 100));
                    }
                    _ => {
                        let _ = writeln!(o, "                → {}", e.message);
                    }
                }
            }
        }
        rule(&mut o, "Score (docs/contract.md §6)");
        let s = &self.score;
        let _ = writeln!(
            o,
            "OK under 250 ms      {:>10.2} %   fine A (latency)        {:>16}",
            self.pct_under_250ms,
            format_usd(s.fine_latency_cents)
        );
        let _ = writeln!(
            o,
            "inconsistencies      {:>10}     fine B (inconsistencies) {:>15}",
            group_thousands(s.inconsistencies),
            format_usd(s.fine_inconsistency_cents)
        );
        let _ = writeln!(
            o,
            "KO                   {:>10}     PAYOUT {:>33}",
            group_thousands(self.ko),
            format_usd(s.payout_cents)
        );
        rule(&mut o, "Load generator");
        let g = &self.generator;
        let _ = writeln!(
            o,
            "start lag of {} open-model users: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\nCPU {:.1} s (user {:.1} s + system {:.1} s; {:.0} µs/request, {} thread{})",
            group_thousands(g.users),
            g.lag_p50_ms,
            g.lag_p99_ms,
            g.lag_max_ms,
            g.cpu_s,
            g.cpu_user_s,
            g.cpu_sys_s,
            g.cpu_us_per_request,
            g.threads,
            if g.threads == 1 { "" } else { "s" }
        );
        if !g.trustworthy {
            let _ = writeln!(
                o,
                "WARNING: the generator's start lag p99 is {:.2} ms (> {LAG_P99_LIMIT_MS} ms): it could not keep the schedule, this run is NOT trustworthy",
                g.lag_p99_ms
            );
        }
        let _ = writeln!(o, "{}", "=".repeat(92));
        o
    }

    /// Statistics over all requests, in the [`GroupStats`] shape.
    pub fn all_stats(&self) -> GroupStats {
        GroupStats {
            name: "todas".to_string(),
            requests: self.requests,
            ok: self.ok,
            ko: self.ko,
            inconsistencies: self.inconsistencies,
            pct_under_250ms: self.pct_under_250ms,
            latency_ms: self.latency_ms.clone(),
            gatling_ms: self.gatling_ms.clone(),
            requests_per_s: self.requests_per_s,
            ranges: self.ranges.clone(),
        }
    }
}

/// Milliseconds with 2, 1 or 0 decimals as the value grows (0.52, 123.4, 1545).
pub(crate) fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `s` on one line, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
