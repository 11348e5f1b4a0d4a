//! Runs the official simulation (docs/contract.md §5) against a target.
//!
//! Phase order and timing follow Gatling's injector: the root phase starts
//! at once, and each `andThen` child phase starts on the first injector tick
//! (every second since the start) after every user of its parent has ended.
//! So the run goes: 25 concurrent debits (t = 0) → balance check −25 →
//! 25 concurrent credits → balance check 0 → the five per-account validation
//! users and the 404 user together → after the 404 user, on the next tick,
//! the three open-model injections, each on its own schedule
//! ([`crate::injection`]) whatever the server does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::check::{run_checks, Session};
use crate::http::{Connection, Response, Target, TargetError};
use crate::injection::{LoadPlan, OpenInjection};
use crate::scenario::{self, RandomTransaction, Step};
use crate::starting_state::StartingState;
use crate::stats::{Group, Outcome, Recorder};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URL of the API (`--base-url`).
    pub base_url: String,
    /// Multiplier of the open-model step durations (`--scale`).
    pub scale: f64,
    /// Multiplier of the open-model arrival rates (`--rate`).
    pub rate: f64,
    /// Seed of the random inputs (`--seed`).
    pub seed: u64,
    /// How long to wait for `GET /clientes/1/extrato` to answer 2xx before
    /// starting (`--wait-ready`), probing every 2 s like the official script.
    pub wait_ready: Duration,
    /// Gatling's injector tick, 1 s: a phase starts on the first tick after
    /// the previous one ended. Only tests shorten it.
    pub tick: Duration,
    /// Show live progress on stderr.
    pub progress: bool,
    /// Run even when the target is not freshly seeded (`--allow-dirty`).
    pub allow_dirty: bool,
}

impl RunConfig {
    /// The official run against `base_url`: scale 1, rate 1, 40 s readiness
    /// wait, 1 s ticks.
    pub fn official(base_url: &str, seed: u64) -> RunConfig {
        RunConfig {
            base_url: base_url.to_string(),
            scale: 1.0,
            rate: 1.0,
            seed,
            wait_ready: Duration::from_secs(40),
            tick: Duration::from_secs(1),
            progress: false,
            allow_dirty: false,
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The base URL is unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The target never answered the readiness probe.
    #[error("{url}/clientes/1/extrato did not answer 2xx {} (last probe: {last}); {}", waited(*.waited_s), not_ready_hint(.last))]
    NotReady {
        /// The base URL.
        url: String,
        /// Seconds waited.
        waited_s: u64,
        /// The last probe's outcome.
        last: String,
    },
    /// The five seeded accounts are not as freshly seeded (docs/contract.md
    /// §2.3), and `allow_dirty` is not set.
    #[error("the target is not freshly seeded ({}): the official test's opening checks expect every seeded account at balance 0 with no transaction, so the run would be fined for that; start from a seeded ledger (docs/load-test.md) or pass --allow-dirty", .0.problems().join("; "))]
    NotFresh(StartingState),
}

/// The phases, for progress display and report markers.
pub const PHASES: [&str; 7] = [
    "25 débitos concorrentes",
    "saldo -25",
    "25 créditos concorrentes",
    "saldo 0",
    "validações por cliente + 404",
    "carga: rampa",
    "carga: constante",
];

/// State shared by every task of a run.
pub struct Ctx {
    /// Where requests go.
    pub target: Target,
    /// Collected results.
    pub recorder: Recorder,
    /// Index in [`PHASES`] of the phase running now.
    pub phase: AtomicUsize,
    /// Start of each phase, in seconds since the run started (filled as they start).
    pub phase_starts: std::sync::Mutex<Vec<(f64, &'static str)>>,
}

impl Ctx {
    fn enter(&self, phase: usize, at: Instant) {
        self.phase.store(phase, Ordering::Relaxed);
        let s = at
            .saturating_duration_since(self.recorder.t0())
            .as_secs_f64();
        self.phase_starts
            .lock()
            .expect("phase lock")
            .push((s, PHASES[phase]));
    }
}

/// How long [`RunError::NotReady`] says it waited.
fn waited(seconds: u64) -> String {
    if seconds == 0 {
        "to the one probe of --wait-ready 0".to_string()
    } else {
        format!(
            "within {seconds} s, probed every {} s",
            PROBE_PERIOD.as_secs()
        )
    }
}

/// The likely fix for a readiness probe that kept failing with `last`.
pub fn not_ready_hint(last: &str) -> &'static str {
    if last.starts_with("connection refused") {
        "nothing listens there: is the server running? is --base-url right?"
    } else if last.starts_with("HTTP ") {
        "something answers there, but not 2xx: is --base-url the API's (host, port, path prefix)? is the server still starting, with account 1 seeded?"
    } else if last.starts_with("no answer within") {
        "the server accepts connections but does not answer: is it still starting or overloaded? --wait-ready SECS waits longer"
    } else {
        "is the server running? is --base-url right?"
    }
}

/// Time between two readiness probes, as the official script (docs/contract.md §4).
pub const PROBE_PERIOD: Duration = Duration::from_secs(2);

/// Probes `GET /clientes/1/extrato` every [`PROBE_PERIOD`] until it answers
/// 2xx or `wait` has passed: the first probe at once, the last one when `wait`
/// ends (so `wait` is waited in full, and a zero `wait` probes once). Each
/// probe gets at most [`PROBE_PERIOD`] to answer.
///
/// Errors: [`RunError::NotReady`] with the last probe's outcome.
pub async fn wait_ready(target: &Target, wait: Duration) -> Result<(), RunError> {
    wait_ready_showing(target, wait, false).await
}

/// [`wait_ready`], and with `show`, says on stderr what it waits for once
/// the first probe has failed (unless `wait` is 0): on a terminal a line
/// that updates with the time waited and the last probe's outcome, in a log
/// one line; and, when the target answers after all, after how long.
///
/// Errors: [`RunError::NotReady`] with the last probe's outcome.
pub async fn wait_ready_showing(
    target: &Target,
    wait: Duration,
    show: bool,
) -> Result<(), RunError> {
    let mut display = WaitDisplay::new(show && !wait.is_zero(), target, wait);
    let result = probe_until_ready(target, wait, &mut display).await;
    display.finish(result.is_ok());
    result
}

/// What [`wait_ready_showing`] shows while it waits.
struct WaitDisplay {
    show: bool,
    what: String,
    wait: Duration,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    shown: bool,
}

impl WaitDisplay {
    fn new(show: bool, target: &Target, wait: Duration) -> WaitDisplay {
        WaitDisplay {
            show,
            what: format!(
                "{}/clientes/1/extrato to answer 2xx",
                target.base_url.trim_end_matches('/')
            ),
            wait,
            started: std::time::Instant::now(),
            bar: None,
            shown: false,
        }
    }

    /// A probe failed with `last`.
    fn failed(&mut self, last: &str) {
        if !self.show {
            return;
        }
        use std::io::IsTerminal;
        let waited = self.started.elapsed().as_secs();
        let total = self.wait.as_secs();
        if !self.shown {
            self.shown = true;
            if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bar = Some(bar);
            } else {
                eprintln!(
                    "crebito-load: waiting up to {total} s for {} (probing every {} s; first probe: {last})",
                    self.what,
                    PROBE_PERIOD.as_secs()
                );
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "waiting for {}: {waited} s of {total} s, last probe: {last}",
                self.what
            ));
        }
    }

    fn finish(self, ready: bool) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.shown && ready {
            eprintln!(
                "crebito-load: {} after {:.0} s",
                self.what.replace(" to answer 2xx", " answered 2xx"),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

async fn probe_until_ready(
    target: &Target,
    wait: Duration,
    display: &mut WaitDisplay,
) -> Result<(), RunError> {
    let started = Instant::now();
    let deadline = started + wait;
    let probe = scenario::balance_check(0).request;
    loop {
        let probe_at = Instant::now();
        let mut conn = Connection::new();
        let attempt = tokio::time::timeout(PROBE_PERIOD, conn.send(target, &probe)).await;
        let last = match attempt {
            Ok((Ok(Response { status, .. }), _, _)) if (200..300).contains(&status) => {
                return Ok(())
            }
            Ok((Ok(Response { status, .. }), _, _)) => format!("HTTP {status}"),
            Ok((Err(e), _, _)) => e.to_string(),
            Err(_) => format!("no answer within {} s", PROBE_PERIOD.as_secs()),
        };
        let now = Instant::now();
        display.failed(&last);
        if now >= deadline {
            return Err(RunError::NotReady {
                url: target.base_url.trim_end_matches('/').to_string(),
                waited_s: wait.as_secs(),
                last,
            });
        }
        sleep_until((probe_at + PROBE_PERIOD).min(deadline)).await;
    }
}

/// Sends one step on `conn`, runs its checks against `session` and records it.
pub async fn exec(
    ctx: &Ctx,
    group: Group,
    conn: &mut Connection,
    session: &mut Session,
    step: &Step,
) -> Option<u16> {
    let (outcome, start, end) = conn.send(&ctx.target, &step.request).await;
    match outcome {
        Ok(Response { status, body }) => {
            let checked = run_checks(&step.checks, status, &body, session);
            let result = match &checked {
                Ok(()) => Outcome::Ok,
                Err(failure) => Outcome::CheckFailed {
                    failure,
                    status,
                    body: &body,
                },
            };
            ctx.recorder
                .request(group, &step.describe(), start, end, result);
            Some(status)
        }
        Err(e) => {
            ctx.recorder.request(
                group,
                &step.describe(),
                start,
                end,
                Outcome::Error(e.to_string()),
            );
            None
        }
    }
}

/// A user that sends `steps` in sequence on its own connection.
async fn sequential_user(ctx: Arc<Ctx>, group: Group, steps: Vec<Step>, lag: Option<Duration>) {
    let start = Instant::now();
    ctx.recorder.user_started(lag);
    let mut conn = Connection::new();
    let mut session = Session::new();
    for step in &steps {
        exec(&ctx, group, &mut conn, &mut session, step).await;
    }
    drop(conn);
    ctx.recorder.user_ended(group, start, Instant::now());
}

/// The per-account validation user (docs/contract.md §5, 3a): 14 requests, the 4
/// statement reads after "danada" in parallel (the first on the user's
/// kept-alive connection, the others on new ones, as Gatling fetches
/// resources with up to 6 connections per host and user).
async fn account_user(ctx: Arc<Ctx>, account: u32, limit: i64) {
    let group = Group::Validations;
    let start = Instant::now();
    ctx.recorder.user_started(None);
    let mut conn = Connection::new();
    let mut session = Session::new();
    session.insert("id", account.to_string());
    session.insert("limite", limit.to_string());
    for step in scenario::account_checks_before(account, limit) {
        exec(&ctx, group, &mut conn, &mut session, &step).await;
    }
    let answered = exec(
        &ctx,
        group,
        &mut conn,
        &mut session,
        &scenario::danada(account),
    )
    .await;
    if answered.is_some() {
        let read = scenario::danada_statement(account);
        let mut reads = Vec::with_capacity(scenario::PARALLEL_STATEMENTS);
        let mut first = Some(std::mem::take(&mut conn));
        for _ in 0..scenario::PARALLEL_STATEMENTS {
            let ctx = ctx.clone();
            let step = read.clone();
            let mut session = session.clone();
            let mut c = first.take().unwrap_or_default();
            reads.push(async move {
                exec(&ctx, group, &mut c, &mut session, &step).await;
                c
            });
        }
        let mut conns = join_all(reads).await;
        conn = conns.swap_remove(0);
    }
    for step in scenario::invalid_postings(account) {
        exec(&ctx, group, &mut conn, &mut session, &step).await;
    }
    drop(conn);
    ctx.recorder.user_ended(group, start, Instant::now());
}

/// Polls futures concurrently on the current task and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future completed"))
        .collect()
}

/// `n` users at once, each sending `step`; returns when all have ended.
async fn at_once(ctx: &Arc<Ctx>, n: usize, group: Group, step: Step) {
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(sequential_user(
            ctx.clone(),
            group,
            vec![step.clone()],
            None,
        ));
    }
    while set.join_next().await.is_some() {}
}

/// Sleeps until the first injector tick after now.
async fn next_tick(ctx: &Ctx, tick: Duration) -> Instant {
    let t0 = ctx.recorder.t0();
    let elapsed = t0.elapsed();
    let k = (elapsed.as_nanos() / tick.as_nanos().max(1)) as u32 + 1;
    let at = t0 + tick * k;
    sleep_until(at).await;
    at
}

/// One open-model injection: spawns each user at its planned arrival time
/// and returns when every user has ended.
async fn inject(
    ctx: Arc<Ctx>,
    base: Instant,
    injection: OpenInjection,
    seed: u64,
    make: fn(&mut StdRng) -> (Group, Step),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = JoinSet::new();
    for offset in injection.arrivals() {
        let planned = base + offset;
        if planned > Instant::now() {
            sleep_until(planned).await;
        }
        let (group, step) = make(&mut rng);
        let ctx = ctx.clone();
        set.spawn(async move {
            let lag = Instant::now().saturating_duration_since(planned);
            sequential_user(ctx, group, vec![step], Some(lag)).await;
        });
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
}

fn debit_user(rng: &mut StdRng) -> (Group, Step) {
    (
        Group::Debits,
        scenario::debit(&RandomTransaction::draw(rng)),
    )
}

fn credit_user(rng: &mut StdRng) -> (Group, Step) {
    (
        Group::Credits,
        scenario::credit(&RandomTransaction::draw(rng)),
    )
}

fn statement_user(rng: &mut StdRng) -> (Group, Step) {
    use rand::RngExt;
    (
        Group::Statements,
        scenario::statement(rng.random_range(1..=5)),
    )
}

/// Seed of one injection's random stream, derived from the run's seed.
fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs every phase against `ctx`'s target, starting now (the run's t0 is
/// the recorder's). Returns when every user has ended.
pub async fn run_phases(ctx: Arc<Ctx>, plan: &LoadPlan, seed: u64, tick: Duration) {
    let t0 = ctx.recorder.t0();
    ctx.enter(0, t0);
    at_once(
        &ctx,
        scenario::CONCURRENT_VALIDATION_USERS,
        Group::Validations,
        scenario::concurrent_posting("d"),
    )
    .await;
    let at = next_tick(&ctx, tick).await;
    ctx.enter(1, at);
    at_once(&ctx, 1, Group::Validations, scenario::balance_check(-25)).await;
    let at = next_tick(&ctx, tick).await;
    ctx.enter(2, at);
    at_once(
        &ctx,
        scenario::CONCURRENT_VALIDATION_USERS,
        Group::Validations,
        scenario::concurrent_posting("c"),
    )
    .await;
    let at = next_tick(&ctx, tick).await;
    ctx.enter(3, at);
    at_once(&ctx, 1, Group::Validations, scenario::balance_check(0)).await;
    let at = next_tick(&ctx, tick).await;
    ctx.enter(4, at);
    let mut accounts = JoinSet::new();
    for (account, limit) in scenario::SEEDED_ACCOUNTS {
        accounts.spawn(account_user(ctx.clone(), account, limit));
    }
    at_once(&ctx, 1, Group::Validations, scenario::not_found()).await;
    let base = next_tick(&ctx, tick).await;
    ctx.enter(5, base);
    let constant_start = base + Duration::from_secs(plan.debits.ramp_seconds);
    let marker = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            sleep_until(constant_start).await;
            ctx.enter(6, constant_start);
        })
    };
    let mut load = JoinSet::new();
    load.spawn(inject(
        ctx.clone(),
        base,
        plan.debits.clone(),
        stream_seed(seed, 1),
        debit_user,
    ));
    load.spawn(inject(
        ctx.clone(),
        base,
        plan.credits.clone(),
        stream_seed(seed, 2),
        credit_user,
    ));
    load.spawn(inject(
        ctx.clone(),
        base,
        plan.statements.clone(),
        stream_seed(seed, 3),
        statement_user,
    ));
    while load.join_next().await.is_some() {}
    while accounts.join_next().await.is_some() {}
    let _ = marker.await;
}
