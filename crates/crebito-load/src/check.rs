//! The checks of the official simulation, evaluated the way Gatling 3 does.
//!
//! Source: the final `RinhaBackendCrebitosSimulation.scala` of the
//! Rinha de Backend 2024/Q1 (restated in docs/contract.md §5) and Gatling's
//! `CheckBase`: checks run in order, each may save a value in the virtual
//! user's session, and the first one that fails makes the request KO with
//! the message `"<extractor>.find.<validator>, <why>"` (for example
//! `status.find.in(200,422), but actually found 500`); the checks after it
//! are not evaluated. A request without a status check gets Gatling's
//! default one, `status.find.in(200,201,202,203,204,205,206,207,208,209,304)`.

use std::collections::HashMap;

use serde_json::Value;

/// Gatling's implicit status check when a request declares none.
pub const DEFAULT_STATUS_CODES: &[u16] = &[200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 304];

/// Name of the custom validator on transaction responses (docs/contract.md §5,
/// "ConsistenciaSaldoLimite"): `saldo >= -limite`.
pub const CONSISTENCY_TRANSACTION: &str = "ConsistenciaSaldoLimite - Transação";
/// Name of the custom validator on statement responses (docs/contract.md §5):
/// `saldo.total >= -saldo.limite`.
pub const CONSISTENCY_STATEMENT: &str = "ConsistenciaSaldoLimite - Extrato";

/// The value a check compares with: a literal, or a session attribute
/// (Gatling EL `#{name}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A fixed value.
    Literal(String),
    /// A session attribute, resolved when the check runs.
    Session(&'static str),
}

impl Expected {
    fn label(&self) -> String {
        match self {
            Expected::Literal(v) => v.clone(),
            Expected::Session(name) => format!("#{{{name}}}"),
        }
    }
}

/// One check of the simulation.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `status.is(code)`.
    StatusIs(u16),
    /// `status.in(codes…)`.
    StatusIn(&'static [u16]),
    /// `jmesPath(path).saveAs(key)`: the value must exist; it is saved as a
    /// string.
    SaveAs {
        /// JMESPath of the value (`limite`, `saldo.limite`, …).
        path: &'static str,
        /// Session attribute it is saved to.
        key: &'static str,
    },
    /// `jmesPath(path).ofType[Int].is(expected)`.
    IntIs {
        /// JMESPath of the value.
        path: &'static str,
        /// The expected integer.
        expected: i64,
    },
    /// `jmesPath(path).ofType[String].is(expected)` (a JSON number is
    /// compared through its text, as Gatling converts it).
    StrIs {
        /// JMESPath of the value.
        path: &'static str,
        /// The expected text.
        expected: Expected,
    },
    /// `jmesPath(path).validate(name, validarConsistenciaSaldoLimite)`: the
    /// value, read as an integer, must be `>= -limite` with `limite` taken
    /// from the session; "Limite ultrapassado!" otherwise, "WTF?!" when
    /// either is missing or not an integer.
    Consistency {
        /// JMESPath of the balance (`saldo` or `saldo.total`).
        path: &'static str,
        /// Validator name, [`CONSISTENCY_TRANSACTION`] or
        /// [`CONSISTENCY_STATEMENT`].
        name: &'static str,
    },
    /// `checkIf(status == 200) { check }`: evaluated only on a 200.
    If200(Box<Check>),
}

/// A failed check: `name` is Gatling's built check name (what the failures
/// are grouped by), `message` the whole Gatling-style error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// Built name, e.g. `jmesPath(saldo.total).find.is(-25)`.
    pub name: String,
    /// Full message, e.g. `jmesPath(saldo.total).find.is(-25), but actually found -24`.
    pub message: String,
}

impl CheckFailure {
    /// Whether this failure counts as an inconsistency in the score
    /// (docs/contract.md §6): a failed `ConsistenciaSaldoLimite` validation (balance
    /// below −limit, or no usable balance) in any transaction or statement
    /// response, or a failed `saldo.total` equality check of the validation
    /// phases.
    pub fn is_inconsistency(&self) -> bool {
        self.name.contains("ConsistenciaSaldoLimite")
            || self.name.starts_with("jmesPath(saldo.total).find.is(")
    }
}

/// The per-user session: attributes saved by checks or set by the feeder.
pub type Session = HashMap<&'static str, String>;

/// Runs `checks` in order against a response (`status`, `body`), updating
/// `session` like Gatling does; returns the first failure, if any.
pub fn run_checks(
    checks: &[Check],
    status: u16,
    body: &[u8],
    session: &mut Session,
) -> Result<(), CheckFailure> {
    let mut json: Option<Result<Value, String>> = None;
    let has_status_check = checks.iter().any(Check::is_status_check);
    if !has_status_check {
        check_status_in(DEFAULT_STATUS_CODES, status)?;
    }
    for check in checks {
        run_one(check, status, body, &mut json, session)?;
    }
    Ok(())
}

impl Check {
    fn is_status_check(&self) -> bool {
        matches!(self, Check::StatusIs(_) | Check::StatusIn(_))
    }

    /// Gatling's built name of the check (extractor, arity, validator).
    pub fn name(&self) -> String {
        match self {
            Check::StatusIs(code) => format!("status.find.is({code})"),
            Check::StatusIn(codes) => format!("status.find.in({})", join_codes(codes)),
            Check::SaveAs { path, .. } => format!("jmesPath({path}).find.exists"),
            Check::IntIs { path, expected } => format!("jmesPath({path}).find.is({expected})"),
            Check::StrIs { path, expected } => {
                format!("jmesPath({path}).find.is({})", expected.label())
            }
            Check::Consistency { path, name } => format!("jmesPath({path}).find.{name}"),
            Check::If200(inner) => inner.name(),
        }
    }
}

fn join_codes(codes: &[u16]) -> String {
    codes
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn check_status_in(codes: &[u16], status: u16) -> Result<(), CheckFailure> {
    if codes.contains(&status) {
        return Ok(());
    }
    let name = format!("status.find.in({})", join_codes(codes));
    Err(CheckFailure {
        message: format!("{name}, but actually found {status}"),
        name,
    })
}

fn run_one(
    check: &Check,
    status: u16,
    body: &[u8],
    json: &mut Option<Result<Value, String>>,
    session: &mut Session,
) -> Result<(), CheckFailure> {
    let name = check.name();
    let fail = |why: String| CheckFailure {
        message: format!("{name}, {why}"),
        name: name.clone(),
    };
    match check {
        Check::StatusIs(code) => {
            if status == *code {
                Ok(())
            } else {
                Err(fail(format!("but actually found {status}")))
            }
        }
        Check::StatusIn(codes) => check_status_in(codes, status),
        Check::If200(inner) => {
            if status == 200 {
                run_one(inner, status, body, json, session)
            } else {
                Ok(())
            }
        }
        Check::SaveAs { path, key } => {
            let value = extract(path, body, json, &name)?;
            match value.and_then(|v| as_text(&v)) {
                Some(text) => {
                    session.insert(key, text);
                    Ok(())
                }
                None => Err(fail("found nothing".into())),
            }
        }
        Check::IntIs { path, expected } => {
            let value = extract(path, body, json, &name)?;
            match value {
                None | Some(Value::Null) => Err(fail("but actually found nothing".into())),
                Some(v) => match as_int(&v) {
                    Some(n) if n == *expected => Ok(()),
                    Some(n) => Err(fail(format!("but actually found {n}"))),
                    None => Err(CheckFailure {
                        message: format!("{name} extraction crashed: can't convert {v} to Int"),
                        name: name.clone(),
                    }),
                },
            }
        }
        Check::StrIs { path, expected } => {
            let want = match expected {
                Expected::Literal(v) => v.clone(),
                Expected::Session(key) => match session.get(key) {
                    Some(v) => v.clone(),
                    None => {
                        return Err(CheckFailure {
                            message: format!("Check validator resolution crashed: No attribute named '{key}' is defined"),
                            name: name.clone(),
                        })
                    }
                },
            };
            let value = extract(path, body, json, &name)?;
            match value.and_then(|v| as_text(&v)) {
                Some(text) if text == want => Ok(()),
                Some(text) => Err(fail(format!("but actually found {text}"))),
                None => Err(fail("but actually found nothing".into())),
            }
        }
        Check::Consistency { path, .. } => {
            let value = extract(path, body, json, &name)?;
            let saldo = value
                .and_then(|v| as_text(&v))
                .and_then(|t| t.parse::<i32>().ok());
            let limite = session.get("limite").and_then(|t| t.parse::<i32>().ok());
            match (saldo, limite) {
                (Some(s), Some(l)) if i64::from(s) < -i64::from(l) => {
                    Err(fail("Limite ultrapassado!".into()))
                }
                (Some(_), Some(_)) => Ok(()),
                _ => Err(fail("WTF?!".into())),
            }
        }
    }
}

/// Extracts `path` from the body parsed as JSON (parsed once per response).
fn extract(
    path: &str,
    body: &[u8],
    json: &mut Option<Result<Value, String>>,
    name: &str,
) -> Result<Option<Value>, CheckFailure> {
    let parsed =
        json.get_or_insert_with(|| serde_json::from_slice(body).map_err(|e| e.to_string()));
    match parsed {
        Ok(root) => Ok(select(root, path).cloned()),
        Err(e) => Err(CheckFailure {
            name: name.to_string(),
            message: format!("{name} preparation crashed: body is not valid JSON: {e}"),
        }),
    }
}

/// Evaluates the subset of JMESPath the simulation uses: dotted field names,
/// each optionally followed by one `[index]`.
pub fn select<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.') {
        let (field, index) = match segment.find('[') {
            Some(open) => {
                let idx = segment[open + 1..]
                    .trim_end_matches(']')
                    .parse::<usize>()
                    .ok()?;
                (&segment[..open], Some(idx))
            }
            None => (segment, None),
        };
        current = current.get(field)?;
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(current)
}

/// Gatling's `ofType[String]` view of a JSON value: strings as they are,
/// numbers and booleans as their JSON text, `null` as nothing.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Gatling's `ofType[Int]` view: a JSON integer in the `i32` range, or a
/// string holding one.
fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().filter(|v| i32::try_from(*v).is_ok()),
        Value::String(s) => s.parse::<i32>().ok().map(i64::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_wins_with_gatling_messages() {
        let mut s = Session::new();
        let e = run_checks(&crate::scenario::transaction_checks(), 500, b"{}", &mut s).unwrap_err();
        assert_eq!(e.message, "status.find.in(200), but actually found 500");
        assert!(!e.is_inconsistency());

        let e = run_checks(
            &crate::scenario::transaction_checks(),
            200,
            br#"{"saldo": 1}"#,
            &mut s,
        )
        .unwrap_err();
        assert_eq!(e.message, "jmesPath(limite).find.exists, found nothing");

        let e = run_checks(
            &crate::scenario::transaction_checks(),
            200,
            br#"{"limite": 1000, "saldo": -1001}"#,
            &mut s,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "jmesPath(saldo).find.ConsistenciaSaldoLimite - Transação, Limite ultrapassado!"
        );
        assert!(e.is_inconsistency());
        assert_eq!(s.get("limite").map(String::as_str), Some("1000"));

        // The boundary itself is allowed (docs/contract.md §2: a balance of -limite).
        assert!(run_checks(
            &crate::scenario::transaction_checks(),
            200,
            br#"{"limite": 1000, "saldo": -1000}"#,
            &mut s
        )
        .is_ok());

        let e = run_checks(
            &crate::scenario::transaction_checks(),
            200,
            br#"{"limite": 1000, "saldo": 1.5}"#,
            &mut s,
        )
        .unwrap_err();
        assert!(e.message.ends_with("WTF?!"), "{}", e.message);
        assert!(e.is_inconsistency());

        let e =
            run_checks(&crate::scenario::transaction_checks(), 200, b"oops", &mut s).unwrap_err();
        assert!(
            e.message
                .starts_with("jmesPath(limite).find.exists preparation crashed"),
            "{}",
            e.message
        );
    }

    #[test]
    fn default_status_check_when_none_declared() {
        let checks = vec![Check::IntIs {
            path: "saldo.total",
            expected: -25,
        }];
        let mut s = Session::new();
        let e = run_checks(&checks, 404, b"", &mut s).unwrap_err();
        assert_eq!(
            e.message,
            "status.find.in(200,201,202,203,204,205,206,207,208,209,304), but actually found 404"
        );
        let e = run_checks(&checks, 200, br#"{"saldo": {"total": -24}}"#, &mut s).unwrap_err();
        assert_eq!(
            e.message,
            "jmesPath(saldo.total).find.is(-25), but actually found -24"
        );
        assert!(e.is_inconsistency());
        assert!(run_checks(&checks, 200, br#"{"saldo": {"total": -25}}"#, &mut s).is_ok());
    }

    #[test]
    fn debit_checks_only_on_200() {
        let checks = crate::scenario::debit_checks();
        let mut s = Session::new();
        assert!(run_checks(&checks, 422, b"not json", &mut s).is_ok());
        assert!(run_checks(&checks, 400, b"", &mut s).is_err());
        assert!(run_checks(&checks, 200, br#"{"limite": 5, "saldo": -6}"#, &mut s).is_err());
    }

    #[test]
    fn string_checks_and_session_values() {
        let mut s = Session::new();
        s.insert("saldo", "3".into());
        let checks = vec![
            Check::StrIs {
                path: "ultimas_transacoes[0].descricao",
                expected: Expected::Literal("danada".into()),
            },
            Check::IntIs {
                path: "ultimas_transacoes[0].valor",
                expected: 1,
            },
            Check::StrIs {
                path: "saldo.total",
                expected: Expected::Session("saldo"),
            },
        ];
        let ok = br#"{"saldo": {"total": 3, "limite": 10}, "ultimas_transacoes": [{"valor": 1, "descricao": "danada"}]}"#;
        assert!(run_checks(&checks, 200, ok, &mut s).is_ok());
        let stale = br#"{"saldo": {"total": 2, "limite": 10}, "ultimas_transacoes": [{"valor": 1, "descricao": "danada"}]}"#;
        let e = run_checks(&checks, 200, stale, &mut s).unwrap_err();
        assert_eq!(
            e.message,
            "jmesPath(saldo.total).find.is(#{saldo}), but actually found 2"
        );
        assert!(e.is_inconsistency());
        let empty = br#"{"saldo": {"total": 3, "limite": 10}, "ultimas_transacoes": []}"#;
        let e = run_checks(&checks, 200, empty, &mut s).unwrap_err();
        assert_eq!(
            e.message,
            "jmesPath(ultimas_transacoes[0].descricao).find.is(danada), but actually found nothing"
        );
        assert!(!e.is_inconsistency());
    }
}
