//! The target's starting state, read before a run: the official test's
//! opening checks (docs/contract.md §5, phases 1 to 3a) expect the five
//! seeded accounts of docs/contract.md §2.3 at balance 0 with no
//! transaction, so a run against a used ledger is fined for that alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Connection, Outgoing, Target};
use crate::scenario::SEEDED_ACCOUNTS;

/// One seeded account's statement as read before the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountState {
    /// Account id (1 to 5).
    pub account: u32,
    /// Its seeded limit, in cents (docs/contract.md §2.3).
    pub seeded_limit: i64,
    /// What is not as seeded, in words; `None` when the account is as seeded.
    pub problem: Option<String>,
}

/// The five seeded accounts as found before the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StartingState {
    /// Whether every account is as freshly seeded: statement 200, its
    /// seeded `limite`, `saldo.total` 0 and no transaction.
    pub fresh: bool,
    /// The five accounts, in id order.
    pub accounts: Vec<AccountState>,
}

impl StartingState {
    /// The accounts that are not as seeded, one `account N: problem` each.
    pub fn problems(&self) -> Vec<String> {
        self.accounts
            .iter()
            .filter_map(|a| {
                a.problem
                    .as_ref()
                    .map(|p| format!("account {}: {p}", a.account))
            })
            .collect()
    }
}

/// Reads the five seeded accounts' statements (`GET /clientes/{id}/extrato`,
/// one new connection each) and says whether each is as freshly seeded.
/// Never fails: a request error is reported as that account's problem.
pub async fn inspect(target: &Target) -> StartingState {
    let mut accounts = Vec::with_capacity(SEEDED_ACCOUNTS.len());
    for (account, seeded_limit) in SEEDED_ACCOUNTS {
        let request = Outgoing {
            method: hyper::Method::GET,
            path: format!("/clientes/{account}/extrato"),
            body: None,
        };
        let (outcome, _, _) = Connection::new().send(target, &request).await;
        let problem = match outcome {
            Err(e) => Some(format!("GET {} failed: {e}", request.path)),
            Ok(response) => judge(response.status, &response.body, seeded_limit),
        };
        accounts.push(AccountState {
            account,
            seeded_limit,
            problem,
        });
    }
    StartingState {
        fresh: accounts.iter().all(|a| a.problem.is_none()),
        accounts,
    }
}

/// What is not as seeded in one statement response, if anything.
fn judge(status: u16, body: &[u8], seeded_limit: i64) -> Option<String> {
    if status != 200 {
        return Some(format!("its statement answered {status}, not 200"));
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Some("its statement is not JSON".to_string());
    };
    let total = json.pointer("/saldo/total").and_then(Value::as_i64);
    let limit = json.pointer("/saldo/limite").and_then(Value::as_i64);
    let rows = json
        .get("ultimas_transacoes")
        .and_then(Value::as_array)
        .map(Vec::len);
    let mut found = Vec::new();
    match total {
        Some(0) => {}
        Some(t) => found.push(format!("balance {t}")),
        None => found.push("no integer saldo.total".to_string()),
    }
    match limit {
        Some(l) if l == seeded_limit => {}
        Some(l) => found.push(format!("limit {l} (seeded: {seeded_limit})")),
        None => found.push("no integer saldo.limite".to_string()),
    }
    match rows {
        Some(0) => {}
        Some(10) => found.push("10 or more transactions".to_string()),
        Some(1) => found.push("1 transaction".to_string()),
        Some(n) => found.push(format!("{n} transactions")),
        None => found.push("no ultimas_transacoes list".to_string()),
    }
    (!found.is_empty()).then(|| found.join(", "))
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn only_a_seeded_statement_is_fresh() {
        let fresh =
            br#"{"saldo":{"total":0,"limite":80000,"data_extrato":"x"},"ultimas_transacoes":[]}"#;
        assert_eq!(judge(200, fresh, 80_000), None);
        assert_eq!(
            judge(200, fresh, 100_000).as_deref(),
            Some("limit 80000 (seeded: 100000)")
        );
        let used = br#"{"saldo":{"total":-1500,"limite":100000},"ultimas_transacoes":[{},{}]}"#;
        assert_eq!(
            judge(200, used, 100_000).as_deref(),
            Some("balance -1500, 2 transactions")
        );
        assert_eq!(
            judge(404, b"", 100_000).as_deref(),
            Some("its statement answered 404, not 200")
        );
        assert!(judge(200, b"nope", 100_000).is_some());
    }
}
