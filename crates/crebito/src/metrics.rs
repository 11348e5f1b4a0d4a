//! What one instance measures, served at `GET /metrics` in the Prometheus
//! text exposition format 0.0.4 (prometheus-client's encoder). Every name
//! and its meaning is listed in docs/operations.md.
//!
//! * [`Metrics`] holds the HTTP layer's families and the instance-wide
//!   ones (build info, open connections, the ledger's pool); the router
//!   records into it, one label lookup per family per request.
//! * [`StorageMetrics`] is what a ledger records itself (database round
//!   trips, idempotent replays, the sizes of its batches of postings); the
//!   ledger owns it, [`Metrics`] exposes it.
//!
//! Histograms use fixed buckets from 100 µs to 10 s: a request served from
//! a warm pool takes a few hundred microseconds, and the acquire and query
//! timeouts (seconds) bound the slow end.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the duration histograms' buckets, in seconds: 100 µs to
/// 10 s, about three per decade.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of `crebito_posting_batch_size`'s buckets, in postings:
/// powers of two up to the default `--batch-max-postings` (64); larger
/// batches fall in `+Inf`.
pub const BATCH_SIZE_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// `Content-Type` of `GET /metrics`: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A histogram family whose members all have [`DURATION_BUCKETS`].
type DurationFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Labels of `crebito_http_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/clientes/{id}/extrato`), or `unmatched`.
    route: &'static str,
    method: &'static str,
    status: u16,
}

/// Labels of `crebito_http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Labels of `crebito_postings_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Labels of `crebito_unavailable_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// Labels of `crebito_db_round_trip_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// What a ledger records about its own storage: the database round trips,
/// the idempotent replays and the sizes of the batches of postings its
/// queues send (group commit). Cheap to clone (shared handles); a disabled
/// one (`--metrics off`) records nothing.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    enabled: Arc<AtomicBool>,
    round_trips: DurationFamily<OperationLabels>,
    replays: Counter,
    batch_sizes: Histogram,
    postings: Family<OutcomeLabels, Counter>,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            enabled: Arc::new(AtomicBool::new(true)),
            round_trips: Family::new_with_constructor(duration_histogram),
            replays: Counter::default(),
            batch_sizes: Histogram::new(BATCH_SIZE_BUCKETS),
            postings: Family::default(),
        }
    }
}

impl StorageMetrics {
    /// Records one round trip of `operation` (`post`, `statement`,
    /// `history`, `ping`, `health`) to the database that took `elapsed`: the query
    /// itself, without the wait for a pooled connection.
    pub fn round_trip(&self, operation: &'static str, elapsed: Duration) {
        if self.enabled.load(Ordering::Relaxed) {
            self.round_trips
                .get_or_create(&OperationLabels { operation })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Records `count` postings answered from their recorded
    /// `Idempotency-Key` instead of being applied (docs/contract.md §2.6).
    pub fn replays(&self, count: u64) {
        if count > 0 && self.enabled.load(Ordering::Relaxed) {
            self.replays.inc_by(count);
        }
    }

    /// Records one batch of `postings` postings sent to the database (one
    /// round trip, one transaction), whether it was applied or failed.
    pub fn batch(&self, postings: usize) {
        if self.enabled.load(Ordering::Relaxed) {
            self.batch_sizes.observe(postings as f64);
        }
    }

    /// Records the outcome of one posting where the ledger decided it
    /// (`crebito_postings_total`): `applied`, `limit_exceeded`, `overflow`,
    /// `idempotency_key_reused`, `account_not_found` or `unavailable`.
    /// Counted whether or not its client still waits for the answer.
    pub fn posting(&self, outcome: &'static str) {
        if self.enabled.load(Ordering::Relaxed) {
            self.postings
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
    }

    /// Stops recording (`--metrics off`), for every clone.
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }
}

/// HTTP connections open in this process, for
/// `crebito_http_open_connections`.
static OPEN_CONNECTIONS: AtomicI64 = AtomicI64::new(0);

/// One HTTP connection being served: counted in
/// `crebito_http_open_connections` from [`OpenConnection::new`] until
/// dropped.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    /// Counts one more open connection.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection pool's state at one moment (deadpool's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections idle in the pool now.
    pub idle: usize,
    /// Requests waiting for a connection now.
    pub waiting: usize,
}

impl PoolStatus {
    /// From deadpool's status of any pool.
    pub fn from_deadpool(status: deadpool_postgres::Status) -> Self {
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }
}

/// Reads the pool's state at each scrape.
type PoolProbe = Arc<dyn Fn() -> Option<PoolStatus> + Send + Sync>;

/// The gauges computed at scrape time: the pool and the open connections.
struct ScrapeTimeGauges {
    pool: PoolProbe,
}

impl std::fmt::Debug for ScrapeTimeGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeTimeGauges")
    }
}

/// Labels of `crebito_db_pool_connections`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

impl Collector for ScrapeTimeGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let open = ConstGauge::new(OPEN_CONNECTIONS.load(Ordering::Relaxed));
        open.encode(encoder.encode_descriptor(
            "crebito_http_open_connections",
            "HTTP connections open in this process now",
            None,
            open.metric_type(),
        )?)?;
        let Some(pool) = (self.pool)() else {
            return Ok(());
        };
        let gauge = |value: usize| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        let max = gauge(pool.max_size);
        max.encode(encoder.encode_descriptor(
            "crebito_db_pool_max_connections",
            "Most database connections the pool opens (--pool-size)",
            None,
            max.metric_type(),
        )?)?;
        let mut connections = encoder.encode_descriptor(
            "crebito_db_pool_connections",
            "Database connections open now, by state: idle in the pool or in use by a request",
            None,
            max.metric_type(),
        )?;
        for (state, value) in [
            ("idle", pool.idle),
            ("in_use", pool.size.saturating_sub(pool.idle)),
        ] {
            gauge(value).encode(connections.encode_family(&StateLabels { state })?)?;
        }
        let waiting = gauge(pool.waiting);
        waiting.encode(encoder.encode_descriptor(
            "crebito_db_pool_waiting",
            "Requests waiting for a database connection now",
            None,
            waiting.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The metrics of one instance, and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily<RouteLabels>,
    postings: Family<OutcomeLabels, Counter>,
    unavailable: Family<CauseLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with every family of docs/operations.md. `backend` is the
    /// ledger (`postgres` or `sqlite`) for `crebito_build_info`; `storage`
    /// is the ledger's own metrics and `pool` reads its pool at each scrape.
    pub fn new(
        backend: &'static str,
        storage: Option<&StorageMetrics>,
        pool: impl Fn() -> Option<PoolStatus> + Send + Sync + 'static,
    ) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "crebito_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations: DurationFamily<RouteLabels> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "crebito_http_request_duration",
            "Time from a request's head being read to its response being ready, by route template",
            Unit::Seconds,
            durations.clone(),
        );
        // Recorded by the ledger's posting queues, where each outcome is
        // decided (also for a client that hung up meanwhile).
        let postings = storage.map(|s| s.postings.clone()).unwrap_or_default();
        registry.register(
            "crebito_postings",
            "Postings that reached the ledger, by outcome: applied, limit_exceeded, overflow, \
             idempotency_key_reused, account_not_found, unavailable (replays included, see \
             crebito_idempotent_replays_total)",
            postings.clone(),
        );
        let unavailable = Family::<CauseLabels, Counter>::default();
        registry.register(
            "crebito_unavailable",
            "Requests answered 503, by cause",
            unavailable.clone(),
        );
        if let Some(storage) = storage {
            registry.register_with_unit(
                "crebito_db_round_trip_duration",
                "Time of one database round trip (the query, not the wait for a connection), by \
                 operation",
                Unit::Seconds,
                storage.round_trips.clone(),
            );
            registry.register(
                "crebito_idempotent_replays",
                "Postings answered from a recorded Idempotency-Key, not applied again",
                storage.replays.clone(),
            );
            registry.register(
                "crebito_posting_batch_size",
                "Batches of postings sent to the database (one round trip, one transaction, one \
                 commit each), by how many postings they held",
                storage.batch_sizes.clone(),
            );
        }
        registry.register(
            "crebito_build",
            "The running build: crate version and ledger backend; always 1",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("ledger", backend),
            ]),
        );
        registry.register_collector(Box::new(ScrapeTimeGauges {
            pool: Arc::new(pool),
        }));
        Metrics {
            registry,
            requests,
            durations,
            postings,
            unavailable,
        }
    }

    /// Records one answered request: its route template (or `unmatched`),
    /// method, status and how long it took.
    pub fn request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the outcome of one posting that reached the ledger.
    pub fn posting(&self, outcome: &'static str) {
        self.postings
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records one 503 answer and its cause.
    pub fn unavailable(&self, cause: &'static str) {
        self.unavailable.get_or_create(&CauseLabels { cause }).inc();
    }

    /// The whole registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `prefix` (name and
    /// labels), parsed.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix) && line[prefix.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let storage = StorageMetrics::default();
        let metrics = Metrics::new("sqlite", Some(&storage), || {
            Some(PoolStatus {
                max_size: 4,
                size: 3,
                idle: 1,
                waiting: 2,
            })
        });
        metrics.request(
            "/clientes/{id}/extrato",
            "GET",
            200,
            Duration::from_micros(150),
        );
        metrics.posting("applied");
        metrics.unavailable("pool_timeout");
        storage.round_trip("post", Duration::from_millis(3));
        storage.replays(1);
        storage.batch(1);
        storage.batch(3);
        storage.batch(100);
        let text = metrics.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("crebito_"), "{line}");
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{line}"),
                // Durations in seconds; the one histogram of counts says
                // what it counts.
                "histogram" => assert!(
                    name.ends_with("_seconds") || name == "crebito_posting_batch_size",
                    "{line}"
                ),
                _ => assert!(!name.ends_with("_total"), "{line}"),
            }
        }
        let route = r#"route="/clientes/{id}/extrato""#;
        assert_eq!(
            sample(
                &text,
                &format!(r#"crebito_http_requests_total{{{route},method="GET",status="200"}}"#)
            ),
            Some(1.0)
        );
        // 150 µs falls in the 250 µs bucket, not the 100 µs one.
        assert_eq!(
            sample(
                &text,
                &format!(r#"crebito_http_request_duration_seconds_bucket{{{route},le="0.0001"}}"#)
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"crebito_http_request_duration_seconds_bucket{{{route},le="0.00025"}}"#)
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"crebito_postings_total{outcome="applied"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"crebito_unavailable_total{cause="pool_timeout"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"crebito_db_round_trip_duration_seconds_count{operation="post"}"#
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "crebito_idempotent_replays_total"), Some(1.0));
        // Buckets are cumulative: 1 | 3 | 100.
        for (le, count) in [("1", 1.0), ("2", 1.0), ("4", 2.0), ("64", 2.0)] {
            assert_eq!(
                sample(
                    &text,
                    &format!(r#"crebito_posting_batch_size_bucket{{le="{le}"}}"#)
                ),
                Some(count),
                "{text}"
            );
        }
        assert_eq!(
            sample(&text, r#"crebito_posting_batch_size_bucket{le="+Inf"}"#),
            Some(3.0)
        );
        assert_eq!(sample(&text, "crebito_posting_batch_size_sum"), Some(104.0));
        assert_eq!(
            sample(&text, r#"crebito_db_pool_connections{state="in_use"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"crebito_db_pool_connections{state="idle"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, "crebito_db_pool_waiting"), Some(2.0));
        assert_eq!(sample(&text, "crebito_db_pool_max_connections"), Some(4.0));
        assert!(sample(&text, "crebito_http_open_connections").is_some());
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"crebito_build_info{{version="{}",ledger="sqlite"}}"#,
                    env!("CARGO_PKG_VERSION")
                )
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn disabled_storage_metrics_record_nothing() {
        let storage = StorageMetrics::default();
        let clone = storage.clone();
        storage.disable();
        clone.round_trip("post", Duration::from_millis(1));
        clone.replays(1);
        clone.batch(2);
        let metrics = Metrics::new("sqlite", Some(&storage), || None);
        let text = metrics.render();
        assert_eq!(sample(&text, "crebito_idempotent_replays_total"), Some(0.0));
        assert_eq!(sample(&text, "crebito_posting_batch_size_count"), Some(0.0));
        assert!(!text.contains("operation=\"post\""), "{text}");
        assert!(!text.contains("crebito_db_pool_"), "{text}");
    }
}
