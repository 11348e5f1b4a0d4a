//! `crebito-load check` against an in-process fake of the whole contract:
//! the correct fake passes every check, on a fresh and on a used ledger, and
//! each deliberately broken fake is caught by the check of the rule it
//! breaks.

mod common;

use common::contract_fake::{start, Fault};
use crebito_load::conformance::{self, checks, present, CheckConfig, CheckReport, Status};
use serde_json::Value;

async fn check(urls: &[String], only: &[&str]) -> CheckReport {
    conformance::run(&CheckConfig {
        base_urls: urls.to_vec(),
        only: only.iter().map(|s| s.to_string()).collect(),
        only_challenge: false,
        strict: false,
    })
    .await
    .expect("the checks run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_fake_passes_every_check_fresh_and_used() {
    let fake = start(Fault::None, 2).await;
    let report = check(&fake.urls, &[]).await;
    let text = present::text(&report);
    assert!(report.starting_state.fresh, "{text}");
    assert_eq!(report.checks.len(), checks::catalogue().len(), "{text}");
    assert_eq!((report.failed, report.skipped), (0, 0), "{text}");
    assert_eq!(report.passed, report.checks.len());
    assert!(report.ok());
    // Used now: only the check about the seed is skipped, and says why.
    let again = check(&fake.urls, &[]).await;
    let text = present::text(&again);
    assert!(!again.starting_state.fresh, "{text}");
    assert_eq!((again.failed, again.skipped), (0, 1), "{text}");
    let skipped = again
        .checks
        .iter()
        .find(|c| c.status == Status::Skip)
        .unwrap();
    assert_eq!(skipped.name, "seed-balances");
    assert!(skipped.detail.starts_with("skipped: not freshly seeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_challenge_leaves_out_the_projects_choices() {
    let fake = start(Fault::FieldErrors400, 1).await;
    let config = CheckConfig {
        base_urls: fake.urls.clone(),
        only: Vec::new(),
        only_challenge: true,
        strict: false,
    };
    let report = conformance::run(&config).await.unwrap();
    assert!(report.ok(), "{}", present::text(&report));
    assert!(report
        .checks
        .iter()
        .all(|c| c.origin == conformance::Origin::Challenge));
    assert!(!report.checks.iter().any(|c| c.name == "field-errors-422"));
}

/// Starts a fake with `fault`, runs the one check of its rule, and
/// requires that check to fail with the exchange that shows it.
async fn caught(fault: Fault, name: &str) {
    let fake = start(fault, 1).await;
    let report = check(&fake.urls, &[name]).await;
    let text = present::text(&report);
    assert_eq!(report.checks.len(), 1, "{text}");
    let outcome = &report.checks[0];
    assert_eq!(outcome.name, name);
    assert_eq!(outcome.status, Status::Fail, "{fault:?} not caught: {text}");
    assert!(!outcome.evidence.is_empty(), "{text}");
    assert!(text.contains(&format!("FAIL  {name}: ")), "{text}");
    // A failed rule of the challenge fails the verdict; one of this
    // project's stricter choices only with --strict.
    assert_eq!(
        report.ok(),
        outcome.origin == conformance::Origin::Project,
        "{text}"
    );
    assert!(text.contains("verdict: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_snapshots_are_not_an_ordering_fault() {
    // The rows of each statement come from one snapshot, in order: only
    // the total is from another moment.
    let fake = start(Fault::TwoSnapshots, 2).await;
    let report = check(&fake.urls, &["newest-first", "statement-snapshot"]).await;
    let text = present::text(&report);
    let status = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.status)
    };
    assert_eq!(status("newest-first"), Some(Status::Pass), "{text}");
    assert_eq!(status("statement-snapshot"), Some(Status::Fail), "{text}");
    assert!(text.contains("were read at different moments"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tallies_and_only_the_challenges_rules_fail_without_strict() {
    // 400 for a field rule: the challenge accepts it, this project does
    // not (field-errors-422).
    let fake = start(Fault::FieldErrors400, 2).await;
    let urls = fake.urls.join(",");
    let out = crebito_load_check(&["--base-url", &urls, "--json", "-"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let challenge = checks::catalogue()
        .iter()
        .filter(|c| c.origin == conformance::Origin::Challenge)
        .count();
    let stricter = checks::catalogue().len() - challenge;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = json["stricter_rules"]["failed"].as_u64().unwrap() as usize;
    assert!(failed >= 1, "{stderr}");
    assert_eq!(json["challenge_rules"]["failed"], 0);
    assert_eq!(json["challenge_rules"]["checks"], challenge);
    assert_eq!(json["stricter_rules"]["checks"], stricter);
    assert_eq!(json["verdict_ok"], true);
    assert!(
        stderr.contains(&format!(
            "the challenge's rules: {challenge}/{challenge} passed\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "stricter rules (this project's choices, where the challenge leaves room): {}/{stricter} passed, {failed} failed — not counted in the verdict; --strict counts them",
            stricter - failed
        )),
        "{stderr}"
    );
    assert!(stderr.contains("verdict: PASS"), "{stderr}");
    // --strict counts them.
    let fake = start(Fault::FieldErrors400, 1).await;
    let out = crebito_load_check(&[
        "--base-url",
        &fake.urls[0],
        "--strict",
        "--only",
        "field-errors-422,seed-limits",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("1 stricter rule failed (--strict)"),
        "{stdout}"
    );
}

macro_rules! caught {
    ($($test:ident: $fault:ident => $name:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                caught(Fault::$fault, $name).await;
            }
        )*

        /// The checks some broken fake proves able to fail.
        const COVERED: &[&str] = &[$($name),*];
    };
}

caught! {
    seed_limit_is_caught: SeedLimit => "seed-limits",
    seed_balance_is_caught: SeedBalance => "seed-balances",
    existing_account_6_is_caught: UnknownAccountExists => "unknown-account",
    invalid_id_400_is_caught: InvalidIdAs400 => "invalid-account-id",
    missing_data_extrato_is_caught: StatementNoDate => "statement-shape",
    millisecond_timestamps_are_caught: TimestampMillis => "timestamps",
    balance_before_is_caught: BalanceBefore => "posting-balance",
    oldest_first_is_caught: OldestFirst => "newest-first",
    exclusive_limit_is_caught: LimitExclusive => "limit-boundary",
    thirty_two_bit_amounts_are_caught: Amounts32Bit => "amounts-64bit",
    saturating_overflow_is_caught: OverflowSaturates => "balance-overflow",
    fractional_valor_is_caught: FloatValor => "valor-rule",
    upper_case_tipo_is_caught: TipoAnyCase => "tipo-rule",
    descricao_in_bytes_is_caught: DescricaoBytes => "descricao-rule",
    nul_is_caught: NulAccepted => "descricao-nul",
    field_errors_400_are_caught: FieldErrors400 => "field-errors-422",
    syntax_errors_422_are_caught: SyntaxErrors422 => "malformed-json-400",
    invalid_utf8_422_is_caught: Utf8As422 => "body-utf8",
    duplicate_field_is_caught: DuplicateLastWins => "duplicate-field",
    refused_extra_field_is_caught: UnknownFieldRefused => "unknown-fields-ignored",
    lost_update_is_caught: LostUpdate => "no-lost-update",
    overdraw_race_is_caught: OverdrawRace => "limit-under-concurrency",
    torn_statement_is_caught: TornStatement => "statement-snapshot",
    two_snapshots_are_caught: TwoSnapshots => "statement-snapshot",
    stamp_before_write_is_caught: StampBeforeWrite => "newest-first",
    stale_read_is_caught: StaleRead => "read-your-write",
    wrong_method_404_is_caught: MethodsAs404 => "methods",
    any_content_type_is_caught: AnyContentType => "content-type",
    no_body_limit_is_caught: NoBodyLimit => "body-size",
}

#[test]
fn every_check_has_a_broken_fake() {
    let mut names: Vec<&str> = checks::catalogue().iter().map(|c| c.name).collect();
    names.sort_unstable();
    let mut covered = COVERED.to_vec();
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(names, covered);
}

async fn crebito_load_check(args: &[&str]) -> std::process::Output {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    common::crebito_load(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_1_on_a_failure_and_shows_the_exchange() {
    let fake = start(Fault::SeedLimit, 1).await;
    let out = crebito_load_check(&["--base-url", &fake.urls[0], "--json", "-"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The text goes to stderr when the JSON takes stdout.
    let block = &stderr[stderr.find("FAIL  seed-limits").expect("named")..];
    assert!(
        block.contains("source: docs/contract.md §2.3 (the challenge's rule)"),
        "{block}"
    );
    assert!(block.contains("| GET http://127.0.0.1:"), "{block}");
    assert!(block.contains("| → 200"), "{block}");
    assert!(block.contains(r#""limite":8000"#), "{block}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert!(json["failed"].as_u64().unwrap() >= 1);
    let failed = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "seed-limits")
        .unwrap();
    assert_eq!(failed["status"], "fail");
    assert_eq!(failed["origin"], "challenge");
    assert_eq!(failed["evidence"][0]["response"]["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_0_when_every_check_passes_and_2_when_it_cannot_run() {
    let fake = start(Fault::None, 2).await;
    let urls = fake.urls.join(",");
    let out = crebito_load_check(&["--base-url", &urls]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("across 2 instances"), "{stdout}");
    let out = crebito_load_check(&["--base-url", &fake.urls[0], "--only", "no-such-check"]).await;
    assert_eq!(out.status.code(), Some(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = crebito_load_check(&[
        "--base-url",
        &format!("http://127.0.0.1:{port}"),
        "--wait-ready",
        "0",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));
    let out = crebito_load_check(&["--list"]).await;
    assert_eq!(out.status.code(), Some(0));
    let list = String::from_utf8_lossy(&out.stdout);
    for c in checks::catalogue() {
        assert!(list.contains(c.name), "{list}");
    }
}
