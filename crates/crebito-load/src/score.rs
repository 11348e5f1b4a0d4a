//! The SLA score of a run, exactly as docs/contract.md §6.
//!
//! * `pct = round(100 · (OK responses faster than 250 ms) / (all requests), 2)`
//! * fine A = `max(0, (98 − pct) · 1000)` USD
//! * fine B = `inconsistencies · 803.01` USD
//! * payout = `max(0, 100000 − A − B)` USD
//!
//! Everything is computed in integers (pct in hundredths of a percent, money
//! in cents) so that the worked examples come out to the cent.

use serde::{Deserialize, Serialize};

/// Fine per inconsistency, in US cents (docs/contract.md §6: USD 803.01).
pub const FINE_PER_INCONSISTENCY_CENTS: u64 = 80_301;
/// The most a run can earn, in US cents (docs/contract.md §6: USD 100,000.00).
pub const MAX_PAYOUT_CENTS: u64 = 10_000_000;
/// Share of fast OK requests below which the latency fine starts, in
/// hundredths of a percent (docs/contract.md §6: 98 %).
pub const PCT_THRESHOLD_HUNDREDTHS: u64 = 9_800;
/// The latency bound of the score, in ms (docs/contract.md §6: "faster than 250 ms").
pub const FAST_MS: u64 = 250;

/// A run's score (docs/contract.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// OK responses faster than [`FAST_MS`].
    pub fast_ok: u64,
    /// All requests of the run.
    pub requests: u64,
    /// Failed consistency and balance-equality checks.
    pub inconsistencies: u64,
    /// `pct`, in hundredths of a percent (9_550 is 95.50 %).
    pub pct_hundredths: u64,
    /// Fine A (latency), in US cents.
    pub fine_latency_cents: u64,
    /// Fine B (inconsistencies), in US cents.
    pub fine_inconsistency_cents: u64,
    /// Payout, in US cents.
    pub payout_cents: u64,
}

impl Score {
    /// Scores a run with `fast_ok` OK responses under 250 ms out of
    /// `requests`, and `inconsistencies` failed consistency checks.
    pub fn compute(fast_ok: u64, requests: u64, inconsistencies: u64) -> Score {
        // round(100 · fast / total, 2) in hundredths, halves rounded up.
        let pct_hundredths = if requests == 0 {
            0
        } else {
            let num = 10_000u128 * u128::from(fast_ok);
            let den = u128::from(requests);
            ((2 * num + den) / (2 * den)) as u64
        };
        // (98 − pct) · 1000 USD = (9800 − pct_hundredths) · 10 USD = · 1000 cents.
        let fine_latency_cents = PCT_THRESHOLD_HUNDREDTHS.saturating_sub(pct_hundredths) * 1_000;
        let fine_inconsistency_cents = inconsistencies.saturating_mul(FINE_PER_INCONSISTENCY_CENTS);
        let payout_cents = MAX_PAYOUT_CENTS
            .saturating_sub(fine_latency_cents)
            .saturating_sub(fine_inconsistency_cents);
        Score {
            fast_ok,
            requests,
            inconsistencies,
            pct_hundredths,
            fine_latency_cents,
            fine_inconsistency_cents,
            payout_cents,
        }
    }

    /// `pct` as a percentage (two decimals).
    pub fn pct(&self) -> f64 {
        self.pct_hundredths as f64 / 100.0
    }
}

/// Cents as dollars (`f64`, for JSON).
pub fn usd(cents: u64) -> f64 {
    cents as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_run_pays_everything() {
        let s = Score::compute(61_503, 61_503, 0);
        assert_eq!(s.pct_hundredths, 10_000);
        assert_eq!(s.fine_latency_cents, 0);
        assert_eq!(s.payout_cents, 10_000_000);
    }

    #[test]
    fn ninety_five_percent_fast_costs_three_thousand() {
        // (98 − 95) · 1000 = 3,000.00.
        let s = Score::compute(95, 100, 0);
        assert_eq!(s.pct_hundredths, 9_500);
        assert_eq!(s.fine_latency_cents, 300_000);
        assert_eq!(s.payout_cents, 9_700_000);
    }

    #[test]
    fn ten_inconsistencies_cost_8030_10() {
        // 10 · 803.01 = 8,030.10; 100,000 − 8,030.10 = 91,969.90.
        let s = Score::compute(100, 100, 10);
        assert_eq!(s.fine_inconsistency_cents, 803_010);
        assert_eq!(s.payout_cents, 9_196_990);
    }

    #[test]
    fn pct_rounds_to_two_decimals_and_fines_floor_at_zero() {
        // 2 of 3 fast: 66.666… → 66.67; fine (98 − 66.67) · 1000 = 31,330.00.
        let s = Score::compute(2, 3, 0);
        assert_eq!(s.pct_hundredths, 6_667);
        assert_eq!(s.fine_latency_cents, 3_133_000);
        // 98.5 % fast: no latency fine (never negative).
        assert_eq!(Score::compute(985, 1000, 0).fine_latency_cents, 0);
        // Exactly half a hundredth rounds up: 1/8 = 12.5 % → 12.50; 1/1600 =
        // 0.0625 % → 0.06; 1/16 000 = 0.00625 % → 0.01.
        assert_eq!(Score::compute(1, 8, 0).pct_hundredths, 1_250);
        assert_eq!(Score::compute(1, 1_600, 0).pct_hundredths, 6);
        assert_eq!(Score::compute(1, 16_000, 0).pct_hundredths, 1);
        // The payout never goes below zero.
        assert_eq!(Score::compute(0, 10, 200).payout_cents, 0);
    }
}
