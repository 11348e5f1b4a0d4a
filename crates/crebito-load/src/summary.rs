//! The run's summary: the figures of docs/contract.md §6 and the per-group
//! statistics. A plain value; [`crate::report`] presents it (text, JSON, HTML).

use serde::{Deserialize, Serialize};

use crate::score::{usd, Score};
use crate::starting_state::StartingState;
use crate::stats::{FailureGroup, GatlingLatency, GroupStats, Latency, Ranges};

/// Scheduling lag above which a run is not trustworthy, in ms (p99).
pub const LAG_P99_LIMIT_MS: f64 = 5.0;

/// What to do about a run that is not trustworthy (the generator could not
/// keep the schedule): every presenter that warns says it.
pub const UNTRUSTWORTHY_REMEDY: &str = "give the generator more CPU (stop competing processes, or run it on another machine than the server; --threads 2 when a core is free) and run again";

/// What to do about a run that did not start from a freshly seeded ledger.
pub const NOT_FRESH_REMEDY: &str = "reset the ledger to its seeded state before the run (docs/load-test.md, \"Start from a freshly seeded ledger\") and run again";

impl Summary {
    /// Whether the generator could not keep the schedule, so that the run
    /// is not trustworthy. Summaries of versions that did not record the
    /// generator's lag are not suspected.
    pub fn untrustworthy(&self) -> bool {
        self.generator.users > 0 && !self.generator.trustworthy
    }

    /// Why this run is not trustworthy, with the remedy; `None` for a
    /// trustworthy run.
    pub fn untrustworthy_warning(&self) -> Option<String> {
        self.untrustworthy().then(|| {
            format!(
                "NOT trustworthy: the load generator started its users {:.2} ms late at p99 (limit {LAG_P99_LIMIT_MS} ms), so it could not keep the schedule; {UNTRUSTWORTHY_REMEDY}",
                self.generator.lag_p99_ms
            )
        })
    }
}

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

/// Everything `--json` and `summary.json` contain. Every field has a
/// default when read, so that summaries written by older versions still load
/// (`crebito-load compare`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
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
    /// The five seeded accounts as found before the run; `None` when not
    /// read (summaries of older versions).
    pub starting_state: Option<StartingState>,
    /// Response time at each percentile, per group and over all requests
    /// (`crebito-load compare` overlays them); empty in summaries of older
    /// versions.
    pub percentile_curves_ms: PercentileCurves,
}

/// Percentile curves, each a list of `[percentile %, response time in ms]`
/// at the percentiles of [`crate::stats::CURVE_PERCENTILES`] (the last
/// point, 100 %, is the maximum).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PercentileCurves {
    /// "débitos".
    pub debitos: Vec<(f64, f64)>,
    /// "créditos".
    pub creditos: Vec<(f64, f64)>,
    /// "extratos".
    pub extratos: Vec<(f64, f64)>,
    /// "validações".
    pub validacoes: Vec<(f64, f64)>,
    /// All requests.
    pub todas: Vec<(f64, f64)>,
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
