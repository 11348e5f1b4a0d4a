//! HTTP conformance suite (docs/contract.md §2–§3, statuses as §2.4),
//! written once and run against both ledgers through the real
//! router on a real socket. Every test gets a fresh, seeded database.

use serde_json::json;

use crate::helpers::{self, TestApp};

on_every_ledger!(
    seeded_accounts,
    unknown_accounts_are_404,
    error_details_name_what_was_asked_and_what_exists,
    posting_moves_the_balance,
    limit_boundary,
    official_invalid_bodies,
    status_rules,
    invalid_requests_record_nothing,
    statement_lists_ten_newest_first,
    read_your_write,
    large_amounts_and_overflow,
    description_round_trips,
    timestamps_format,
    health,
    stored_codes_that_name_nothing_are_errors,
);

const SEEDED: [(i64, i64); 5] = [
    (1, 100000),
    (2, 80000),
    (3, 1000000),
    (4, 10000000),
    (5, 500000),
];

fn is_rfc3339_micros_utc(text: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS.ffffffZ
    let b = text.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

async fn assert_untouched(app: &TestApp, id: i64) {
    let (status, body) = app.statement(&id.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["saldo"]["total"], 0, "{body}");
    assert_eq!(body["ultimas_transacoes"], json!([]), "{body}");
}

async fn seeded_accounts(app: TestApp) {
    for (id, limit) in SEEDED {
        let (status, body) = app.statement(&id.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(body["saldo"]["total"], 0);
        assert_eq!(body["saldo"]["limite"], limit);
        assert_eq!(body["ultimas_transacoes"], json!([]));
        let keys: Vec<_> = body["saldo"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 3, "{body}");
    }
}

async fn unknown_accounts_are_404(app: TestApp) {
    for id in [
        "6",
        "0",
        "-1",
        "+1",
        "abc",
        "1.5",
        "2147483648",
        "99999999999999999999",
        "%FF",
        "%20",
    ] {
        let (status, body) = app.statement(id).await;
        assert_eq!(status, 404, "statement {id}: {body}");
        assert_eq!(body["type"], "urn:crebito:problem:account-not-found");
        let (status, body) = app
            .post_raw(id, r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#)
            .await;
        assert_eq!(status, 404, "post {id}: {body}");
    }
    let (status, _) = app.statement("2147483647").await;
    assert_eq!(status, 404);
    for (id, _) in SEEDED {
        assert_untouched(&app, id).await;
    }
    let report = crebito::ledger::Ledger::audit(app.ledger.as_ref())
        .await
        .unwrap();
    assert!(report.accounts.iter().all(|a| a.transactions == 0));
}

/// A 404 or 405 says, for a person, what was asked and what exists: the
/// account id and the seeded accounts, the path and the routes, the
/// method and the methods the `Allow` header lists (docs/contract.md
/// §2.5). The `type` stays the stable URN.
async fn error_details_name_what_was_asked_and_what_exists(app: TestApp) {
    // The seeded accounts the details name are the ledger's.
    let report = crebito::ledger::Ledger::audit(app.ledger.as_ref())
        .await
        .unwrap();
    let ids: Vec<i32> = report.accounts.iter().map(|a| a.account).collect();
    assert_eq!(ids, crebito::domain::SEEDED_ACCOUNTS.collect::<Vec<_>>());
    let seeded = "a ledger is seeded with accounts 1 to 5";

    // Unknown accounts, found unknown by the ledger (statement, history,
    // posting) or by their id alone.
    let send = |method: &str, path: &str| {
        let request = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", "application/json");
        let request = if method == "POST" {
            request.body(r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#)
        } else {
            request
        };
        async move {
            let response = request.send().await.unwrap();
            let allow = response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = helpers::read(response).await;
            (status, body, allow)
        }
    };
    for (method, path, detail) in [
        ("GET", "/clientes/7/extrato", format!("there is no account 7; {seeded}")),
        ("GET", "/clientes/6/historico", format!("there is no account 6; {seeded}")),
        ("POST", "/clientes/6/transacoes", format!("there is no account 6; {seeded}")),
        (
            "GET",
            "/clientes/abc/extrato",
            format!("\"abc\" cannot name an account (an id is an integer from 1 to 2147483647); {seeded}"),
        ),
        (
            "GET",
            "/clientes/%FF/extrato",
            format!("\"%FF\" cannot name an account (an id is an integer from 1 to 2147483647); {seeded}"),
        ),
    ] {
        let (status, body, _) = send(method, path).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["type"], "urn:crebito:problem:account-not-found");
        assert_eq!(body["title"], "Account not found");
        assert_eq!(body["detail"], detail, "{method} {path}");
    }

    // An unknown path: the path asked and every route served.
    let (status, body, _) = send("GET", "/cliente/1/extrato").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "urn:crebito:problem:not-found");
    assert_eq!(
        body["detail"],
        "no route for GET /cliente/1/extrato; the routes are POST /clientes/{id}/transacoes, \
         GET /clientes/{id}/extrato, GET /clientes/{id}/historico, GET /health, \
         GET /openapi.json, GET /metrics"
    );

    // A known path with another method: the methods of the Allow header.
    for (method, path) in [
        ("GET", "/clientes/1/transacoes"),
        ("PUT", "/clientes/1/transacoes"),
        ("DELETE", "/clientes/1/extrato"),
        ("POST", "/clientes/1/historico"),
        ("POST", "/health"),
        ("DELETE", "/metrics"),
        ("PUT", "/openapi.json"),
    ] {
        let (status, body, allow) = send(method, path).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(body["type"], "urn:crebito:problem:method-not-allowed");
        let allow = allow.expect("a 405 has an Allow header");
        assert_eq!(
            body["detail"],
            format!("{method} is not allowed on {path}; allowed: {allow}"),
        );
        assert!(!allow.is_empty() && allow != "none", "{method} {path}");
    }
}

async fn posting_moves_the_balance(app: TestApp) {
    let (status, body) = app.post(1, 1000, "c", "deposito").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 100000, "saldo": 1000}))
    );
    let (status, body) = app.post(1, 3000, "d", "saque").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 100000, "saldo": -2000}))
    );
    let (_, body) = app.statement("1").await;
    assert_eq!(body["saldo"]["total"], -2000);
    let rows = body["ultimas_transacoes"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["valor"], 3000);
    assert_eq!(rows[0]["tipo"], "d");
    assert_eq!(rows[0]["descricao"], "saque");
    assert_eq!(rows[1]["valor"], 1000);
    assert_eq!(rows[1]["tipo"], "c");
    assert_eq!(rows[1]["descricao"], "deposito");
    // Other accounts are independent.
    assert_untouched(&app, 2).await;
}

async fn limit_boundary(app: TestApp) {
    // Account 2 has limite 80000: exactly -80000 is allowed, one cent more is not.
    let (status, body) = app.post(2, 79999, "d", "quase").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 80000, "saldo": -79999}))
    );
    let (status, body) = app.post(2, 2, "d", "demais").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "urn:crebito:problem:limit-exceeded");
    let (status, body) = app.post(2, 1, "d", "limite").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 80000, "saldo": -80000}))
    );
    let (status, _) = app.post(2, 1, "d", "um centavo").await;
    assert_eq!(status, 422);
    let (_, body) = app.statement("2").await;
    assert_eq!(body["saldo"]["total"], -80000);
    let rows = body["ultimas_transacoes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "refused debits are not recorded: {body}");
    assert_eq!(rows[0]["descricao"], "limite");
    // A credit is always accepted, even far below zero.
    let (status, body) = app.post(2, 5, "c", "volta").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 80000, "saldo": -79995}))
    );
}

async fn official_invalid_bodies(app: TestApp) {
    // docs/contract.md §5, phase 3a: each must be 400 or 422; our rule makes them 422.
    for body in [
        r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
    ] {
        for (id, _) in SEEDED {
            let (status, response) = app.post_raw(&id.to_string(), body).await;
            assert_eq!(status, 422, "{body}: {response}");
            assert!(response["detail"].is_string());
        }
    }
    for (id, _) in SEEDED {
        assert_untouched(&app, id).await;
    }
}

async fn status_rules(app: TestApp) {
    let path = app.url("/clientes/1/transacoes");
    let send = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = app.client.post(&path).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        async move { helpers::read(request.send().await.unwrap()).await }
    };
    let valid = br#"{"valor": 1, "tipo": "c", "descricao": "x"}"#.to_vec();

    // Malformed JSON: 400.
    for body in [
        "",
        "{",
        "{\"valor\": 1,",
        "{} {}",
        "nope",
        "{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"x\"} trailing",
    ] {
        let (status, response) = send(Some("application/json"), body.into()).await;
        assert_eq!(status, 400, "{body:?}: {response}");
        assert_eq!(response["type"], "urn:crebito:problem:malformed-json");
    }
    // Well-formed, invalid fields: 422.
    for body in [
        r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#,
        r#"{"valor": "1", "tipo": "c", "descricao": "x"}"#,
        r#"{"tipo": "c", "descricao": "x"}"#,
        r#"{"valor": 1, "tipo": "C", "descricao": "x"}"#,
        r#"{"valor": 1, "valor": 1, "tipo": "c", "descricao": "x"}"#,
        r#"{"valor": 1, "tipo": "c", "descricao": "a\u0000b"}"#,
        r#"[]"#,
    ] {
        let (status, response) = send(Some("application/json"), body.into()).await;
        assert_eq!(status, 422, "{body}: {response}");
    }
    // Unknown extra fields are ignored.
    let (status, _) = send(
        Some("application/json"),
        br#"{"valor": 1, "tipo": "c", "descricao": "x", "extra": true}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    // Content type: 415 unless JSON.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, _) = send(ct, valid.clone()).await;
        assert_eq!(status, 415, "{ct:?}");
    }
    let (status, _) = send(Some("application/json; charset=utf-8"), valid.clone()).await;
    assert_eq!(status, 200);
    // Body size: 413 over 1 KiB, with or without a Content-Length.
    let padded = format!(
        r#"{{"valor": 1, "tipo": "c", "descricao": "x", "pad": "{}"}}"#,
        "a".repeat(1100)
    );
    let (status, _) = send(Some("application/json"), padded.clone().into()).await;
    assert_eq!(status, 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = padded
        .into_bytes()
        .chunks(100)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let response = app
        .client
        .post(&path)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(helpers::read(response).await.0, 413);
    let exactly = format!(
        r#"{{"valor": 1, "tipo": "c", "descricao": "x", "pad": "{}"}}"#,
        "a".repeat(1024 - 54)
    );
    assert_eq!(exactly.len(), 1024);
    assert_eq!(send(Some("application/json"), exactly.into()).await.0, 200);
    // Methods and paths.
    for (method, path, expected) in [
        ("GET", "/clientes/1/transacoes", 405),
        ("PUT", "/clientes/1/transacoes", 405),
        ("DELETE", "/clientes/1/extrato", 405),
        ("POST", "/clientes/1/extrato", 405),
        ("GET", "/clientes/1", 404),
        ("GET", "/", 404),
        ("GET", "/clientes/1/extrato/", 404),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        let (status, body) = helpers::read(response).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
    }
}

async fn invalid_requests_record_nothing(app: TestApp) {
    // Body problems are detected before the ledger is touched.
    for body in ["{", r#"{"valor": -1, "tipo": "d", "descricao": "x"}"#] {
        app.post_raw("1", body).await;
    }
    app.post(1, 100001, "d", "demais").await;
    assert_untouched(&app, 1).await;
}

async fn statement_lists_ten_newest_first(app: TestApp) {
    for i in 1..=12 {
        let (status, _) = app
            .post(3, i, if i % 2 == 0 { "d" } else { "c" }, &format!("t{i}"))
            .await;
        assert_eq!(status, 200);
    }
    let (_, body) = app.statement("3").await;
    let rows = body["ultimas_transacoes"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let descriptions: Vec<&str> = rows
        .iter()
        .map(|r| r["descricao"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        ["t12", "t11", "t10", "t9", "t8", "t7", "t6", "t5", "t4", "t3"]
    );
    // Whole balance, not a sum of the listed rows: +1 -2 +3 ... -12 = -6.
    assert_eq!(body["saldo"]["total"], -6);
}

async fn read_your_write(app: TestApp) {
    for (i, (kind, amount)) in [("c", 500), ("d", 200), ("d", 1), ("c", 7)]
        .into_iter()
        .enumerate()
    {
        let description = format!("rw{i}");
        let (status, posted) = app.post(5, amount, kind, &description).await;
        assert_eq!(status, 200);
        let (_, body) = app.statement("5").await;
        assert_eq!(body["saldo"]["total"], posted["saldo"]);
        assert_eq!(body["saldo"]["limite"], posted["limite"]);
        let first = &body["ultimas_transacoes"][0];
        assert_eq!(first["descricao"], description.as_str());
        assert_eq!(first["tipo"], kind);
        assert_eq!(first["valor"], amount);
    }
}

async fn large_amounts_and_overflow(app: TestApp) {
    let big = 1_i64 << 40; // larger than 2^31
    let (status, body) = app.post(4, big, "c", "grande").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 10000000, "saldo": big}))
    );
    let (status, body) = app.post(4, i64::MAX - big, "c", "maximo").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 10000000, "saldo": i64::MAX}))
    );
    // One more cent would overflow: refused, nothing recorded.
    let (status, body) = app.post(4, 1, "c", "estouro").await;
    assert_eq!(status, 422, "{body}");
    let (_, body) = app.statement("4").await;
    assert_eq!(body["saldo"]["total"], i64::MAX);
    assert_eq!(body["ultimas_transacoes"].as_array().unwrap().len(), 2);
    // The largest debit brings it back to zero.
    let (status, body) = app.post(4, i64::MAX, "d", "tudo").await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 10000000, "saldo": 0}))
    );
    // The largest debit on a zero balance is just over the limit.
    let (status, _) = app.post(4, i64::MAX, "d", "negativo").await;
    assert_eq!(status, 422);
    let report = crebito::ledger::Ledger::audit(app.ledger.as_ref())
        .await
        .unwrap();
    assert!(report.holds(), "{report:?}");
}

async fn description_round_trips(app: TestApp) {
    for text in [
        "débito",
        "ação!",
        "😀😀😀😀😀😀😀😀😀😀",
        "a b\tc\"\\",
        "0123456789",
        "<script>",
    ] {
        let (status, body) = app.post(1, 1, "c", text).await;
        assert_eq!(status, 200, "{text:?}: {body}");
        let (_, body) = app.statement("1").await;
        assert_eq!(body["ultimas_transacoes"][0]["descricao"], text);
    }
    let (status, _) = app.post(1, 1, "c", &"😀".repeat(11)).await;
    assert_eq!(status, 422);
}

async fn timestamps_format(app: TestApp) {
    app.post(1, 10, "c", "hora").await;
    let (_, body) = app.statement("1").await;
    let generated = body["saldo"]["data_extrato"].as_str().unwrap();
    let posted = body["ultimas_transacoes"][0]["realizada_em"]
        .as_str()
        .unwrap();
    assert!(is_rfc3339_micros_utc(generated), "{generated}");
    assert!(is_rfc3339_micros_utc(posted), "{posted}");
    let now = chrono::Utc::now();
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    assert!((now - parse(generated)).num_seconds().abs() < 60);
    assert!((now - parse(posted)).num_seconds().abs() < 60);
    assert!(parse(posted) <= parse(generated) + chrono::Duration::seconds(1));
}

async fn health(app: TestApp) {
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    let (status, body) = helpers::read(response).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok"}));
}

async fn stored_codes_that_name_nothing_are_errors(app: TestApp) {
    // A kind that is neither 'c' nor 'd' is an error, not a debit.
    let (status, _) = app.post(1, 10, "c", "antes").await;
    assert_eq!(status, 200);
    helpers::execute_unchecked(&app.database_url, "UPDATE transactions SET kind = 'x'").await;
    let (status, body) = app.statement("1").await;
    assert_eq!(status, 503, "{body}");
    let ledger = app.ledger.as_ref();
    let error = crebito::ledger::Ledger::postings(ledger).await.unwrap_err();
    let chain = crebito::ledger::ErrorChain(&error).to_string();
    assert!(chain.contains(r#"stored transaction kind "x""#), "{chain}");
    assert!(crebito::ledger::Ledger::audit(ledger).await.is_err());
    // An idempotency outcome that names nothing is an error, not a refusal.
    let key = Some("k1");
    let body = json!({"valor": 5, "tipo": "c", "descricao": "chave"});
    let (status, _) = helpers::post_new_connection(&app.base, 2, key, body.clone()).await;
    assert_eq!(status, 200);
    helpers::execute_unchecked(
        &app.database_url,
        "UPDATE idempotency_keys SET outcome = 'refused'",
    )
    .await;
    let (status, answer) = helpers::post_new_connection(&app.base, 2, key, body).await;
    assert_eq!(status, 503, "{answer}");
    let (_, statement) = app.statement("2").await;
    assert_eq!(statement["saldo"]["total"], 5, "{statement}");
}

#[test]
fn timestamp_shape_check_rejects_other_forms() {
    assert!(is_rfc3339_micros_utc("2024-01-17T02:34:41.217753Z"));
    assert!(!is_rfc3339_micros_utc("2024-01-17T02:34:41.217Z"));
    assert!(!is_rfc3339_micros_utc("2024-01-17T02:34:41.217753+00:00"));
    assert!(!is_rfc3339_micros_utc("2024-01-17 02:34:41.217753Z"));
}
