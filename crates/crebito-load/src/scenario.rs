//! The requests and checks of the official simulation (docs/contract.md §5), one
//! function per Gatling request definition.

use hyper::Method;
use rand::distr::Alphanumeric;
use rand::{Rng, RngExt};

use crate::check::{Check, Expected, CONSISTENCY_STATEMENT, CONSISTENCY_TRANSACTION};
use crate::http::Outgoing;

/// The seeded accounts and their limits in cents (docs/contract.md §2), as fed to the
/// per-account validation users.
pub const SEEDED_ACCOUNTS: [(u32, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// Users of each concurrency validation phase (docs/contract.md §5: 25).
pub const CONCURRENT_VALIDATION_USERS: usize = 25;

/// Parallel statement reads after the "danada" posting (docs/contract.md §5: 4).
pub const PARALLEL_STATEMENTS: usize = 4;

/// A request and the checks its response must pass.
#[derive(Debug, Clone)]
pub struct Step {
    /// What is sent.
    pub request: Outgoing,
    /// Checks, in order.
    pub checks: Vec<Check>,
}

impl Step {
    /// `METHOD path body` for failure examples.
    pub fn describe(&self) -> String {
        match &self.request.body {
            Some(b) => format!("{} {} {}", self.request.method, self.request.path, b),
            None => format!("{} {}", self.request.method, self.request.path),
        }
    }
}

fn post(account: u32, body: String, checks: Vec<Check>) -> Step {
    Step {
        request: Outgoing {
            method: Method::POST,
            path: format!("/clientes/{account}/transacoes"),
            body: Some(body),
        },
        checks,
    }
}

fn get_statement(account: u32, checks: Vec<Check>) -> Step {
    Step {
        request: Outgoing {
            method: Method::GET,
            path: format!("/clientes/{account}/extrato"),
            body: None,
        },
        checks,
    }
}

/// The body exactly as the simulation writes it.
pub fn payload(valor: &str, tipo: &str, descricao: &str) -> String {
    format!(r#"{{"valor": {valor}, "tipo": "{tipo}", "descricao": {descricao}}}"#)
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// The checks of a credit or debit of the open-model phases.
pub(crate) fn transaction_checks() -> Vec<Check> {
    vec![
        Check::StatusIn(&[200]),
        Check::SaveAs {
            path: "limite",
            key: "limite",
        },
        Check::Consistency {
            path: "saldo",
            name: CONSISTENCY_TRANSACTION,
        },
    ]
}

/// Random inputs of one open-model user, drawn in the simulation's order
/// (descricao, cliente_id, valor): account uniform in 1..=5, `valor` uniform
/// in 1..=10000, `descricao` 10 random ASCII alphanumerics (docs/contract.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomTransaction {
    /// 10 alphanumerics.
    pub descricao: String,
    /// 1..=5.
    pub account: u32,
    /// 1..=10000 cents.
    pub valor: u32,
}

impl RandomTransaction {
    /// Draws one from `rng`.
    pub fn draw<R: Rng + ?Sized>(rng: &mut R) -> RandomTransaction {
        let descricao: String = (0..10)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect();
        let account = rng.random_range(1..=5);
        let valor = rng.random_range(1..=10_000);
        RandomTransaction {
            descricao,
            account,
            valor,
        }
    }
}

/// Scenario "débitos": a random debit; 200 or 422; on 200, `saldo >= -limite`.
pub fn debit(t: &RandomTransaction) -> Step {
    post(
        t.account,
        payload(&t.valor.to_string(), "d", &quoted(&t.descricao)),
        debit_checks(),
    )
}

/// The checks of a random debit: 200 or 422; the body is checked on 200 only.
pub(crate) fn debit_checks() -> Vec<Check> {
    vec![
        Check::StatusIn(&[200, 422]),
        Check::If200(Box::new(Check::SaveAs {
            path: "limite",
            key: "limite",
        })),
        Check::If200(Box::new(Check::Consistency {
            path: "saldo",
            name: CONSISTENCY_TRANSACTION,
        })),
    ]
}

/// Scenario "créditos": a random credit; 200 and `saldo >= -limite`.
pub fn credit(t: &RandomTransaction) -> Step {
    post(
        t.account,
        payload(&t.valor.to_string(), "c", &quoted(&t.descricao)),
        transaction_checks(),
    )
}

/// Scenario "extratos": a random account's statement; `saldo.total >= -saldo.limite`.
pub fn statement(account: u32) -> Step {
    get_statement(
        account,
        vec![
            Check::SaveAs {
                path: "saldo.limite",
                key: "limite",
            },
            Check::Consistency {
                path: "saldo.total",
                name: CONSISTENCY_STATEMENT,
            },
        ],
    )
}

/// Concurrency phases: a posting of 1 (`tipo` "d" or "c") to account 1,
/// which must get 200.
pub fn concurrent_posting(tipo: &str) -> Step {
    post(
        1,
        payload("1", tipo, &quoted("validacao")),
        vec![Check::StatusIs(200)],
    )
}

/// Concurrency phases: account 1's statement must show `saldo.total == expected`.
pub fn balance_check(expected: i64) -> Step {
    get_statement(
        1,
        vec![Check::IntIs {
            path: "saldo.total",
            expected,
        }],
    )
}

/// The 404 user: account 6 must not exist.
pub fn not_found() -> Step {
    get_statement(6, vec![Check::StatusIs(404)])
}

/// The per-account validation user's steps before the parallel reads, in
/// order: statement (limit as seeded, total 0), credit "toma", debit
/// "devolve", statement (those two first).
pub fn account_checks_before(account: u32, limit: i64) -> Vec<Step> {
    let is = |path, v: &str| Check::StrIs {
        path,
        expected: Expected::Literal(v.to_string()),
    };
    let int_is = |path, v| Check::IntIs { path, expected: v };
    vec![
        get_statement(
            account,
            vec![
                Check::StatusIs(200),
                is("saldo.limite", &limit.to_string()),
                is("saldo.total", "0"),
            ],
        ),
        post(
            account,
            payload("1", "c", &quoted("toma")),
            transaction_checks(),
        ),
        post(
            account,
            payload("1", "d", &quoted("devolve")),
            transaction_checks(),
        ),
        get_statement(
            account,
            vec![
                is("ultimas_transacoes[0].descricao", "devolve"),
                is("ultimas_transacoes[0].tipo", "d"),
                int_is("ultimas_transacoes[0].valor", 1),
                is("ultimas_transacoes[1].descricao", "toma"),
                is("ultimas_transacoes[1].tipo", "c"),
                int_is("ultimas_transacoes[1].valor", 1),
            ],
        ),
    ]
}

/// The "danada" credit whose `saldo` and `limite` the parallel reads must
/// then show.
pub fn danada(account: u32) -> Step {
    post(
        account,
        payload("1", "c", &quoted("danada")),
        vec![
            Check::StatusIn(&[200]),
            Check::SaveAs {
                path: "saldo",
                key: "saldo",
            },
            Check::SaveAs {
                path: "limite",
                key: "limite",
            },
        ],
    )
}

/// One of the [`PARALLEL_STATEMENTS`] reads fetched right after "danada"
/// (Gatling `resources`): "danada" first, and the balance and limit the
/// posting returned.
pub fn danada_statement(account: u32) -> Step {
    let is = |path, v: &str| Check::StrIs {
        path,
        expected: Expected::Literal(v.to_string()),
    };
    get_statement(
        account,
        vec![
            is("ultimas_transacoes[0].descricao", "danada"),
            is("ultimas_transacoes[0].tipo", "c"),
            Check::IntIs {
                path: "ultimas_transacoes[0].valor",
                expected: 1,
            },
            Check::StrIs {
                path: "saldo.limite",
                expected: Expected::Session("limite"),
            },
            Check::StrIs {
                path: "saldo.total",
                expected: Expected::Session("saldo"),
            },
        ],
    )
}

/// The five invalid postings that must get 400 or 422: `valor` 1.2, `tipo`
/// "x", a 25-character `descricao`, an empty one, a null one.
pub fn invalid_postings(account: u32) -> Vec<Step> {
    let rejected = || vec![Check::StatusIn(&[422, 400])];
    vec![
        post(account, payload("1.2", "d", &quoted("devolve")), rejected()),
        post(account, payload("1", "x", &quoted("devolve")), rejected()),
        post(
            account,
            payload("1", "c", &quoted("123456789 e mais um pouco")),
            rejected(),
        ),
        post(account, payload("1", "c", &quoted("")), rejected()),
        post(account, payload("1", "c", "null"), rejected()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn bodies_are_written_like_the_simulation() {
        assert_eq!(
            concurrent_posting("d").request.body.as_deref(),
            Some(r#"{"valor": 1, "tipo": "d", "descricao": "validacao"}"#)
        );
        let invalid: Vec<String> = invalid_postings(3)
            .into_iter()
            .map(|s| s.request.body.unwrap())
            .collect();
        assert_eq!(
            invalid[0],
            r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#
        );
        assert_eq!(
            invalid[4],
            r#"{"valor": 1, "tipo": "c", "descricao": null}"#
        );
        assert_eq!(
            invalid_postings(3)[0].request.path,
            "/clientes/3/transacoes"
        );
    }

    #[test]
    fn per_account_user_sends_fourteen_requests() {
        let n = account_checks_before(1, 100_000).len()
            + 1
            + PARALLEL_STATEMENTS
            + invalid_postings(1).len();
        assert_eq!(n, 14);
    }

    #[test]
    fn random_inputs_are_in_range_and_reproducible() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let mut seen_accounts = [false; 6];
        for _ in 0..2_000 {
            let t = RandomTransaction::draw(&mut a);
            assert_eq!(t, RandomTransaction::draw(&mut b));
            assert!((1..=5).contains(&t.account));
            assert!((1..=10_000).contains(&t.valor));
            assert_eq!(t.descricao.len(), 10);
            assert!(t.descricao.chars().all(|c| c.is_ascii_alphanumeric()));
            seen_accounts[t.account as usize] = true;
        }
        assert_eq!(seen_accounts, [false, true, true, true, true, true]);
    }
}
