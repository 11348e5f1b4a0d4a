//! One run of the official simulation, from the readiness probe to the
//! summary value: the presenters in [`crate::report`] only read what this
//! produces.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::http::Target;
use crate::injection::LoadPlan;
use crate::progress;
use crate::runner::{self, Ctx, RunConfig, RunError};
use crate::score::Score;
use crate::starting_state::{self, StartingState};
use crate::stats::{self, Group, GroupStats, Recorded, Recorder};
use crate::summary::{Generator, Groups, PercentileCurves, RunInfo, Summary, LAG_P99_LIMIT_MS};

/// A finished run: the summary and the series the report draws.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Figures and score.
    pub summary: Summary,
    /// Per-second series.
    pub series: stats::TimeSeries,
    /// Latency distribution.
    pub distribution: stats::Distribution,
    /// Percentile curves per group: (percentile %, ms).
    pub curves: Vec<Vec<(f64, f64)>>,
    /// Start of each phase: (seconds since start, name).
    pub phases: Vec<(f64, String)>,
}

/// Resolves the target and waits until it answers (`--wait-ready`).
///
/// Errors: [`RunError::Target`] for an unusable base URL,
/// [`RunError::NotReady`] when the readiness probe never passed.
pub async fn connect(config: &RunConfig) -> Result<Target, RunError> {
    let target = Target::resolve(&config.base_url).await?;
    runner::wait_ready_showing(&target, config.wait_ready, config.progress).await?;
    Ok(target)
}

/// Runs the official simulation as `config` says, on the current tokio
/// runtime (`threads` is only reported): [`connect`], read the
/// [`StartingState`], then [`execute`].
///
/// Errors: those of [`connect`], and [`RunError::NotFresh`] when the target
/// is not freshly seeded and `config.allow_dirty` is not set (nothing is
/// sent then but the five statement reads).
pub async fn run(config: &RunConfig, threads: usize) -> Result<RunReport, RunError> {
    let target = connect(config).await?;
    let starting = starting_state::inspect(&target).await;
    if !starting.fresh && !config.allow_dirty {
        return Err(RunError::NotFresh(starting));
    }
    Ok(execute(config, target, starting, threads).await)
}

/// Runs every phase against `target` and summarises the run; `starting`
/// is what [`starting_state::inspect`] found, kept in the summary.
pub async fn execute(
    config: &RunConfig,
    target: Target,
    starting: StartingState,
    threads: usize,
) -> RunReport {
    let plan = LoadPlan::new(config.scale, config.rate);
    let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let cpu_before = cpu_time();
    let t0 = Instant::now();
    let ctx = Arc::new(Ctx {
        target,
        recorder: Recorder::new(t0),
        phase: AtomicUsize::new(0),
        phase_starts: std::sync::Mutex::new(Vec::new()),
    });
    let progress = config.progress.then(|| {
        let planned = config.tick * 5 + Duration::from_secs(plan.seconds());
        progress::Progress::start(ctx.clone(), planned)
    });
    runner::run_phases(ctx.clone(), &plan, config.seed, config.tick).await;
    if let Some(p) = progress {
        p.stop().await;
    }
    let cpu_after = cpu_time();
    let cpu = Cpu {
        user_s: (cpu_after.0 - cpu_before.0).max(0.0),
        sys_s: (cpu_after.1 - cpu_before.1).max(0.0),
    };
    let recorded = ctx.recorder.finish();
    let phases = ctx
        .phase_starts
        .lock()
        .expect("phase lock")
        .iter()
        .map(|(s, n)| (*s, n.to_string()))
        .collect();
    let info = RunInfo {
        base_url: config.base_url.clone(),
        scale: config.scale,
        rate: config.rate,
        seed: config.seed,
        step_seconds: plan.debits.ramp_seconds,
        planned_requests: plan.total_requests(),
        started_at,
        duration_s: 0.0,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let summary = summarize(
        &recorded,
        info,
        generator(&recorded, cpu, threads),
        starting,
    );
    let seconds = summary.run.duration_s.ceil() as usize;
    RunReport {
        series: stats::time_series(&recorded, seconds),
        distribution: stats::distribution(&recorded),
        curves: stats::percentile_curves(&recorded),
        summary,
        phases,
    }
}

/// CPU time the generator used during a run, in s.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    user_s: f64,
    sys_s: f64,
}

/// The generator's own figures: start lag of the open-model users and CPU.
fn generator(recorded: &Recorded, cpu: Cpu, threads: usize) -> Generator {
    let lag = &recorded.lag;
    let users = lag.len();
    let lag_ms = |v: u64| {
        if users == 0 {
            0.0
        } else {
            v as f64 / 1000.0
        }
    };
    let requests = recorded.requests.len();
    let cpu_s = cpu.user_s + cpu.sys_s;
    Generator {
        users,
        lag_p50_ms: lag_ms(lag.value_at_quantile(0.5)),
        lag_p99_ms: lag_ms(lag.value_at_quantile(0.99)),
        lag_max_ms: lag_ms(lag.max()),
        trustworthy: lag_ms(lag.value_at_quantile(0.99)) <= LAG_P99_LIMIT_MS,
        cpu_s,
        cpu_user_s: cpu.user_s,
        cpu_sys_s: cpu.sys_s,
        cpu_us_per_request: if requests == 0 {
            0.0
        } else {
            cpu_s * 1e6 / requests as f64
        },
        threads,
    }
}

/// The summary value of a run: per-group statistics, failures and the
/// score (docs/contract.md §6). `info.duration_s` is filled here: from the
/// first request's start to the last response.
fn summarize(
    recorded: &Recorded,
    mut info: RunInfo,
    generator: Generator,
    starting: StartingState,
) -> Summary {
    let last_end_us = recorded
        .requests
        .iter()
        .map(|r| r.start_us + r.latency_us)
        .max()
        .unwrap_or(0);
    let duration_s = (last_end_us as f64 / 1e6).max(1e-6);
    info.duration_s = duration_s;
    let stats_of = |g: Group| {
        stats::group_stats(
            g.label(),
            recorded.requests.iter().filter(|r| r.group == g),
            duration_s,
        )
    };
    let curve_of =
        |g: Group| stats::percentile_curve(recorded.requests.iter().filter(|r| r.group == g));
    let all: GroupStats = stats::group_stats("todas", recorded.requests.iter(), duration_s);
    let inconsistencies: u64 = recorded
        .failures
        .iter()
        .filter(|f| f.inconsistency)
        .map(|f| f.count)
        .sum();
    let score = Score::compute(all.ranges.under_250ms, all.requests, inconsistencies);
    let mut summary = Summary {
        requests: all.requests,
        ok: all.ok,
        ko: all.ko,
        latency_ms: all.latency_ms,
        gatling_ms: all.gatling_ms,
        requests_per_s: all.requests_per_s,
        ranges: all.ranges,
        groups: Groups {
            debitos: stats_of(Group::Debits),
            creditos: stats_of(Group::Credits),
            extratos: stats_of(Group::Statements),
            validacoes: stats_of(Group::Validations),
        },
        failures: recorded.failures.clone(),
        generator,
        run: info,
        starting_state: Some(starting),
        percentile_curves_ms: PercentileCurves {
            debitos: curve_of(Group::Debits),
            creditos: curve_of(Group::Credits),
            extratos: curve_of(Group::Statements),
            validacoes: curve_of(Group::Validations),
            todas: stats::percentile_curve(recorded.requests.iter()),
        },
        ..Summary::default()
    };
    summary.set_score(score);
    summary
}

/// CPU time (user, system) used by this process so far, in s.
fn cpu_time() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (0.0, 0.0);
        }
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        (t(usage.ru_utime), t(usage.ru_stime))
    }
}
