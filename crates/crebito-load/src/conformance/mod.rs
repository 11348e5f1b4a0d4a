//! `crebito-load check`: the conformance checker for any implementation of
//! the crébitos API. One named check per rule of docs/contract.md, each with
//! its source and whether the rule is the challenge's or this project's
//! stricter choice.
//!
//! The checks run one after the other against a quiescent ledger: each
//! reads the balances it works on first and reasons from them, and puts
//! them back when it is done (it adds transactions, never changes a
//! balance for good). Only the check about the seed needs a freshly seeded
//! ledger; on a used one it is skipped, so the checker can run after a load
//! test.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::http::Target;
use crate::starting_state::{self, StartingState};

pub mod checks;
pub mod client;
pub mod present;
pub mod probe;

use client::Exchange;

/// Whose rule a check enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The challenge's own rule (its README or its load test).
    Challenge,
    /// This project's stricter choice where the challenge leaves room; the
    /// note says what the challenge allows.
    Project,
}

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The rule holds.
    Pass,
    /// The rule is broken; the evidence shows where.
    Fail,
    /// The check could not run here (for example: not freshly seeded).
    Skip,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// The check's name, e.g. `no-lost-update`.
    pub name: &'static str,
    /// The rule, in words.
    pub rule: &'static str,
    /// Where the rule is written, e.g. `docs/contract.md §3`.
    pub source: &'static str,
    /// Whose rule it is.
    pub origin: Origin,
    /// For [`Origin::Project`]: what the challenge itself allows.
    pub challenge_allows: Option<&'static str>,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was verified (pass), what broke (fail) or why it was skipped.
    pub detail: String,
    /// On failure: the exchanges that show it, request and response.
    pub evidence: Vec<Exchange>,
}

/// How the checks of one [`Origin`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Checks run.
    pub checks: usize,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// How many were skipped.
    pub skipped: usize,
}

impl Tally {
    fn of<'a>(outcomes: impl Iterator<Item = &'a CheckOutcome>) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            t.checks += 1;
            match o.status {
                Status::Pass => t.passed += 1,
                Status::Fail => t.failed += 1,
                Status::Skip => t.skipped += 1,
            }
        }
        t
    }
}

/// Everything one `crebito-load check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The base URLs checked (several: instances of one deployment).
    pub base_urls: Vec<String>,
    /// The ledger as found before the checks.
    pub starting_state: StartingState,
    /// Checks run.
    pub checks: Vec<CheckOutcome>,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// How many were skipped.
    pub skipped: usize,
    /// The challenge's own rules ([`Origin::Challenge`]).
    pub challenge_rules: Tally,
    /// This project's stricter choices ([`Origin::Project`]).
    pub stricter_rules: Tally,
    /// Whether a failed stricter rule fails the verdict (`--strict`).
    pub strict: bool,
    /// [`CheckReport::ok`]: `true` when the verdict is a pass.
    pub verdict_ok: bool,
}

impl CheckReport {
    /// The verdict: no rule of the challenge failed, nor, with `--strict`,
    /// any of this project's stricter rules.
    pub fn ok(&self) -> bool {
        self.challenge_rules.failed == 0 && (!self.strict || self.stricter_rules.failed == 0)
    }
}

/// Why a check did not pass.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The rule is broken: why, and the exchanges that show it.
    Fail(String, Vec<Exchange>),
    /// The check cannot run on this ledger.
    Skip(String),
}

/// A check's result: what was verified, or a [`Verdict`].
pub type Checked = Result<String, Verdict>;

/// Shorthand for a failure with evidence.
pub fn fail<T>(why: impl Into<String>, evidence: &[&Exchange]) -> Result<T, Verdict> {
    Err(Verdict::Fail(
        why.into(),
        evidence.iter().map(|e| (*e).clone()).collect(),
    ))
}

type CheckFuture<'a> = Pin<Box<dyn Future<Output = Checked> + Send + 'a>>;

/// One check of the catalogue.
pub struct Check {
    /// Name, kebab-case, stable (`--only` takes it).
    pub name: &'static str,
    /// The rule, in words.
    pub rule: &'static str,
    /// Where the rule is written.
    pub source: &'static str,
    /// Whose rule it is.
    pub origin: Origin,
    /// For [`Origin::Project`]: what the challenge allows instead.
    pub challenge_allows: Option<&'static str>,
    /// Runs it.
    pub run: for<'a> fn(&'a Ctx) -> CheckFuture<'a>,
}

/// What the checks share: the targets and the ledger's starting state.
pub struct Ctx {
    /// The base URLs, resolved; at least one.
    pub targets: Vec<Target>,
    /// The five seeded accounts as found before the checks.
    pub starting: StartingState,
    /// A few random characters that make this run's descriptions unique.
    pub nonce: String,
    /// The sustained probe's findings, once it has run.
    pub probe: tokio::sync::OnceCell<Result<probe::Findings, Verdict>>,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Base URLs (instances of one deployment, or one balancer).
    pub base_urls: Vec<String>,
    /// Only these checks (all when empty).
    pub only: Vec<String>,
    /// Only the challenge's rules, not this project's stricter choices.
    pub only_challenge: bool,
    /// A failed stricter rule fails the verdict too (`--strict`).
    pub strict: bool,
}

/// Why the checks could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A base URL is unusable.
    #[error(transparent)]
    Target(#[from] crate::http::TargetError),
    /// `--only` names no check of the catalogue.
    #[error("no check is named {0:?} (crebito-load check --list shows them)")]
    UnknownCheck(String),
    /// No base URL.
    #[error("no base URL given")]
    NoTarget,
}

/// Runs the checks `config` selects, one after the other, in catalogue
/// order.
///
/// Errors: [`CheckError`] when a base URL is unusable or `--only` names an
/// unknown check; a broken rule is a failed check, not an error.
pub async fn run(config: &CheckConfig) -> Result<CheckReport, CheckError> {
    if config.base_urls.is_empty() {
        return Err(CheckError::NoTarget);
    }
    let catalogue = checks::catalogue();
    for name in &config.only {
        if !catalogue.iter().any(|c| c.name == name) {
            return Err(CheckError::UnknownCheck(name.clone()));
        }
    }
    let mut targets = Vec::new();
    for url in &config.base_urls {
        targets.push(Target::resolve(url).await?);
    }
    let starting = starting_state::inspect(&targets[0]).await;
    let nonce: String = {
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..3)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect()
    };
    let ctx = Ctx {
        targets,
        starting,
        nonce,
        probe: tokio::sync::OnceCell::new(),
    };
    let mut outcomes = Vec::new();
    for check in catalogue.iter().filter(|c| {
        (config.only.is_empty() || config.only.iter().any(|n| n == c.name))
            && (!config.only_challenge || c.origin == Origin::Challenge)
    }) {
        let (status, detail, evidence) = match (check.run)(&ctx).await {
            Ok(detail) => (Status::Pass, detail, Vec::new()),
            Err(Verdict::Fail(why, evidence)) => (Status::Fail, why, evidence),
            Err(Verdict::Skip(why)) => (Status::Skip, why, Vec::new()),
        };
        outcomes.push(CheckOutcome {
            name: check.name,
            rule: check.rule,
            source: check.source,
            origin: check.origin,
            challenge_allows: check.challenge_allows,
            status,
            detail,
            evidence,
        });
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    let mut report = CheckReport {
        base_urls: config.base_urls.clone(),
        starting_state: ctx.starting,
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        skipped: count(Status::Skip),
        challenge_rules: Tally::of(outcomes.iter().filter(|o| o.origin == Origin::Challenge)),
        stricter_rules: Tally::of(outcomes.iter().filter(|o| o.origin == Origin::Project)),
        strict: config.strict,
        verdict_ok: false,
        checks: outcomes,
    };
    report.verdict_ok = report.ok();
    Ok(report)
}
