//! Recording what happened during a run, and the statistics made from it.
//!
//! Every request is kept (group, start, response time, OK/KO) so that the
//! summary, the time series and the distribution charts are computed after
//! the run from the same data. Percentiles come from HDR histograms at
//! microsecond resolution (3 significant digits); the "Gatling view" uses
//! whole milliseconds measured as Gatling does, `end_ms − start_ms` on a
//! millisecond clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::check::CheckFailure;

/// The four request groups of the official report (docs/contract.md §5: Gatling
/// request names "débitos", "créditos", "extratos", "validações").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Group {
    /// Open-model debit users.
    Debits,
    /// Open-model credit users.
    Credits,
    /// Open-model statement users.
    Statements,
    /// Every request of the validation users (concurrency phases, the five
    /// per-account users, the 404).
    Validations,
}

impl Group {
    /// All groups, in report order.
    pub const ALL: [Group; 4] = [
        Group::Debits,
        Group::Credits,
        Group::Statements,
        Group::Validations,
    ];

    /// The Gatling request name.
    pub fn label(self) -> &'static str {
        match self {
            Group::Debits => "débitos",
            Group::Credits => "créditos",
            Group::Statements => "extratos",
            Group::Validations => "validações",
        }
    }

    /// ASCII key used in the JSON summary.
    pub fn key(self) -> &'static str {
        match self {
            Group::Debits => "debitos",
            Group::Credits => "creditos",
            Group::Statements => "extratos",
            Group::Validations => "validacoes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One request as recorded.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
    /// Its group.
    pub group: Group,
    /// Start, in µs since the run started.
    pub start_us: u64,
    /// Response time, in µs (connection included, until the last body byte).
    pub latency_us: u64,
    /// Response time as Gatling would log it, in whole ms:
    /// `⌊end/1 ms⌋ − ⌊start/1 ms⌋`.
    pub gatling_ms: u64,
    /// Whether every check passed.
    pub ok: bool,
    /// Whether it failed an inconsistency check (docs/contract.md §6).
    pub inconsistent: bool,
}

/// One virtual user's lifetime.
#[derive(Debug, Clone, Copy)]
pub struct UserRecord {
    /// Its group.
    pub group: Group,
    /// Start, in µs since the run started.
    pub start_us: u64,
    /// End, in µs since the run started.
    pub end_us: u64,
}

/// A failed request kept as an example of its failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureExample {
    /// Request line and body, e.g. `POST /clientes/1/transacoes {"valor": 1, …}`.
    pub request: String,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Start of the response body (at most 300 characters), when a response arrived.
    pub response: Option<String>,
    /// The full failure message.
    pub message: String,
}

/// All the failures of one check name (or of one connection error kind).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureGroup {
    /// Gatling check name, e.g. `jmesPath(saldo).find.ConsistenciaSaldoLimite - Transação`,
    /// or the connection error.
    pub check: String,
    /// Request groups it happened in.
    pub groups: Vec<String>,
    /// How many requests failed this way.
    pub count: u64,
    /// Whether these failures are inconsistencies (docs/contract.md §6).
    pub inconsistency: bool,
    /// The first few failed requests (at most [`MAX_EXAMPLES`]).
    pub examples: Vec<FailureExample>,
}

/// Examples kept per failure group.
pub const MAX_EXAMPLES: usize = 3;

/// Live counters read by the progress display.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Requests answered so far (OK or KO).
    pub done: AtomicU64,
    /// OK requests so far.
    pub ok: AtomicU64,
    /// KO requests so far.
    pub ko: AtomicU64,
    /// Users started so far.
    pub users_started: AtomicU64,
    /// Users currently running.
    pub in_flight: AtomicI64,
}

#[derive(Default)]
struct Inner {
    requests: Vec<RequestRecord>,
    users: Vec<UserRecord>,
    failures: BTreeMap<String, FailureGroup>,
    lag: Option<Histogram<u64>>,
}

/// Collects records from all users; cheap to call from many tasks.
pub struct Recorder {
    t0: Instant,
    /// Live counters for the progress display.
    pub live: LiveCounters,
    inner: Mutex<Inner>,
}

/// What a request produced, for [`Recorder::request`].
pub enum Outcome<'a> {
    /// Every check passed.
    Ok,
    /// A check failed on a response.
    CheckFailed {
        /// The failure.
        failure: &'a CheckFailure,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: &'a [u8],
    },
    /// No usable response.
    Error(String),
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Recorder {
    /// A recorder whose time origin is `t0`, the start of the run.
    pub fn new(t0: Instant) -> Recorder {
        Recorder {
            t0,
            live: LiveCounters::default(),
            inner: Mutex::new(Inner {
                lag: Some(new_histogram()),
                ..Inner::default()
            }),
        }
    }

    /// The run's time origin.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_micros() as u64
    }

    /// Records a user's start; `lag` is how late it started against its
    /// planned arrival (open-model users only).
    pub fn user_started(&self, lag: Option<std::time::Duration>) {
        self.live.users_started.fetch_add(1, Ordering::Relaxed);
        self.live.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(lag) = lag {
            let mut inner = self.inner.lock().expect("recorder lock");
            if let Some(h) = inner.lag.as_mut() {
                h.saturating_record((lag.as_micros() as u64).max(1));
            }
        }
    }

    /// Records a user's end.
    pub fn user_ended(&self, group: Group, start: Instant, end: Instant) {
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
        let rec = UserRecord {
            group,
            start_us: self.us(start),
            end_us: self.us(end),
        };
        self.inner.lock().expect("recorder lock").users.push(rec);
    }

    /// Records one request.
    pub fn request(
        &self,
        group: Group,
        request: &str,
        start: Instant,
        end: Instant,
        outcome: Outcome<'_>,
    ) {
        let start_us = self.us(start);
        let end_us = self.us(end).max(start_us);
        let ok = matches!(outcome, Outcome::Ok);
        let inconsistent =
            matches!(&outcome, Outcome::CheckFailed { failure, .. } if failure.is_inconsistency());
        let rec = RequestRecord {
            group,
            start_us,
            latency_us: end_us - start_us,
            gatling_ms: end_us / 1000 - start_us / 1000,
            ok,
            inconsistent,
        };
        self.live.done.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.live.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live.ko.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.inner.lock().expect("recorder lock");
        inner.requests.push(rec);
        let (key, inconsistency, example) = match outcome {
            Outcome::Ok => return,
            Outcome::CheckFailed {
                failure,
                status,
                body,
            } => (
                failure.name.clone(),
                failure.is_inconsistency(),
                FailureExample {
                    request: request.to_string(),
                    status: Some(status),
                    response: Some(String::from_utf8_lossy(body).chars().take(300).collect()),
                    message: failure.message.clone(),
                },
            ),
            Outcome::Error(message) => (
                message.clone(),
                false,
                FailureExample {
                    request: request.to_string(),
                    status: None,
                    response: None,
                    message,
                },
            ),
        };
        let entry = inner
            .failures
            .entry(key.clone())
            .or_insert_with(|| FailureGroup {
                check: key,
                groups: Vec::new(),
                count: 0,
                inconsistency,
                examples: Vec::new(),
            });
        entry.count += 1;
        if !entry.groups.iter().any(|g| g == group.label()) {
            entry.groups.push(group.label().to_string());
        }
        if entry.examples.len() < MAX_EXAMPLES {
            entry.examples.push(example);
        }
    }

    /// Takes everything recorded so far.
    pub fn finish(&self) -> Recorded {
        let mut inner = self.inner.lock().expect("recorder lock");
        let inner = std::mem::take(&mut *inner);
        let mut failures: Vec<FailureGroup> = inner.failures.into_values().collect();
        failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.check.cmp(&b.check)));
        Recorded {
            requests: inner.requests,
            users: inner.users,
            failures,
            lag: inner.lag.unwrap_or_else(new_histogram),
        }
    }
}

/// Everything a run recorded.
pub struct Recorded {
    /// Every request, in completion order.
    pub requests: Vec<RequestRecord>,
    /// Every user, in completion order.
    pub users: Vec<UserRecord>,
    /// Failures grouped by check name, most frequent first.
    pub failures: Vec<FailureGroup>,
    /// Scheduling lag of the open-model users, in µs.
    pub lag: Histogram<u64>,
}

/// Response-time statistics of a set of requests, in ms with µs
/// resolution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Fastest, in ms.
    pub min: f64,
    /// Mean, in ms.
    pub mean: f64,
    /// Standard deviation, in ms.
    pub stddev: f64,
    /// Median, in ms.
    pub p50: f64,
    /// 75th percentile, in ms.
    pub p75: f64,
    /// 95th percentile, in ms.
    pub p95: f64,
    /// 99th percentile, in ms.
    pub p99: f64,
    /// Slowest, in ms.
    pub max: f64,
}

/// The same statistics in whole milliseconds, as Gatling's report shows
/// them (mean and standard deviation rounded).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatlingLatency {
    /// Fastest, in whole ms.
    pub min: u64,
    /// Mean, rounded, in ms.
    pub mean: u64,
    /// Standard deviation, rounded, in ms.
    pub stddev: u64,
    /// Median, in whole ms.
    pub p50: u64,
    /// 75th percentile, in whole ms.
    pub p75: u64,
    /// 95th percentile, in whole ms.
    pub p95: u64,
    /// 99th percentile, in whole ms.
    pub p99: u64,
    /// Slowest, in whole ms.
    pub max: u64,
}

/// Response-time ranges of the report (OK requests only; KOs counted
/// apart), on the Gatling whole-ms response time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ranges {
    /// OK requests with t < 250 ms.
    pub under_250ms: u64,
    /// OK requests with 250 ms ≤ t < 1200 ms.
    pub from_250_to_1200ms: u64,
    /// OK requests with t ≥ 1200 ms.
    pub over_1200ms: u64,
    /// KO requests.
    pub failed: u64,
}

/// Statistics of one group (or of all requests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupStats {
    /// Gatling request name ("débitos", …, or "todas" for all requests).
    pub name: String,
    /// Requests sent.
    pub requests: u64,
    /// Requests whose checks all passed.
    pub ok: u64,
    /// Requests that failed (a check, a connection error or a timeout).
    pub ko: u64,
    /// Requests that failed an inconsistency check (docs/contract.md §6).
    pub inconsistencies: u64,
    /// OK requests faster than 250 ms, in % of its requests (two decimals).
    pub pct_under_250ms: f64,
    /// Response times of all its requests (OK and KO), in ms.
    pub latency_ms: Latency,
    /// The same in Gatling's whole milliseconds.
    pub gatling_ms: GatlingLatency,
    /// Mean throughput over the whole run, in requests/s.
    pub requests_per_s: f64,
    /// Response-time ranges.
    pub ranges: Ranges,
}

/// Builds [`GroupStats`] over `records`; `duration_s` is the run's length in
/// seconds (the requests/s denominator, as in Gatling).
pub fn group_stats<'a>(
    name: &str,
    records: impl Iterator<Item = &'a RequestRecord>,
    duration_s: f64,
) -> GroupStats {
    let mut us = new_histogram();
    let mut ms = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).expect("valid bounds");
    let (mut requests, mut ok, mut inconsistencies) = (0u64, 0u64, 0u64);
    let (mut sum_ms, mut sum_sq_ms) = (0f64, 0f64);
    let mut ranges = Ranges::default();
    for r in records {
        requests += 1;
        inconsistencies += u64::from(r.inconsistent);
        us.saturating_record(r.latency_us.max(1));
        ms.saturating_record(r.gatling_ms);
        sum_ms += r.gatling_ms as f64;
        sum_sq_ms += (r.gatling_ms as f64).powi(2);
        if r.ok {
            ok += 1;
            match r.gatling_ms {
                0..250 => ranges.under_250ms += 1,
                250..1200 => ranges.from_250_to_1200ms += 1,
                _ => ranges.over_1200ms += 1,
            }
        } else {
            ranges.failed += 1;
        }
    }
    let latency_ms = if requests == 0 {
        Latency::default()
    } else {
        let q = |p: f64| us.value_at_quantile(p) as f64 / 1000.0;
        Latency {
            min: us.min() as f64 / 1000.0,
            mean: us.mean() / 1000.0,
            stddev: us.stdev() / 1000.0,
            p50: q(0.50),
            p75: q(0.75),
            p95: q(0.95),
            p99: q(0.99),
            max: us.max() as f64 / 1000.0,
        }
    };
    let gatling_ms = if requests == 0 {
        GatlingLatency::default()
    } else {
        let q = |p: f64| ms.value_at_quantile(p);
        let mean = sum_ms / requests as f64;
        let var = (sum_sq_ms / requests as f64 - mean * mean).max(0.0);
        GatlingLatency {
            min: ms.min(),
            mean: mean.round() as u64,
            stddev: var.sqrt().round() as u64,
            p50: q(0.50),
            p75: q(0.75),
            p95: q(0.95),
            p99: q(0.99),
            max: ms.max(),
        }
    };
    GroupStats {
        name: name.to_string(),
        requests,
        ok,
        ko: requests - ok,
        inconsistencies,
        pct_under_250ms: crate::score::Score::compute(ranges.under_250ms, requests, 0).pct(),
        latency_ms,
        gatling_ms,
        requests_per_s: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        ranges,
    }
}

/// Per-second series for the report's charts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimeSeries {
    /// Requests started in each second, per group (same order as
    /// [`Group::ALL`]).
    pub requests: Vec<Vec<u64>>,
    /// KO requests started in each second (all groups).
    pub ko: Vec<u64>,
    /// Users active at some point of each second, per group (Gatling's
    /// "active users").
    pub active_users: Vec<Vec<u64>>,
    /// Response-time percentiles of the requests started in each second, in
    /// ms: p50, p75, p95, p99, max (empty seconds hold `None`).
    pub percentiles_ms: Vec<Option<[f64; 5]>>,
}

/// Builds the per-second series of a run lasting `seconds` seconds.
pub fn time_series(recorded: &Recorded, seconds: usize) -> TimeSeries {
    let n = seconds.max(1);
    let mut requests = vec![vec![0u64; n]; Group::ALL.len()];
    let mut ko = vec![0u64; n];
    let mut hists: Vec<Option<Histogram<u64>>> = (0..n).map(|_| None).collect();
    for r in &recorded.requests {
        let s = ((r.start_us / 1_000_000) as usize).min(n - 1);
        requests[r.group.index()][s] += 1;
        if !r.ok {
            ko[s] += 1;
        }
        hists[s]
            .get_or_insert_with(|| {
                Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds")
            })
            .saturating_record(r.latency_us.max(1));
    }
    let mut diff = vec![vec![0i64; n + 1]; Group::ALL.len()];
    for u in &recorded.users {
        let a = ((u.start_us / 1_000_000) as usize).min(n - 1);
        let b = ((u.end_us / 1_000_000) as usize).min(n - 1);
        diff[u.group.index()][a] += 1;
        diff[u.group.index()][b + 1] -= 1;
    }
    let active_users = diff
        .iter()
        .map(|d| {
            let mut acc = 0i64;
            d[..n]
                .iter()
                .map(|x| {
                    acc += x;
                    acc.max(0) as u64
                })
                .collect()
        })
        .collect();
    let percentiles_ms = hists
        .iter()
        .map(|h| {
            h.as_ref().map(|h| {
                let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
                [q(0.50), q(0.75), q(0.95), q(0.99), h.max() as f64 / 1000.0]
            })
        })
        .collect();
    TimeSeries {
        requests,
        ko,
        active_users,
        percentiles_ms,
    }
}

/// Bucket edges of the latency distribution chart, in ms: 10 per decade
/// from 0.1 ms to 100 s.
pub fn distribution_edges_ms() -> Vec<f64> {
    (0..=60)
        .map(|k| 10f64.powf(-1.0 + k as f64 / 10.0))
        .collect()
}

/// Latency distribution per group: OK counts per bucket of
/// [`distribution_edges_ms`] (bucket `i` is `[edge i, edge i+1)`, the first
/// bucket also holding faster requests, the last slower ones), plus the KO
/// counts per bucket (all groups).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    /// Bucket edges, in ms.
    pub edges_ms: Vec<f64>,
    /// OK requests per bucket, per group (order of [`Group::ALL`]).
    pub ok: Vec<Vec<u64>>,
    /// KO requests per bucket.
    pub ko: Vec<u64>,
}

/// Builds the latency distribution of a run.
pub fn distribution(recorded: &Recorded) -> Distribution {
    let edges = distribution_edges_ms();
    let buckets = edges.len() - 1;
    let mut ok = vec![vec![0u64; buckets]; Group::ALL.len()];
    let mut ko = vec![0u64; buckets];
    for r in &recorded.requests {
        let ms = r.latency_us as f64 / 1000.0;
        let i = if ms <= edges[0] {
            0
        } else {
            (((ms.log10() + 1.0) * 10.0).floor() as usize).min(buckets - 1)
        };
        if r.ok {
            ok[r.group.index()][i] += 1;
        } else {
            ko[i] += 1;
        }
    }
    Distribution {
        edges_ms: edges,
        ok,
        ko,
    }
}

/// Percentiles at which the curves are sampled, in %: denser towards the
/// tail, where runs differ.
pub const CURVE_PERCENTILES: [f64; 20] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5,
    99.9, 99.95, 99.99, 100.0,
];

/// Percentile curve (HDR "percentile distribution") of `records`: points
/// (percentile %, response time in ms) at each of [`CURVE_PERCENTILES`], the
/// last one the maximum; empty without records.
pub fn percentile_curve<'a>(records: impl Iterator<Item = &'a RequestRecord>) -> Vec<(f64, f64)> {
    let mut h = new_histogram();
    for r in records {
        h.saturating_record(r.latency_us.max(1));
    }
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|p| {
            let us = if *p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            (*p, us as f64 / 1000.0)
        })
        .collect()
}

/// The [`percentile_curve`] of each group, in [`Group::ALL`] order.
pub fn percentile_curves(recorded: &Recorded) -> Vec<Vec<(f64, f64)>> {
    Group::ALL
        .iter()
        .map(|g| percentile_curve(recorded.requests.iter().filter(|r| r.group == *g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(latency_us: u64, start_us: u64, ok: bool) -> RequestRecord {
        RequestRecord {
            group: Group::Debits,
            start_us,
            latency_us,
            gatling_ms: (start_us + latency_us) / 1000 - start_us / 1000,
            ok,
            inconsistent: false,
        }
    }

    #[test]
    fn group_stats_by_hand() {
        // 4 requests: 0.5 ms, 1.5 ms, 300 ms (OK) and a 2 s KO, all starting
        // on a millisecond boundary.
        let records = [
            rec(500, 0, true),
            rec(1_500, 0, true),
            rec(300_000, 0, true),
            rec(2_000_000, 0, false),
        ];
        let s = group_stats("débitos", records.iter(), 2.0);
        assert_eq!((s.requests, s.ok, s.ko), (4, 3, 1));
        // 2 of 4 OK under 250 ms.
        assert_eq!(s.pct_under_250ms, 50.0);
        assert_eq!(
            s.ranges,
            Ranges {
                under_250ms: 2,
                from_250_to_1200ms: 1,
                over_1200ms: 0,
                failed: 1
            }
        );
        assert!((s.latency_ms.min - 0.5).abs() < 0.001);
        assert!((s.latency_ms.max - 2000.0).abs() < 2.0);
        // Whole ms: 0, 1, 300, 2000 -> mean 575.25 -> 575.
        assert_eq!(s.gatling_ms.min, 0);
        assert_eq!(s.gatling_ms.mean, 575);
        assert_eq!(s.gatling_ms.p50, 1);
        assert_eq!(s.gatling_ms.p75, 300);
        assert!((1999..=2001).contains(&s.gatling_ms.max));
        assert!((s.requests_per_s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn active_users_count_every_second_a_user_touches() {
        let recorded = Recorded {
            requests: vec![],
            users: vec![
                UserRecord {
                    group: Group::Credits,
                    start_us: 500_000,
                    end_us: 2_100_000,
                },
                UserRecord {
                    group: Group::Credits,
                    start_us: 1_200_000,
                    end_us: 1_300_000,
                },
            ],
            failures: vec![],
            lag: new_histogram(),
        };
        let ts = time_series(&recorded, 4);
        assert_eq!(ts.active_users[Group::Credits.index()], vec![1, 2, 1, 0]);
        assert_eq!(ts.active_users[Group::Debits.index()], vec![0, 0, 0, 0]);
    }
}
