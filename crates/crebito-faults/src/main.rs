//! `crebito-faults`: the load driver of crebito's fault tests.
//!
//! Closed-loop workers post credits and debits, each with a unique
//! `descricao` that doubles as its `Idempotency-Key`. An attempt that gets
//! no usable answer (timeout, connection error, 502/503/504) is retried with
//! the same key, so a posting whose first answer was lost is still applied
//! at most once. Every posting's final outcome goes to a JSON Lines record
//! that `crebito audit --acknowledged FILE` checks against the database; a
//! JSON summary gives status counts, latencies and how long the service was
//! unavailable (the longest stretch without a final answer, and from the
//! first failed attempt to the next answer), and the run is judged against
//! the thresholds the scenario sets (`--allow`, `--max-ms`, …): one
//! `ok:`/`FAIL:` line per check, exit status 1 when any fails. The scenario
//! scripts (`scripts/faults`, `scripts/ha-faults`) read no JSON to judge.

mod checks;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use checks::{KindsAt, Thresholds};
use clap::Parser;
use crebito::audit::{ClientRecord, Outcome};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::sync::Mutex;

/// Drive postings at a crebito deployment, record every outcome, and judge
/// the run against the given thresholds.
///
/// Attempt kinds: the HTTP status ("200", "422", "503", …), or "timeout",
/// "connect", "io" when no answer came; "lost" in a threshold stands for
/// every attempt without a final answer (anything but 200 and 422).
///
/// Exit status: 0 when every check holds, 1 when one fails (an answer that
/// breaks the contract, or a threshold), 2 for bad arguments or when the
/// record or summary cannot be written.
#[derive(Debug, Clone, Parser)]
#[command(name = "crebito-faults", version)]
struct Args {
    /// Base URL of the API (the load balancer).
    #[arg(
        long,
        env = "CREBITO_BASE_URL",
        default_value = "http://localhost:9999"
    )]
    base_url: String,
    /// How long to start new postings, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration_secs: f64,
    /// Concurrent workers (each one posting after the other), at most 600.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Timeout of one attempt, milliseconds (connection included).
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Keep retrying an unanswered posting for up to this long, seconds.
    #[arg(long, default_value_t = 30.0)]
    retry_for_secs: f64,
    /// Share of postings that are debits, percent (the rest are credits).
    /// Above 50 the balances drift down to their limits, so that refusals
    /// (422) are part of the record too.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u8).range(0..=100))]
    debit_percent: u8,
    /// Pause between a worker's postings, milliseconds.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Open a new connection for every attempt (no keep-alive).
    #[arg(long)]
    new_connection_each: bool,
    /// Two-character prefix of every descricao, unique per run (random by default).
    #[arg(long)]
    prefix: Option<String>,
    /// Where to write the record of postings (JSON Lines).
    #[arg(long)]
    record: PathBuf,
    /// Where to write the summary (JSON); stdout when absent (the report
    /// of the checks then goes to stderr).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Attempt kinds allowed, comma-separated (e.g. 200,422,503); any other
    /// kind fails the run.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// KIND[+KIND...]=MS: the slowest attempt of these kinds must take less
    /// than MS milliseconds (e.g. 503=3000). Repeatable.
    #[arg(long, value_name = "KINDS=MS")]
    max_ms: Vec<KindsAt>,
    /// KIND[+KIND...]=PERCENT: attempts of these kinds must be at least
    /// PERCENT of all attempts (e.g. 200+422=90). Repeatable.
    #[arg(long, value_name = "KINDS=PERCENT")]
    min_share: Vec<KindsAt>,
    /// KIND[+KIND...]=N: at least N attempts of these kinds (e.g. 503=1,
    /// lost=1). Repeatable.
    #[arg(long, value_name = "KINDS=N")]
    min_count: Vec<KindsAt>,
    /// Every posting must get a final answer (200 or 422) within
    /// --retry-for-secs.
    #[arg(long)]
    require_final: bool,
    /// At least N postings must be refused (422), so that "nothing refused
    /// is stored" is put to the test.
    #[arg(long, value_name = "N")]
    min_refused: Option<u64>,
    /// The longest stretch between two final answers (200 or 422) must be
    /// shorter than MS milliseconds: how long the clients were cut off.
    #[arg(long, value_name = "MS", value_parser = positive_ms)]
    max_unavailable_ms: Option<f64>,
}

/// A bound in milliseconds: a finite number above 0.
fn positive_ms(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite() && *ms > 0.0)
        .ok_or_else(|| format!("{s:?} is not a number of milliseconds above 0"))
}

impl Args {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            allow: self.allow.clone(),
            max_ms: self.max_ms.clone(),
            min_share: self.min_share.clone(),
            min_count: self.min_count.clone(),
            require_final: self.require_final,
            min_refused: self.min_refused,
            max_unavailable_ms: self.max_unavailable_ms,
        }
    }
}

/// Counts and latencies of a run.
#[derive(Debug, Clone, Default, Serialize)]
struct Summary {
    /// Postings started.
    postings: u64,
    /// Postings answered 200.
    acknowledged: u64,
    /// Postings answered 422 for the limit.
    refused: u64,
    /// Postings with no usable answer after every retry.
    unknown: u64,
    /// Acknowledged postings that needed more than one attempt.
    acknowledged_after_retry: u64,
    /// Attempts by result: "200", "422", "503", "timeout", "connect", …
    attempts: BTreeMap<String, u64>,
    /// Slowest attempt by result, milliseconds.
    max_latency_ms: BTreeMap<String, f64>,
    /// Answers that break the contract (e.g. a 422 that is not about the
    /// limit, or a 200 with a balance below -limite).
    contract_violations: Vec<String>,
    /// How long the service was unavailable, as the clients saw it.
    availability: Availability,
    /// When each attempt ended and whether it got a final answer.
    #[serde(skip)]
    timeline: Vec<(Instant, bool)>,
}

/// The unavailability of a run, from every attempt's end time. A final
/// answer (200 or 422) means the service worked; anything else (502, 503,
/// 504, timeout, connection error) means it did not.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
struct Availability {
    /// Longest stretch between two consecutive final answers, milliseconds:
    /// the unavailability window, whether the service failed fast or stalled.
    longest_gap_ms: f64,
    /// From the end of the first failed attempt to the first final answer
    /// after it, milliseconds ("first failed to first succeeded request");
    /// absent when no attempt failed or none was answered after it.
    first_failure_to_answer_ms: Option<f64>,
    /// From the end of the first failed attempt to the end of the last one,
    /// milliseconds; 0 when no attempt failed.
    failure_span_ms: f64,
    /// When the first failed attempt ended, milliseconds after the first
    /// attempt ended; absent when no attempt failed.
    first_failure_at_ms: Option<f64>,
}

impl Availability {
    /// Computes the figures from `(end time, got a final answer)` pairs in
    /// any order.
    fn from_timeline(timeline: &mut [(Instant, bool)]) -> Self {
        timeline.sort_by_key(|&(at, _)| at);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let Some(&(start, _)) = timeline.first() else {
            return Availability::default();
        };
        let mut longest_gap = Duration::ZERO;
        let mut last_answer: Option<Instant> = None;
        for &(at, _) in timeline.iter().filter(|(_, answered)| *answered) {
            if let Some(previous) = last_answer {
                longest_gap = longest_gap.max(at - previous);
            }
            last_answer = Some(at);
        }
        let failures: Vec<Instant> = timeline
            .iter()
            .filter(|(_, answered)| !answered)
            .map(|&(at, _)| at)
            .collect();
        let (Some(&first), Some(&last)) = (failures.first(), failures.last()) else {
            return Availability {
                longest_gap_ms: ms(longest_gap),
                ..Availability::default()
            };
        };
        let recovered = timeline
            .iter()
            .find(|&&(at, answered)| answered && at > first)
            .map(|&(at, _)| at);
        Availability {
            longest_gap_ms: ms(longest_gap),
            first_failure_to_answer_ms: recovered.map(|at| ms(at - first)),
            failure_span_ms: ms(last - first),
            first_failure_at_ms: Some(ms(first - start)),
        }
    }
}

impl Summary {
    /// Counts one attempt of result `kind` that ended at `ended` after
    /// `latency`.
    fn attempt(&mut self, kind: &str, ended: Instant, latency: Duration) {
        *self.attempts.entry(kind.to_owned()).or_default() += 1;
        let ms = latency.as_secs_f64() * 1000.0;
        let max = self.max_latency_ms.entry(kind.to_owned()).or_default();
        if ms > *max {
            *max = ms;
        }
        self.timeline.push((ended, matches!(kind, "200" | "422")));
    }
}

enum Attempt {
    Answer(u16, serde_json::Value),
    Lost(&'static str),
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
    timeout: Duration,
) -> Attempt {
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .timeout(timeout)
        .send();
    let response = match request.await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Attempt::Lost("timeout"),
        Err(e) if e.is_connect() => return Attempt::Lost("connect"),
        Err(_) => return Attempt::Lost("io"),
    };
    let status = response.status().as_u16();
    match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(bytes)) => Attempt::Answer(
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        ),
        Ok(Err(_)) => Attempt::Lost("io"),
        Err(_) => Attempt::Lost("timeout"),
    }
}

fn client(args: &Args) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().tcp_nodelay(true);
    if args.new_connection_each {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("HTTP client")
}

/// Base-36 digits, so that a 10-character descricao holds a prefix of 2
/// and 8 digits of counter.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 8];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

async fn worker(
    id: usize,
    args: Arc<Args>,
    prefix: String,
    deadline: Instant,
    summary: Arc<Mutex<Summary>>,
    records: Arc<Mutex<Vec<ClientRecord>>>,
) {
    let client = client(&args);
    let mut rng = StdRng::seed_from_u64(rand::random::<u64>() ^ id as u64);
    let timeout = Duration::from_millis(args.timeout_ms);
    let retry_for = Duration::from_secs_f64(args.retry_for_secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let sequence = (id as u64) << 32 | n;
        n += 1;
        let descricao = format!("{prefix}{}", base36(sequence));
        let account: i32 = rng.random_range(1..=5);
        let tipo = if rng.random_range(0..100u8) < args.debit_percent {
            "d"
        } else {
            "c"
        };
        let valor: i64 = rng.random_range(1..=5000);
        let body =
            serde_json::json!({"valor": valor, "tipo": tipo, "descricao": descricao}).to_string();
        let url = format!("{}/clientes/{account}/transacoes", args.base_url);
        let started = Instant::now();
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            let attempt_started = Instant::now();
            let result = attempt(&client, &url, &descricao, &body, timeout).await;
            let ended = Instant::now();
            let latency = ended - attempt_started;
            let mut s = summary.lock().await;
            match result {
                Attempt::Answer(200, value) => {
                    s.attempt("200", ended, latency);
                    let (saldo, limite) = (value["saldo"].as_i64(), value["limite"].as_i64());
                    if !matches!((saldo, limite), (Some(b), Some(l)) if b >= -l) {
                        s.contract_violations.push(format!("200 with {value}"));
                    }
                    break Outcome::Acknowledged;
                }
                Attempt::Answer(422, value) => {
                    s.attempt("422", ended, latency);
                    // docs/contract.md §2.5: the problem type names the rule.
                    if value["type"] != "urn:crebito:problem:limit-exceeded" {
                        s.contract_violations
                            .push(format!("422 not about the limit: {value}"));
                    }
                    break Outcome::Refused;
                }
                Attempt::Answer(status @ (502..=504), _) => {
                    s.attempt(&status.to_string(), ended, latency)
                }
                Attempt::Answer(status, value) => {
                    s.attempt(&status.to_string(), ended, latency);
                    s.contract_violations
                        .push(format!("unexpected {status}: {value}"));
                }
                Attempt::Lost(kind) => s.attempt(kind, ended, latency),
            }
            drop(s);
            if started.elapsed() >= retry_for {
                break Outcome::Unknown;
            }
            let backoff = Duration::from_millis((25 * u64::from(attempts)).min(500));
            tokio::time::sleep(backoff).await;
        };
        {
            let mut s = summary.lock().await;
            s.postings += 1;
            match outcome {
                Outcome::Acknowledged => {
                    s.acknowledged += 1;
                    if attempts > 1 {
                        s.acknowledged_after_retry += 1;
                    }
                }
                Outcome::Refused => s.refused += 1,
                Outcome::Unknown => s.unknown += 1,
            }
        }
        records.lock().await.push(ClientRecord {
            account,
            descricao,
            tipo: tipo.to_owned(),
            valor,
            outcome,
        });
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // A descricao holds 8 base-36 digits of (worker << 32 | counter).
    if !(1..=600).contains(&args.concurrency) || args.duration_secs <= 0.0 || args.timeout_ms == 0 {
        eprintln!(
            "crebito-faults: --concurrency must be 1..=600, --duration-secs and --timeout-ms positive"
        );
        return ExitCode::from(2);
    }
    let prefix = match &args.prefix {
        Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_alphanumeric()) => p.clone(),
        Some(_) => {
            eprintln!("crebito-faults: --prefix must be 2 ASCII letters or digits");
            return ExitCode::from(2);
        }
        None => {
            let mut rng = StdRng::seed_from_u64(rand::random());
            (0..2)
                .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
                .collect()
        }
    };
    let args = Arc::new(args);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration_secs);
    let summary = Arc::new(Mutex::new(Summary::default()));
    let records = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|id| {
            tokio::spawn(worker(
                id,
                args.clone(),
                prefix.clone(),
                deadline,
                summary.clone(),
                records.clone(),
            ))
        })
        .collect();
    for worker in workers {
        if let Err(e) = worker.await {
            eprintln!("crebito-faults: a worker failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let records = records.lock().await;
    let lines: String = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("record") + "\n")
        .collect();
    if let Err(e) = std::fs::write(&args.record, lines) {
        eprintln!(
            "crebito-faults: cannot write {}: {e}",
            args.record.display()
        );
        return ExitCode::from(2);
    }
    let mut summary = summary.lock().await;
    let mut timeline = std::mem::take(&mut summary.timeline);
    summary.availability = Availability::from_timeline(&mut timeline);
    let json = serde_json::to_string_pretty(&*summary).expect("summary");
    // The human report goes where the JSON does not.
    let mut report: Box<dyn std::io::Write> = match &args.summary {
        Some(path) => {
            if let Err(e) = std::fs::write(path, json + "\n") {
                eprintln!("crebito-faults: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
            Box::new(std::io::stdout())
        }
        None => {
            println!("{json}");
            Box::new(std::io::stderr())
        }
    };
    let slowest: BTreeMap<&String, u64> = summary
        .max_latency_ms
        .iter()
        .map(|(k, ms)| (k, ms.round() as u64))
        .collect();
    let mut lines = vec![format!(
        "{} postings: {} acknowledged ({} after a retry), {} refused, {} unknown; attempts {:?}; slowest ms {:?}",
        summary.postings,
        summary.acknowledged,
        summary.acknowledged_after_retry,
        summary.refused,
        summary.unknown,
        summary.attempts,
        slowest
    )];
    lines.push(format!(
        "unavailable: longest stretch without a final answer {:.0} ms; first failed attempt to the next final answer {}",
        summary.availability.longest_gap_ms,
        summary
            .availability
            .first_failure_to_answer_ms
            .map_or("- (none failed)".to_owned(), |ms| format!("{ms:.0} ms"))
    ));
    let verdicts = args.thresholds().judge(&summary);
    lines.extend(verdicts.iter().map(ToString::to_string));
    for line in lines {
        // A closed pipe must not turn a verdict into a panic.
        let _ = writeln!(report, "{line}");
    }
    if verdicts.iter().all(|v| v.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline from (milliseconds after a base instant, answered) pairs.
    fn timeline(events: &[(u64, bool)]) -> Vec<(Instant, bool)> {
        let base = Instant::now();
        events
            .iter()
            .map(|&(ms, answered)| (base + Duration::from_millis(ms), answered))
            .collect()
    }

    #[test]
    fn availability_of_a_run_without_failures() {
        let mut events = timeline(&[(30, true), (0, true), (10, true)]);
        let a = Availability::from_timeline(&mut events);
        assert_eq!(a.longest_gap_ms, 20.0);
        assert_eq!(a.first_failure_to_answer_ms, None);
        assert_eq!(a.failure_span_ms, 0.0);
        assert_eq!(a.first_failure_at_ms, None);
    }

    #[test]
    fn availability_measures_the_outage_between_answers() {
        // Answers until 100 ms, failures from 150 to 900 ms, answers again
        // from 1200 ms; unordered, as workers report them.
        let mut events = timeline(&[
            (1200, true),
            (0, true),
            (150, false),
            (100, true),
            (900, false),
            (500, false),
            (1300, true),
        ]);
        let a = Availability::from_timeline(&mut events);
        assert_eq!(a.longest_gap_ms, 1100.0);
        assert_eq!(a.first_failure_to_answer_ms, Some(1050.0));
        assert_eq!(a.failure_span_ms, 750.0);
        assert_eq!(a.first_failure_at_ms, Some(150.0));
    }

    #[test]
    fn availability_when_the_service_never_came_back() {
        let mut events = timeline(&[(0, true), (50, false), (80, false)]);
        let a = Availability::from_timeline(&mut events);
        assert_eq!(a.first_failure_to_answer_ms, None);
        assert_eq!(a.failure_span_ms, 30.0);
        assert_eq!(
            Availability::from_timeline(&mut []),
            Availability::default()
        );
    }

    #[test]
    fn descriptions_fit_ten_characters_and_are_unique() {
        assert_eq!(base36(0), "00000000");
        assert_eq!(base36(35), "0000000z");
        assert_eq!(base36(36), "00000010");
        let a = base36(3 << 32 | 7);
        let b = base36(7 << 32 | 3);
        assert_ne!(a, b);
        assert_eq!(format!("ab{a}").chars().count(), 10);
    }
}
