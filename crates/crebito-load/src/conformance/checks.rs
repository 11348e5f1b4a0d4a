//! The checks, one per rule of docs/contract.md, and the catalogue that
//! names them. Each reads the balances it works on first, reasons from them,
//! and puts them back.

use std::collections::HashMap;

use hyper::Method;
use serde_json::{json, Value};

use super::client::{self, Exchange, Outgoing};
use super::{fail, probe, Check, CheckFuture, Checked, Ctx, Origin, Verdict};
use crate::http::Target;
use crate::scenario::SEEDED_ACCOUNTS;

macro_rules! boxed {
    ($f:ident) => {{
        fn run(ctx: &Ctx) -> CheckFuture<'_> {
            Box::pin($f(ctx))
        }
        run
    }};
}

const CONTRACT_1: &str = "docs/contract.md §1";
const CONTRACT_2_1: &str = "docs/contract.md §2.1";
const CONTRACT_2_2: &str = "docs/contract.md §2.2";
const CONTRACT_2_3: &str = "docs/contract.md §2.3";
const CONTRACT_2_4: &str = "docs/contract.md §2.4";
const CONTRACT_3: &str = "docs/contract.md §3";

/// Every check, in the order they run: the reads first, then the rules of
/// single postings, then concurrency, then HTTP.
pub fn catalogue() -> Vec<Check> {
    let challenge = |name, rule, source, run| Check {
        name,
        rule,
        source,
        origin: Origin::Challenge,
        challenge_allows: None,
        run,
    };
    let project = |name, rule, source, allows, run| Check {
        name,
        rule,
        source,
        origin: Origin::Project,
        challenge_allows: Some(allows),
        run,
    };
    vec![
        challenge(
            "seed-limits",
            "accounts 1 to 5 exist with limits 100000, 80000, 1000000, 10000000 and 500000 cents",
            CONTRACT_2_3,
            boxed!(seed_limits),
        ),
        challenge(
            "seed-balances",
            "each seeded account starts at balance 0 with no transaction",
            CONTRACT_2_3,
            boxed!(seed_balances),
        ),
        challenge(
            "unknown-account",
            "an account that does not exist (id 6) is 404 for its statement and for a posting, and a posting does not create it",
            CONTRACT_2_3,
            boxed!(unknown_account),
        ),
        project(
            "invalid-account-id",
            "an id that is not a positive 32-bit integer (0, -1, abc, 2147483648, +1, ' 1', 1.5) is 404 like an unknown account",
            CONTRACT_2_3,
            "the challenge only tests id 6",
            boxed!(invalid_account_id),
        ),
        challenge(
            "statement-shape",
            "a statement is 200 with saldo.total, saldo.limite (integers), saldo.data_extrato and at most 10 ultimas_transacoes, each with valor, tipo, descricao and realizada_em",
            CONTRACT_2_2,
            boxed!(statement_shape),
        ),
        project(
            "timestamps",
            "data_extrato and realizada_em are RFC 3339 in UTC with a Z and microseconds (2024-01-17T02:34:41.217753Z)",
            CONTRACT_2_2,
            "the challenge shows this format without requiring it",
            boxed!(timestamps),
        ),
        challenge(
            "posting-balance",
            "a posting is 200 with limite and saldo, the balance right after it: a credit adds valor, a debit subtracts it",
            CONTRACT_2_1,
            boxed!(posting_balance),
        ),
        challenge(
            "newest-first",
            "ultimas_transacoes lists the 10 newest transactions, newest first, in posting order, also while several connections post to the account at once: each listed row's answered balance is the next older row's plus or minus its valor, none missing",
            CONTRACT_2_2,
            boxed!(newest_first),
        ),
        challenge(
            "limit-boundary",
            "a debit may take the balance to exactly -limite; one cent further is 422 and records nothing",
            CONTRACT_2_1,
            boxed!(limit_boundary),
        ),
        challenge(
            "amounts-64bit",
            "amounts and balances are 64-bit integer cents: a credit of 2^40 cents is accepted, answered and listed exactly",
            CONTRACT_1,
            boxed!(amounts_64bit),
        ),
        project(
            "balance-overflow",
            "a credit whose new balance would not fit in 64 bits is 422 and records nothing",
            CONTRACT_2_1,
            "the challenge's amounts never come near 2^63",
            boxed!(balance_overflow),
        ),
        challenge(
            "valor-rule",
            "valor is a JSON integer from 1 to 2^63-1: 1.2, 1.0, 1e3, \"100\", 0, -5, null, 2^63 and a missing valor are refused (400 or 422) and record nothing",
            CONTRACT_2_1,
            boxed!(valor_rule),
        ),
        challenge(
            "tipo-rule",
            "tipo is exactly \"c\" or \"d\": \"x\", \"C\", \"\", \"cd\", 1, null and a missing tipo are refused (400 or 422) and record nothing",
            CONTRACT_2_1,
            boxed!(tipo_rule),
        ),
        challenge(
            "descricao-rule",
            "descricao is a string of 1 to 10 characters, not bytes: \"\", 11 characters, null, 5 and a missing descricao are refused (400 or 422) and record nothing; \"débito\" and ten \"é\" are accepted and listed as sent",
            CONTRACT_2_1,
            boxed!(descricao_rule),
        ),
        project(
            "descricao-nul",
            "a descricao holding a NUL character is refused with 422 and records nothing",
            CONTRACT_2_1,
            "the challenge says nothing about NUL",
            boxed!(descricao_nul),
        ),
        project(
            "field-errors-422",
            "well-formed JSON that breaks a field rule (the official invalid bodies, a JSON array, valor as a string) is 422",
            CONTRACT_2_4,
            "the challenge accepts 400 or 422",
            boxed!(field_errors_422),
        ),
        project(
            "malformed-json-400",
            "a body that is not exactly one well-formed JSON value (empty, truncated, not JSON, two values, trailing data) is 400 and records nothing",
            CONTRACT_2_4,
            "the challenge accepts 400 or 422",
            boxed!(malformed_json_400),
        ),
        project(
            "body-utf8",
            "a body that is not valid UTF-8 as a whole, even inside a string, is 400 (not well-formed JSON, RFC 8259 §8.1) and records nothing",
            CONTRACT_2_4,
            "the challenge accepts 400 or 422",
            boxed!(body_utf8),
        ),
        project(
            "duplicate-field",
            "a field given twice is refused with 422 and records nothing",
            CONTRACT_2_1,
            "the challenge says nothing about duplicated fields",
            boxed!(duplicate_field),
        ),
        project(
            "unknown-fields-ignored",
            "unknown extra fields are ignored: the posting is made",
            CONTRACT_2_1,
            "the challenge says nothing about extra fields",
            boxed!(unknown_fields_ignored),
        ),
        challenge(
            "no-lost-update",
            "25 concurrent debits of 1, then 25 concurrent credits of 1, on one account: all 200, each answering a distinct balance, the balance moved by exactly -25 then +25",
            CONTRACT_3,
            boxed!(no_lost_update),
        ),
        challenge(
            "limit-under-concurrency",
            "30 concurrent debits of 1000 with exactly 20000 of headroom: exactly 20 succeed, 10 are 422, and the balance ends at exactly -limite (the boundary inclusive)",
            CONTRACT_3,
            boxed!(limit_under_concurrency),
        ),
        challenge(
            "statement-snapshot",
            "a statement read while several connections post to the account is one snapshot: its total is the balance answered for its newest listed row",
            CONTRACT_3,
            boxed!(statement_snapshot),
        ),
        challenge(
            "read-your-write",
            "right after a posting answers saldo S, every statement read, through any instance, shows total S and that transaction first",
            CONTRACT_3,
            boxed!(read_your_write),
        ),
        project(
            "methods",
            "a known path with another method is 405; an unknown path is 404",
            CONTRACT_2_4,
            "the challenge only uses GET on statements and POST on transactions",
            boxed!(methods),
        ),
        project(
            "content-type",
            "a posting without a JSON Content-Type is 415 and records nothing; application/json with parameters is accepted",
            CONTRACT_2_4,
            "the challenge always sends application/json",
            boxed!(content_type),
        ),
        project(
            "body-size",
            "a body over 1024 bytes is 413 and records nothing; a body of exactly 1024 bytes is accepted",
            CONTRACT_2_4,
            "the challenge's bodies are under 100 bytes",
            boxed!(body_size),
        ),
    ]
}

// ---- reading and posting -----------------------------------------------------

/// One row of `ultimas_transacoes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Amount, cents.
    pub valor: i64,
    /// `c` or `d`.
    pub tipo: String,
    /// Description.
    pub descricao: String,
    /// Timestamp text.
    pub realizada_em: String,
}

/// A statement, parsed.
#[derive(Debug, Clone)]
pub struct Statement {
    /// `saldo.total`, cents.
    pub total: i64,
    /// `saldo.limite`, cents.
    pub limit: i64,
    /// `ultimas_transacoes`.
    pub rows: Vec<Row>,
}

/// Parses a statement body; the error says which part is missing.
pub fn parse_statement(v: &Value) -> Result<Statement, String> {
    let int = |path: &str| {
        v.pointer(path)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("no 64-bit integer at {path}"))
    };
    let total = int("/saldo/total")?;
    let limit = int("/saldo/limite")?;
    let list = v
        .get("ultimas_transacoes")
        .and_then(Value::as_array)
        .ok_or("no ultimas_transacoes list")?;
    let mut rows = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let text = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("ultimas_transacoes[{i}].{k} is not a string"))
        };
        rows.push(Row {
            valor: r
                .get("valor")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("ultimas_transacoes[{i}].valor is not an integer"))?,
            tipo: text("tipo")?,
            descricao: text("descricao")?,
            realizada_em: text("realizada_em")?,
        });
    }
    Ok(Statement { total, limit, rows })
}

fn statement_path(account: u32) -> String {
    format!("/clientes/{account}/extrato")
}

fn postings_path(account: impl std::fmt::Display) -> String {
    format!("/clientes/{account}/transacoes")
}

/// A posting body with `descricao` JSON-escaped.
fn body(valor: i64, tipo: &str, descricao: &str) -> String {
    json!({"valor": valor, "tipo": tipo, "descricao": descricao}).to_string()
}

impl Ctx {
    pub(crate) fn target(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }

    /// A description unique to this run: `tag` then the run's nonce (at most
    /// 10 characters with a tag of up to 7).
    fn descr(&self, tag: &str) -> String {
        format!("{tag}{}", self.nonce)
    }

    /// Reads `account`'s statement through target `t`: 200 and parsable.
    pub(crate) async fn statement(
        &self,
        t: usize,
        account: u32,
    ) -> Result<(Exchange, Statement), Verdict> {
        let ex = client::send(self.target(t), &Outgoing::get(statement_path(account))).await;
        if ex.status() != Some(200) {
            return fail(
                format!("account {account}'s statement did not answer 200"),
                &[&ex],
            );
        }
        let Some(json) = ex.json() else {
            return fail("the statement is not JSON", &[&ex]);
        };
        match parse_statement(&json) {
            Ok(s) => Ok((ex, s)),
            Err(why) => fail(format!("the statement has {why}"), &[&ex]),
        }
    }

    async fn post(&self, t: usize, account: impl std::fmt::Display, body: String) -> Exchange {
        client::send(
            self.target(t),
            &Outgoing::post_json(postings_path(account), body),
        )
        .await
    }

    /// Posts and requires 200 with integer `saldo` and `limite`; returns
    /// the exchange and `saldo`.
    async fn post_ok(
        &self,
        t: usize,
        account: u32,
        valor: i64,
        tipo: &str,
        descricao: &str,
    ) -> Result<(Exchange, i64), Verdict> {
        let ex = self.post(t, account, body(valor, tipo, descricao)).await;
        posted_balance(&ex).map(|saldo| (ex, saldo))
    }

    /// Moves `account`'s balance by `delta` cents (credits or debits of at
    /// most 2^63-1 each), requiring 200; returns the last exchange.
    async fn move_balance(&self, account: u32, delta: i128) -> Result<Option<Exchange>, Verdict> {
        let mut left = delta;
        let mut last = None;
        while left != 0 {
            let step = left.clamp(-(i64::MAX as i128), i64::MAX as i128);
            let (tipo, valor) = if step > 0 {
                ("c", step as i64)
            } else {
                ("d", (-step) as i64)
            };
            let (ex, _) = self
                .post_ok(0, account, valor, tipo, &self.descr("ajuste"))
                .await?;
            last = Some(ex);
            left -= step;
        }
        Ok(last)
    }

    /// Puts `account`'s balance back to `balance`.
    pub(crate) async fn restore(&self, account: u32, balance: i64) -> Result<(), Verdict> {
        let (_, now) = self.statement(0, account).await?;
        self.move_balance(account, balance as i128 - now.total as i128)
            .await
            .map(|_| ())
    }

    /// Sends each body to `account` and requires one of `allowed` for each;
    /// then requires the statement unchanged (nothing recorded).
    async fn refused(
        &self,
        account: u32,
        bodies: &[(&str, Vec<u8>)],
        allowed: &[u16],
        content_type: Option<&str>,
    ) -> Checked {
        let (_, before) = self.statement(0, account).await?;
        for (label, bytes) in bodies {
            let out = Outgoing {
                method: Method::POST,
                path: postings_path(account),
                content_type: content_type.map(str::to_string),
                body: bytes.clone(),
            };
            let ex = client::send(self.target(0), &out).await;
            match ex.status() {
                Some(s) if allowed.contains(&s) => {}
                _ => return fail(format!("{label}: expected {}", codes(allowed)), &[&ex]),
            }
        }
        unchanged(self, account, &before).await?;
        Ok(format!(
            "{} bodies refused with {}, nothing recorded",
            bodies.len(),
            codes(allowed)
        ))
    }
}

fn codes(allowed: &[u16]) -> String {
    allowed
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `saldo` of a 200 posting response with integer `saldo` and `limite`.
fn posted_balance(ex: &Exchange) -> Result<i64, Verdict> {
    if ex.status() != Some(200) {
        return fail("a valid posting did not answer 200", &[ex]);
    }
    let json = ex.json().unwrap_or(Value::Null);
    match (
        json.get("saldo").and_then(Value::as_i64),
        json.get("limite").and_then(Value::as_i64),
    ) {
        (Some(saldo), Some(_)) => Ok(saldo),
        _ => fail("a posting's 200 body lacks integer saldo and limite", &[ex]),
    }
}

/// Requires `account`'s statement to hold the same total and rows as
/// `before`.
async fn unchanged(ctx: &Ctx, account: u32, before: &Statement) -> Result<(), Verdict> {
    let (ex, after) = ctx.statement(0, account).await?;
    if after.total != before.total || after.rows != before.rows {
        return fail(
            format!(
                "a refused posting changed the statement: total {} → {}, {} → {} rows",
                before.total,
                after.total,
                before.rows.len(),
                after.rows.len()
            ),
            &[&ex],
        );
    }
    Ok(())
}

// ---- the seed ----------------------------------------------------------------

async fn seed_limits(ctx: &Ctx) -> Checked {
    for (account, limit) in SEEDED_ACCOUNTS {
        let (ex, s) = ctx.statement(0, account).await?;
        if s.limit != limit {
            return fail(
                format!("account {account} has limite {}, seeded {limit}", s.limit),
                &[&ex],
            );
        }
    }
    Ok("the five accounts answer with their seeded limits".into())
}

async fn seed_balances(ctx: &Ctx) -> Checked {
    let mut used = Vec::new();
    for (account, _) in SEEDED_ACCOUNTS {
        let (ex, s) = ctx.statement(0, account).await?;
        if s.rows.is_empty() && s.total != 0 {
            return fail(
                format!(
                    "account {account} has balance {} without any transaction",
                    s.total
                ),
                &[&ex],
            );
        }
        if !s.rows.is_empty() {
            used.push(format!("account {account} has transactions"));
        }
    }
    if !used.is_empty() {
        return Err(Verdict::Skip(format!(
            "skipped: not freshly seeded ({})",
            used.join(", ")
        )));
    }
    Ok("every seeded account at balance 0 with no transaction".into())
}

async fn unknown_account(ctx: &Ctx) -> Checked {
    let get = client::send(ctx.target(0), &Outgoing::get(statement_path(6))).await;
    if get.status() != Some(404) {
        return fail("GET /clientes/6/extrato: expected 404", &[&get]);
    }
    let post = ctx.post(0, 6, body(1, "c", "fantasma")).await;
    if post.status() != Some(404) {
        return fail("a posting to account 6: expected 404", &[&post]);
    }
    let again = client::send(ctx.target(0), &Outgoing::get(statement_path(6))).await;
    if again.status() != Some(404) {
        return fail(
            "after a posting to account 6, its statement: expected 404",
            &[&post, &again],
        );
    }
    Ok("account 6: statement 404, posting 404, still 404 after it".into())
}

async fn invalid_account_id(ctx: &Ctx) -> Checked {
    let ids = ["0", "-1", "abc", "2147483648", "+1", "%201", "1.5"];
    for id in ids {
        let get = client::send(
            ctx.target(0),
            &Outgoing::get(format!("/clientes/{id}/extrato")),
        )
        .await;
        if get.status() != Some(404) {
            return fail(format!("statement of id {id:?}: expected 404"), &[&get]);
        }
        let post = ctx.post(0, id, body(1, "c", "x")).await;
        if post.status() != Some(404) {
            return fail(format!("posting to id {id:?}: expected 404"), &[&post]);
        }
    }
    Ok(format!("{} ids: statement and posting 404", ids.len()))
}

// ---- statements --------------------------------------------------------------

/// A credit then a debit of 1 on `account`: rows to look at, balance kept.
async fn touch(ctx: &Ctx, account: u32) -> Result<(), Verdict> {
    ctx.post_ok(0, account, 1, "c", &ctx.descr("toque")).await?;
    ctx.post_ok(0, account, 1, "d", &ctx.descr("toque")).await?;
    Ok(())
}

async fn statement_shape(ctx: &Ctx) -> Checked {
    touch(ctx, 1).await?;
    for (account, _) in SEEDED_ACCOUNTS {
        let ex = client::send(ctx.target(0), &Outgoing::get(statement_path(account))).await;
        if ex.status() != Some(200) {
            return fail(format!("account {account}: expected 200"), &[&ex]);
        }
        let Some(v) = ex.json() else {
            return fail("the statement is not JSON", &[&ex]);
        };
        let s = match parse_statement(&v) {
            Ok(s) => s,
            Err(why) => return fail(format!("the statement has {why}"), &[&ex]),
        };
        if !v
            .pointer("/saldo/data_extrato")
            .is_some_and(Value::is_string)
        {
            return fail("saldo.data_extrato is not a string", &[&ex]);
        }
        if s.rows.len() > 10 {
            return fail(format!("{} rows listed, at most 10", s.rows.len()), &[&ex]);
        }
        if account == 1 && s.rows.len() < 2 {
            return fail("the two postings just made are not listed", &[&ex]);
        }
        for (i, r) in s.rows.iter().enumerate() {
            let len = r.descricao.chars().count();
            if r.valor < 1 || !(r.tipo == "c" || r.tipo == "d") || !(1..=10).contains(&len) {
                return fail(
                    format!("ultimas_transacoes[{i}] breaks a field rule: {r:?}"),
                    &[&ex],
                );
            }
        }
    }
    Ok("the five statements have the documented fields and at most 10 rows".into())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, a valid instant.
pub fn is_rfc3339_micros_utc(text: &str) -> bool {
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
        && humantime::parse_rfc3339(text).is_ok()
}

async fn timestamps(ctx: &Ctx) -> Checked {
    touch(ctx, 5).await?;
    let (ex, s) = ctx.statement(0, 5).await?;
    let json = ex.json().unwrap_or(Value::Null);
    let generated = json
        .pointer("/saldo/data_extrato")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_rfc3339_micros_utc(generated) {
        return fail(format!("data_extrato {generated:?}"), &[&ex]);
    }
    for r in &s.rows {
        if !is_rfc3339_micros_utc(&r.realizada_em) {
            return fail(format!("realizada_em {:?}", r.realizada_em), &[&ex]);
        }
    }
    Ok(format!(
        "data_extrato and {} realizada_em in the documented form",
        s.rows.len()
    ))
}

// ---- single postings ---------------------------------------------------------

async fn posting_balance(ctx: &Ctx) -> Checked {
    const V: i64 = 1234;
    let (_, before) = ctx.statement(0, 3).await?;
    if before.total > i64::MAX - V {
        return Err(Verdict::Skip(
            "skipped: account 3's balance is too close to 2^63".into(),
        ));
    }
    let (ex, saldo) = ctx.post_ok(0, 3, V, "c", &ctx.descr("credito")).await?;
    let limite = ex.json().and_then(|j| j["limite"].as_i64());
    if saldo != before.total + V || limite != Some(before.limit) {
        return fail(
            format!(
                "credit of {V} on balance {}: expected saldo {} and limite {}",
                before.total,
                before.total + V,
                before.limit
            ),
            &[&ex],
        );
    }
    let (ex, saldo) = ctx.post_ok(0, 3, V, "d", &ctx.descr("debito")).await?;
    if saldo != before.total {
        return fail(
            format!("debit of {V}: expected saldo {}", before.total),
            &[&ex],
        );
    }
    let (ex, after) = ctx.statement(0, 3).await?;
    if after.total != before.total {
        return fail(
            format!(
                "after a credit and a debit of {V}: expected total {}",
                before.total
            ),
            &[&ex],
        );
    }
    Ok(format!(
        "credit and debit of {V} answered {} then {}",
        before.total + V,
        before.total
    ))
}

async fn newest_first(ctx: &Ctx) -> Checked {
    let (_, before) = ctx.statement(0, 5).await?;
    let mut posted = Vec::new();
    for i in 1..=6i64 {
        for tipo in ["c", "d"] {
            let descricao = format!("o{i}{tipo}{}", ctx.nonce);
            ctx.post_ok(0, 5, i, tipo, &descricao).await?;
            posted.push((i, tipo, descricao));
        }
    }
    let (ex, after) = ctx.statement(0, 5).await?;
    let expected: Vec<(i64, &str, &str)> = posted
        .iter()
        .rev()
        .take(10)
        .map(|(v, t, d)| (*v, *t, d.as_str()))
        .collect();
    let listed: Vec<(i64, &str, &str)> = after
        .rows
        .iter()
        .map(|r| (r.valor, r.tipo.as_str(), r.descricao.as_str()))
        .collect();
    if listed != expected {
        return fail(
            format!(
                "after 12 postings, expected the last 10 newest first: {:?}",
                expected.iter().map(|e| e.2).collect::<Vec<_>>()
            ),
            &[&ex],
        );
    }
    if after.total != before.total {
        return fail(
            format!(
                "the 12 postings add to 0, total changed from {}",
                before.total
            ),
            &[&ex],
        );
    }
    let under_load = probe::findings(ctx).await?.order?;
    Ok(format!(
        "12 postings, the last 10 listed newest first; under load: {under_load}"
    ))
}

async fn limit_boundary(ctx: &Ctx) -> Checked {
    let account = 2;
    let (ex, before) = ctx.statement(0, account).await?;
    let mut headroom = before.total as i128 + before.limit as i128;
    if headroom < 0 {
        return fail(
            format!(
                "account {account}'s balance {} is below -limite {}",
                before.total, before.limit
            ),
            &[&ex],
        );
    }
    if headroom == 0 {
        ctx.post_ok(0, account, 1, "c", &ctx.descr("folga")).await?;
        headroom = 1;
    }
    // Down to exactly -limite; the last debit lands on it.
    if headroom > i64::MAX as i128 {
        ctx.move_balance(account, -(headroom - 1)).await?;
        headroom = 1;
    }
    let descricao = ctx.descr("limite");
    let (ex, saldo) = ctx
        .post_ok(0, account, headroom as i64, "d", &descricao)
        .await
        .map_err(|v| match v {
            Verdict::Fail(why, e) => {
                Verdict::Fail(format!("a debit to exactly -limite was refused ({why})"), e)
            }
            skip => skip,
        })?;
    if saldo != -before.limit {
        return fail(
            format!("a debit to exactly -limite answered saldo {saldo}"),
            &[&ex],
        );
    }
    let (_, at_limit) = ctx.statement(0, account).await?;
    let over = ctx.post(0, account, body(1, "d", &ctx.descr("alem"))).await;
    if over.status() != Some(422) {
        ctx.restore(account, before.total).await?;
        return fail("a debit of 1 cent beyond -limite: expected 422", &[&over]);
    }
    unchanged(ctx, account, &at_limit).await?;
    ctx.restore(account, before.total).await?;
    Ok(format!(
        "debit to exactly -{} allowed, one cent more 422 and not recorded",
        before.limit
    ))
}

async fn amounts_64bit(ctx: &Ctx) -> Checked {
    const BIG: i64 = 1 << 40;
    let account = 4;
    let (_, before) = ctx.statement(0, account).await?;
    if before.total > i64::MAX - BIG {
        return Err(Verdict::Skip(
            "skipped: account 4's balance is too close to 2^63".into(),
        ));
    }
    let descricao = ctx.descr("grande");
    let (ex, saldo) = ctx.post_ok(0, account, BIG, "c", &descricao).await?;
    if saldo != before.total + BIG {
        return fail(
            format!("credit of 2^40: expected saldo {}", before.total + BIG),
            &[&ex],
        );
    }
    let (ex, s) = ctx.statement(0, account).await?;
    let first = s.rows.first();
    if s.total != before.total + BIG
        || first.map(|r| (r.valor, r.descricao.as_str())) != Some((BIG, descricao.as_str()))
    {
        return fail(
            format!(
                "after a credit of 2^40: expected total {} and that credit first with valor {BIG}",
                before.total + BIG
            ),
            &[&ex],
        );
    }
    let (ex, saldo) = ctx.post_ok(0, account, BIG, "d", &descricao).await?;
    if saldo != before.total {
        return fail(
            format!("debit of 2^40: expected saldo {}", before.total),
            &[&ex],
        );
    }
    Ok(format!(
        "2^40 = {BIG} cents credited, listed and debited exactly"
    ))
}

async fn balance_overflow(ctx: &Ctx) -> Checked {
    let account = 3;
    let (_, before) = ctx.statement(0, account).await?;
    ctx.move_balance(account, i64::MAX as i128 - before.total as i128)
        .await?;
    let (ex, at_max) = ctx.statement(0, account).await?;
    if at_max.total != i64::MAX {
        ctx.restore(account, before.total).await?;
        return fail(
            format!("credits up to 2^63-1: expected total {}", i64::MAX),
            &[&ex],
        );
    }
    let over = ctx
        .post(0, account, body(1, "c", &ctx.descr("estouro")))
        .await;
    let result = if over.status() != Some(422) {
        fail(
            "a credit of 1 on a balance of 2^63-1: expected 422",
            &[&over],
        )
    } else {
        unchanged(ctx, account, &at_max).await
    };
    ctx.restore(account, before.total).await?;
    result?;
    Ok("a credit past 2^63-1 refused with 422, nothing recorded".into())
}

fn posting_with(valor: &str, tipo: &str, descricao: &str) -> Vec<u8> {
    format!(r#"{{"valor": {valor}, "tipo": {tipo}, "descricao": {descricao}}}"#).into_bytes()
}

async fn valor_rule(ctx: &Ctx) -> Checked {
    let bodies: Vec<(&str, Vec<u8>)> = [
        "1.2",
        "1.0",
        "1e3",
        "\"100\"",
        "0",
        "-5",
        "null",
        "9223372036854775808",
    ]
    .into_iter()
    .map(|v| ("valor", posting_with(v, "\"c\"", "\"valor\"")))
    .chain([(
        "missing valor",
        br#"{"tipo": "c", "descricao": "valor"}"#.to_vec(),
    )])
    .collect();
    ctx.refused(1, &bodies, &[400, 422], Some("application/json"))
        .await
}

async fn tipo_rule(ctx: &Ctx) -> Checked {
    let bodies: Vec<(&str, Vec<u8>)> = ["\"x\"", "\"C\"", "\"\"", "\"cd\"", "1", "null"]
        .into_iter()
        .map(|t| ("tipo", posting_with("1", t, "\"tipo\"")))
        .chain([(
            "missing tipo",
            br#"{"valor": 1, "descricao": "tipo"}"#.to_vec(),
        )])
        .collect();
    ctx.refused(1, &bodies, &[400, 422], Some("application/json"))
        .await
}

async fn descricao_rule(ctx: &Ctx) -> Checked {
    let bodies: Vec<(&str, Vec<u8>)> = [
        "\"\"",
        "\"123456789 e mais um pouco\"",
        "\"ééééééééééé\"",
        "null",
        "5",
    ]
    .into_iter()
    .map(|d| ("descricao", posting_with("1", "\"c\"", d)))
    .chain([(
        "missing descricao",
        br#"{"valor": 1, "tipo": "c"}"#.to_vec(),
    )])
    .collect();
    let refused = ctx
        .refused(1, &bodies, &[400, 422], Some("application/json"))
        .await?;
    let (_, before) = ctx.statement(0, 1).await?;
    for text in ["débito", "éééééééééé", "0123456789"] {
        ctx.post_ok(0, 1, 1, "c", text).await?;
        let (ex, s) = ctx.statement(0, 1).await?;
        if s.rows.first().map(|r| r.descricao.as_str()) != Some(text) {
            ctx.restore(1, before.total).await?;
            return fail(
                format!(
                    "descricao {text:?} ({} bytes) is not listed as sent",
                    text.len()
                ),
                &[&ex],
            );
        }
    }
    ctx.restore(1, before.total).await?;
    Ok(format!(
        "{refused}; \"débito\", ten \"é\" and ten digits accepted and listed as sent"
    ))
}

async fn descricao_nul(ctx: &Ctx) -> Checked {
    ctx.refused(
        1,
        &[(
            "descricao with NUL",
            posting_with("1", "\"c\"", r#""a\u0000b""#),
        )],
        &[422],
        Some("application/json"),
    )
    .await
}

async fn field_errors_422(ctx: &Ctx) -> Checked {
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("valor 1.2", posting_with("1.2", "\"d\"", "\"devolve\"")),
        ("tipo x", posting_with("1", "\"x\"", "\"devolve\"")),
        (
            "descricao too long",
            posting_with("1", "\"c\"", "\"123456789 e mais um pouco\""),
        ),
        ("descricao empty", posting_with("1", "\"c\"", "\"\"")),
        ("descricao null", posting_with("1", "\"c\"", "null")),
        ("valor as a string", posting_with("\"1\"", "\"c\"", "\"x\"")),
        ("a JSON array", b"[]".to_vec()),
    ];
    ctx.refused(2, &bodies, &[422], Some("application/json"))
        .await
}

async fn malformed_json_400(ctx: &Ctx) -> Checked {
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("truncated", b"{\"valor\": 1,".to_vec()),
        ("not JSON", b"nope".to_vec()),
        ("two values", b"{} {}".to_vec()),
        (
            "trailing data",
            br#"{"valor": 1, "tipo": "c", "descricao": "x"} trailing"#.to_vec(),
        ),
    ];
    ctx.refused(2, &bodies, &[400], Some("application/json"))
        .await
}

async fn body_utf8(ctx: &Ctx) -> Checked {
    ctx.refused(
        2,
        &[(
            "invalid UTF-8 inside a string",
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"\xff\"}".to_vec(),
        )],
        &[400],
        Some("application/json"),
    )
    .await
}

async fn duplicate_field(ctx: &Ctx) -> Checked {
    ctx.refused(
        2,
        &[(
            "valor twice",
            br#"{"valor": 1, "valor": 2, "tipo": "c", "descricao": "dobro"}"#.to_vec(),
        )],
        &[422],
        Some("application/json"),
    )
    .await
}

async fn unknown_fields_ignored(ctx: &Ctx) -> Checked {
    let (_, before) = ctx.statement(0, 2).await?;
    let ex = ctx
        .post(
            0,
            2,
            json!({"valor": 1, "tipo": "c", "descricao": ctx.descr("extra"), "extra": [1], "cliente": 3})
                .to_string(),
        )
        .await;
    let saldo = posted_balance(&ex)?;
    if saldo != before.total + 1 {
        return fail(format!("expected saldo {}", before.total + 1), &[&ex]);
    }
    ctx.restore(2, before.total).await?;
    Ok("a posting with two unknown fields was made".into())
}

// ---- concurrency -------------------------------------------------------------

/// Sends `count` postings at once, each on its own connection, spread over
/// the targets; returns the exchanges in order.
async fn burst(
    ctx: &Ctx,
    count: usize,
    account: u32,
    valor: i64,
    tipo: &str,
    tag: &str,
) -> Vec<Exchange> {
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let target = ctx.target(i).clone();
        let out = Outgoing::post_json(
            postings_path(account),
            body(valor, tipo, &format!("{tag}{i}{}", ctx.nonce)),
        );
        tasks.push(tokio::spawn(
            async move { client::send(&target, &out).await },
        ));
    }
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        match t.await {
            Ok(ex) => out.push(ex),
            Err(e) => panic!("a request task failed: {e}"),
        }
    }
    out
}

/// Requires every exchange 200 and their balances to be exactly `expected`
/// (in any order).
fn distinct_balances(
    exchanges: &[Exchange],
    mut expected: Vec<i64>,
    what: &str,
) -> Result<(), Verdict> {
    let mut seen = Vec::with_capacity(exchanges.len());
    for ex in exchanges {
        seen.push(posted_balance(ex).map_err(|v| match v {
            Verdict::Fail(why, e) => Verdict::Fail(format!("{what}: {why}"), e),
            skip => skip,
        })?);
    }
    seen.sort_unstable();
    expected.sort_unstable();
    if seen != expected {
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for s in &seen {
            *counts.entry(*s).or_default() += 1;
        }
        let repeated: Vec<&Exchange> = exchanges
            .iter()
            .filter(|ex| {
                ex.json()
                    .and_then(|j| j["saldo"].as_i64())
                    .is_some_and(|s| counts.get(&s).copied().unwrap_or(0) > 1)
            })
            .take(2)
            .collect();
        return fail(
            format!(
                "{what}: the answered balances are not {}..={} each once (an update was lost or answered twice)",
                expected.first().copied().unwrap_or(0),
                expected.last().copied().unwrap_or(0)
            ),
            &repeated,
        );
    }
    Ok(())
}

async fn no_lost_update(ctx: &Ctx) -> Checked {
    const N: i64 = 25;
    let account = 1;
    let (_, original) = ctx.statement(0, account).await?;
    let headroom = original.total as i128 + original.limit as i128;
    if headroom < N as i128 {
        ctx.move_balance(account, N as i128 - headroom).await?;
    }
    let (_, start) = ctx.statement(0, account).await?;
    if start.total > i64::MAX - N {
        return Err(Verdict::Skip(
            "skipped: account 1's balance is too close to 2^63".into(),
        ));
    }
    let b = start.total;
    let debits = burst(ctx, N as usize, account, 1, "d", "ld").await;
    distinct_balances(&debits, (b - N..b).collect(), "25 concurrent debits of 1")?;
    let (ex, s) = ctx.statement(1, account).await?;
    if s.total != b - N {
        return fail(
            format!(
                "after 25 concurrent debits of 1 from {b}: expected total {}",
                b - N
            ),
            &[&ex],
        );
    }
    let credits = burst(ctx, N as usize, account, 1, "c", "lc").await;
    distinct_balances(
        &credits,
        (b - N + 1..=b).collect(),
        "25 concurrent credits of 1",
    )?;
    let (ex, s) = ctx.statement(1, account).await?;
    if s.total != b {
        return fail(
            format!("after 25 concurrent credits of 1: expected total {b}"),
            &[&ex],
        );
    }
    ctx.restore(account, original.total).await?;
    Ok(format!(
        "balance {b} → {} → {b}, every posting answered its own balance",
        b - N
    ))
}

async fn limit_under_concurrency(ctx: &Ctx) -> Checked {
    const DEBITS: usize = 30;
    const AFFORDABLE: usize = 20;
    const VALOR: i64 = 1000;
    let account = 2;
    let (ex, original) = ctx.statement(0, account).await?;
    let limit = original.limit;
    let headroom = original.total as i128 + limit as i128;
    if headroom < 0 {
        return fail(
            format!("account 2's balance {} is below -limite", original.total),
            &[&ex],
        );
    }
    ctx.move_balance(account, (AFFORDABLE as i128) * VALOR as i128 - headroom)
        .await?;
    let results = burst(ctx, DEBITS, account, VALOR, "d", "cl").await;
    let ok: Vec<&Exchange> = results.iter().filter(|e| e.status() == Some(200)).collect();
    let refused = results.iter().filter(|e| e.status() == Some(422)).count();
    let other: Vec<&Exchange> = results
        .iter()
        .filter(|e| !matches!(e.status(), Some(200) | Some(422)))
        .collect();
    let verdict = if let Some(ex) = other.first() {
        fail("a debit answered neither 200 nor 422", &[ex])
    } else if let Some(ex) = ok.iter().find(|e| {
        e.json()
            .and_then(|j| j["saldo"].as_i64())
            .is_none_or(|s| s < -limit)
    }) {
        fail(format!("a debit answered a balance below -{limit}"), &[ex])
    } else if ok.len() != AFFORDABLE || refused != DEBITS - AFFORDABLE {
        let shown: Vec<&Exchange> = results
            .iter()
            .filter(|e| e.status() == Some(if ok.len() > AFFORDABLE { 200 } else { 422 }))
            .take(1)
            .collect();
        fail(
            format!(
                "{DEBITS} concurrent debits of {VALOR} with {} of headroom: {} succeeded and {refused} were refused, expected {AFFORDABLE} and {}",
                AFFORDABLE as i64 * VALOR,
                ok.len(),
                DEBITS - AFFORDABLE
            ),
            &shown,
        )
    } else {
        Ok(())
    };
    if verdict.is_ok() {
        let (ex, s) = ctx.statement(1, account).await?;
        if s.total != -limit {
            ctx.restore(account, original.total).await?;
            return fail(
                format!("after the debits: expected total exactly -{limit}"),
                &[&ex],
            );
        }
    }
    ctx.restore(account, original.total).await?;
    verdict?;
    Ok(format!(
        "{AFFORDABLE} of {DEBITS} concurrent debits succeeded, balance exactly -{limit}"
    ))
}

async fn statement_snapshot(ctx: &Ctx) -> Checked {
    probe::findings(ctx).await?.snapshot
}

async fn read_your_write(ctx: &Ctx) -> Checked {
    const READS: usize = 4;
    let n = ctx.targets.len();
    for (i, (account, _)) in SEEDED_ACCOUNTS.into_iter().enumerate() {
        let descricao = ctx.descr("danada");
        let (posted, saldo) = ctx.post_ok(i, account, 1, "c", &descricao).await?;
        let limite = posted.json().and_then(|j| j["limite"].as_i64());
        let reads: Vec<_> = (0..READS)
            .map(|j| {
                let target = ctx.target(i + 1 + j).clone();
                tokio::spawn(async move {
                    client::send(&target, &Outgoing::get(statement_path(account))).await
                })
            })
            .collect();
        let mut bad = None;
        for r in reads {
            let ex = r
                .await
                .map_err(|e| Verdict::Fail(e.to_string(), Vec::new()))?;
            let ok = ex.status() == Some(200)
                && ex
                    .json()
                    .and_then(|j| parse_statement(&j).ok())
                    .is_some_and(|s| {
                        s.total == saldo
                            && Some(s.limit) == limite
                            && s.rows.first().map(|r| r.descricao.as_str())
                                == Some(descricao.as_str())
                    });
            if !ok && bad.is_none() {
                bad = Some(ex);
            }
        }
        ctx.post_ok(i + 1, account, 1, "d", &ctx.descr("volta"))
            .await?;
        if let Some(ex) = bad {
            return fail(
                format!(
                    "right after a posting answered saldo {saldo}, a statement did not show that total and that posting first"
                ),
                &[&posted, &ex],
            );
        }
    }
    let across = if n > 1 {
        format!("across {n} instances")
    } else {
        "through one base URL (across instances when it is a load balancer)".to_string()
    };
    Ok(format!(
        "5 postings, each read back by {READS} parallel statements on new connections, {across}"
    ))
}

// ---- HTTP --------------------------------------------------------------------

async fn methods(ctx: &Ctx) -> Checked {
    let cases = [
        (Method::GET, "/clientes/1/transacoes", 405),
        (Method::PUT, "/clientes/1/transacoes", 405),
        (Method::DELETE, "/clientes/1/extrato", 405),
        (Method::POST, "/clientes/1/extrato", 405),
        (Method::GET, "/clientes/1", 404),
        (Method::GET, "/", 404),
        (Method::GET, "/clientes/1/extrato/outra", 404),
    ];
    for (method, path, expected) in &cases {
        let out = Outgoing {
            method: method.clone(),
            path: path.to_string(),
            content_type: None,
            body: Vec::new(),
        };
        let ex = client::send(ctx.target(0), &out).await;
        if ex.status() != Some(*expected) {
            return fail(format!("{method} {path}: expected {expected}"), &[&ex]);
        }
    }
    Ok(format!(
        "{} requests: 405 for known paths, 404 for unknown ones",
        cases.len()
    ))
}

async fn content_type(ctx: &Ctx) -> Checked {
    let valid = body(1, "c", &ctx.descr("tipo"));
    let mut refused = Vec::new();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        refused.push(
            ctx.refused(3, &[("posting", valid.clone().into_bytes())], &[415], ct)
                .await
                .map_err(|v| match v {
                    Verdict::Fail(why, e) => {
                        Verdict::Fail(format!("Content-Type {}: {why}", ct.unwrap_or("absent")), e)
                    }
                    skip => skip,
                })?,
        );
    }
    let (_, before) = ctx.statement(0, 3).await?;
    let out = Outgoing {
        method: Method::POST,
        path: postings_path(3),
        content_type: Some("application/json; charset=utf-8".to_string()),
        body: valid.into_bytes(),
    };
    let ex = client::send(ctx.target(0), &out).await;
    posted_balance(&ex)?;
    ctx.restore(3, before.total).await?;
    Ok("absent, text/plain and form content types 415, nothing recorded; application/json; charset=utf-8 accepted".into())
}

async fn body_size(ctx: &Ctx) -> Checked {
    let padded = |len: usize| {
        let head = format!(
            r#"{{"valor": 1, "tipo": "c", "descricao": "{}", "pad": ""#,
            ctx.descr("tam")
        );
        let pad = len - head.len() - 2;
        format!("{head}{}\"}}", "a".repeat(pad))
    };
    let over = padded(1025);
    ctx.refused(
        3,
        &[("a 1025-byte body", over.into_bytes())],
        &[413],
        Some("application/json"),
    )
    .await?;
    let (_, before) = ctx.statement(0, 3).await?;
    let exactly = padded(1024);
    let ex = ctx.post(0, 3, exactly).await;
    posted_balance(&ex).map_err(|v| match v {
        Verdict::Fail(_, e) => Verdict::Fail("a 1024-byte body: expected 200".into(), e),
        skip => skip,
    })?;
    ctx.restore(3, before.total).await?;
    Ok("1025 bytes 413, nothing recorded; 1024 bytes accepted".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let catalogue = catalogue();
        let mut names: Vec<&str> = catalogue.iter().map(|c| c.name).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue.len());
        for c in &catalogue {
            assert!(c.source.starts_with("docs/contract.md §"), "{}", c.name);
            assert_eq!(
                c.challenge_allows.is_some(),
                c.origin == Origin::Project,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn timestamp_form() {
        assert!(is_rfc3339_micros_utc("2024-01-17T02:34:41.217753Z"));
        for bad in [
            "2024-01-17T02:34:41.217Z",
            "2024-01-17T02:34:41.217753+00:00",
            "2024-01-17 02:34:41.217753Z",
            "2024-13-17T02:34:41.217753Z",
        ] {
            assert!(!is_rfc3339_micros_utc(bad), "{bad}");
        }
    }

    #[test]
    fn statement_parsing_names_what_is_missing() {
        let ok = json!({"saldo": {"total": -5, "limite": 10, "data_extrato": "x"},
            "ultimas_transacoes": [{"valor": 5, "tipo": "d", "descricao": "a", "realizada_em": "t"}]});
        let s = parse_statement(&ok).unwrap();
        assert_eq!((s.total, s.limit, s.rows.len()), (-5, 10, 1));
        let float = json!({"saldo": {"total": 1.5, "limite": 10}, "ultimas_transacoes": []});
        assert_eq!(
            parse_statement(&float).unwrap_err(),
            "no 64-bit integer at /saldo/total"
        );
    }
}
