//! Exponential backoff with jitter and a cap.

use std::time::Duration;

use super::config::Timers;
use super::rng::Rng;

/// The delay before retry number `failures` (1 for the first failure).
///
/// The nominal delay doubles from `backoff_initial` with every failure and
/// stops at `backoff_max`; jitter then scales it by a random factor in
/// `(1 − jitter, 1]`. The result never exceeds `backoff_max` and keeps growing
/// no further however many attempts fail: there is no attempt after which
/// retrying stops.
pub(crate) fn delay(timers: &Timers, failures: u32, rng: &mut Rng) -> Duration {
    let exponent = failures.saturating_sub(1).min(32);
    let nominal = timers
        .backoff_initial
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(timers.backoff_max)
        .min(timers.backoff_max);
    let jitter = timers.backoff_jitter.clamp(0.0, 1.0);
    let factor = 1.0 - jitter * rng.next_f64();
    nominal.mul_f64(factor)
}
