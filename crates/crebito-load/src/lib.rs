//! crebito-load: the official crébitos load test (Rinha de Backend 2024/Q1,
//! docs/contract.md §5) reproduced in Rust, scored as docs/contract.md §6, with a text
//! summary, a JSON summary and a self-contained HTML report.
//!
//! * [`injection`] — Gatling's open-model arithmetic (61,503 requests).
//! * [`scenario`] and [`check`] — the simulation's requests and checks.
//! * [`http`] — one HTTP/1.1 connection per virtual user (hyper).
//! * [`runner`] — phases, ticks and open-model scheduling.
//! * [`mod@run`] — one run, from the readiness probe to the [`Summary`](summary::Summary) value;
//!   [`starting_state`] — whether the target is freshly seeded before it.
//! * [`stats`], [`score`], [`summary`] — what is measured and how it scores.
//! * [`report`] — the presenters (text, JSON, HTML), which only read the summary.
//! * [`compare`] — `crebito-load compare`: runs' summaries side by side.
//! * [`conformance`] — `crebito-load check`: one named check per rule of
//!   docs/contract.md, for any implementation.

#![warn(missing_docs)]

pub mod check;
pub mod compare;
pub mod conformance;
pub mod http;
pub mod injection;
pub mod progress;
pub mod report;
pub mod run;
pub mod runner;
pub mod scenario;
pub mod score;
pub mod starting_state;
pub mod stats;
pub mod summary;

pub use run::{run, RunReport};
