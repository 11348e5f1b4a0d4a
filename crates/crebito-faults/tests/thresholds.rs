//! The driver judges its own run: against a server that answers every
//! posting 503, a threshold that allows only 200/422 fails the run (exit 1,
//! a `FAIL:` line naming what was seen), and thresholds that hold pass it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// Answers every request on a fresh connection with 503 and closes it.
fn always_503() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = r#"{"error":"unavailable"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

fn drive(base_url: &str, thresholds: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_crebito-faults"))
        .args([
            "--base-url",
            base_url,
            "--duration-secs",
            "0.3",
            "--concurrency",
            "2",
        ])
        .args(["--retry-for-secs", "0", "--new-connection-each", "--record"])
        .arg(dir.path().join("record.jsonl"))
        .arg("--summary")
        .arg(dir.path().join("summary.json"))
        .args(thresholds)
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout.clone()).unwrap();
    (output, report)
}

#[test]
fn a_broken_threshold_fails_the_run_and_says_why() {
    let url = always_503();
    let (output, report) = drive(&url, &["--allow", "200,422", "--require-final"]);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("ok: no answer broke the contract"),
        "{report}"
    );
    assert!(
        report.contains("FAIL: every attempt answered 200/422 (seen 503: ")
            && report.contains("; not allowed: 503: "),
        "{report}"
    );
    assert!(
        report.contains("FAIL: every posting got a final answer ("),
        "{report}"
    );

    let (output, report) = drive(
        &url,
        &[
            "--allow",
            "503",
            "--min-count",
            "lost=1",
            "--max-ms",
            "503=10000",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
fn a_malformed_threshold_is_a_usage_error() {
    let (output, _) = drive("http://127.0.0.1:9", &["--max-ms", "503"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KIND[+KIND...]=NUMBER"));
}
