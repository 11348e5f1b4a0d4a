//! The sustained consistency probe behind `newest-first` and
//! `statement-snapshot` (docs/contract.md §2.2 and §3).
//!
//! A burst of concurrent postings only shows a torn or misordered statement
//! when the server's window is wide enough to be hit by the few reads made
//! during the burst; in a fast server the window between two queries, or
//! between taking a timestamp and writing the row, is a fraction of a
//! millisecond. So the probe keeps the account busy instead: [`WRITERS`]
//! connections post credits and debits with unique descriptions to ONE
//! account, back to back on kept-alive connections, while [`READERS`]
//! connections read its statement, for [`DURATION`] (at most
//! [`MAX_POSTINGS`] postings and [`MAX_READS`] reads; whatever is still in
//! flight at [`HARD_LIMIT`] is cut and fails the probe). With several base
//! URLs the connections are spread over them; through one balancer they
//! cross instances as it sends them.
//!
//! Each posting's answered `saldo` is the truth: in a correct server it is
//! the balance right after that posting, so in every statement
//!
//! * the listed rows chain: each listed posting's answered balance equals
//!   the next older listed posting's answered balance plus (credit) or minus
//!   (debit) its own `valor`, the oldest one chains to the balance before
//!   the probe, and below the probe's postings come the rows listed before
//!   it, unchanged — a row out of order, missing or listed twice breaks the
//!   chain ([`Findings::order`]);
//! * `saldo.total` equals the answered balance of the newest listed row
//!   (the balance before the probe when none is listed) — a total read at
//!   another moment than the rows breaks it ([`Findings::snapshot`]).
//!
//! A debit refused with 422 records nothing, so it is never listed. Each
//! writer chooses a debit when the last balance it was answered is above the
//! starting balance and a credit otherwise, so the balance stays within a
//! few times [`MAX_VALOR`] of where it started; afterwards it is put back
//! exactly.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::checks::{parse_statement, Statement};
use super::client::{Exchange, KeepAlive, Outgoing};
use super::{fail, Ctx, Verdict};
use crate::http::Target;

/// The account the probe posts to (limit 10,000,000 cents).
pub const ACCOUNT: u32 = 4;
/// Connections posting at once.
pub const WRITERS: usize = 6;
/// Connections reading the statement at once.
pub const READERS: usize = 4;
/// How long the writers start new postings.
pub const DURATION: Duration = Duration::from_secs(3);
/// Bound on the postings of one probe.
pub const MAX_POSTINGS: usize = 30_000;
/// Bound on the statement reads of one probe.
pub const MAX_READS: usize = 30_000;
/// Bound on the whole probe: a request still unanswered then is cut.
pub const HARD_LIMIT: Duration = Duration::from_secs(10);
/// Largest `valor` posted, cents (each posting's is random from 1).
pub const MAX_VALOR: i64 = 9_999;

/// One posting of the probe.
#[derive(Debug, Clone)]
pub struct Posting {
    /// Its unique description.
    pub descricao: String,
    /// Amount, cents.
    pub valor: i64,
    /// Credit (`c`) or debit (`d`).
    pub credit: bool,
    /// The balance it was answered (200), or `None` when refused (422).
    pub saldo: Option<i64>,
    /// Request and response.
    pub exchange: Exchange,
}

impl Posting {
    /// `valor` with its sign: what it adds to the balance.
    fn signed(&self) -> i128 {
        if self.credit {
            i128::from(self.valor)
        } else {
            -i128::from(self.valor)
        }
    }

    fn describe(&self) -> String {
        let kind = if self.credit { "credit" } else { "debit" };
        match self.saldo {
            Some(s) => format!(
                "{:?} ({kind} of {}, answered saldo {s})",
                self.descricao, self.valor
            ),
            None => format!("{:?} ({kind} of {}, refused)", self.descricao, self.valor),
        }
    }
}

/// What the probe saw.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The account's statement before the probe (quiescent).
    pub before: Statement,
    /// Every posting, answered 200 or 422.
    pub postings: Vec<Posting>,
    /// Every statement read during the postings (200, parsed).
    pub statements: Vec<(Exchange, Statement)>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

/// The probe's two verdicts.
#[derive(Debug, Clone)]
pub struct Findings {
    /// Every statement's rows chain (for `newest-first`).
    pub order: Result<String, Verdict>,
    /// Every statement's total is its newest row's balance (for
    /// `statement-snapshot`).
    pub snapshot: Result<String, Verdict>,
}

/// Runs the probe once per [`Ctx`] and keeps its findings for the checks
/// that read them.
pub async fn findings(ctx: &Ctx) -> Result<Findings, Verdict> {
    ctx.probe
        .get_or_init(|| async {
            let probe = run(ctx).await?;
            Ok(analyze(&probe))
        })
        .await
        .clone()
}

fn base36(mut n: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The description of posting `n`: `p`, `n` in base 36 (at most 3 digits
/// below [`MAX_POSTINGS`]), then `salt` (6 characters: the run's nonce and 3
/// more random ones, so that the rows of an earlier probe, still listed,
/// are never taken for this one's): at most 10 characters.
fn descricao(n: usize, salt: &str) -> String {
    format!("p{}{salt}", base36(n))
}

/// Posts and reads as the module says, checks that every posting was
/// answered 200 or 422 and every read 200 with a statement, that the
/// balance afterwards is the starting one moved by exactly the answered
/// postings, and puts the balance back.
///
/// Errors: a failed check ([`Verdict::Fail`]) for any of those, or a skip
/// when the account's balance is too close to 2^63 to post credits.
pub async fn run(ctx: &Ctx) -> Result<Probe, Verdict> {
    let (_, before) = ctx.statement(0, ACCOUNT).await?;
    if before.total > i64::MAX - 100 * MAX_VALOR * WRITERS as i64 {
        return Err(Verdict::Skip(format!(
            "skipped: account {ACCOUNT}'s balance is too close to 2^63"
        )));
    }
    let salt: String = {
        let mut rng = rand::rng();
        let extra: String = (0..3)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect();
        format!("{}{extra}", ctx.nonce)
    };
    let started = Instant::now();
    let stop = started + DURATION;
    let deadline = started + HARD_LIMIT;
    let posted = Arc::new(AtomicUsize::new(0));
    let read = Arc::new(AtomicUsize::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let target = ctx.target(w).clone();
            let salt = salt.clone();
            let posted = posted.clone();
            let seed: u64 = rand::random();
            let start_balance = before.total;
            tokio::spawn(async move {
                writer(
                    target,
                    salt,
                    posted,
                    StdRng::seed_from_u64(seed),
                    start_balance,
                    stop,
                    deadline,
                )
                .await
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            // Offset from the writers', so that with two base URLs each
            // instance has readers and writers.
            let target = ctx.target(r + 1).clone();
            let read = read.clone();
            let done = writers_done.clone();
            tokio::spawn(async move { reader(target, read, done, deadline).await })
        })
        .collect();
    let mut postings = Vec::new();
    for w in writers {
        postings.extend(w.await.unwrap_or_default());
    }
    writers_done.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    let checked = validate(ctx, &before, postings, reads).await;
    ctx.restore(ACCOUNT, before.total).await?;
    let (postings, statements) = checked?;
    Ok(Probe {
        before,
        postings,
        statements,
        elapsed,
    })
}

async fn writer(
    target: Target,
    salt: String,
    posted: Arc<AtomicUsize>,
    mut rng: StdRng,
    start_balance: i64,
    stop: Instant,
    deadline: Instant,
) -> Vec<Posting> {
    let mut conn = KeepAlive::new();
    let mut last = start_balance;
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let n = posted.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_POSTINGS {
            break;
        }
        let valor = rng.random_range(1..=MAX_VALOR);
        let credit = last <= start_balance;
        let descricao = descricao(n, &salt);
        let request = Outgoing::post_json(
            format!("/clientes/{ACCOUNT}/transacoes"),
            serde_json::json!({
                "valor": valor,
                "tipo": if credit { "c" } else { "d" },
                "descricao": descricao,
            })
            .to_string(),
        );
        let exchange = conn
            .send_within(&target, &request, deadline.saturating_duration_since(now))
            .await;
        let saldo = match exchange.status() {
            Some(200) => exchange
                .json()
                .and_then(|j| j.get("saldo").and_then(serde_json::Value::as_i64)),
            _ => None,
        };
        let usable = matches!(
            (exchange.status(), saldo),
            (Some(200), Some(_)) | (Some(422), None)
        );
        if let Some(s) = saldo {
            last = s;
        }
        out.push(Posting {
            descricao,
            valor,
            credit,
            saldo,
            exchange,
        });
        if !usable {
            // The probe fails on it; no point in going on.
            break;
        }
    }
    out
}

async fn reader(
    target: Target,
    read: Arc<AtomicUsize>,
    writers_done: Arc<AtomicBool>,
    deadline: Instant,
) -> Vec<Exchange> {
    let mut conn = KeepAlive::new();
    let request = Outgoing::get(format!("/clientes/{ACCOUNT}/extrato"));
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if writers_done.load(Ordering::Relaxed) || now >= deadline {
            break;
        }
        if read.fetch_add(1, Ordering::Relaxed) >= MAX_READS {
            break;
        }
        let ex = conn
            .send_within(&target, &request, deadline.saturating_duration_since(now))
            .await;
        let failed = ex.status() != Some(200);
        out.push(ex);
        if failed {
            break;
        }
    }
    out
}

type Validated = (Vec<Posting>, Vec<(Exchange, Statement)>);

/// Requires every posting answered 200 with a balance or 422, every read
/// 200 with a statement, and the balance now moved by exactly the answered
/// postings.
async fn validate(
    ctx: &Ctx,
    before: &Statement,
    postings: Vec<Posting>,
    reads: Vec<Exchange>,
) -> Result<Validated, Verdict> {
    if let Some(p) = postings.iter().find(|p| {
        !matches!(
            (p.exchange.status(), p.saldo),
            (Some(200), Some(_)) | (Some(422), None)
        )
    }) {
        return fail(
            "a posting during the probe was answered neither 200 with an integer saldo nor 422",
            &[&p.exchange],
        );
    }
    let mut statements = Vec::with_capacity(reads.len());
    for ex in reads {
        if ex.status() != Some(200) {
            return fail(
                "a statement read during the postings did not answer 200",
                &[&ex],
            );
        }
        match ex.json().map(|j| parse_statement(&j)) {
            Some(Ok(s)) => statements.push((ex, s)),
            Some(Err(why)) => {
                return fail(
                    format!("a statement read during the postings has {why}"),
                    &[&ex],
                )
            }
            None => return fail("a statement read during the postings is not JSON", &[&ex]),
        }
    }
    let moved: i128 = postings
        .iter()
        .filter(|p| p.saldo.is_some())
        .map(Posting::signed)
        .sum();
    let (ex, after) = ctx.statement(0, ACCOUNT).await?;
    let expected = i128::from(before.total) + moved;
    if i128::from(after.total) != expected {
        return fail(
            format!(
                "after the probe's {} accepted postings (net {moved:+}) on balance {}, expected total {expected}: an update was lost or applied twice",
                postings.iter().filter(|p| p.saldo.is_some()).count(),
                before.total
            ),
            &[&ex],
        );
    }
    Ok((postings, statements))
}

/// Judges every statement of `probe`: the rows' chain for
/// [`Findings::order`], and, among statements whose rows chain, the total
/// against the newest row for [`Findings::snapshot`].
pub fn analyze(probe: &Probe) -> Findings {
    let by_descricao: HashMap<&str, &Posting> = probe
        .postings
        .iter()
        .map(|p| (p.descricao.as_str(), p))
        .collect();
    let mut order: Option<Verdict> = None;
    let mut snapshot: Option<Verdict> = None;
    let (mut unchained, mut torn) = (0usize, 0usize);
    let mut listed_rows = 0usize;
    for (ex, s) in &probe.statements {
        match chain(probe, &by_descricao, s) {
            Err((why, postings)) => {
                unchained += 1;
                if order.is_none() {
                    let mut evidence = vec![ex.clone()];
                    evidence.extend(postings.iter().map(|p| p.exchange.clone()));
                    order = Some(Verdict::Fail(why, evidence));
                }
            }
            Ok(newest) => {
                listed_rows += s.rows.len();
                let (expected, why) = match newest {
                    Some(p) => (
                        p.saldo.unwrap_or_default(),
                        format!("its newest row {}", p.describe()),
                    ),
                    None => (
                        probe.before.total,
                        "it lists none of the probe's postings, and the balance before them was"
                            .to_string(),
                    ),
                };
                if s.total != expected {
                    torn += 1;
                }
                if s.total != expected && snapshot.is_none() {
                    let mut evidence = vec![ex.clone()];
                    evidence.extend(newest.map(|p| p.exchange.clone()));
                    snapshot = Some(Verdict::Fail(
                        format!(
                            "a statement read during the postings shows total {} but {why} {expected}: its balance and its rows were read at different moments",
                            s.total
                        ),
                        evidence,
                    ));
                }
            }
        }
    }
    let accepted = probe.postings.iter().filter(|p| p.saldo.is_some()).count();
    let mut summary = String::new();
    let _ = write!(
        summary,
        "{} postings ({accepted} accepted) from {WRITERS} connections and {} statements read by {READERS} connections in {:.1} s on account {ACCOUNT}",
        probe.postings.len(),
        probe.statements.len(),
        probe.elapsed.as_secs_f64()
    );
    let of_all = |n: usize, v: Verdict| match v {
        Verdict::Fail(why, evidence) => Verdict::Fail(
            format!(
                "{n} of {} statements read during the probe break the rule; the first: {why}",
                probe.statements.len()
            ),
            evidence,
        ),
        skip => skip,
    };
    let order = order.map(|v| of_all(unchained, v));
    let snapshot = snapshot.map(|v| of_all(torn, v));
    Findings {
        order: match order {
            Some(v) => Err(v),
            None => Ok(format!(
                "{summary}: every statement's rows chain by their answered balances ({listed_rows} rows)"
            )),
        },
        snapshot: match snapshot {
            Some(v) => Err(v),
            None => Ok(format!(
                "{summary}: every statement's total is its newest row's answered balance"
            )),
        },
    }
}

/// Checks that `s`'s rows chain (module documentation); returns the newest
/// listed posting of the probe, if any, or why they do not chain with the
/// postings that show it.
fn chain<'a>(
    probe: &Probe,
    by_descricao: &HashMap<&str, &'a Posting>,
    s: &Statement,
) -> Result<Option<&'a Posting>, (String, Vec<&'a Posting>)> {
    let mut seen = HashSet::new();
    let mut newer: Option<&Posting> = None;
    let mut newest = None;
    let mut k = 0;
    for (i, row) in s.rows.iter().enumerate() {
        let Some(&p) = by_descricao.get(row.descricao.as_str()) else {
            continue;
        };
        if k < i {
            return Err((
                format!(
                    "the probe's posting {} is listed below ultimas_transacoes[{k}] {:?}, a transaction made before it",
                    p.describe(),
                    s.rows[k].descricao
                ),
                vec![p],
            ));
        }
        k += 1;
        if !seen.insert(p.descricao.as_str()) {
            return Err((format!("{} is listed twice", p.describe()), vec![p]));
        }
        let Some(saldo) = p.saldo else {
            return Err((
                format!(
                    "{} is listed although it was refused with 422",
                    p.describe()
                ),
                vec![p],
            ));
        };
        let tipo = if p.credit { "c" } else { "d" };
        if row.valor != p.valor || row.tipo != tipo {
            return Err((
                format!(
                    "{} is listed with valor {} and tipo {:?}",
                    p.describe(),
                    row.valor,
                    row.tipo
                ),
                vec![p],
            ));
        }
        match newer {
            None => newest = Some(p),
            Some(n) => {
                let newer_saldo = n.saldo.unwrap_or_default();
                if i128::from(newer_saldo) != i128::from(saldo) + n.signed() {
                    return Err((
                        format!(
                            "{} is listed right above {}, but {newer_saldo} is not {saldo} {:+}: a posting is listed out of order, or one is missing between them",
                            n.describe(),
                            p.describe(),
                            n.signed()
                        ),
                        vec![n, p],
                    ));
                }
            }
        }
        newer = Some(p);
    }
    let b0 = probe.before.total;
    if let Some(oldest) = newer {
        let saldo = oldest.saldo.unwrap_or_default();
        // The oldest listed posting of the probe must be its first applied
        // one, unless the list is full of the probe's postings.
        if (k < s.rows.len() || s.rows.len() < 10)
            && i128::from(saldo) != i128::from(b0) + oldest.signed()
        {
            return Err((
                format!(
                    "the oldest of the probe's postings listed, {}, does not follow the balance before the probe, {b0}: a posting made before it is missing, or it is listed out of order",
                    oldest.describe()
                ),
                vec![oldest],
            ));
        }
    }
    let rest = &s.rows[k..];
    let m = (10 - k.min(10)).min(probe.before.rows.len());
    let same = |a: &super::checks::Row, b: &super::checks::Row| {
        (a.valor, &a.tipo, &a.descricao) == (b.valor, &b.tipo, &b.descricao)
    };
    if rest.len() != m
        || !rest
            .iter()
            .zip(&probe.before.rows[..m])
            .all(|(a, b)| same(a, b))
    {
        return Err((
            format!(
                "below the probe's {k} listed postings, the statement lists {} rows that are not the {m} newest listed before the probe",
                rest.len()
            ),
            Vec::new(),
        ));
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::checks::Row;
    use crate::conformance::client::SentRequest;

    fn exchange() -> Exchange {
        Exchange {
            request: SentRequest {
                method: "POST".into(),
                url: "http://x/clientes/4/transacoes".into(),
                headers: Vec::new(),
                body: String::new(),
            },
            response: None,
            error: None,
        }
    }

    fn posting(n: usize, valor: i64, credit: bool, saldo: Option<i64>) -> Posting {
        Posting {
            descricao: descricao(n, "xyz"),
            valor,
            credit,
            saldo,
            exchange: exchange(),
        }
    }

    fn row(p: &Posting) -> Row {
        Row {
            valor: p.valor,
            tipo: if p.credit { "c" } else { "d" }.into(),
            descricao: p.descricao.clone(),
            realizada_em: "2024-01-17T02:34:41.217753Z".into(),
        }
    }

    fn statement(total: i64, rows: Vec<Row>) -> Statement {
        Statement {
            total,
            limit: 10_000_000,
            rows,
        }
    }

    /// Before: balance 100 with one older row. Postings applied in order:
    /// +5 → 105, −7 → 98, a refused debit, +3 → 101.
    fn probe(statements: Vec<Statement>) -> Probe {
        let old = Row {
            valor: 100,
            tipo: "c".into(),
            descricao: "antes".into(),
            realizada_em: String::new(),
        };
        Probe {
            before: statement(100, vec![old]),
            postings: vec![
                posting(0, 5, true, Some(105)),
                posting(1, 7, false, Some(98)),
                posting(2, 1_000_000_000, false, None),
                posting(3, 3, true, Some(101)),
            ],
            statements: statements.into_iter().map(|s| (exchange(), s)).collect(),
            elapsed: Duration::from_secs(1),
        }
    }

    fn rows(p: &Probe, order: &[usize]) -> Vec<Row> {
        order
            .iter()
            .map(|&i| row(&p.postings[i]))
            .chain(p.before.rows.iter().cloned())
            .collect()
    }

    fn judge(make: impl Fn(&Probe) -> Vec<Statement>) -> Findings {
        let mut p = probe(Vec::new());
        let statements = make(&p);
        p.statements = statements.into_iter().map(|s| (exchange(), s)).collect();
        analyze(&p)
    }

    fn failed(r: &Result<String, Verdict>) -> String {
        match r {
            Err(Verdict::Fail(why, _)) => why.clone(),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn consistent_statements_pass() {
        let f = judge(|p| {
            vec![
                statement(100, p.before.rows.clone()),
                statement(105, rows(p, &[0])),
                statement(98, rows(p, &[1, 0])),
                statement(101, rows(p, &[3, 1, 0])),
            ]
        });
        assert!(f.order.is_ok(), "{:?}", f.order);
        assert!(f.snapshot.is_ok(), "{:?}", f.snapshot);
    }

    #[test]
    fn a_total_from_another_moment_fails_the_snapshot_only() {
        // The balance read before the last posting, the rows after it.
        let f = judge(|p| vec![statement(98, rows(p, &[3, 1, 0]))]);
        assert!(f.order.is_ok(), "{:?}", f.order);
        assert!(failed(&f.snapshot).contains("shows total 98"));
        // Rows read before any posting, the balance after one.
        let f = judge(|p| vec![statement(105, p.before.rows.clone())]);
        assert!(failed(&f.snapshot).contains("lists none of the probe's postings"));
    }

    #[test]
    fn rows_out_of_order_or_missing_fail_the_order() {
        // Swapped.
        let f = judge(|p| vec![statement(101, rows(p, &[1, 3, 0]))]);
        assert!(failed(&f.order).contains("out of order"), "{:?}", f.order);
        // The middle one missing.
        let f = judge(|p| vec![statement(101, rows(p, &[3, 0]))]);
        assert!(failed(&f.order).contains("out of order, or one is missing"));
        // The first one missing: the oldest listed does not follow the
        // balance before.
        let f = judge(|p| vec![statement(98, rows(p, &[1]))]);
        assert!(failed(&f.order).contains("does not follow the balance before"));
        // A refused posting listed.
        let f = judge(|p| vec![statement(98, rows(p, &[2, 1, 0]))]);
        assert!(failed(&f.order).contains("refused with 422"));
        // A posting below an older transaction.
        let f = judge(|p| {
            let mut r = rows(p, &[0]);
            r.swap(0, 1);
            vec![statement(105, r)]
        });
        assert!(failed(&f.order).contains("a transaction made before it"));
        // The rows from before the probe dropped.
        let f = judge(|p| vec![statement(105, vec![row(&p.postings[0])])]);
        assert!(failed(&f.order).contains("not the 1 newest listed before"));
    }

    #[test]
    fn descriptions_fit_ten_characters() {
        assert_eq!(descricao(0, "abcdef"), "p0abcdef");
        assert_eq!(descricao(35, "abcdef"), "pzabcdef");
        assert_eq!(descricao(36, "abcdef"), "p10abcdef");
        assert_eq!(descricao(MAX_POSTINGS, "abcdef").chars().count(), 10);
    }
}
