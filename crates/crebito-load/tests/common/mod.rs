//! In-process fake crébitos servers (axum, 127.0.0.1:0) with known faults,
//! and helpers to run crebito-load against them at a tiny scale.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{json, Value};

use crebito_load::runner::RunConfig;

/// Runs the `crebito-load` binary with `args`, without the environment
/// variables it reads, in a new empty working directory (removed after: a
/// run's default report goes there), and waits for its output.
pub async fn crebito_load(args: &[&str]) -> std::process::Output {
    let cwd = tempfile::tempdir().expect("a working directory");
    crebito_load_in(cwd.path(), args).await
}

/// [`crebito_load`] in the working directory `cwd`.
pub async fn crebito_load_in(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crebito-load"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CREBITO_LOAD_BASE_URL")
        .env_remove("CREBITO_LOAD_SEED")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

/// How the fake server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A correct server.
    None,
    /// Debits are never refused: balances go below −limit.
    Overdraw,
    /// Among the load requests (after the validation phases), every 7th
    /// answers 500 and every 11th closes the connection mid-response.
    Errors,
    /// 3 of every 10 load requests wait 300 ms before answering.
    Slow,
}

struct Account {
    limit: i64,
    balance: i64,
    last: VecDeque<Value>,
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// Requests received.
    pub requests: u64,
    /// TCP connections accepted. Counted at accept, not as distinct
    /// client (ip, port) pairs: on the loopback Linux reuses a port still
    /// in TIME_WAIT for a new connection (`net.ipv4.tcp_tw_reuse` = 2, its
    /// default), so two connections of one run can share a peer address.
    pub connections: u64,
    /// Requests without the official User-Agent.
    pub bad_user_agent: u64,
    /// POSTs without `content-type: application/json`.
    pub bad_content_type: u64,
    /// Bodies of the load postings (10-character descriptions), in arrival order.
    pub load_bodies: Vec<String>,
}

pub struct Fake {
    fault: Fault,
    accounts: Mutex<HashMap<u32, Account>>,
    load_counter: Mutex<u64>,
    load_started: Mutex<bool>,
    pub seen: Mutex<Seen>,
}

impl Fake {
    fn new(fault: Fault) -> Fake {
        let accounts = [
            (1, 100_000),
            (2, 80_000),
            (3, 1_000_000),
            (4, 10_000_000),
            (5, 500_000),
        ]
        .into_iter()
        .map(|(id, limit)| {
            (
                id,
                Account {
                    limit,
                    balance: 0,
                    last: VecDeque::new(),
                },
            )
        })
        .collect();
        Fake {
            fault,
            accounts: Mutex::new(accounts),
            load_counter: Mutex::new(0),
            load_started: Mutex::new(false),
            seen: Mutex::new(Seen::default()),
        }
    }

    fn observe(&self, headers: &HeaderMap, is_post: bool) {
        let mut seen = self.seen.lock().unwrap();
        seen.requests += 1;
        if headers.get("user-agent").and_then(|v| v.to_str().ok())
            != Some("Agente do Caos - 2024/Q1")
        {
            seen.bad_user_agent += 1;
        }
        if is_post
            && headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json")
        {
            seen.bad_content_type += 1;
        }
    }

    /// For a load request, the fault to apply (if any).
    async fn load_fault(&self) -> Option<Response> {
        let n = {
            let mut c = self.load_counter.lock().unwrap();
            *c += 1;
            *c
        };
        match self.fault {
            Fault::Errors if n % 11 == 0 => {
                let stream = futures_util::stream::iter([
                    Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"limite\": ")),
                    Err(std::io::Error::other("fake server drops the connection")),
                ]);
                Some(Response::new(Body::from_stream(stream)))
            }
            Fault::Errors if n % 7 == 0 => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response())
            }
            Fault::Slow if n % 10 < 3 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                None
            }
            _ => None,
        }
    }
}

fn valid(body: &Value) -> Option<(i64, &str, &str)> {
    let valor = body.get("valor")?;
    if !valor.is_i64() && !valor.is_u64() {
        return None;
    }
    let valor = valor.as_i64()?;
    let tipo = body.get("tipo")?.as_str()?;
    let descricao = body.get("descricao")?.as_str()?;
    let len = descricao.chars().count();
    if valor <= 0 || !(tipo == "c" || tipo == "d") || !(1..=10).contains(&len) {
        return None;
    }
    Some((valor, tipo, descricao))
}

async fn transacao(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.observe(&headers, true);
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    let Some((valor, tipo, descricao)) = valid(&value) else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    if descricao.len() == 10 {
        *fake.load_started.lock().unwrap() = true;
        fake.seen
            .lock()
            .unwrap()
            .load_bodies
            .push(String::from_utf8_lossy(&body).into_owned());
        if let Some(r) = fake.load_fault().await {
            return r;
        }
    }
    let mut accounts = fake.accounts.lock().unwrap();
    let Some(acc) = accounts.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let new_balance = if tipo == "c" {
        acc.balance + valor
    } else {
        acc.balance - valor
    };
    if tipo == "d" && new_balance < -acc.limit && fake.fault != Fault::Overdraw {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    acc.balance = new_balance;
    acc.last.push_front(json!({
        "valor": valor, "tipo": tipo, "descricao": descricao,
        "realizada_em": "2024-01-17T02:34:38.543030Z"
    }));
    acc.last.truncate(10);
    Json(json!({"limite": acc.limit, "saldo": acc.balance})).into_response()
}

async fn extrato(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    fake.observe(&headers, false);
    if *fake.load_started.lock().unwrap() {
        if let Some(r) = fake.load_fault().await {
            return r;
        }
    }
    let accounts = fake.accounts.lock().unwrap();
    let Some(acc) = accounts.get(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Json(json!({
        "saldo": {"total": acc.balance, "data_extrato": "2024-01-17T02:34:41.217753Z", "limite": acc.limit},
        "ultimas_transacoes": acc.last.iter().cloned().collect::<Vec<_>>()
    }))
    .into_response()
}

/// A running fake server.
pub struct Server {
    pub url: String,
    pub fake: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a fake server with `fault` on 127.0.0.1, on a free port.
pub async fn start(fault: Fault) -> Server {
    let fake = Arc::new(Fake::new(fault));
    let app = Router::new()
        .route("/clientes/{id}/transacoes", post(transacao))
        .route("/clientes/{id}/extrato", get(extrato))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io({
        let fake = fake.clone();
        move |_| fake.seen.lock().unwrap().connections += 1
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        url: format!("http://{addr}"),
        fake,
        task,
    }
}

/// Open-model steps of 1 s each (scale 1/120), 100 ms ticks between phases.
pub fn tiny(url: &str, seed: u64) -> RunConfig {
    RunConfig {
        base_url: url.to_string(),
        scale: 1.0 / 120.0,
        rate: 1.0,
        seed,
        wait_ready: Duration::from_secs(5),
        tick: Duration::from_millis(100),
        progress: false,
        allow_dirty: false,
    }
}
pub mod contract_fake;
pub mod postgres;
