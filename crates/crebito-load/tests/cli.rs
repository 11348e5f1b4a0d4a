//! The `crebito-load` binary: exit statuses, `--json -`, `--report DIR`,
//! `--fail-under`, against in-process fake servers at a tiny scale.

mod common;

use common::{crebito_load, crebito_load_in, start, Fault};
use crebito_load::http::{Connection, Outgoing, Target};
use serde_json::Value;

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

/// Makes the fake's account 1 used, as the README's "Try it" requests do.
async fn post_two_transactions(url: &str) {
    let target = Target::resolve(url).await.unwrap();
    for body in [
        r#"{"valor": 1000, "tipo": "c", "descricao": "salario"}"#,
        r#"{"valor": 2500, "tipo": "d", "descricao": "mercado"}"#,
    ] {
        let request = Outgoing {
            method: hyper::Method::POST,
            path: "/clientes/1/transacoes".to_string(),
            body: Some(body.to_string()),
        };
        let (response, _, _) = Connection::new().send(&target, &request).await;
        assert_eq!(response.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_ledger_stops_the_run_with_exit_3() {
    let server = start(Fault::None).await;
    post_two_transactions(&server.url).await;
    let before = server.fake.seen.lock().unwrap().requests;
    let mut args = vec!["--base-url", server.url.as_str()];
    args.extend(TINY);
    let out = crebito_load(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not freshly seeded"), "{stderr}");
    assert!(
        stderr.contains("account 1: balance -1500, 2 transactions"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-dirty"), "{stderr}");
    assert!(out.stdout.is_empty());
    // Only the readiness probe and the five statements: no load was sent.
    assert_eq!(server.fake.seen.lock().unwrap().requests, before + 1 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_dirty_runs_and_says_why_it_was_fined() {
    let server = start(Fault::None).await;
    post_two_transactions(&server.url).await;
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let mut args = vec!["--base-url", server.url.as_str(), "--allow-dirty"];
    args.extend(TINY);
    args.extend(["--report", report_dir.to_str().unwrap()]);
    let out = crebito_load(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Said before the run started, and in the summary.
    let warned = stderr.find("not freshly seeded").expect("warned on stderr");
    assert!(
        stderr[..warned].contains("crebito-load: target"),
        "{stderr}"
    );
    assert!(
        stdout.contains("WARNING: the target was not freshly seeded (account 1: balance -1500"),
        "{stdout}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["starting_state"]["fresh"], false);
    assert!(summary["inconsistencies"].as_u64().unwrap() > 0);
    // The payout lines name the failed checks behind fine B, by their
    // number in the failures list.
    let failures = summary["failures"].as_array().unwrap();
    let (n, first) = failures
        .iter()
        .enumerate()
        .find(|(_, f)| f["inconsistency"] == true)
        .unwrap();
    let check = first["check"].as_str().unwrap();
    let payout_at = stdout.find("PAYOUT").unwrap();
    let after_payout = &stdout[payout_at..];
    assert!(after_payout.contains("fine B USD"), "{stdout}");
    assert!(
        after_payout.contains(&format!("× {check}  (#{} under", n + 1)),
        "{stdout}"
    );
    assert!(after_payout.contains("not freshly seeded"), "{stdout}");
    // The report's score box links each check to its examples.
    let html = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    let score_box = &html[html.find(r#"class="score"#).unwrap()..];
    let score_box = &score_box[..score_box.find("</section>").unwrap()];
    assert!(
        score_box.contains(&format!(r##"href="#failure-{}""##, n + 1)),
        "{score_box}"
    );
    assert!(score_box.contains(r##"href="#starting-state""##));
    assert!(html.contains(&format!(r#"id="failure-{}""#, n + 1)));
    assert!(html.contains(r#"id="starting-state""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_and_check_is_documented() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/load-test.md"),
    )
    .expect("docs/load-test.md");
    for command in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["compare", "--help"],
    ] {
        let out = crebito_load(&command).await;
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        let options: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .filter(|w| !matches!(*w, "--help" | "--version"))
            .collect();
        assert!(!options.is_empty(), "{help}");
        for option in options {
            assert!(
                page.contains(&format!("`{option}")),
                "{option} ({command:?}) is not in docs/load-test.md"
            );
        }
    }
    for check in crebito_load::conformance::checks::catalogue() {
        assert!(
            page.contains(&format!("| `{}` |", check.name)),
            "check {} is not in docs/load-test.md",
            check.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_by_default_in_a_new_folder_per_run_its_path_last() {
    let server = start(Fault::None).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut args = vec!["--base-url", server.url.as_str(), "--allow-dirty"];
    args.extend(TINY);
    let mut indexes = Vec::new();
    for _ in 0..2 {
        let out = crebito_load_in(cwd.path(), &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        let index = last
            .strip_prefix("crebito-load: report: ")
            .unwrap_or_else(|| panic!("the last line names the report: {stderr}"));
        let index = std::path::PathBuf::from(index);
        assert!(index.is_absolute(), "{last}");
        assert!(index.ends_with("index.html"), "{last}");
        let folder = index.parent().unwrap();
        assert_eq!(
            folder.parent().unwrap(),
            cwd.path()
                .canonicalize()
                .unwrap()
                .join("crebito-load-report"),
            "{last}"
        );
        // Named by the run's start time.
        let name = folder.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("20") && name.contains('T'), "{name}");
        assert!(std::fs::read_to_string(&index).unwrap().contains("<svg"));
        assert!(folder.join("summary.json").exists());
        indexes.push(index);
    }
    assert_ne!(indexes[0], indexes[1], "each run gets its own folder");
    // --no-report writes nothing.
    let empty = tempfile::tempdir().unwrap();
    let mut args = args.clone();
    args.push("--no-report");
    let out = crebito_load_in(empty.path(), &args).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("report:"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    // --report and --no-report together are a usage error.
    let out = crebito_load(&["--report", "x", "--no-report"]).await;
    assert_eq!(out.status.code(), Some(2));
}
