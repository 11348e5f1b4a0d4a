//! Turning request parts into domain values (parse, don't validate).

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::{
    AccountId, Amount, Description, FieldRule, IdempotencyKey, InvalidField, Kind, Transaction,
};

/// Largest accepted request body, in bytes (docs/contract.md §2.1:
/// over 1 KiB is 413). A valid posting is under 100 bytes.
pub const MAX_BODY_BYTES: usize = 1024;

/// The `{id}` of `/clientes/{id}/…`. Anything that is not a positive
/// integer fitting the id type is answered 404, like an unknown account.
#[derive(Debug, Clone, Copy)]
pub struct AccountPath(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for AccountPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                // Not UTF-8 once percent-decoded: named as sent.
                let sent = parts.uri.path().split('/').nth(2).unwrap_or_default();
                ApiError::account_not_found(sent)
            })?;
        AccountId::parse(&id)
            .map(AccountPath)
            .ok_or_else(|| ApiError::account_not_found(&id))
    }
}

/// The optional `Idempotency-Key` header of a posting (docs/contract.md
/// §2.6): an RFC 8941 sf-string (`"key"`) or the bare key, see
/// [`IdempotencyKey::from_header`]. Rejection: 422 when present but
/// malformed, or sent more than once.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

/// Name of the idempotency header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyHeader(None));
        };
        if values.next().is_some() {
            return Err(InvalidField::new(
                FieldRule::IdempotencyKey,
                "Idempotency-Key must be sent once",
            )
            .into());
        }
        Ok(IdempotencyHeader(Some(IdempotencyKey::from_header(
            value.as_bytes(),
        )?)))
    }
}

/// The request body could not be read in full within the body deadline
/// (set by the server for every request, docs/contract.md §2.7). The
/// server's request guard fails the body with this error; [`PostingBody`]
/// answers it 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyDeadlineExceeded(pub std::time::Duration);

/// The body of `POST /clientes/{id}/transacoes`, parsed into a
/// [`Transaction`]. Rejections, in this order (docs/contract.md §2.4):
/// 400 for more than one `Content-Type`; 415 without a JSON `Content-Type`
/// or with a `Content-Encoding` other than `identity`; 413 over
/// [`MAX_BODY_BYTES`]; 408 when the body does not arrive within the
/// deadline; 400 when it cannot be read (a malformed chunk, shorter than
/// its `Content-Length`); then as [`parse_transaction`].
#[derive(Debug, Clone)]
pub struct PostingBody(pub Transaction);

impl<S: Send + Sync> FromRequest<S> for PostingBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        check_content_headers(request.headers())?;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        // Also bounds bodies without a Content-Length (chunked).
        let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|e| body_error(e.into_inner()))?;
        parse_transaction(&body).map(PostingBody)
    }
}

/// The representation metadata of a posting: exactly one `Content-Type`,
/// JSON; no content coding other than `identity`.
fn check_content_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut content_types = headers.get_all(CONTENT_TYPE).iter();
    let content_type = content_types.next();
    if content_types.next().is_some() {
        return Err(ApiError::RepeatedContentType);
    }
    let content_type = content_type
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_json_content_type(content_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Only `identity` (no coding at all) is understood here.
    if has_coding_other_than(headers, CONTENT_ENCODING, "identity") {
        return Err(ApiError::UnsupportedContentEncoding);
    }
    Ok(())
}

/// True when the coding list `name` (`Content-Encoding`, RFC 9110 §8.4, or
/// `Transfer-Encoding`, RFC 9112 §6.1: comma-separated, possibly over
/// several field lines) names a coding other than `allowed` (any letter
/// case), or is not text.
pub fn has_coding_other_than(headers: &HeaderMap, name: HeaderName, allowed: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().map_or(true, |codings| {
            codings
                .split(',')
                .map(str::trim)
                .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(allowed))
        })
    })
}

/// Classifies a failed body read: over the limit (413), past the deadline
/// (408), or unreadable framing (400) — whichever the cause chain holds.
fn body_error(error: axum::BoxError) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(MAX_BODY_BYTES);
        }
        if let Some(BodyDeadlineExceeded(after)) = e.downcast_ref() {
            return ApiError::BodyTimeout(after.as_millis());
        }
        cause = e.source();
    }
    ApiError::UnreadableBody(error.to_string())
}

/// True for `application/json` and `application/<something>+json`, with or
/// without parameters such as `; charset=utf-8`, in any letter case.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The wire shape of a posting, before the field rules. `Option` so that a
/// missing or `null` field gets a message naming it; serde refuses
/// duplicated fields and ignores unknown ones.
#[derive(Deserialize)]
struct RawTransaction {
    valor: Option<Value>,
    tipo: Option<Value>,
    descricao: Option<Value>,
}

/// Parses a posting body (docs/contract.md §2.1, statuses as §2.4).
///
/// Errors: [`ApiError::MalformedJson`] (400) when the bytes are not exactly
/// one JSON value; [`ApiError::InvalidField`] (422) when the JSON is not an
/// object, repeats a field, or a field is missing, `null`, of the wrong type
/// or out of range.
pub fn parse_transaction(body: &[u8]) -> Result<Transaction, ApiError> {
    // RFC 8259 §8.1: a JSON text is UTF-8 as a whole. serde_json does not
    // look inside the strings that pass 1 skips, and pass 2 would call
    // invalid UTF-8 in a string a field error (422).
    std::str::from_utf8(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    // Pass 1, syntax only: a syntax error anywhere is a 400 even when a
    // field before it is already wrong.
    serde_json::from_slice::<IgnoredAny>(body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let body_rule = |message: String| InvalidField::new(FieldRule::Body, message);
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            body_rule("body must be a JSON object with valor, tipo and descricao".into()).into(),
        );
    }
    // An object: the only error left is a field given twice ("duplicate
    // field `valor` at line 1 column 30"), which names only wire names.
    let raw: RawTransaction =
        serde_json::from_slice(body).map_err(|e| body_rule(format!("{e}")))?;
    let amount_rule = |message: String| InvalidField::new(FieldRule::Amount, message);
    let amount = match raw.valor {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(cents) => Amount::new(cents)?,
            None if n.is_u64() => {
                return Err(amount_rule(format!("valor must be at most {}", i64::MAX)).into())
            }
            None => return Err(amount_rule("valor must be an integer".into()).into()),
        },
        None => return Err(amount_rule("valor is required".into()).into()),
        Some(_) => return Err(amount_rule("valor must be an integer".into()).into()),
    };
    let kind_rule = |message: &str| InvalidField::new(FieldRule::Kind, message);
    let kind = match raw.tipo {
        Some(Value::String(code)) => Kind::parse(&code)?,
        None => return Err(kind_rule("tipo is required").into()),
        Some(_) => return Err(kind_rule(r#"tipo must be the string "c" or "d""#).into()),
    };
    let description_rule = |message: &str| InvalidField::new(FieldRule::Description, message);
    let description = match raw.descricao {
        Some(Value::String(text)) => Description::new(text)?,
        None => return Err(description_rule("descricao is required").into()),
        Some(_) => return Err(description_rule("descricao must be a string").into()),
    };
    Ok(Transaction {
        amount,
        kind,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn status(body: &str) -> StatusCode {
        match parse_transaction(body.as_bytes()) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn valid_bodies() {
        let t = parse_transaction(br#"{"valor": 1000, "tipo": "c", "descricao": "descricao"}"#)
            .unwrap();
        assert_eq!(t.amount.cents(), 1000);
        assert_eq!(t.kind, Kind::Credit);
        assert_eq!(t.description.as_str(), "descricao");
        // Unknown fields are ignored; whitespace around the object is fine.
        assert_eq!(
            status(" {\"valor\":1,\"tipo\":\"d\",\"descricao\":\"x\",\"extra\":[1]}\n"),
            StatusCode::OK
        );
        // Larger than 2^31.
        assert_eq!(
            status(r#"{"valor": 9223372036854775807, "tipo": "c", "descricao": "x"}"#),
            StatusCode::OK
        );
        assert_eq!(
            status(r#"{"valor": 1, "tipo": "c", "descricao": "d\u00e9bito"}"#),
            StatusCode::OK
        );
    }

    #[test]
    fn malformed_json_is_400() {
        for body in [
            "",
            " ",
            "{",
            r#"{"valor": 1, "tipo": "c", "descricao": "x"} {}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": "x"}x"#,
            r#"{"valor": "x", garbage"#,
            r#"{valor: 1}"#,
            "\u{feff}{}",
        ] {
            assert_eq!(status(body), StatusCode::BAD_REQUEST, "{body:?}");
        }
        // Invalid UTF-8, also inside a string (docs/contract.md §2.1).
        for body in [
            &b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"\xff\"}"[..],
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"\xc3\"}",
            b"\xff",
        ] {
            let status = parse_transaction(body).map_or_else(|e| e.status(), |_| StatusCode::OK);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        }
        // Invalid UTF-8 anywhere, also in a field that is ignored, its name
        // or its value (RFC 8259 §8.1).
        for body in [
            &b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"x\", \"extra\": \"\xff\"}"[..],
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"x\", \"\xfe\xff\": 1}",
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"x\", \"e\": [\"\xed\xa0\x80\"]}",
        ] {
            let status = parse_transaction(body).map_or_else(|e| e.status(), |_| StatusCode::OK);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        }
        // Deep nesting is an error, not a stack overflow: unbalanced is
        // malformed, balanced is well-formed but not an object.
        let open = "[".repeat(100_000);
        assert_eq!(status(&open), StatusCode::BAD_REQUEST);
        let deep = format!("{open}{}", "]".repeat(100_000));
        assert_eq!(status(&deep), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn official_invalid_bodies_are_422() {
        // docs/contract.md §5 phase 3a.
        for body in [
            r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
            r#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
        ] {
            assert_eq!(status(body), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
    }

    #[test]
    fn field_rules_are_422() {
        for body in [
            r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": -5, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": "100", "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": null, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": 1e3, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": 1.0, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": 9223372036854775808, "tipo": "c", "descricao": "x"}"#,
            r#"{"valor": -9223372036854775809, "tipo": "c", "descricao": "x"}"#,
            r#"{"tipo": "c", "descricao": "x"}"#,
            r#"{"valor": 1, "descricao": "x"}"#,
            r#"{"valor": 1, "tipo": "c"}"#,
            r#"{"valor": 1, "tipo": "C", "descricao": "x"}"#,
            r#"{"valor": 1, "tipo": null, "descricao": "x"}"#,
            r#"{"valor": 1, "tipo": ["c"], "descricao": "x"}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": 5}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": "01234567890"}"#,
            r#"{"valor": 1, "tipo": "c", "descricao": "a\u0000b"}"#,
            r#"{"valor": 1, "valor": 2, "tipo": "c", "descricao": "x"}"#,
            r#"[]"#,
            r#"1"#,
            r#"null"#,
            r#""valor""#,
            r#"{}"#,
        ] {
            assert_eq!(status(body), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
    }

    #[test]
    fn messages_name_no_internal_type() {
        for body in ["[1,2]", "1", "\"x\"", "null", "[]"] {
            let error = parse_transaction(body.as_bytes()).unwrap_err();
            assert_eq!(
                error.problem().kind,
                super::super::error::ProblemType::InvalidBody
            );
            let message = error.to_string();
            assert!(
                !message.contains("RawTransaction") && !message.contains("struct"),
                "{message}"
            );
            assert!(message.contains("JSON object"), "{message}");
        }
        let error =
            parse_transaction(br#"{"valor": 1, "valor": 2, "tipo": "c", "descricao": "x"}"#)
                .unwrap_err();
        assert!(
            error.to_string().contains("duplicate field `valor`"),
            "{error}"
        );
    }

    #[test]
    fn each_field_has_its_problem_type() {
        use super::super::error::ProblemType;
        let kind = |body: &str| {
            parse_transaction(body.as_bytes())
                .unwrap_err()
                .problem()
                .kind
        };
        assert_eq!(
            kind(r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#),
            ProblemType::InvalidValor
        );
        assert_eq!(
            kind(r#"{"tipo": "c", "descricao": "x"}"#),
            ProblemType::InvalidValor
        );
        assert_eq!(
            kind(r#"{"valor": 1, "tipo": "x", "descricao": "x"}"#),
            ProblemType::InvalidTipo
        );
        assert_eq!(
            kind(r#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais"}"#),
            ProblemType::InvalidDescricao
        );
        assert_eq!(
            kind(r#"{"valor": 1, "tipo": "c", "descricao": null}"#),
            ProblemType::InvalidDescricao
        );
        assert_eq!(kind("{"), ProblemType::MalformedJson);
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "application/+json",
            "json",
            "text/json",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }
}
