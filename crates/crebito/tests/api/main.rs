//! The API's integration tests, in one binary: every module below links
//! the crate once and shares one throwaway PostgreSQL server
//! ([`helpers`]). Cases that hold for every ledger are written once and run
//! on each by [`on_every_ledger!`].

/// Runs each named case once per ledger, as `sqlite::CASE` and
/// `postgres::CASE`. A case is `async fn CASE(fixture: F)` where `F` is a
/// [`helpers::Fixture`] — a [`helpers::TestApp`] (a served, freshly seeded
/// ledger) or the [`helpers::Backend`] itself — made for that ledger.
macro_rules! on_every_ledger {
    ($($case:ident),* $(,)?) => {
        on_every_ledger!(@on sqlite Sqlite: $($case),*);
        on_every_ledger!(@on postgres Postgres: $($case),*);
    };
    (@on $module:ident $backend:ident: $($case:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::helpers::run_on(crate::helpers::Backend::$backend, super::$case).await;
                }
            )*
        }
    };
}

mod helpers;

mod audit_cli;
mod concurrency;
mod conformance;
mod connection_limits;
mod failover;
mod group_commit;
mod history;
mod hostile_input;
mod http_edge;
mod idempotency;
mod observability;
mod openapi;
mod operator_log;
mod query_plans;
mod refusals;
mod reset;
mod schema;
mod start_up;
mod storage_faults;
mod unavailable;
mod writer_lock;
