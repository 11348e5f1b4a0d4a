//! An in-process fake of the whole crébitos contract (docs/contract.md §2
//! and §3) with one switchable fault per rule, for `crebito-load check`:
//! the correct fake passes every check, and each fault must be caught by
//! the check of its rule.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

/// The one rule the fake breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// None: the contract as written.
    None,
    /// Account 2 is seeded with limit 8000 instead of 80000.
    SeedLimit,
    /// Account 3 starts at balance 100 without any transaction.
    SeedBalance,
    /// Account 6 exists.
    UnknownAccountExists,
    /// A non-numeric id is 400.
    InvalidIdAs400,
    /// Statements lack `data_extrato`.
    StatementNoDate,
    /// Timestamps with milliseconds only.
    TimestampMillis,
    /// A posting answers the balance before it.
    BalanceBefore,
    /// Statements list the oldest transactions first.
    OldestFirst,
    /// A debit may not reach exactly -limite.
    LimitExclusive,
    /// Amounts above 2^31-1 are refused.
    Amounts32Bit,
    /// A credit past 2^63-1 saturates and is accepted.
    OverflowSaturates,
    /// A fractional valor is truncated and accepted.
    FloatValor,
    /// `tipo` is case-insensitive.
    TipoAnyCase,
    /// `descricao` length is counted in bytes.
    DescricaoBytes,
    /// A NUL in `descricao` is accepted.
    NulAccepted,
    /// Field rule errors are 400.
    FieldErrors400,
    /// Malformed JSON is 422.
    SyntaxErrors422,
    /// Invalid UTF-8 inside a string is 422.
    Utf8As422,
    /// A duplicated field: the last one wins.
    DuplicateLastWins,
    /// Unknown fields are refused with 422.
    UnknownFieldRefused,
    /// Postings read, wait, then write the balance: concurrent ones are lost.
    LostUpdate,
    /// Debits check the headroom, wait, then apply: concurrent ones overdraw.
    OverdrawRace,
    /// A statement reads the balance, waits 2 ms, then reads the rows.
    TornStatement,
    /// A statement reads the balance and its rows in two snapshots, as two
    /// queries outside one transaction would: the balance, then (after a
    /// yield to the runtime, the round trip of the second query) the rows,
    /// with concurrent postings landing in between.
    TwoSnapshots,
    /// A posting takes its timestamp before it is applied (as a timestamp
    /// set by the application, or a transaction's start time, before the
    /// account's lock is taken): after a yield to the runtime (the round
    /// trip to the database) it is applied under the lock, and statements
    /// list rows by that timestamp. A posting that waited behind a later
    /// one is listed below it, or not at all when ten newer ones are
    /// listed, while the balance includes it.
    StampBeforeWrite,
    /// Statements see a posting 200 ms after it was answered.
    StaleRead,
    /// A known path with another method is 404.
    MethodsAs404,
    /// Any Content-Type is accepted.
    AnyContentType,
    /// No body size limit.
    NoBodyLimit,
}

#[derive(Clone)]
struct Row {
    valor: i64,
    tipo: &'static str,
    descricao: String,
    /// The posting's timestamp, from the fake's clock: statements list
    /// rows by it, newest first.
    stamp: u64,
}

#[derive(Clone)]
struct Account {
    limit: i64,
    balance: i64,
    /// Oldest first.
    rows: Vec<Row>,
}

struct Fake {
    fault: Fault,
    /// Accounts by id (index 0 unused).
    ledger: Mutex<Vec<Option<Account>>>,
    /// What statements show; the ledger itself except with `StaleRead`.
    view: Mutex<Vec<Option<Account>>>,
    /// The clock of the rows' timestamps: one tick per posting.
    clock: AtomicU64,
}

fn seed(fault: Fault) -> Vec<Option<Account>> {
    let mut accounts: Vec<Option<Account>> = vec![None];
    for (id, limit) in [
        (1, 100_000),
        (2, 80_000),
        (3, 1_000_000),
        (4, 10_000_000),
        (5, 500_000),
    ] {
        let limit = if fault == Fault::SeedLimit && id == 2 {
            8_000
        } else {
            limit
        };
        let balance = if fault == Fault::SeedBalance && id == 3 {
            100
        } else {
            0
        };
        accounts.push(Some(Account {
            limit,
            balance,
            rows: Vec::new(),
        }));
    }
    if fault == Fault::UnknownAccountExists {
        accounts.push(Some(Account {
            limit: 0,
            balance: 0,
            rows: Vec::new(),
        }));
    }
    accounts
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A refusal, made a response by [`error`].
type Refusal = (StatusCode, &'static str);

impl Fake {
    fn id(&self, text: &str) -> Result<usize, Refusal> {
        let parsed = text
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0 && text.bytes().all(|b| b.is_ascii_digit()));
        match parsed {
            Some(n) => Ok(n as usize),
            None if self.fault == Fault::InvalidIdAs400 && !text.starts_with('-') => {
                Err((StatusCode::BAD_REQUEST, "bad id"))
            }
            None => Err((StatusCode::NOT_FOUND, "no such account")),
        }
    }

    async fn statement(&self, id: usize) -> Response {
        let (total, limit) = {
            let view = self.view_of();
            let view = view.lock().unwrap();
            match view.get(id).and_then(Option::as_ref) {
                Some(a) => (a.balance, a.limit),
                None => return error(StatusCode::NOT_FOUND, "no such account"),
            }
        };
        match self.fault {
            Fault::TornStatement => tokio::time::sleep(Duration::from_millis(2)).await,
            Fault::TwoSnapshots => tokio::task::yield_now().await,
            _ => {}
        }
        let view = self.view_of();
        let view = view.lock().unwrap();
        let account = view[id].as_ref().unwrap();
        let total = if matches!(self.fault, Fault::TornStatement | Fault::TwoSnapshots) {
            total
        } else {
            account.balance
        };
        let stamp = if self.fault == Fault::TimestampMillis {
            "2024-01-17T02:34:41.217Z"
        } else {
            "2024-01-17T02:34:41.217753Z"
        };
        let mut rows: Vec<Value> = account
            .rows
            .iter()
            .rev()
            .take(10)
            .map(|r| json!({"valor": r.valor, "tipo": r.tipo, "descricao": r.descricao, "realizada_em": stamp}))
            .collect();
        if self.fault == Fault::OldestFirst {
            rows.reverse();
        }
        let mut saldo = json!({"total": total, "data_extrato": stamp, "limite": limit});
        if self.fault == Fault::StatementNoDate {
            saldo.as_object_mut().unwrap().remove("data_extrato");
        }
        axum::Json(json!({"saldo": saldo, "ultimas_transacoes": rows})).into_response()
    }

    fn view_of(&self) -> &Mutex<Vec<Option<Account>>> {
        if self.fault == Fault::StaleRead {
            &self.view
        } else {
            &self.ledger
        }
    }

    async fn post(self: &Arc<Self>, id: usize, headers: &HeaderMap, body: &[u8]) -> Response {
        if !self
            .ledger
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(Option::is_some)
        {
            return error(StatusCode::NOT_FOUND, "no such account");
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if self.fault != Fault::AnyContentType
            && !content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/json")
        {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "JSON only");
        }
        if self.fault != Fault::NoBodyLimit && body.len() > 1024 {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "too large");
        }
        let (valor, tipo, descricao) = match self.parse(body) {
            Ok(t) => t,
            Err((status, message)) => return error(status, message),
        };
        match self.fault {
            Fault::LostUpdate => self.apply_racy(id, valor, tipo, descricao).await,
            Fault::OverdrawRace if tipo == "d" => self.debit_racy(id, valor, descricao).await,
            Fault::StampBeforeWrite => {
                let stamp = self.clock.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                self.apply(id, valor, tipo, descricao, Some(stamp))
            }
            _ => self.apply(id, valor, tipo, descricao, None),
        }
    }

    /// Parses a posting body: 400 for syntax, 422 for field rules.
    fn parse(&self, body: &[u8]) -> Result<(i64, &'static str, String), Refusal> {
        let syntax = if self.fault == Fault::SyntaxErrors422 {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        let field = if self.fault == Fault::FieldErrors400 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let text = match std::str::from_utf8(body) {
            Ok(t) => t.to_string(),
            Err(_) if self.fault == Fault::Utf8As422 => {
                return Err((StatusCode::UNPROCESSABLE_ENTITY, "bad text"))
            }
            Err(_) => return Err((syntax, "not UTF-8")),
        };
        if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
            return Err((syntax, "not JSON"));
        }
        #[derive(Deserialize)]
        struct Strict {
            valor: Option<Value>,
            tipo: Option<Value>,
            descricao: Option<Value>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Closed {
            valor: Option<Value>,
            tipo: Option<Value>,
            descricao: Option<Value>,
        }
        let fields = match self.fault {
            Fault::DuplicateLastWins => serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                v.as_object().map(|o| Strict {
                    valor: o.get("valor").cloned(),
                    tipo: o.get("tipo").cloned(),
                    descricao: o.get("descricao").cloned(),
                })
            }),
            Fault::UnknownFieldRefused => {
                serde_json::from_str::<Closed>(&text).ok().map(|c| Strict {
                    valor: c.valor,
                    tipo: c.tipo,
                    descricao: c.descricao,
                })
            }
            _ => serde_json::from_str::<Strict>(&text).ok(),
        };
        let Some(fields) = fields else {
            return Err((field, "not a posting"));
        };
        let valor = match fields.valor {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if v >= 1 => v,
                None if self.fault == Fault::FloatValor && n.as_f64().is_some_and(|f| f >= 1.0) => {
                    n.as_f64().unwrap() as i64
                }
                _ => return Err((field, "valor")),
            },
            _ => return Err((field, "valor")),
        };
        if self.fault == Fault::Amounts32Bit && valor > i64::from(i32::MAX) {
            return Err((field, "valor too large"));
        }
        let tipo = match fields.tipo.as_ref().and_then(Value::as_str) {
            Some("c") => "c",
            Some("d") => "d",
            Some("C") if self.fault == Fault::TipoAnyCase => "c",
            Some("D") if self.fault == Fault::TipoAnyCase => "d",
            _ => return Err((field, "tipo")),
        };
        let descricao = match fields.descricao {
            Some(Value::String(s)) => s,
            _ => return Err((field, "descricao")),
        };
        let len = if self.fault == Fault::DescricaoBytes {
            descricao.len()
        } else {
            descricao.chars().count()
        };
        if !(1..=10).contains(&len)
            || (descricao.contains('\0') && self.fault != Fault::NulAccepted)
        {
            return Err((field, "descricao"));
        }
        Ok((valor, tipo, descricao))
    }

    /// The posting itself, atomically; its row is stamped `stamp`, or the
    /// clock's next tick under the lock.
    fn apply(
        self: &Arc<Self>,
        id: usize,
        valor: i64,
        tipo: &'static str,
        descricao: String,
        stamp: Option<u64>,
    ) -> Response {
        let mut ledger = self.ledger.lock().unwrap();
        let account = ledger[id].as_mut().unwrap();
        let before = account.balance;
        let new = if tipo == "c" {
            match account.balance.checked_add(valor) {
                Some(b) => b,
                None if self.fault == Fault::OverflowSaturates => i64::MAX,
                None => return error(StatusCode::UNPROCESSABLE_ENTITY, "overflow"),
            }
        } else {
            let new = i128::from(account.balance) - i128::from(valor);
            let floor = -i128::from(account.limit);
            if new < floor || (self.fault == Fault::LimitExclusive && new == floor) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "limit");
            }
            new as i64
        };
        account.balance = new;
        let row = Row {
            valor,
            tipo,
            descricao,
            stamp: stamp.unwrap_or_else(|| self.clock.fetch_add(1, Ordering::SeqCst)),
        };
        // Kept in timestamp order, as an index on it would list them.
        let at = account.rows.partition_point(|r| r.stamp < row.stamp);
        account.rows.insert(at, row);
        let limit = account.limit;
        let snapshot = ledger.clone();
        drop(ledger);
        self.publish(snapshot);
        let saldo = if self.fault == Fault::BalanceBefore {
            before
        } else {
            new
        };
        axum::Json(json!({"limite": limit, "saldo": saldo})).into_response()
    }

    /// With `StaleRead`, statements see `snapshot` 200 ms later.
    fn publish(self: &Arc<Self>, snapshot: Vec<Option<Account>>) {
        if self.fault == Fault::StaleRead {
            let fake = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                *fake.view.lock().unwrap() = snapshot;
            });
        }
    }

    async fn apply_racy(
        self: &Arc<Self>,
        id: usize,
        valor: i64,
        tipo: &'static str,
        descricao: String,
    ) -> Response {
        let (read, limit) = {
            let ledger = self.ledger.lock().unwrap();
            let a = ledger[id].as_ref().unwrap();
            (a.balance, a.limit)
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let new = if tipo == "c" {
            read + valor
        } else {
            read - valor
        };
        if new < -limit {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "limit");
        }
        let mut ledger = self.ledger.lock().unwrap();
        let a = ledger[id].as_mut().unwrap();
        a.balance = new;
        a.rows.push(Row {
            valor,
            tipo,
            descricao,
            stamp: self.clock.fetch_add(1, Ordering::SeqCst),
        });
        axum::Json(json!({"limite": limit, "saldo": new})).into_response()
    }

    async fn debit_racy(self: &Arc<Self>, id: usize, valor: i64, descricao: String) -> Response {
        let affordable = {
            let ledger = self.ledger.lock().unwrap();
            let a = ledger[id].as_ref().unwrap();
            a.balance - valor >= -a.limit
        };
        if !affordable {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "limit");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut ledger = self.ledger.lock().unwrap();
        let a = ledger[id].as_mut().unwrap();
        a.balance -= valor;
        a.rows.push(Row {
            valor,
            tipo: "d",
            descricao,
            stamp: self.clock.fetch_add(1, Ordering::SeqCst),
        });
        axum::Json(json!({"limite": a.limit, "saldo": a.balance})).into_response()
    }
}

async fn handle(
    axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = uri.path().split('/').collect();
    let (id, resource) = match parts.as_slice() {
        ["", "clientes", id, resource @ ("extrato" | "transacoes")] => (*id, *resource),
        _ => return error(StatusCode::NOT_FOUND, "no such path"),
    };
    let wrong_method = match resource {
        "extrato" => method != Method::GET,
        _ => method != Method::POST,
    };
    if wrong_method {
        let status = if fake.fault == Fault::MethodsAs404 {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        return error(status, "method");
    }
    let decoded = id.replace("%20", " ");
    let id = match fake.id(&decoded) {
        Ok(id) => id,
        Err((status, message)) => return error(status, message),
    };
    if resource == "extrato" {
        fake.statement(id).await
    } else {
        fake.post(id, &headers, &body).await
    }
}

/// A running fake: base URLs of its instances (one shared ledger).
pub struct FakeDeployment {
    pub urls: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeDeployment {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts `instances` loopback listeners sharing one fake ledger with `fault`.
pub async fn start(fault: Fault, instances: usize) -> FakeDeployment {
    let fake = Arc::new(Fake {
        fault,
        ledger: Mutex::new(seed(fault)),
        view: Mutex::new(seed(fault)),
        clock: AtomicU64::new(0),
    });
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..instances {
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        urls.push(format!("http://{addr}"));
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }
    FakeDeployment { urls, tasks }
}
