//! The text summary printed at the end of a run.

use std::fmt::Write as _;

use super::fine_reasons;
use super::format::{format_usd, group_thousands, ms, one_line};
use crate::summary::{Summary, LAG_P99_LIMIT_MS, NOT_FRESH_REMEDY, UNTRUSTWORTHY_REMEDY};

impl Summary {
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
        if let Some(state) = self.starting_state.as_ref().filter(|s| !s.fresh) {
            let _ = writeln!(
                o,
                "WARNING: the target was not freshly seeded ({}): the opening checks expect every seeded account at balance 0, their failures are fined; {NOT_FRESH_REMEDY}",
                state.problems().join("; ")
            );
        }
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
        for (i, f) in self.failures.iter().enumerate() {
            let tag = if f.inconsistency {
                "  [inconsistency]"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "#{:<3}{:>8} × {}  ({}){tag}",
                i + 1,
                group_thousands(f.count),
                f.check,
                f.groups.join(", ")
            );
            for e in f.examples.iter().take(2) {
                let _ = writeln!(o, "               e.g. {}", e.request);
                match (&e.status, &e.response) {
                    (Some(status), Some(body)) => {
                        let _ =
                            writeln!(o, "                    → {status} {}", one_line(body, 100));
                        let _ = writeln!(o, "                      {}", one_line(&e.message, 100));
                    }
                    _ => {
                        let _ = writeln!(o, "                    → {}", e.message);
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
        for reason in fine_reasons(self) {
            let _ = writeln!(
                o,
                "{} {}: {}{}",
                reason.fine,
                format_usd(reason.cents),
                reason.because,
                if reason.not_fresh {
                    "; the target was not freshly seeded (see the warning at the top)"
                } else {
                    ""
                }
            );
            for (n, check, count) in &reason.checks {
                let _ = writeln!(
                    o,
                    "    {:>8} × {check}  (#{n} under Failed checks and errors)",
                    group_thousands(*count)
                );
            }
        }
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
                "WARNING: the generator's start lag p99 is {:.2} ms (> {LAG_P99_LIMIT_MS} ms): it could not keep the schedule, this run is NOT trustworthy; {UNTRUSTWORTHY_REMEDY}",
                g.lag_p99_ms
            );
        }
        let _ = writeln!(o, "{}", "=".repeat(92));
        o
    }
}

#[cfg(test)]
mod tests {
    use crate::summary::{Summary, NOT_FRESH_REMEDY, UNTRUSTWORTHY_REMEDY};

    #[test]
    fn every_warning_says_what_to_do() {
        let mut s = Summary::default();
        s.generator.users = 10;
        s.generator.trustworthy = true;
        s.generator.lag_p99_ms = 1.0;
        let sound = s.to_text();
        assert!(!sound.contains("WARNING"), "{sound}");
        s.generator.trustworthy = false;
        s.generator.lag_p99_ms = 7.5;
        s.starting_state = Some(crate::starting_state::StartingState::default());
        let text = s.to_text();
        let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("WARNING")).collect();
        assert_eq!(warnings.len(), 2, "{text}");
        assert!(warnings[0].ends_with(NOT_FRESH_REMEDY), "{}", warnings[0]);
        assert!(
            warnings[1].contains("7.50 ms") && warnings[1].ends_with(UNTRUSTWORTHY_REMEDY),
            "{}",
            warnings[1]
        );
    }
}
