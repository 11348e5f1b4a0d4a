//! The `crebito-load` binary: exit statuses, `--json -`, `--report DIR`,
//! `--fail-under`, against in-process fake servers at a tiny scale.

mod common;

use std::process::{Output, Stdio};

use common::{start, Fault};
use serde_json::Value;

async fn crebito_load(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crebito-load"))
        .args(args)
        .env_remove("CREBITO_LOAD_BASE_URL")
        .env_remove("CREBITO_LOAD_SEED")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

/// A tiny run: 1 s ramp + 1 s constant, 100 ms between phases.
const TINY: [&str; 6] = ["--scale", "0.008", "--tick-ms", "100", "--seed", "5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_exits_2() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = crebito_load(&["--base-url", &url, "--wait-ready", "0"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not answer 2xx"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_arguments_exit_2() {
    for args in [
        vec!["--scale", "0"],
        vec!["--rate", "-1"],
        vec!["--scale", "abc"],
        vec!["--base-url", "https://localhost:9999", "--wait-ready", "0"],
        vec!["--no-such-option"],
    ] {
        let out = crebito_load(&args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_on_stdout_and_a_self_contained_report() {
    let server = start(Fault::None).await;
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let mut args = vec![
        "--base-url",
        &server.url,
        "--json",
        "-",
        "--fail-under",
        "100000",
    ];
    args.extend(TINY);
    args.extend(["--report", report_dir.to_str().unwrap()]);
    let out = crebito_load(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The text summary goes to stderr when the JSON takes stdout.
    assert!(stderr.contains("PAYOUT"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON summary");
    assert_eq!(json["requests"], 633);
    assert_eq!(json["ok"], 633);
    assert_eq!(json["ko"], 0);
    assert_eq!(json["inconsistencies"], 0);
    assert_eq!(json["payout_usd"], 100_000.0);
    assert_eq!(json["fine_latency_usd"], 0.0);
    assert_eq!(json["fine_inconsistency_usd"], 0.0);
    assert_eq!(json["pct_under_250ms"], 100.0);
    assert_eq!(json["groups"]["debitos"]["requests"], 330);
    assert_eq!(json["groups"]["validacoes"]["requests"], 123);
    for key in ["min", "mean", "p50", "p75", "p95", "p99", "max"] {
        assert!(json["latency_ms"][key].as_f64().unwrap() > 0.0, "{key}");
        assert!(
            json["groups"]["creditos"]["latency_ms"][key].is_number(),
            "{key}"
        );
    }
    assert_eq!(json["run"]["seed"], 5);

    let summary: Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary, json);
    let html = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    assert!(html.contains("<svg"));
    assert!(html.contains("USD 100,000.00"));
    for external in ["<script", "<link", "src=", "@import", "url(", "@font-face"] {
        assert!(
            !html.contains(external),
            "the report must be self-contained: found {external}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_below_fail_under_exits_1() {
    let server = start(Fault::Overdraw).await;
    let mut args = vec!["--base-url", server.url.as_str(), "--fail-under", "99000"];
    args.extend(TINY);
    let out = crebito_load(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[inconsistency]"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("below --fail-under"));
    // Without --fail-under the same run completes with status 0.
    let server = start(Fault::Overdraw).await;
    let mut args = vec!["--base-url", server.url.as_str()];
    args.extend(TINY);
    assert_eq!(crebito_load(&args).await.status.code(), Some(0));
}
