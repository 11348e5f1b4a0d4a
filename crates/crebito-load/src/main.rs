//! `crebito-load`: runs the official crébitos load test (docs/contract.md §5)
//! against a base URL, prints the summary and the SLA score (docs/contract.md
//! §6), writes an HTML report (unless `--no-report`; its path is printed
//! last) and optionally a JSON summary. `crebito-load check` checks any
//! implementation against the rules of docs/contract.md.
//!
//! Exit status of a run: 0 when the run completed (and the payout is at
//! least `--fail-under`), 1 when the payout is below `--fail-under`, 2 on
//! unusable arguments or an unreachable target, 3 when the target is not
//! freshly seeded and `--allow-dirty` is not given. Of `check`: 0 when no
//! check of the challenge's rules failed (with `--strict`: no check at all),
//! 1 when one did, 2 on unusable arguments or an unreachable target. Of
//! `compare`: 0, or 2 when a summary cannot be read.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crebito_load::conformance::{self, CheckConfig};
use crebito_load::runner::{RunConfig, RunError};
use crebito_load::{report, run, starting_state, RunReport};

/// The official Rinha de Backend 2024/Q1 load test (crébitos), with its SLA
/// score and an HTML report. Without a subcommand it runs the load test.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an implementation against docs/contract.md: one named check per
    /// rule, each with its source and whose rule it is; exit 1 when one of
    /// the challenge's rules fails (or, with --strict, one of this
    /// project's stricter choices). Run it on a
    /// quiescent ledger (no other traffic); every balance it moves is put
    /// back. Only the check about the seed needs a freshly seeded ledger (it
    /// is skipped on a used one), so it can run after a load test.
    Check(CheckArgs),
    /// Compare runs side by side: each summary's figures (payout, KO,
    /// inconsistencies, mean, p50, p99, max, per group) with its ratio to the
    /// first's, and optionally an HTML page with the runs' percentile curves
    /// overlaid. Exit 2 when a summary cannot be read.
    Compare(CompareArgs),
}

/// Options of `crebito-load compare`.
#[derive(Debug, ClapArgs)]
struct CompareArgs {
    /// Two or more summaries: --json output or a report's summary.json (a
    /// report directory means its summary.json). Ratios are to the first.
    #[arg(required = true, num_args = 2.., value_name = "SUMMARY")]
    summaries: Vec<PathBuf>,

    /// Label of each run, in the summaries' order (repeat it); default: the
    /// path.
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,

    /// Also write a self-contained HTML page with the figures and the runs'
    /// percentile curves overlaid (all requests and per group).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,

    /// Print a Markdown table instead of the text table.
    #[arg(long)]
    markdown: bool,
}

/// Options of `crebito-load check`.
#[derive(Debug, ClapArgs)]
struct CheckArgs {
    /// Base URL of the API under test. Repeat it (or separate with commas)
    /// for the instances of one deployment: concurrent requests and
    /// read-your-write reads are spread over them.
    #[arg(
        long,
        env = "CREBITO_LOAD_BASE_URL",
        default_value = "http://localhost:9999",
        value_delimiter = ','
    )]
    base_url: Vec<String>,

    /// Run only these checks (repeat, or separate with commas); --list shows
    /// the names.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,

    /// Run only the challenge's own rules, not this project's stricter
    /// choices (for example 400 vs 422, 415, 405).
    #[arg(long)]
    only_challenge: bool,

    /// Write the results as JSON to this file ("-" for stdout; the text then
    /// goes to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<String>,

    /// Before checking, probe GET /clientes/1/extrato every 2 s until it
    /// answers 2xx or this many seconds have passed.
    #[arg(long, value_name = "SECS", default_value_t = 40)]
    wait_ready: u64,

    /// Exit 1 when one of this project's stricter rules fails too, not
    /// only one of the challenge's (how this project checks itself).
    #[arg(long)]
    strict: bool,

    /// List the checks (name, source, whose rule) and exit.
    #[arg(long)]
    list: bool,
}

/// Options of a load-test run.
#[derive(Debug, ClapArgs)]
struct Args {
    /// Base URL of the API under test.
    #[arg(
        long,
        env = "CREBITO_LOAD_BASE_URL",
        default_value = "http://localhost:9999"
    )]
    base_url: String,

    /// Multiplies the durations of the three open-model phases (2 min ramp +
    /// 2 min constant at 1.0; 0.1 is a 24-second load at the same rates).
    /// Rounded to whole seconds per step, at least 1 s.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    scale: f64,

    /// Multiplies the arrival rates of the three open-model phases (for
    /// capacity runs beyond the official load).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    rate: f64,

    /// Seed of the random inputs (accounts, amounts, descriptions); random
    /// when absent, and printed so that a run can be repeated.
    #[arg(long, env = "CREBITO_LOAD_SEED")]
    seed: Option<u64>,

    /// Before starting, probe GET /clientes/1/extrato every 2 s, like the
    /// official script, until it answers 2xx or this many seconds have passed
    /// (the last probe at the end; 0 probes once).
    #[arg(long, value_name = "SECS", default_value_t = 40)]
    wait_ready: u64,

    /// Write the report (a self-contained index.html and summary.json) into
    /// this directory; by default a new folder per run,
    /// crebito-load-report/<start time>/. Its path is printed last.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,

    /// Write no report.
    #[arg(long, conflicts_with = "report")]
    no_report: bool,

    /// Write the JSON summary to this file ("-" for stdout; the text summary
    /// then goes to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<String>,

    /// Run even when the target is not freshly seeded (the five accounts'
    /// statements are read first; without this flag a used ledger stops the
    /// run with exit status 3).
    #[arg(long)]
    allow_dirty: bool,

    /// Exit with status 1 when the payout is below this many USD.
    #[arg(long, value_name = "USD")]
    fail_under: Option<f64>,

    /// Tokio worker threads of the generator (it shares the machine with the
    /// stack under test; 1 is plenty for the official load).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,

    /// Gatling's injector tick in ms (phases start on ticks); only tests
    /// shorten it.
    #[arg(long, default_value_t = 1000, hide = true)]
    tick_ms: u64,
}

fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a number greater than 0"))
    }
}

/// Raises the open-file soft limit to the hard limit: against a slow server
/// the open model keeps up to (arrival rate × 60 s) users alive, each with
/// its own connection (docs/contract.md §5), far more than a 1,024-descriptor default.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Compare(args)) => compare(&args),
        None => load(&cli.run),
    }
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("crebito-load: cannot start the runtime: {e}");
            ExitCode::from(2)
        })
}

/// `crebito-load check`.
fn check(args: &CheckArgs) -> ExitCode {
    if args.list {
        for c in conformance::checks::catalogue() {
            let whose = match c.challenge_allows {
                None => "challenge".to_string(),
                Some(allows) => format!("this project ({allows})"),
            };
            println!(
                "{:<24} {:<22} {whose}\n{:<24} {}",
                c.name, c.source, "", c.rule
            );
        }
        return ExitCode::SUCCESS;
    }
    raise_open_file_limit();
    let runtime = match current_thread_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let config = CheckConfig {
        base_urls: args.base_url.clone(),
        only: args.only.clone(),
        only_challenge: args.only_challenge,
        strict: args.strict,
    };
    let result = runtime.block_on(async {
        for url in &config.base_urls {
            let target = crebito_load::http::Target::resolve(url)
                .await
                .map_err(|e| e.to_string())?;
            crebito_load::runner::wait_ready_showing(
                &target,
                Duration::from_secs(args.wait_ready),
                true,
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        conformance::run(&config).await.map_err(|e| e.to_string())
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crebito-load check: {e}");
            return ExitCode::from(2);
        }
    };
    let json = args.json.as_deref();
    let written = conformance::present::json(&report)
        .and_then(|j| emit(&conformance::present::text(&report), json, &j));
    if let Err(e) = written {
        eprintln!(
            "crebito-load check: cannot write {}: {e}",
            json.unwrap_or("-")
        );
        return ExitCode::from(2);
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `crebito-load compare`.
fn compare(args: &CompareArgs) -> ExitCode {
    let runs = match crebito_load::compare::load(&args.summaries, &args.label) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crebito-load compare: {e}");
            return ExitCode::from(2);
        }
    };
    if args.markdown {
        print!("{}", report::compare::markdown(&runs));
    } else {
        print!("{}", report::compare::text(&runs));
    }
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, report::compare::html(&runs)) {
            eprintln!("crebito-load compare: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!("crebito-load compare: page written to {}", path.display());
    }
    ExitCode::SUCCESS
}

/// A load-test run.
fn load(args: &Args) -> ExitCode {
    raise_open_file_limit();
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = RunConfig {
        base_url: args.base_url.clone(),
        scale: args.scale,
        rate: args.rate,
        seed,
        wait_ready: Duration::from_secs(args.wait_ready),
        tick: Duration::from_millis(args.tick_ms.max(1)),
        progress: true,
        allow_dirty: args.allow_dirty,
    };
    let threads = usize::from(args.threads);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crebito-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "crebito-load: target {}, scale {}, rate ×{}, seed {seed}",
        config.base_url, config.scale, config.rate
    );
    let report = match runtime.block_on(start(&config, threads)) {
        Ok(r) => r,
        Err(e @ RunError::NotFresh(_)) => {
            eprintln!("crebito-load: {e}");
            return ExitCode::from(EXIT_NOT_FRESH);
        }
        Err(e) => {
            eprintln!("crebito-load: {e}");
            return ExitCode::from(2);
        }
    };
    let written = match output(args, &report) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("crebito-load: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match args.fail_under {
        Some(min) if report.summary.payout_usd < min => {
            eprintln!(
                "crebito-load: payout USD {:.2} is below --fail-under {min:.2}",
                report.summary.payout_usd
            );
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    };
    // Last, as Gatling ends: where to look.
    if let Some(dir) = written {
        let index = dir.join("index.html");
        let shown = std::path::absolute(&index).unwrap_or(index);
        eprintln!("crebito-load: report: {}", shown.display());
    }
    code
}

/// Where the report goes when `--report` is not given: under this
/// directory (of the working directory), one folder per run.
const REPORT_ROOT: &str = "crebito-load-report";

/// `crebito-load-report/<start time>/` for a run started at `started_at`
/// (RFC 3339), e.g. `crebito-load-report/2026-11-29T12-26-07Z/`; `-2`,
/// `-3`… is appended when a run of the same second already has one.
fn default_report_dir(started_at: &str) -> PathBuf {
    report_dir_under(Path::new(REPORT_ROOT), started_at)
}

/// [`default_report_dir`] under `root`.
fn report_dir_under(root: &Path, started_at: &str) -> PathBuf {
    let stamp: String = started_at
        .split('.')
        .next()
        .unwrap_or(started_at)
        .trim_end_matches('Z')
        .replace(':', "-");
    let mut dir = root.join(format!("{stamp}Z"));
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{stamp}Z-{n}"));
        n += 1;
    }
    dir
}

/// Exit status when the target is not freshly seeded and `--allow-dirty`
/// is not given.
const EXIT_NOT_FRESH: u8 = 3;

/// [`crebito_load::run`], saying before the run starts when the target is
/// not freshly seeded.
async fn start(config: &RunConfig, threads: usize) -> Result<RunReport, RunError> {
    let target = run::connect(config).await?;
    let starting = starting_state::inspect(&target).await;
    if !starting.fresh {
        if !config.allow_dirty {
            return Err(RunError::NotFresh(starting));
        }
        eprintln!(
            "crebito-load: WARNING: the target is not freshly seeded ({}); running anyway (--allow-dirty): the opening checks expect every seeded account at balance 0, expect fines for that",
            starting.problems().join("; ")
        );
    }
    Ok(run::execute(config, target, starting, threads).await)
}

/// Prints `text` on stdout, and writes `json` to the file `json_to` if
/// given; `-` means stdout for the JSON, and the text then goes to stderr.
fn emit(text: &str, json_to: Option<&str>, json: &str) -> std::io::Result<()> {
    match json_to {
        Some("-") => {
            eprint!("{text}");
            std::io::stdout().write_all(json.as_bytes())
        }
        Some(path) => {
            print!("{text}");
            std::fs::write(path, json)
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Prints the text summary, writes the JSON, and the report unless
/// `--no-report`; returns the report's directory.
fn output(args: &Args, report: &RunReport) -> Result<Option<PathBuf>, String> {
    let json = args.json.as_deref();
    report::json::render(&report.summary)
        .and_then(|j| emit(&report.summary.to_text(), json, &j))
        .map_err(|e| format!("cannot write {}: {e}", json.unwrap_or("-")))?;
    if args.no_report {
        return Ok(None);
    }
    let dir = args
        .report
        .clone()
        .unwrap_or_else(|| default_report_dir(&report.summary.run.started_at));
    report::write(&dir, report)
        .map_err(|e| format!("cannot write the report into {}: {e}", dir.display()))?;
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_folder_per_run_named_by_its_start() {
        let root = tempfile::tempdir().unwrap();
        let at = "2026-11-29T12:26:07.212Z";
        let first = report_dir_under(root.path(), at);
        assert_eq!(first, root.path().join("2026-11-29T12-26-07Z"));
        std::fs::create_dir_all(&first).unwrap();
        // Another run started in the same second.
        let second = report_dir_under(root.path(), at);
        assert_eq!(second, root.path().join("2026-11-29T12-26-07Z-2"));
        std::fs::create_dir_all(&second).unwrap();
        assert_eq!(
            report_dir_under(root.path(), at),
            root.path().join("2026-11-29T12-26-07Z-3")
        );
    }
}
