//! The OpenAPI document (docs/contract.md §2.8): served at
//! `GET /openapi.json`, and `docs/openapi.json` is the same document.

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn the_served_document_is_the_committed_copy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json");
    assert!(
        served == committed,
        "docs/openapi.json differs from what GET /openapi.json serves; update it with\n  \
         cargo run -p crebito -- openapi > docs/openapi.json"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}
