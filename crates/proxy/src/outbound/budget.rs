//! The retry budget: retries are capped as a fraction of live traffic, so a failing service
//! never turns retries into a self-inflicted flood.
//!
//! Over a sliding window of `ttl`, every request to the service deposits one token worth
//! `retry_ratio` retries, and `min_retries_per_second × ttl` retries are free. A retry first
//! withdraws one; with nothing left it is skipped and the original response is returned. The
//! window is kept as [`SLOTS`] buckets, so old traffic ages out in steps of `ttl / SLOTS`.
//!
//! Pure arithmetic over a caller-supplied clock, tested without a runtime.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets of the sliding window.
pub const SLOTS: usize = 10;

/// Linkerd's defaults: 20% of requests, plus 10 retries per second, over 10 seconds.
pub const DEFAULT_RATIO: f64 = 0.2;
pub const DEFAULT_MIN_PER_SECOND: u32 = 10;
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// A budget's parameters, sanitized (the control plane's values are clamped, never trusted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetParams {
    pub retry_ratio: f64,
    pub min_per_second: u32,
    pub ttl: Duration,
}

impl Default for BudgetParams {
    fn default() -> Self {
        BudgetParams {
            retry_ratio: DEFAULT_RATIO,
            min_per_second: DEFAULT_MIN_PER_SECOND,
            ttl: DEFAULT_TTL,
        }
    }
}

impl BudgetParams {
    /// Clamps values into sane ranges: ratio 0–1000 (NaN → default), ttl 100 ms–1 h (0 →
    /// default), at most 100,000 free retries per second.
    pub fn sanitized(retry_ratio: f64, min_per_second: u32, ttl: Duration) -> Self {
        let retry_ratio = if retry_ratio.is_finite() {
            retry_ratio.clamp(0.0, 1000.0)
        } else {
            DEFAULT_RATIO
        };
        let ttl = if ttl.is_zero() {
            DEFAULT_TTL
        } else {
            ttl.clamp(Duration::from_millis(100), Duration::from_secs(3600))
        };
        BudgetParams {
            retry_ratio,
            min_per_second: min_per_second.min(100_000),
            ttl,
        }
    }

    /// Retries the budget grants without any deposit, over one window.
    fn free(&self) -> f64 {
        f64::from(self.min_per_second) * self.ttl.as_secs_f64()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Absolute slot number (time since the epoch / slot length).
    index: u64,
    deposits: u64,
    withdrawals: u64,
}

#[derive(Debug)]
struct Window {
    params: BudgetParams,
    epoch: Instant,
    slots: [Slot; SLOTS],
}

impl Window {
    fn slot_len(&self) -> Duration {
        self.params.ttl / SLOTS as u32
    }

    fn index(&self, now: Instant) -> u64 {
        let len = self.slot_len().as_nanos().max(1);
        let idx = now.saturating_duration_since(self.epoch).as_nanos() / len;
        u64::try_from(idx).unwrap_or(u64::MAX)
    }

    /// The current slot, reset if it holds an older period.
    fn current(&mut self, now: Instant) -> &mut Slot {
        let index = self.index(now);
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let index = self.index(now);
        let oldest = index.saturating_sub(SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| s.index >= oldest && s.index <= index)
            .fold((0, 0), |(d, w), s| (d + s.deposits, w + s.withdrawals))
    }

    fn available(&self, now: Instant) -> f64 {
        let (deposits, withdrawals) = self.totals(now);
        self.params.free() + self.params.retry_ratio * deposits as f64 - withdrawals as f64
    }
}

/// A service's retry budget, shared by every request to it.
#[derive(Debug)]
pub struct RetryBudget {
    window: Mutex<Window>,
}

impl RetryBudget {
    pub fn new(params: BudgetParams, now: Instant) -> Self {
        RetryBudget {
            window: Mutex::new(Window {
                params,
                epoch: now,
                slots: [Slot {
                    // No slot holds a real period until it is first used.
                    index: u64::MAX,
                    ..Slot::default()
                }; SLOTS],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies new parameters (a policy update). A changed ttl restarts the window: the old
    /// buckets no longer line up.
    pub fn set_params(&self, params: BudgetParams, now: Instant) {
        let mut w = self.lock();
        if w.params == params {
            return;
        }
        if w.params.ttl != params.ttl {
            *w = Window {
                params,
                epoch: now,
                slots: [Slot {
                    index: u64::MAX,
                    ..Slot::default()
                }; SLOTS],
            };
        } else {
            w.params = params;
        }
    }

    /// Records a request (a first attempt).
    pub fn deposit(&self, now: Instant) {
        self.lock().current(now).deposits += 1;
    }

    /// Takes one retry from the budget; false when it is empty.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut w = self.lock();
        if w.available(now) < 1.0 {
            return false;
        }
        w.current(now).withdrawals += 1;
        true
    }

    /// Retries currently available (for tests and logs).
    pub fn available(&self, now: Instant) -> f64 {
        self.lock().available(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ratio: f64, min: u32, ttl_s: u64) -> BudgetParams {
        BudgetParams::sanitized(ratio, min, Duration::from_secs(ttl_s))
    }

    #[test]
    fn free_retries_then_ratio_of_deposits() {
        let t0 = Instant::now();
        let b = RetryBudget::new(params(0.2, 1, 10), t0);
        // 1/s × 10 s free.
        let free = (0..100).filter(|_| b.withdraw(t0)).count();
        assert_eq!(free, 10);
        for _ in 0..100 {
            b.deposit(t0);
        }
        let more = (0..100).filter(|_| b.withdraw(t0)).count();
        assert_eq!(more, 20, "0.2 × 100 deposits");
    }

    #[test]
    fn retries_never_exceed_the_bound_under_total_failure() {
        // Every request fails and asks for a retry: retries ≤ ratio × requests + min × ttl.
        let t0 = Instant::now();
        let b = RetryBudget::new(params(0.2, 10, 10), t0);
        let mut retries = 0u64;
        let requests = 1000u64;
        for i in 0..requests {
            let now = t0 + Duration::from_millis(i); // all within one window
            b.deposit(now);
            if b.withdraw(now) {
                retries += 1;
            }
        }
        let bound = 0.2 * requests as f64 + 10.0 * 10.0;
        assert!(retries as f64 <= bound, "{retries} > {bound}");
        assert!(
            retries as f64 >= bound - 1.0,
            "budget under-used: {retries}"
        );
    }

    #[test]
    fn old_traffic_ages_out_of_the_window() {
        let t0 = Instant::now();
        let b = RetryBudget::new(params(1.0, 0, 10), t0);
        for _ in 0..50 {
            b.deposit(t0);
        }
        assert!((b.available(t0) - 50.0).abs() < 1e-9);
        // Half a window later the deposits still count…
        assert!((b.available(t0 + Duration::from_secs(5)) - 50.0).abs() < 1e-9);
        // …a whole window later they are gone.
        assert_eq!(b.available(t0 + Duration::from_secs(11)), 0.0);
        assert!(!b.withdraw(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn withdrawals_age_out_too() {
        let t0 = Instant::now();
        let b = RetryBudget::new(params(0.0, 1, 10), t0);
        assert_eq!((0..20).filter(|_| b.withdraw(t0)).count(), 10);
        assert!(!b.withdraw(t0 + Duration::from_secs(5)));
        assert!(b.withdraw(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn bad_parameters_are_clamped() {
        let p = BudgetParams::sanitized(f64::NAN, u32::MAX, Duration::ZERO);
        assert_eq!(p.retry_ratio, DEFAULT_RATIO);
        assert_eq!(p.ttl, DEFAULT_TTL);
        assert_eq!(p.min_per_second, 100_000);
        let p = BudgetParams::sanitized(-3.0, 0, Duration::from_millis(1));
        assert_eq!(p.retry_ratio, 0.0);
        assert_eq!(p.ttl, Duration::from_millis(100));
    }
}
