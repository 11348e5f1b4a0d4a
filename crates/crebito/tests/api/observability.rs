//! What an operator sees (docs/operations.md): request ids, JSON log
//! lines, debug spans of each step, and the metrics at `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{self, Backend, Crebito, TestApp};

on_every_ledger!(metrics_count_what_happened);

/// `crebito serve` on a fresh SQLite file with `args` and `env`; returns
/// the process, its base URL and the directory to keep alive.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Crebito, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let listen = format!("127.0.0.1:{}", helpers::free_port());
    let mut all = vec!["serve", "--listen", &listen];
    all.extend_from_slice(args);
    let mut vars = vec![("DATABASE_URL", url.as_str())];
    vars.extend_from_slice(env);
    let crebito = Crebito::spawn(&all, &vars);
    crebito.wait_for_log("crebito ready", Duration::from_secs(30));
    (crebito, format!("http://{listen}"), dir)
}

/// Every log line written so far, each parsed as one JSON object.
fn json_lines(crebito: &Crebito) -> Vec<Value> {
    crebito
        .log()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
        })
        .collect()
}

/// The request id a JSON log line was written under, if any.
fn line_request_id(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == "request")?["request_id"]
        .as_str()
}

#[tokio::test]
async fn json_lines_carry_the_fields_and_the_request_id() {
    let (crebito, base, _dir) = start(
        &["--log-format", "json"],
        &[("RUST_LOG", "info,crebito=debug")],
    );
    let client = reqwest::Client::new();
    let sent = "caller-chose-this-id";
    let response = client
        .post(format!("{base}/clientes/1/transacoes"))
        .header("content-type", "application/json")
        .header("x-request-id", sent)
        .body(json!({"valor": 5, "tipo": "c", "descricao": "rastreada"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], sent);
    // Another request, whose lines must not carry the first one's id.
    let other = client
        .get(format!("{base}/clientes/2/extrato"))
        .send()
        .await
        .unwrap();
    let other_id = other.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(other_id, sent);

    crebito.wait_for_log(&other_id, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let lines = json_lines(&crebito);
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("timestamp ({e}): {line}"));
    }
    let ready = lines
        .iter()
        .find(|l| l["message"] == "crebito ready")
        .expect("the ready line");
    assert_eq!(ready["level"], "INFO");
    assert!(
        ready["listen"].as_str().unwrap().starts_with("127.0.0.1:"),
        "the event's fields sit next to the message: {ready}"
    );

    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| line_request_id(l) == Some(sent))
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "request received",
            "ledger call succeeded",
            "request answered"
        ],
        "{of_request:#?}"
    );
    // The ledger step runs in its own span, with how long it took.
    let step = of_request[1];
    assert_eq!(step["span"]["name"], "ledger");
    assert_eq!(step["span"]["call"], "post");
    assert_eq!(step["span"]["account"], 1);
    assert!(step["elapsed_ms"].as_f64().unwrap() >= 0.0, "{step}");
    let answered = of_request[2];
    assert_eq!(answered["status"], 200);
    assert!(answered["elapsed_ms"].as_f64().unwrap() >= step["elapsed_ms"].as_f64().unwrap());
    let request_span = &answered["spans"][0];
    assert_eq!(request_span["method"], "POST");
    assert_eq!(request_span["route"], "/clientes/{id}/transacoes");

    assert!(
        lines
            .iter()
            .any(|l| line_request_id(l) == Some(other_id.as_str())
                && l["message"] == "ledger call succeeded"
                && l["span"]["call"] == "statement"),
        "the second request's steps carry its own id"
    );
    // The posting's batch has its own span, outside any one request's.
    let batch = lines
        .iter()
        .find(|l| l["message"] == "batch done")
        .expect("the batch's line");
    assert_eq!(batch["span"]["name"], "batch");
    assert_eq!(batch["span"]["postings"], 1);
    assert_eq!(batch["applied"], true);
    assert!(batch["elapsed_ms"].as_f64().unwrap() >= 0.0, "{batch}");
}

#[tokio::test]
async fn text_lines_name_the_request() {
    let (crebito, base, _dir) = start(&[], &[("RUST_LOG", "crebito=debug")]);
    let response = reqwest::Client::new()
        .get(format!("{base}/clientes/1/extrato"))
        .header("x-request-id", "text-format-id")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = crebito.wait_for_log("request answered", Duration::from_secs(10));
    let line = log
        .lines()
        .find(|l| l.contains("ledger call succeeded"))
        .expect("the ledger step");
    assert!(line.contains("request_id=text-format-id"), "{line}");
    assert!(line.contains(r#"call="statement""#), "{line}");
}

#[tokio::test]
async fn a_missing_or_unusable_request_id_is_generated_and_returned() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut seen = Vec::new();
    for sent in [None, Some("has spaces in it")] {
        let mut request = app.client.get(app.url("/clientes/1/extrato"));
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1]);
    // Errors carry it too.
    let response = app.client.get(app.url("/nada")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
}

/// The value of the sample whose name and labels are exactly `series`.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

/// The metrics text of the instance at `base`, on a connection of its own.
async fn scrape_at(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

async fn metrics_count_what_happened(app: TestApp) {
    assert_eq!(app.post(1, 10, "c", "um").await.0, 200);
    assert_eq!(app.post(1, 10_000_000, "d", "demais").await.0, 422);
    assert_eq!(app.post(7, 1, "c", "ninguem").await.0, 404);
    assert_eq!(app.post_raw("1", "{").await.0, 400);
    let keyed = |key: &'static str| {
        let client = app.client.clone();
        let url = app.url("/clientes/2/transacoes");
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(r#"{"valor": 3, "tipo": "d", "descricao": "chave"}"#)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(keyed("k1").await, 200);
    assert_eq!(keyed("k1").await, 200);
    assert_eq!(app.statement("3").await.0, 200);

    let text = scrape(&app).await;
    let posting = r#"route="/clientes/{id}/transacoes",method="POST""#;
    for (status, count) in [(200, 3.0), (422, 1.0), (404, 1.0), (400, 1.0)] {
        assert_eq!(
            sample(
                &text,
                &format!(r#"crebito_http_requests_total{{{posting},status="{status}"}}"#)
            ),
            Some(count),
            "status {status}:\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            r#"crebito_http_request_duration_seconds_count{route="/clientes/{id}/transacoes"}"#
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"crebito_http_request_duration_seconds_count{route="/clientes/{id}/extrato"}"#
        ),
        Some(1.0)
    );
    // The replay is answered 200 and counted apart.
    for (outcome, count) in [
        ("applied", 3.0),
        ("limit_exceeded", 1.0),
        ("account_not_found", 1.0),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!(r#"crebito_postings_total{{outcome="{outcome}"}}"#)
            ),
            Some(count),
            "{outcome}:\n{text}"
        );
    }
    assert_eq!(sample(&text, "crebito_idempotent_replays_total"), Some(1.0));
    // Round trips: 2 applied + 1 refused + 1 replayed posting reached the
    // database (the unknown account too).
    assert!(
        sample(
            &text,
            r#"crebito_db_round_trip_duration_seconds_count{operation="post"}"#
        )
        .unwrap()
            >= 4.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"crebito_db_round_trip_duration_seconds_count{operation="statement"}"#
        ),
        Some(1.0)
    );
    // Every posting that reached the ledger went in exactly one batch.
    assert_eq!(sample(&text, "crebito_posting_batch_size_sum"), Some(5.0));
    assert!(sample(&text, "crebito_posting_batch_size_count").unwrap() >= 1.0);
    assert!(sample(&text, "crebito_db_pool_max_connections").unwrap() >= 1.0);
    assert_eq!(sample(&text, "crebito_db_pool_waiting"), Some(0.0));
    assert!(text.contains("crebito_build_info{version="), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_answers_are_counted_by_cause() {
    // Nothing listens on this socket: every connection attempt fails.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://crebito@/crebito?host={}", dir.path().display());
    let options = crebito::ledger::LedgerOptions {
        acquire_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let ledger = crebito::ledger::postgres::PostgresLedger::new(&url, &options).unwrap();
    let base = helpers::serve(Arc::new(ledger)).await;
    let client = reqwest::Client::new();
    for path in ["/clientes/1/extrato", "/health"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 503, "{path}");
    }
    let text = scrape_at(&base).await;
    assert_eq!(
        sample(&text, r#"crebito_unavailable_total{cause="connect"}"#),
        Some(1.0),
        "{text}"
    );
    // The health check's own verdict.
    assert_eq!(
        sample(&text, r#"crebito_unavailable_total{cause="unhealthy"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"crebito_http_requests_total{route="/health",method="GET",status="503"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_is_counted_as_a_query_timeout() {
    let url = helpers::fresh_postgres_database().await;
    let options = crebito::ledger::LedgerOptions {
        query_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let ledger = crebito::ledger::AnyLedger::open(&url.parse().unwrap(), &options)
        .await
        .unwrap();
    let base = helpers::serve(Arc::new(ledger)).await;
    let blocker = helpers::admin_session(&url).await;
    helpers::hold_account_row(&blocker, 1).await;
    let (status, _) = helpers::post_new_connection(
        &base,
        1,
        None,
        json!({"valor": 1, "tipo": "d", "descricao": "bloqueada"}),
    )
    .await;
    assert_eq!(status, 503);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let text = scrape_at(&base).await;
    assert_eq!(
        sample(&text, r#"crebito_unavailable_total{cause="query_timeout"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"crebito_postings_total{outcome="unavailable"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn open_connections_are_counted() {
    let (_crebito, base, _dir) = start(&[], &[]);
    let client = reqwest::Client::new();
    let scrape = || async {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&text, "crebito_http_open_connections").expect("the gauge")
    };
    // The scrape's own connection.
    assert_eq!(scrape().await, 1.0);
    let idle: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scrape().await != 4.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never 4 open connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    while scrape().await != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed connections still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_off_serves_no_metrics() {
    let (_crebito, base, _dir) = start(&["--metrics", "off"], &[]);
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 404);
    // Requests still get their id.
    let response = reqwest::get(format!("{base}/clientes/1/extrato"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
}

/// A posting whose client hung up while it waited in its queue is still
/// applied, and counted where the ledger decided it: summed over outcomes,
/// `crebito_postings_total` equals the rows written plus the refusals
/// decided, whatever the clients did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postings_whose_clients_hung_up_are_counted_postgres() {
    use crebito::ledger::Ledger as _;
    let app = TestApp::spawn(Backend::Postgres).await;
    // Account 1's row is locked: every posting to it waits.
    let session = helpers::admin_session(&app.database_url).await;
    helpers::hold_account_row(&session, 1).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..25 {
        // Every fifth a debit past the limit (100000): refused.
        let (valor, tipo) = if i % 5 == 4 {
            (1_000_000, "d")
        } else {
            (1, "c")
        };
        let request = impatient
            .post(app.url("/clientes/1/transacoes"))
            .header("content-type", "application/json")
            .body(json!({"valor": valor, "tipo": tipo, "descricao": "gone"}).to_string());
        clients.push(tokio::spawn(async move { request.send().await.is_err() }));
        if i == 0 {
            // The first (a credit) goes alone and waits on the lock; the
            // others queue behind it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for client in clients {
        assert!(
            client.await.unwrap(),
            "a client was answered behind the lock"
        );
    }
    session.batch_execute("ROLLBACK").await.unwrap();
    let total = |text: &str, outcome: &str| {
        sample(
            text,
            &format!(r#"crebito_postings_total{{outcome="{outcome}"}}"#),
        )
        .unwrap_or(0.0)
    };
    let outcomes = [
        "applied",
        "limit_exceeded",
        "overflow",
        "idempotency_key_reused",
        "account_not_found",
        "unavailable",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&app).await;
        let counted: f64 = outcomes.iter().map(|o| total(&text, o)).sum();
        if counted >= 25.0 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let report = app.ledger.audit().await.unwrap();
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.transactions, account.balance), (20, 20));
    assert_eq!(total(&text, "applied"), 20.0, "{text}");
    assert_eq!(total(&text, "limit_exceeded"), 5.0, "{text}");
    let counted: f64 = outcomes.iter().map(|o| total(&text, o)).sum();
    assert_eq!(counted, 25.0, "{text}");
}
