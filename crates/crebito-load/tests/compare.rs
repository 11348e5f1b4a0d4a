//! `crebito-load compare`: two tiny runs' summaries (a correct and a slow
//! fake server) side by side, ratios to the first, the HTML page with the
//! curves, and summaries of older versions.

mod common;

use std::path::Path;

use common::{crebito_load, start, Fault};
use serde_json::Value;

/// Runs `crebito-load ARGS…` and asserts that it exits 0 (showing its
/// stderr when not).
async fn succeeds(args: &[&str]) -> std::process::Output {
    let out = crebito_load(args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tiny run against a fake with `fault`, its summary written to `json`.
async fn tiny_run(fault: Fault, json: &Path) -> Value {
    let server = start(fault).await;
    succeeds(&[
        "--base-url",
        &server.url,
        "--scale",
        "0.008",
        "--tick-ms",
        "100",
        "--seed",
        "9",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

/// `summary` as if its generator had kept the schedule (on a busy test
/// machine it may not, and compare would mark the run), written back to
/// `path`.
fn calm(mut summary: Value, path: &Path) -> Value {
    summary["generator"]["trustworthy"] = Value::Bool(true);
    summary["generator"]["lag_p99_ms"] = serde_json::json!(1.5);
    std::fs::write(path, summary.to_string()).unwrap();
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_side_by_side_with_ratios_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let good = calm(tiny_run(Fault::None, &a).await, &a);
    let slow = calm(tiny_run(Fault::Slow, &b).await, &b);
    for s in [&good, &slow] {
        let curve = s["percentile_curves_ms"]["todas"].as_array().unwrap();
        assert!(curve.len() > 10);
        // [percentile, ms], the last point the maximum.
        assert_eq!(curve.last().unwrap()[0], 100.0);
        assert_eq!(curve.last().unwrap()[1], s["latency_ms"]["max"]);
    }
    let page = dir.path().join("compare.html");
    let out = crebito_load(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--label",
        "correct",
        "--label",
        "slow",
        "--html",
        page.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("[1] correct\n") && stdout.contains("[2] slow\n"),
        "{stdout}"
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row: {stdout}"))
            .to_string()
    };
    let p99 = |s: &Value| s["latency_ms"]["p99"].as_f64().unwrap();
    let ratio = format!("×{:.2}", p99(&slow) / p99(&good));
    assert!(
        row("p99 ms").contains(&ratio),
        "{} vs {ratio}",
        row("p99 ms")
    );
    let payout = |s: &Value| s["payout_usd"].as_f64().unwrap();
    if payout(&good) > 0.0 {
        let ratio = format!("×{:.2}", payout(&slow) / payout(&good));
        assert!(
            row("payout USD").contains(&ratio),
            "{} vs {ratio}",
            row("payout USD")
        );
    }
    for group in ["débitos", "créditos", "extratos", "validações"] {
        row(&format!("{group} p99 ms"));
    }
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Percentile curves, all requests"));
    // One overlaid line per run in each of the five charts.
    for color in crebito_load::report::compare::RUN_COLORS.iter().take(2) {
        assert_eq!(
            html.matches(&format!(r#"stroke="{color}""#)).count(),
            5,
            "{color}"
        );
    }
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }

    let out = crebito_load(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--markdown",
    ])
    .await;
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with(&format!(
            "| figure | {} | {} |\n|---|---:|---:|",
            a.display(),
            b.display()
        )),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_summaries_load_and_bad_ones_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let mut old = tiny_run(Fault::None, &a).await;
    // As written before the curves and the starting state were added.
    let fields = old.as_object_mut().unwrap();
    fields.remove("percentile_curves_ms");
    fields.remove("starting_state");
    let report_dir = dir.path().join("old-report");
    std::fs::create_dir(&report_dir).unwrap();
    std::fs::write(report_dir.join("summary.json"), old.to_string()).unwrap();
    let page = dir.path().join("page.html");
    let out = succeeds(&[
        "compare",
        a.to_str().unwrap(),
        report_dir.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("×1.00"), "{stdout}");
    assert!(std::fs::read_to_string(&page).unwrap().contains("<svg"));

    let not_summary = dir.path().join("list.json");
    std::fs::write(&not_summary, "[1, 2]").unwrap();
    for args in [
        vec![
            "compare",
            a.to_str().unwrap(),
            not_summary.to_str().unwrap(),
        ],
        vec!["compare", a.to_str().unwrap(), "/nonexistent/summary.json"],
        vec!["compare", a.to_str().unwrap()],
        vec![
            "compare",
            a.to_str().unwrap(),
            a.to_str().unwrap(),
            "--label",
            "x",
            "--label",
            "y",
            "--label",
            "z",
        ],
    ] {
        let out = crebito_load(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrustworthy_run_is_marked_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let mut run = calm(tiny_run(Fault::None, &a).await, &a);
    // The same run as if the generator had lagged.
    run["generator"]["trustworthy"] = Value::Bool(false);
    run["generator"]["lag_p99_ms"] = serde_json::json!(7.25);
    std::fs::write(&b, run.to_string()).unwrap();
    let page = dir.path().join("compare.html");
    let out = succeeds(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--label",
        "calm",
        "--label",
        "lagging",
        "--html",
        page.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let remedy = crebito_load::summary::UNTRUSTWORTHY_REMEDY;
    assert!(stdout.contains("[1] calm\n"), "{stdout}");
    assert!(stdout.contains("[2]! lagging\n"), "{stdout}");
    assert!(
        stdout.contains("! NOT trustworthy: the load generator started its users 7.25 ms late")
            && stdout.contains(remedy),
        "{stdout}"
    );
    let header = stdout.lines().find(|l| l.starts_with("figure")).unwrap();
    assert!(
        header.contains("[1]") && header.contains("[2]!"),
        "{header}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("⚠ not trustworthy"), "the table's heading");
    assert!(html.contains(r#"<section class="alert"><b>Run [2] lagging</b>"#));
    assert!(html.contains(remedy));
    assert_eq!(html.matches(r#"<section class="alert">"#).count(), 1);
    let out = succeeds(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--markdown",
    ])
    .await;
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.lines().next().unwrap().contains("b.json ⚠ |"), "{md}");
    assert!(
        md.contains("NOT trustworthy") && md.contains(remedy),
        "{md}"
    );
}
