//! crebito: the crébitos ledger API (Rinha de Backend 2024/Q1).
//!
//! * [`domain`] — pure types and rules (amounts in cents, kinds,
//!   descriptions, the limit rule).
//! * [`ledger`] — the storage trait and its PostgreSQL and SQLite
//!   implementations, which own the concurrency guarantee.
//! * [`http`] — routes, extractors and the one error type.
//! * [`config`] — command line and environment.
//! * [`server`] — listeners and graceful shutdown.
//! * [`log_limit`] — repeated errors logged once per interval.
//! * [`audit`] — `crebito audit`: what a ledger's books hold, the check of a
//!   client's record of postings, and the tables it prints.
//! * [`metrics`] — what an instance measures, for `GET /metrics`.
//! * [`logging`] — log lines as text or JSON.

#![warn(missing_docs)]

pub mod audit;
pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod ledger;
pub mod log_limit;
pub mod logging;
pub mod metrics;
pub mod server;
