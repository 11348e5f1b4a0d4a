//! HTTP layer: routes, extractors, responses and the one error type.
//!
//! Handlers stay thin: extractors turn the request into domain values, the
//! ledger does the work, and the result is serialised with the wire names of
//! docs/contract.md §2.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use crate::domain::{format_timestamp, Statement};
use crate::ledger::{Ledger, LedgerError};

pub mod error;
pub mod request;

pub use error::{ApiError, Problem, ProblemType};
use request::{AccountPath, IdempotencyHeader, PostingBody};

/// Builds the application: `POST /clientes/{id}/transacoes`,
/// `GET /clientes/{id}/extrato` and `GET /health` on `ledger`. Unknown paths
/// answer 404 and known paths with another method 405, both with a JSON
/// error body.
pub fn router<L: Ledger>(ledger: Arc<L>) -> Router {
    Router::new()
        .route("/clientes/{id}/transacoes", post(post_transaction::<L>))
        .route("/clientes/{id}/extrato", get(get_statement::<L>))
        .route("/health", get(health::<L>))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(ledger)
}

/// Serialises `body` as a JSON response with `status`.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        // Only reachable with a non-string map key; none of our types has one.
        Err(e) => {
            ApiError::Unavailable(LedgerError::unavailable("cannot serialise the response", e))
                .into_response()
        }
    }
}

/// `200` body of a posting (docs/contract.md §2), cents.
#[derive(Serialize)]
struct PostingResponse {
    limite: i64,
    saldo: i64,
}

/// `200` body of a statement (docs/contract.md §2).
#[derive(Serialize)]
struct StatementResponse<'a> {
    saldo: StatementBalance,
    ultimas_transacoes: Vec<StatementRow<'a>>,
}

#[derive(Serialize)]
struct StatementBalance {
    total: i64,
    data_extrato: String,
    limite: i64,
}

#[derive(Serialize)]
struct StatementRow<'a> {
    valor: i64,
    tipo: &'static str,
    descricao: &'a str,
    realizada_em: String,
}

async fn post_transaction<L: Ledger>(
    State(ledger): State<Arc<L>>,
    AccountPath(account): AccountPath,
    IdempotencyHeader(key): IdempotencyHeader,
    PostingBody(transaction): PostingBody,
) -> Result<Response, ApiError> {
    let balance = ledger.post(account, &transaction, key.as_ref()).await?;
    Ok(json_response(
        StatusCode::OK,
        &PostingResponse {
            limite: balance.limit,
            saldo: balance.balance,
        },
    ))
}

async fn get_statement<L: Ledger>(
    State(ledger): State<Arc<L>>,
    AccountPath(account): AccountPath,
) -> Result<Response, ApiError> {
    let statement: Statement = ledger.statement(account).await?;
    let body = StatementResponse {
        saldo: StatementBalance {
            total: statement.balance,
            data_extrato: format_timestamp(statement.generated_at),
            limite: statement.limit,
        },
        ultimas_transacoes: statement
            .transactions
            .iter()
            .map(|t| StatementRow {
                valor: t.amount,
                tipo: t.kind.code(),
                descricao: &t.description,
                realizada_em: format_timestamp(t.posted_at),
            })
            .collect(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /health` (docs/contract.md §2.8): 200 `{"status":"ok"}` when the
/// ledger can take writes, else 503 with the reason
/// ([`Ledger::health`]) as the problem's `detail`; the cause is logged.
async fn health<L: Ledger>(State(ledger): State<Arc<L>>) -> Response {
    match ledger.health().await {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Err(unhealthy) => {
            crate::log_limit::UNHEALTHY.report(&crate::ledger::ErrorChain(&unhealthy).to_string());
            Problem {
                kind: ProblemType::Unhealthy,
                detail: unhealthy.reason.to_string(),
            }
            .into_response()
        }
    }
}
