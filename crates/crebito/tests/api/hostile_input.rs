//! Property-based tests over the request parser and the router: arbitrary
//! bytes as body, arbitrary paths and ids, arbitrary JSON values for each
//! field. Never a panic, never a 500, never a recorded transaction for an
//! invalid request, and exactly the contract's status for each input.
//!
//! `PROPTEST_CASES=N` sets the number of cases per property (default 256);
//! `scripts/fuzz SECONDS` runs these properties in a loop with fresh seeds.
//! A failing case is saved beside this file, in `hostile_input.regressions`,
//! and replayed first on every later run: commit that file to keep the
//! regression test.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Method, Request};
use crebito::ledger::sqlite::SqliteLedger;
use crebito::ledger::Ledger;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    ledger: Arc<SqliteLedger>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = runtime
        .block_on(SqliteLedger::open(&dir.path().join("hostile.db")))
        .unwrap();
    Fixture {
        runtime,
        ledger: Arc::new(ledger),
        _dir: dir,
    }
});

const STATUSES: [u16; 7] = [200, 400, 404, 405, 413, 415, 422];

/// Sends one request through the real router; returns status, content type
/// and JSON body, and the number of recorded transactions before and after.
fn send(
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value, i64, i64) {
    // The properties run on parallel threads and share one ledger: one
    // request at a time, so the before/after counts belong to it.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = &*FIXTURE;
    fixture.runtime.block_on(async {
        let count = || async {
            let report = fixture.ledger.audit().await.unwrap();
            assert!(report.holds(), "{report:?}");
            report.accounts.iter().map(|a| a.transactions).sum::<i64>()
        };
        let before = count().await;
        let mut request = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let request = request.body(Body::from(body)).unwrap();
        let response = crebito::http::router(fixture.ledger.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let expected = if status < 400 {
            "application/json"
        } else {
            "application/problem+json"
        };
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some(expected)
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value: Value = serde_json::from_slice(&bytes).expect("JSON body");
        (status, value, before, count().await)
    })
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,14}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field values near the rules' boundaries, mixed with anything at all.
fn valor() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        (-3i64..=12_000).prop_map(Value::from),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(1i64 << 31)].prop_map(Value::from),
        Just(json!(9223372036854775808u64)),
        Just(json!(1.2)),
        Just(json!("100")),
        any_json(),
    ])
}

fn tipo() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        Just(json!("c")),
        Just(json!("d")),
        Just(json!("C")),
        Just(json!("x")),
        Just(json!("")),
        any_json(),
    ])
}

fn descricao() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        "[a-z ]{0,12}".prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        ".{9,11}".prop_map(Value::from),
        Just(json!("a\u{0}b")),
        any_json(),
    ])
}

/// The contract's field rules, written independently of the server's code
/// (docs/contract.md §2): `Some(true)` for a credit, `Some(false)` for a debit, `None`
/// when the body is invalid.
fn oracle(valor: &Option<Value>, tipo: &Option<Value>, descricao: &Option<Value>) -> Option<bool> {
    let amount_ok = valor
        .as_ref()
        .and_then(Value::as_i64)
        .is_some_and(|v| v > 0);
    let credit = match tipo.as_ref().and_then(Value::as_str) {
        Some("c") => true,
        Some("d") => false,
        _ => return None,
    };
    let text_ok = descricao
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|s| (1..=10).contains(&s.chars().count()) && !s.contains('\0'));
    (amount_ok && text_ok).then_some(credit)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_body(
        body in prop::collection::vec(any::<u8>(), 0..1500),
        content_type in prop::option::of(prop_oneof![
            Just("application/json"), Just("text/plain"), Just("application/json; charset=utf-8")]),
        id in 0i64..8,
    ) {
        let (status, value, before, after) =
            send(Method::POST, &format!("/clientes/{id}/transacoes"), content_type, body.clone());
        prop_assert!(STATUSES.contains(&status), "status {status}: {value}");
        if status != 200 {
            prop_assert!(value["type"].as_str().is_some_and(|t| t.starts_with("urn:crebito:problem:")));
            prop_assert_eq!(&value["status"], &json!(status));
            prop_assert_eq!(before, after, "a refused request recorded a transaction");
        }
        // The path is checked first: id 0 cannot name an account.
        if id == 0 {
            prop_assert_eq!(status, 404);
        } else if content_type.is_none() || content_type == Some("text/plain") {
            prop_assert_eq!(status, 415);
        } else if body.len() > 1024 {
            prop_assert_eq!(status, 413);
        }
    }

    #[test]
    fn arbitrary_json_fields(
        valor in valor(),
        tipo in tipo(),
        descricao in descricao(),
        extra in prop::option::of(any_json()),
        id in 1i64..=5,
    ) {
        let mut object = Map::new();
        if let Some(v) = &valor { object.insert("valor".into(), v.clone()); }
        if let Some(v) = &tipo { object.insert("tipo".into(), v.clone()); }
        if let Some(v) = &descricao { object.insert("descricao".into(), v.clone()); }
        if let Some(v) = extra { object.insert("extra".into(), v); }
        let body = Value::Object(object).to_string().into_bytes();
        // Absent and null are the same to the rules.
        let present = |v: &Option<Value>| v.clone().filter(|v| !v.is_null());
        let expected = oracle(&present(&valor), &present(&tipo), &present(&descricao));
        let oversize = body.len() > 1024;
        let (status, value, before, after) =
            send(Method::POST, &format!("/clientes/{id}/transacoes"), Some("application/json"), body);
        if oversize {
            prop_assert_eq!(status, 413);
        } else {
            match expected {
                None => prop_assert_eq!(status, 422, "{}", value),
                Some(_) => prop_assert!(status == 200 || status == 422, "{status}: {value}"),
            }
        }
        if status == 200 {
            prop_assert_eq!(after, before + 1);
            let limit = value["limite"].as_i64().unwrap();
            prop_assert!(value["saldo"].as_i64().unwrap() >= -limit);
        } else {
            prop_assert_eq!(before, after, "a refused request recorded a transaction: {}", value);
        }
    }

    #[test]
    fn arbitrary_paths_and_methods(
        path in "/[a-zA-Z0-9%/._~+-]{0,40}",
        id in prop_oneof!["-?[0-9]{1,25}", "[^/?#]{0,12}"],
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        which in 0u8..3,
    ) {
        let encoded: String = id.bytes().map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        }).collect();
        let path = match which {
            0 => path,
            1 => format!("/clientes/{encoded}/extrato"),
            _ => format!("/clientes/{encoded}/transacoes"),
        };
        let body = br#"{"valor": 1, "tipo": "c", "descricao": "x"}"#.to_vec();
        let (status, value, before, after) =
            send(method.clone(), &path, Some("application/json"), body);
        prop_assert!(STATUSES.contains(&status), "{method} {path}: {status} {value}");
        let valid_id = id.parse::<i64>().is_ok_and(|n| (1..=5).contains(&n))
            && id.bytes().all(|b| b.is_ascii_digit());
        if which > 0 && !valid_id && status != 405 {
            prop_assert_eq!(status, 404, "{} {}", method, path);
        }
        if status != 200 || method != Method::POST {
            prop_assert_eq!(before, after);
        }
    }
}
