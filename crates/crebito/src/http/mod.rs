//! HTTP layer: routes, extractors, responses and the one error type.
//!
//! Handlers stay thin: extractors turn the request into domain values, the
//! ledger does the work, and the result is serialised with the wire names of
//! docs/contract.md §2.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::domain::{format_timestamp, AccountId, Statement};
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;

pub mod error;
pub mod history;
pub mod observe;
pub mod openapi;
pub mod request;

pub use error::{ApiError, Problem, ProblemType};
use request::{AccountPath, IdempotencyHeader, PostingBody};

/// Route template of a posting (docs/contract.md §2.1).
pub const POSTING_ROUTE: &str = "/clientes/{id}/transacoes";
/// Route template of a statement (docs/contract.md §2.2).
pub const STATEMENT_ROUTE: &str = "/clientes/{id}/extrato";
/// Route template of an account's history, page by page
/// (docs/contract.md §2.8).
pub const HISTORY_ROUTE: &str = "/clientes/{id}/historico";
/// Route of the health check (docs/contract.md §2.8).
pub const HEALTH_ROUTE: &str = "/health";
/// Route of the metrics (docs/contract.md §2.8, docs/operations.md).
pub const METRICS_ROUTE: &str = "/metrics";
/// Route of the OpenAPI document (docs/contract.md §2.8).
pub const OPENAPI_ROUTE: &str = "/openapi.json";

/// Every route with the methods it answers, as the `Allow` header of a 405
/// lists them (HEAD comes with GET), for the details of 404 and 405
/// (docs/contract.md §2.5). `/metrics` last: it is not served with
/// metrics off.
const ROUTE_METHODS: [(&str, &str); 6] = [
    ("POST", POSTING_ROUTE),
    ("GET,HEAD", STATEMENT_ROUTE),
    ("GET,HEAD", HISTORY_ROUTE),
    ("GET,HEAD", HEALTH_ROUTE),
    ("GET,HEAD", OPENAPI_ROUTE),
    ("GET,HEAD", METRICS_ROUTE),
];

/// What the handlers share: the ledger, and the metrics when they are on.
struct App<L> {
    ledger: Arc<L>,
    metrics: Option<Arc<Metrics>>,
}

impl<L> Clone for App<L> {
    fn clone(&self) -> Self {
        App {
            ledger: self.ledger.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Options of [`router_with`].
#[derive(Debug, Clone, Copy)]
pub struct RouterOptions {
    /// Keep metrics and serve them at `GET /metrics`; when false nothing
    /// is recorded (the ledger's own metrics are disabled too) and
    /// `/metrics` is an unknown path (404).
    pub metrics: bool,
}

impl Default for RouterOptions {
    /// Metrics on, as `crebito serve` by default.
    fn default() -> Self {
        RouterOptions { metrics: true }
    }
}

/// [`router_with`] with the default options (metrics on).
pub fn router<L: Ledger>(ledger: Arc<L>) -> Router {
    router_with(ledger, RouterOptions::default())
}

/// Builds the application on `ledger`: `POST /clientes/{id}/transacoes`,
/// `GET /clientes/{id}/extrato`, `GET /health` and, with
/// `options.metrics`, `GET /metrics`. Unknown paths answer 404 and known
/// paths with another method 405, both with a JSON error body. Every
/// request gets a request id and a span ([`observe`]).
pub fn router_with<L: Ledger>(ledger: Arc<L>, options: RouterOptions) -> Router {
    let metrics = if options.metrics {
        let probe = ledger.clone();
        Some(Arc::new(Metrics::new(
            ledger.backend(),
            ledger.storage_metrics(),
            move || probe.pool_status(),
        )))
    } else {
        if let Some(storage) = ledger.storage_metrics() {
            storage.disable();
        }
        None
    };
    let mut routes = Router::new()
        .route(POSTING_ROUTE, post(post_transaction::<L>))
        .route(STATEMENT_ROUTE, get(get_statement::<L>))
        .route(HISTORY_ROUTE, get(get_history::<L>))
        .route(HEALTH_ROUTE, get(health::<L>))
        .route(OPENAPI_ROUTE, get(openapi::serve));
    if metrics.is_some() {
        routes = routes.route(METRICS_ROUTE, get(get_metrics::<L>));
    }
    let app = App {
        ledger,
        metrics: metrics.clone(),
    };
    let served: &'static [(&str, &str)] = if options.metrics {
        &ROUTE_METHODS
    } else {
        &ROUTE_METHODS[..ROUTE_METHODS.len() - 1]
    };
    routes
        .fallback(move |method: Method, uri: Uri| async move {
            ApiError::not_found(&method, error::request_target(&uri), served)
        })
        .method_not_allowed_fallback(
            |method: Method, uri: Uri, route: Option<MatchedPath>| async move {
                let allowed = route
                    .and_then(|route| {
                        ROUTE_METHODS
                            .iter()
                            .find(|(_, path)| *path == route.as_str())
                    })
                    .map_or("none", |(methods, _)| *methods);
                ApiError::method_not_allowed(&method, error::request_target(&uri), allowed)
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            observe::observe,
        ))
        .with_state(app)
}

/// Runs one ledger call in a debug-level `ledger` span naming the call
/// and the account, and logs at debug level how long it took and how it
/// ended.
async fn ledger_call<T>(
    call: &'static str,
    account: Option<AccountId>,
    future: impl Future<Output = Result<T, LedgerError>>,
) -> Result<T, LedgerError> {
    let span = tracing::debug_span!("ledger", call, account = account.map(AccountId::get));
    async move {
        let started = Instant::now();
        let result = future.await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(_) => tracing::debug!(elapsed_ms, "ledger call succeeded"),
            Err(e) => tracing::debug!(elapsed_ms, error = %e, "ledger call failed"),
        }
        result
    }
    .instrument(span)
    .await
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

/// `200` body of a posting (docs/contract.md §2.1), cents.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"limite": 100000, "saldo": -9098}))]
pub(crate) struct PostingResponse {
    /// The account's overdraft limit, cents.
    #[schema(minimum = 0)]
    limite: i64,
    /// The balance right after this transaction, cents; never below
    /// `-limite`.
    saldo: i64,
}

/// `200` body of a statement (docs/contract.md §2.2).
#[derive(Serialize, ToSchema)]
pub(crate) struct StatementResponse<'a> {
    saldo: StatementBalance,
    /// At most the 10 newest transactions, newest first by posting order.
    #[schema(max_items = 10)]
    ultimas_transacoes: Vec<StatementRow<'a>>,
}

/// The balance part of a statement or history page: one snapshot with its
/// rows (docs/contract.md §2.2, §3).
#[derive(Serialize, ToSchema)]
pub(crate) struct StatementBalance {
    /// The account's whole balance, cents (not a sum of the rows listed).
    total: i64,
    /// When the snapshot was taken: RFC 3339, UTC, microseconds.
    #[schema(format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    data_extrato: String,
    /// The account's overdraft limit, cents.
    #[schema(minimum = 0)]
    limite: i64,
}

/// One transaction of a statement.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatementRow<'a> {
    /// Amount, cents.
    #[schema(minimum = 1)]
    valor: i64,
    #[schema(value_type = openapi::Tipo)]
    tipo: &'static str,
    /// As posted: 1 to 10 characters.
    #[schema(value_type = String, min_length = 1, max_length = 10)]
    descricao: &'a str,
    /// When the posting was written: RFC 3339, UTC, microseconds.
    #[schema(format = DateTime, example = "2024-01-17T02:34:38.543030Z")]
    realizada_em: String,
}

#[utoipa::path(
    post,
    path = "/clientes/{id}/transacoes",
    tag = "ledger",
    summary = "Post a credit or a debit",
    description = "Posts one transaction atomically and answers the balance right after it \
        (docs/contract.md §2.1). A request is checked in the order of docs/contract.md §2.4; \
        a 4xx records nothing.",
    params(openapi::AccountIdParam, openapi::IdempotencyKeyHeader, openapi::RequestIdHeader),
    request_body(content = openapi::PostingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Posted", body = PostingResponse, headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        (status = 400, description = "The body is not one well-formed JSON value", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::AccountErrors,
        (status = 413, description = "The body is larger than 1024 bytes", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        (status = 415, description = "Content-Type missing or not JSON", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        (status = 422, description = "A field rule is broken (docs/contract.md §2.1), the debit would go below -limite, the balance would overflow, or the Idempotency-Key was used for another request; nothing recorded", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::FramingErrors,
        (status = 408, description = "The body did not arrive within the body deadline", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
    )
)]
async fn post_transaction<L: Ledger>(
    State(app): State<App<L>>,
    AccountPath(account): AccountPath,
    IdempotencyHeader(key): IdempotencyHeader,
    PostingBody(transaction): PostingBody,
) -> Result<Response, ApiError> {
    // crebito_postings_total is counted by the ledger's posting queue.
    let balance = ledger_call(
        "post",
        Some(account),
        app.ledger.post(account, &transaction, key.as_ref()),
    )
    .await
    .map_err(|e| ApiError::for_account(e, account))?;
    Ok(json_response(
        StatusCode::OK,
        &PostingResponse {
            limite: balance.limit,
            saldo: balance.balance,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/clientes/{id}/extrato",
    tag = "ledger",
    summary = "The statement: the balance and the 10 newest transactions",
    description = "One consistent snapshot (docs/contract.md §2.2, §3).",
    params(openapi::AccountIdParam, openapi::RequestIdHeader),
    responses(
        (status = 200, description = "The statement", body = StatementResponse, headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::AccountErrors,
        openapi::Malformed,
        openapi::FramingErrors,
    )
)]
async fn get_statement<L: Ledger>(
    State(app): State<App<L>>,
    AccountPath(account): AccountPath,
) -> Result<Response, ApiError> {
    let statement: Statement =
        ledger_call("statement", Some(account), app.ledger.statement(account))
            .await
            .map_err(|e| ApiError::for_account(e, account))?;
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

#[utoipa::path(
    get,
    path = "/clientes/{id}/historico",
    tag = "ledger",
    summary = "The whole history, one page at a time",
    description = "Up to `tamanho` transactions with an id below `antes_de`, newest first, with \
        the balance, as one snapshot per page (docs/contract.md §2.8). Follow \
        `proximo_antes_de` for the next, older page.",
    params(openapi::AccountIdParam, history::HistoryParams, openapi::RequestIdHeader),
    responses(
        (status = 200, description = "One page", body = history::HistoryResponse, headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        (status = 400, description = "`antes_de` or `tamanho` is not such an integer, out of range, or repeated", body = openapi::ProblemBody, content_type = "application/problem+json", headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::AccountErrors,
        openapi::FramingErrors,
    )
)]
async fn get_history<L: Ledger>(
    State(app): State<App<L>>,
    AccountPath(account): AccountPath,
    query: history::HistoryQuery,
) -> Result<Response, ApiError> {
    let page = ledger_call(
        "history",
        Some(account),
        app.ledger.history(account, query.before, query.size),
    )
    .await
    .map_err(|e| ApiError::for_account(e, account))?;
    Ok(json_response(
        StatusCode::OK,
        &history::HistoryResponse::new(&page),
    ))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Whether the instance can serve",
    description = "One round trip to the database (docs/operations.md).",
    params(openapi::RequestIdHeader),
    responses(
        (status = 200, description = "The database answers", body = openapi::HealthBody, headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::Unavailable,
        openapi::Malformed,
        openapi::FramingErrors,
    )
)]
async fn health<L: Ledger>(State(app): State<App<L>>) -> Response {
    let started = Instant::now();
    let health = app
        .ledger
        .health()
        .instrument(tracing::debug_span!("ledger", call = "health"))
        .await;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        healthy = health.is_ok(),
        "health checked"
    );
    match health {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Err(unhealthy) => {
            crate::log_limit::UNHEALTHY.report(&crate::ledger::ErrorChain(&unhealthy).to_string());
            let mut response = Problem {
                kind: ProblemType::Unhealthy,
                detail: unhealthy.reason.to_string(),
            }
            .into_response();
            // For crebito_unavailable_total (observe.rs).
            response
                .extensions_mut()
                .insert(crate::ledger::UnavailableCause::Unhealthy);
            response
        }
    }
}

/// `GET /metrics`: the Prometheus text format 0.0.4 (docs/operations.md).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "The instance's metrics",
    description = "Prometheus text exposition format 0.0.4; names and meaning in \
        docs/operations.md. 404 when the instance runs with `--metrics off`.",
    params(openapi::RequestIdHeader),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String, headers(("x-request-id" = String, description = "The request id (docs/operations.md)"))),
        openapi::NotFound,
        openapi::Malformed,
        openapi::FramingErrors,
    )
)]
async fn get_metrics<L: Ledger>(State(app): State<App<L>>) -> Response {
    let Some(metrics) = &app.metrics else {
        // Not routed with metrics off (router_with); kept total.
        return ApiError::not_found(
            &Method::GET,
            METRICS_ROUTE,
            &ROUTE_METHODS[..ROUTE_METHODS.len() - 1],
        )
        .into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}
