//! `GET /clientes/{id}/historico`: an account's whole history, one page at
//! a time (docs/contract.md §2.8).

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::domain::{format_timestamp, FieldRule, HistoryPage, InvalidField, PageSize, PostingId};

/// The query of a history page: `antes_de` (a posting id: list only older
/// ones; absent for the newest page) and `tamanho` (page size, 1 to 100,
/// 20 by default). Unknown parameters are ignored. Rejection: 400 when a
/// parameter is out of range, not an integer, or given twice
/// (problem type `invalid-query`).
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    /// List transactions with an id below this one.
    pub before: Option<PostingId>,
    /// How many at most.
    pub size: PageSize,
}

impl<S: Send + Sync> FromRequestParts<S> for HistoryQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| InvalidField::new(FieldRule::Query, "malformed query string"))?;
        let mut before = None;
        let mut size = None;
        for (name, value) in &pairs {
            let twice = || {
                InvalidField::new(
                    FieldRule::Query,
                    format!("{name} must be given at most once"),
                )
            };
            match name.as_str() {
                "antes_de" if before.is_some() => return Err(twice().into()),
                "antes_de" => before = Some(PostingId::parse(value)?),
                "tamanho" if size.is_some() => return Err(twice().into()),
                "tamanho" => size = Some(PageSize::parse(value)?),
                _ => {}
            }
        }
        Ok(HistoryQuery {
            before,
            size: size.unwrap_or(PageSize::DEFAULT),
        })
    }
}

/// The query parameters of a history page, for the OpenAPI document; the
/// rules are [`PostingId::parse`] and [`PageSize::parse`].
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct HistoryParams {
    /// Only transactions with a smaller posting id: the `proximo_antes_de`
    /// of the previous page. Absent for the newest page.
    #[param(minimum = 1, maximum = 9223372036854775807_i64, format = Int64, example = 5012)]
    antes_de: Option<i64>,
    /// Page size, 20 when absent.
    #[param(minimum = 1, maximum = 100, example = 20)]
    tamanho: Option<u16>,
}

/// `200` body of a history page (docs/contract.md §2.8).
#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryResponse<'a> {
    saldo: super::StatementBalance,
    /// At most `tamanho` transactions, newest first by posting order.
    #[schema(max_items = 100)]
    transacoes: Vec<HistoryRow<'a>>,
    /// The `antes_de` of the next (older) page; `null` on the last one.
    #[schema(minimum = 1, format = Int64, example = 5012)]
    proximo_antes_de: Option<i64>,
}

/// One transaction of a history page.
#[derive(Serialize, ToSchema)]
struct HistoryRow<'a> {
    /// The posting id: grows in posting order; the cursor of `antes_de`.
    #[schema(minimum = 1)]
    id: i64,
    /// Amount, cents.
    #[schema(minimum = 1)]
    valor: i64,
    #[schema(value_type = super::openapi::Tipo)]
    tipo: &'static str,
    /// As posted: 1 to 10 characters.
    #[schema(value_type = String, min_length = 1, max_length = 10)]
    descricao: &'a str,
    /// When the posting was written: RFC 3339, UTC, microseconds.
    #[schema(format = DateTime, example = "2024-01-17T02:34:38.543030Z")]
    realizada_em: String,
}

impl<'a> HistoryResponse<'a> {
    /// The wire shape of `page`.
    pub(crate) fn new(page: &'a HistoryPage) -> Self {
        HistoryResponse {
            saldo: super::StatementBalance {
                total: page.balance,
                data_extrato: format_timestamp(page.generated_at),
                limite: page.limit,
            },
            transacoes: page
                .transactions
                .iter()
                .map(|(id, t)| HistoryRow {
                    id: id.get(),
                    valor: t.amount,
                    tipo: t.kind.code(),
                    descricao: &t.description,
                    realizada_em: format_timestamp(t.posted_at),
                })
                .collect(),
            proximo_antes_de: page
                .more
                .then(|| page.transactions.last().map(|(id, _)| id.get()))
                .flatten(),
        }
    }
}
