//! Gatling's open-model injection arithmetic, reproduced exactly.
//!
//! The official simulation (docs/contract.md §5) injects its three load scenarios with
//! `rampUsersPerSec(1).to(R).during(2.minutes)` followed by
//! `constantUsersPerSec(R).during(2.minutes)`. This module computes, like
//! Gatling 3 does (`io.gatling.core.controller.inject.open.OpenInjectionStep`,
//! `RampRateOpenInjection`, `ConstantRateOpenInjection`, `InjectionIterator`
//! and `io.gatling.core.util.Shard`), how many users arrive in each second and
//! at which millisecond of that second each one arrives. Arrival times come
//! from this schedule only, never from the server's answers (open model).
//!
//! # How many users, and why the official run has 61,503 requests
//!
//! * A ramp from `s` to `e` users/s over `D` whole seconds injects
//!   `⌊(s + (e − s)/2) · D⌋` users. In second `i` it injects the integer part
//!   of `a·(2i + 1) + s + carry`, where `a = (e − s)/(2D)` and `carry` is the
//!   fraction left over from the previous second, so that the cumulative
//!   count at the end of second `k` is `⌊a·k² + s·k⌋`: the integral of the
//!   linear rate, each user injected in the second where that integral
//!   reaches its number.
//! * A constant rate `r` over `D` seconds injects `round(r · D)` users, split
//!   over the seconds as evenly as possible (`Shard.shard`).
//! * Inside a second, its `n` users are spread over the 1,000 milliseconds by
//!   `Shard.shards(n, 1000)`: buckets of `⌊n/1000⌋` or `⌊n/1000⌋ + 1` users,
//!   the larger and smaller buckets interleaved, starting at millisecond 0.
//!
//! At scale 1.0 (D = 120 s for both steps):
//!
//! | scenario | ramp | constant | total |
//! |---|---|---|---|
//! | débitos, 1 → 220/s | ⌊110.5 · 120⌋ = 13,260 | 220 · 120 = 26,400 | 39,660 |
//! | créditos, 1 → 110/s | ⌊55.5 · 120⌋ = 6,660 | 110 · 120 = 13,200 | 19,860 |
//! | extratos, 1 → 10/s | ⌊5.5 · 120⌋ = 660 | 10 · 120 = 1,200 | 1,860 |
//!
//! Each of these users sends one request. The validation users send
//! 25 + 1 + 25 + 1 = 52 (concurrency phases), 5 × 14 = 70 (one user per
//! account: 2 statements, 2 postings, 1 statement, 1 posting followed by 4
//! parallel statements, 5 invalid postings) and 1 (the 404), 123 in all.
//! Total: 39,660 + 19,860 + 1,860 + 123 = **61,503** (docs/contract.md §5).

use std::time::Duration;

/// Requests sent by the validation users, whatever the scale (docs/contract.md §5):
/// 52 in the two concurrency phases, 70 by the five per-account users, 1 for
/// the 404.
pub const VALIDATION_REQUESTS: u64 = 52 + 70 + 1;

/// Duration of each of the two official open-model steps (ramp, then
/// constant), in seconds (docs/contract.md §5: "ramping linearly for 2 minutes then
/// constant for 2 minutes").
pub const OFFICIAL_STEP_SECONDS: f64 = 120.0;

/// Gatling's `Shard.shards(total, nodeCount)`: splits `total` into
/// `node_count` buckets whose sizes differ by at most one, the larger and
/// smaller buckets interleaved evenly (the less numerous kind spread among
/// the more numerous one, larger values first within each pattern).
pub fn shards(total: u64, node_count: u64) -> Vec<u64> {
    assert!(node_count > 0, "node_count must be > 0");
    let small_size = total / node_count;
    let large_size = small_size + 1;
    let large_count = total % node_count;
    let small_count = node_count - large_count;
    if large_count == 0 {
        vec![small_size; small_count as usize]
    } else if small_count > large_count {
        interleave(small_count, small_size, large_count, large_size, node_count)
    } else {
        interleave(large_count, large_size, small_count, small_size, node_count)
    }
}

/// Gatling's `Shard.interleave`: `count_b` patterns of (`ratio` × `value_a`,
/// one `value_b`), the larger value first, then the remaining `value_a`s.
/// Assumes `count_a >= count_b > 0`.
fn interleave(count_a: u64, value_a: u64, count_b: u64, value_b: u64, total: u64) -> Vec<u64> {
    let ratio = count_a / count_b;
    let rest = total - count_b * (ratio + 1);
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..count_b {
        if value_a >= value_b {
            out.extend(std::iter::repeat_n(value_a, ratio as usize));
            out.push(value_b);
        } else {
            out.push(value_b);
            out.extend(std::iter::repeat_n(value_a, ratio as usize));
        }
    }
    out.extend(std::iter::repeat_n(value_a, rest as usize));
    out
}

/// Users injected in each second of `rampUsersPerSec(start).to(end)
/// .during(seconds)` (Gatling `RampRateOpenInjection`): the integer part of
/// `a·(2i + 1) + start + carry`, rounded to 10 decimals first as Gatling's
/// `BigDecimal.setScale(10, HALF_UP)` does, the fraction carried over.
/// Rates in users/s, duration in whole seconds.
pub fn ramp_rate_per_second(start: f64, end: f64, seconds: u64) -> Vec<u64> {
    if seconds == 0 || (start == 0.0 && end == 0.0) {
        return vec![0; seconds as usize];
    }
    let a = (end - start) / (2.0 * seconds as f64);
    let mut pending = 0.0_f64;
    (0..seconds)
        .map(|i| {
            let users = a * (2 * i + 1) as f64 + start + pending;
            let rounded = (users * 1e10).round() / 1e10;
            let whole = rounded.trunc().max(0.0);
            pending = users - whole;
            whole as u64
        })
        .collect()
}

/// Users injected in each second of `constantUsersPerSec(rate)
/// .during(seconds)` (Gatling `ConstantRateOpenInjection`):
/// `round(rate · seconds)` users spread over the seconds by
/// `Shard.shard(users, i, seconds)`. Rate in users/s.
pub fn constant_rate_per_second(rate: f64, seconds: u64) -> Vec<u64> {
    if seconds == 0 || rate == 0.0 {
        return vec![0; seconds as usize];
    }
    // Scala's Double.round is Math.round: floor(x + 0.5).
    let users = (rate * seconds as f64 + 0.5).floor() as u64;
    shards(users, seconds)
}

/// Arrival offsets, from the start of the injection, of users injected
/// `per_second[i]` in second `i`: each second's users spread over its
/// milliseconds by `Shard.shards(n, 1000)` (Gatling `InjectionIterator`).
/// `first_second` shifts the whole list, for a step chained after another.
pub fn arrivals_from_per_second(per_second: &[u64], first_second: u64) -> Vec<Duration> {
    let total: u64 = per_second.iter().sum();
    let mut out = Vec::with_capacity(total as usize);
    for (i, &users) in per_second.iter().enumerate() {
        if users == 0 {
            continue;
        }
        let second_ms = (first_second + i as u64) * 1000;
        for (ms, count) in shards(users, 1000).into_iter().enumerate() {
            for _ in 0..count {
                out.push(Duration::from_millis(second_ms + ms as u64));
            }
        }
    }
    out
}

/// One of the three open-model scenarios of docs/contract.md §5: a linear ramp of the
/// arrival rate from `start_rate` to `end_rate` users/s during `ramp_seconds`,
/// then `end_rate` users/s for `constant_seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenInjection {
    /// Arrival rate at the start of the ramp, in users/s.
    pub start_rate: f64,
    /// Arrival rate at the end of the ramp and during the constant step, in
    /// users/s.
    pub end_rate: f64,
    /// Length of the ramp, in whole seconds.
    pub ramp_seconds: u64,
    /// Length of the constant step, in whole seconds.
    pub constant_seconds: u64,
}

impl OpenInjection {
    /// Users injected in each second, ramp then constant step.
    pub fn per_second(&self) -> Vec<u64> {
        let mut v = ramp_rate_per_second(self.start_rate, self.end_rate, self.ramp_seconds);
        v.extend(constant_rate_per_second(
            self.end_rate,
            self.constant_seconds,
        ));
        v
    }

    /// Users injected by the ramp step.
    pub fn ramp_users(&self) -> u64 {
        ramp_rate_per_second(self.start_rate, self.end_rate, self.ramp_seconds)
            .iter()
            .sum()
    }

    /// Users injected by the constant step.
    pub fn constant_users(&self) -> u64 {
        constant_rate_per_second(self.end_rate, self.constant_seconds)
            .iter()
            .sum()
    }

    /// All users of the scenario (each sends one request).
    pub fn users(&self) -> u64 {
        self.ramp_users() + self.constant_users()
    }

    /// Length of the whole injection (ramp + constant), in seconds.
    pub fn seconds(&self) -> u64 {
        self.ramp_seconds + self.constant_seconds
    }

    /// Every user's arrival time, measured from the start of the injection,
    /// in order, at millisecond resolution like Gatling.
    pub fn arrivals(&self) -> Vec<Duration> {
        arrivals_from_per_second(&self.per_second(), 0)
    }
}

/// The three open-model injections of docs/contract.md §5 at a given `--scale` (which
/// multiplies the two 120 s step durations, rounded to whole seconds as
/// Gatling's injection works in whole seconds, at least 1 s) and `--rate`
/// (which multiplies every arrival rate).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Debits: 1 → 220 users/s, then 220 users/s (× `rate`).
    pub debits: OpenInjection,
    /// Credits: 1 → 110 users/s, then 110 users/s (× `rate`).
    pub credits: OpenInjection,
    /// Statements: 1 → 10 users/s, then 10 users/s (× `rate`).
    pub statements: OpenInjection,
}

impl LoadPlan {
    /// The plan at `scale` (duration multiplier) and `rate` (arrival-rate
    /// multiplier); `LoadPlan::new(1.0, 1.0)` is the official run.
    pub fn new(scale: f64, rate: f64) -> LoadPlan {
        let seconds = step_seconds(scale);
        let injection = |end: f64| OpenInjection {
            start_rate: rate,
            end_rate: end * rate,
            ramp_seconds: seconds,
            constant_seconds: seconds,
        };
        LoadPlan {
            debits: injection(220.0),
            credits: injection(110.0),
            statements: injection(10.0),
        }
    }

    /// Requests of the whole run: the open-model users plus
    /// [`VALIDATION_REQUESTS`]. 61,503 for the official plan.
    pub fn total_requests(&self) -> u64 {
        self.debits.users() + self.credits.users() + self.statements.users() + VALIDATION_REQUESTS
    }

    /// Length of the open-model part, in seconds.
    pub fn seconds(&self) -> u64 {
        self.debits.seconds()
    }
}

/// Whole seconds of one open-model step at `scale`: `round(120 · scale)`,
/// at least 1.
pub fn step_seconds(scale: f64) -> u64 {
    ((OFFICIAL_STEP_SECONDS * scale).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_interleave_like_gatling() {
        // 4 users in a second: one every 250 ms, starting at 0.
        // The milliseconds in which at least one user starts.
        let busy_ms = |s: &[u64]| -> Vec<usize> {
            s.iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, _)| i)
                .collect()
        };
        let s = shards(4, 1000);
        assert_eq!(s.len(), 1000);
        let ms = busy_ms(&s);
        assert_eq!(ms, vec![0, 250, 500, 750]);
        // 220 users: pattern (1, 0, 0, 0) 220 times then 120 empty ms.
        let s = shards(220, 1000);
        let ms = busy_ms(&s);
        assert_eq!(ms.len(), 220);
        assert_eq!(&ms[..3], &[0, 4, 8]);
        assert_eq!(*ms.last().unwrap(), 876);
        // More users than buckets: sizes 2 and 3, the larger first.
        assert_eq!(shards(7, 3), vec![3, 2, 2]);
        assert_eq!(shards(8, 3), vec![3, 3, 2]);
        assert_eq!(shards(10, 4), vec![3, 2, 3, 2]);
        assert_eq!(shards(12, 4), vec![3, 3, 3, 3]);
        for (total, nodes) in [(0, 5), (1, 1000), (999, 1000), (1001, 1000), (26_400, 120)] {
            let s = shards(total, nodes);
            assert_eq!(s.len() as u64, nodes);
            assert_eq!(s.iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn official_counts_per_phase() {
        let plan = LoadPlan::new(1.0, 1.0);
        assert_eq!(plan.debits.ramp_users(), 13_260);
        assert_eq!(plan.debits.constant_users(), 26_400);
        assert_eq!(plan.debits.users(), 39_660);
        assert_eq!(plan.credits.ramp_users(), 6_660);
        assert_eq!(plan.credits.constant_users(), 13_200);
        assert_eq!(plan.credits.users(), 19_860);
        assert_eq!(plan.statements.ramp_users(), 660);
        assert_eq!(plan.statements.constant_users(), 1_200);
        assert_eq!(plan.statements.users(), 1_860);
        assert_eq!(VALIDATION_REQUESTS, 123);
        assert_eq!(plan.total_requests(), 61_503);
        assert_eq!(plan.seconds(), 240);
        assert_eq!(plan.debits.arrivals().len(), 39_660);
    }

    #[test]
    fn debit_ramp_arrival_times() {
        // a = 219/240 = 0.9125. Second 0: 1.9125 -> 1 user (carry 0.9125).
        // Second 1: 3a + 1 + 0.9125 = 4.65 -> 4 users (carry 0.65).
        // Second 2: 5a + 1 + 0.65 = 6.2125 -> 6 users.
        let per_second = ramp_rate_per_second(1.0, 220.0, 120);
        assert_eq!(&per_second[..3], &[1, 4, 6]);
        // Last second of the ramp: cumulative ⌊a·120² + 120⌋ − ⌊a·119² + 119⌋
        // = 13260 − ⌊12921.9125 + 119⌋ = 13260 − 13040 = 220.
        assert_eq!(per_second[119], 220);
        // The cumulative count at the end of each second k is ⌊a·k² + k⌋.
        let mut cumulative = 0;
        for (k, n) in per_second.iter().enumerate() {
            cumulative += n;
            let k = (k + 1) as f64;
            assert_eq!(
                cumulative,
                (0.9125 * k * k + k).floor() as u64,
                "second {k}"
            );
        }
        let arrivals = arrivals_from_per_second(&per_second[..3], 0);
        let ms: Vec<u128> = arrivals.iter().map(|d| d.as_millis()).collect();
        // 6 users in second 2: shards(6, 1000) -> every 166 ms; 1000 − 6·166
        // = 4 empty ms left at the end.
        assert_eq!(
            ms,
            vec![0, 1000, 1250, 1500, 1750, 2000, 2166, 2332, 2498, 2664, 2830]
        );
        // Arrivals never go backwards.
        let all = LoadPlan::new(1.0, 1.0).debits.arrivals();
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
        assert!(all.last().unwrap() < &Duration::from_secs(240));
    }

    #[test]
    fn constant_step_follows_the_ramp() {
        let inj = LoadPlan::new(1.0, 1.0).statements;
        let arrivals = inj.arrivals();
        // The constant step starts at 120 s with 10 users in that second,
        // one every 100 ms.
        let second_120: Vec<u128> = arrivals
            .iter()
            .map(|d| d.as_millis())
            .filter(|ms| (120_000..121_000).contains(ms))
            .collect();
        assert_eq!(
            second_120,
            vec![
                120_000, 120_100, 120_200, 120_300, 120_400, 120_500, 120_600, 120_700, 120_800,
                120_900
            ]
        );
    }

    #[test]
    fn scale_and_rate() {
        // --scale 0.1: 12 s + 12 s at the official rates.
        let plan = LoadPlan::new(0.1, 1.0);
        assert_eq!(plan.seconds(), 24);
        // Debits: ⌊110.5 · 12⌋ = 1326 + 220 · 12 = 2640.
        assert_eq!(plan.debits.users(), 1_326 + 2_640);
        // Credits: ⌊55.5 · 12⌋ = 666 + 1320; statements ⌊5.5 · 12⌋ = 66 + 120.
        assert_eq!(plan.credits.users(), 666 + 1_320);
        assert_eq!(plan.statements.users(), 66 + 120);
        assert_eq!(plan.total_requests(), 3_966 + 1_986 + 186 + 123);
        // --rate 2 doubles both ends of every ramp and the constant rate.
        let plan = LoadPlan::new(1.0, 2.0);
        assert_eq!(plan.debits.ramp_users(), 26_520); // ⌊(2 + 219) · 120⌋
        assert_eq!(plan.debits.constant_users(), 52_800);
        // Tiny scales keep at least one second per step.
        assert_eq!(step_seconds(0.001), 1);
        assert_eq!(step_seconds(0.05), 6);
    }
}
