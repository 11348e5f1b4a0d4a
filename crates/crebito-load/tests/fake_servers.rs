//! crebito-load against in-process fake servers with known faults: the
//! checks must catch each fault under the right name, and a correct server
//! must score a perfect run. Each run is tiny: 1 s ramp + 1 s constant at
//! the official rates, 100 ms between phases.

mod common;

use common::{start, tiny, Fault};
use crebito_load::injection::LoadPlan;
use crebito_load::score::FINE_PER_INCONSISTENCY_CENTS;
use crebito_load::RunReport;

fn planned() -> LoadPlan {
    LoadPlan::new(1.0 / 120.0, 1.0)
}

async fn run(url: &str, seed: u64) -> RunReport {
    crebito_load::run(&tiny(url, seed), 1)
        .await
        .expect("run completes")
}

#[tokio::test]
async fn correct_server_scores_a_perfect_run() {
    let server = start(Fault::None).await;
    let report = run(&server.url, 1).await;
    let s = &report.summary;
    let plan = planned();
    // 110 + 220 debits, 55 + 110 credits, 5 + 10 statements, 123 validations.
    assert_eq!(plan.total_requests(), 633);
    assert_eq!(s.requests, 633, "{}", s.to_text());
    assert_eq!(s.run.planned_requests, 633);
    assert_eq!(s.ko, 0, "{}", s.to_text());
    assert!(s.failures.is_empty());
    assert_eq!(s.inconsistencies, 0);
    assert_eq!(s.score.payout_cents, 10_000_000);
    assert_eq!(s.payout_usd, 100_000.0);
    assert_eq!(s.groups.debitos.requests, plan.debits.users());
    assert_eq!(s.groups.creditos.requests, plan.credits.users());
    assert_eq!(s.groups.extratos.requests, plan.statements.users());
    assert_eq!(s.groups.validacoes.requests, 123);

    let seen = server.fake.seen.lock().unwrap();
    // The run's requests, the readiness probe and the five statements of
    // the starting state (neither counted in the run).
    assert_eq!(seen.requests, 633 + 1 + 5);
    assert_eq!(seen.bad_user_agent, 0);
    assert_eq!(seen.bad_content_type, 0);
    // One connection per user: every open-model user, each of the 52 + 1
    // single-request validation users, and the 5 per-account users with
    // 3 more connections each for their parallel statement reads; the
    // probe and the five starting-state reads have one each.
    let users = plan.debits.users() + plan.credits.users() + plan.statements.users();
    assert_eq!(seen.connections, 1 + 5 + users + 52 + 1 + 5 * 4);
}

#[tokio::test]
async fn overdrawing_server_is_fined_per_inconsistency() {
    let server = start(Fault::Overdraw).await;
    let report = run(&server.url, 2).await;
    let s = &report.summary;
    assert_eq!(s.requests, 633);
    assert!(s.inconsistencies > 10, "{}", s.to_text());
    // Every KO is an inconsistency, found by the consistency checks by name.
    assert_eq!(s.ko, s.inconsistencies);
    for f in &s.failures {
        assert!(f.inconsistency, "{f:?}");
        assert!(
            f.check == "jmesPath(saldo).find.ConsistenciaSaldoLimite - Transação"
                || f.check == "jmesPath(saldo.total).find.ConsistenciaSaldoLimite - Extrato",
            "{}",
            f.check
        );
        assert!(f
            .examples
            .iter()
            .all(|e| e.message.ends_with("Limite ultrapassado!")));
    }
    assert!(s
        .failures
        .iter()
        .any(|f| f.check.ends_with("Transação") && f.groups.iter().any(|g| g == "débitos")));
    assert_eq!(s.groups.validacoes.ko, 0);
    assert_eq!(
        s.score.fine_inconsistency_cents,
        s.inconsistencies * FINE_PER_INCONSISTENCY_CENTS
    );
    let expected = 10_000_000u64
        .saturating_sub(s.score.fine_latency_cents)
        .saturating_sub(s.score.fine_inconsistency_cents);
    assert_eq!(s.score.payout_cents, expected);
    assert!(s.payout_usd < 100_000.0 - 803.01 * 10.0);
}

#[tokio::test]
async fn failing_server_gives_kos_without_inconsistencies() {
    let server = start(Fault::Errors).await;
    let report = run(&server.url, 3).await;
    let s = &report.summary;
    assert_eq!(s.requests, 633, "{}", s.to_text());
    assert!(s.ko > 40, "{}", s.to_text());
    assert_eq!(s.inconsistencies, 0, "{}", s.to_text());
    assert_eq!(s.groups.validacoes.ko, 0, "{}", s.to_text());
    let names: Vec<&str> = s.failures.iter().map(|f| f.check.as_str()).collect();
    assert!(names.contains(&"status.find.in(200,422)"), "{names:?}");
    assert!(names.contains(&"status.find.in(200)"), "{names:?}");
    // The dropped connections: no status, no response.
    let dropped: u64 = s
        .failures
        .iter()
        .filter(|f| f.examples.iter().all(|e| e.status.is_none()))
        .map(|f| f.count)
        .sum();
    assert!(dropped > 10, "{}", s.to_text());
    let example = &s
        .failures
        .iter()
        .find(|f| f.check == "status.find.in(200,422)")
        .unwrap()
        .examples[0];
    assert_eq!(example.status, Some(500));
    assert_eq!(
        example.message,
        "status.find.in(200,422), but actually found 500"
    );
    // KOs are not fast OKs: the latency fine follows pct.
    assert!(s.pct_under_250ms < 98.0);
    assert_eq!(
        s.score.fine_latency_cents,
        (9_800 - s.score.pct_hundredths) * 1_000
    );
}

#[tokio::test]
async fn slow_server_lowers_pct_but_not_the_number_of_requests() {
    let server = start(Fault::Slow).await;
    let report = run(&server.url, 4).await;
    let s = &report.summary;
    // Open model: a slow server gets as many requests, from more users at once.
    assert_eq!(s.requests, 633, "{}", s.to_text());
    assert_eq!(s.ko, 0, "{}", s.to_text());
    // 30 % of the 510 load requests took ≥ 300 ms: about 24 % of all.
    let slow = s.ranges.from_250_to_1200ms;
    assert!((140..=165).contains(&slow), "{}", s.to_text());
    assert!(
        s.pct_under_250ms < 80.0 && s.pct_under_250ms > 70.0,
        "{}",
        s.pct_under_250ms
    );
    assert!(s.score.fine_latency_cents >= 18_000 * 100);
    assert_eq!(
        s.score.payout_cents,
        10_000_000 - s.score.fine_latency_cents
    );
    assert!(s.latency_ms.p99 >= 300.0);
    // The schedule does not stretch with the server's slowness: the run
    // lasts the validation phases (~0.5 s), the 2 s of arrivals and the last
    // slow answers (0.3 s), not 30 % × 510 × 0.3 s more.
    assert!(s.run.duration_s < 6.0, "{}", s.run.duration_s);
}

#[tokio::test]
async fn same_seed_same_requests() {
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let server = start(Fault::None).await;
        run(&server.url, 42).await;
        let mut b = server.fake.seen.lock().unwrap().load_bodies.clone();
        b.sort();
        bodies.push(b);
    }
    assert_eq!(
        bodies[0].len() as u64,
        planned().debits.users() + planned().credits.users()
    );
    assert_eq!(bodies[0], bodies[1]);
    let server = start(Fault::None).await;
    run(&server.url, 43).await;
    let mut other = server.fake.seen.lock().unwrap().load_bodies.clone();
    other.sort();
    assert_ne!(bodies[0], other);
}
