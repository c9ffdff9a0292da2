//! Peak-EWMA latency estimates and the power-of-two-choices pick that uses them.
//!
//! Each endpoint keeps an estimate of its round-trip time (from sending a request to receiving
//! its response headers). A sample above the estimate replaces it at once (the *peak*), so a
//! slowing endpoint is avoided immediately; a sample below pulls it down with weight
//! `1 - exp(-elapsed / decay)`. Read back, the estimate also decays towards zero with time, so an
//! endpoint that stopped getting traffic because it was slow is tried again later. The cost of an
//! endpoint is `estimate × (in-flight requests + 1) / weight`.
//!
//! Defaults are Linkerd's: a new endpoint starts at [`DEFAULT_RTT`] (30 ms) and the decay is
//! [`DEFAULT_DECAY`] (10 s).

use std::time::{Duration, Instant};

/// The estimate of an endpoint that has answered nothing yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast old samples lose weight.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// The weight of an endpoint whose weight is unset (as in the destination API).
pub const DEFAULT_WEIGHT: u32 = 10_000;

/// A peak-EWMA round-trip estimate.
#[derive(Clone, Debug)]
pub struct PeakEwma {
    estimate_ns: f64,
    stamp: Instant,
    decay_ns: f64,
}

impl PeakEwma {
    pub fn new(default_rtt: Duration, decay: Duration, now: Instant) -> Self {
        PeakEwma {
            estimate_ns: default_rtt.as_nanos() as f64,
            stamp: now,
            decay_ns: decay.as_nanos().max(1) as f64,
        }
    }

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        (-elapsed / self.decay_ns).exp()
    }

    /// Records one round trip.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        // The peak test uses the estimate as read now; the average uses the stored one, so
        // elapsed time is weighed once.
        self.estimate_ns = if rtt > self.estimate(now) {
            rtt
        } else {
            let w = self.weight(now);
            self.estimate_ns * w + rtt * (1.0 - w)
        };
        self.stamp = now;
    }

    /// The estimate at `now`, in nanoseconds, decayed since the last sample.
    pub fn estimate(&self, now: Instant) -> f64 {
        self.estimate_ns * self.weight(now)
    }

    /// The load the balancer compares: estimate × (pending + 1), scaled by weight.
    pub fn cost(&self, now: Instant, pending: u32, weight: u32) -> f64 {
        let weight = if weight == 0 { DEFAULT_WEIGHT } else { weight };
        // +1 ns so a fully decayed estimate still ranks by pending requests.
        (self.estimate(now) + 1.0) * f64::from(pending + 1) * f64::from(DEFAULT_WEIGHT)
            / f64::from(weight)
    }
}

/// Two distinct indexes out of `n` (n ≥ 2), from two random numbers.
pub fn two_choices(n: usize, r1: usize, r2: usize) -> (usize, usize) {
    let a = r1 % n;
    // Pick among the other n-1 slots, skipping `a`.
    let b = r2 % (n - 1);
    let b = if b >= a { b + 1 } else { b };
    (a, b)
}

/// Power of two choices: of two random candidates, the one with the lower cost (`costs[i]`).
/// `None` only when `costs` is empty.
pub fn p2c(costs: &[f64], r1: usize, r2: usize) -> Option<usize> {
    match costs.len() {
        0 => None,
        1 => Some(0),
        n => {
            let (a, b) = two_choices(n, r1, r2);
            Some(if costs[b] < costs[a] { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn peaks_are_taken_at_once_and_decay_slowly() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(DEFAULT_RTT, DEFAULT_DECAY, t0);
        e.observe(200 * MS, t0);
        assert!((e.estimate(t0) - 200e6).abs() < 1.0);
        // A fast sample right after barely moves it (little time elapsed).
        e.observe(MS, t0 + MS);
        assert!(e.estimate(t0 + MS) > 199e6);
        // Fast samples over one decay period bring it down by about 1/e.
        for i in 1..=100 {
            e.observe(MS, t0 + Duration::from_millis(100 * i));
        }
        let after = e.estimate(t0 + Duration::from_secs(10));
        assert!(after < 80e6 && after > 60e6, "{after}");
    }

    #[test]
    fn estimate_decays_when_idle() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(DEFAULT_RTT, DEFAULT_DECAY, t0);
        e.observe(100 * MS, t0);
        let later = e.estimate(t0 + Duration::from_secs(10));
        assert!((later - 100e6 / std::f64::consts::E).abs() < 1e3, "{later}");
    }

    #[test]
    fn cost_grows_with_pending_and_shrinks_with_weight() {
        let t0 = Instant::now();
        let e = PeakEwma::new(10 * MS, DEFAULT_DECAY, t0);
        let c0 = e.cost(t0, 0, DEFAULT_WEIGHT);
        assert!((e.cost(t0, 1, DEFAULT_WEIGHT) / c0 - 2.0).abs() < 1e-6);
        assert!((e.cost(t0, 0, 2 * DEFAULT_WEIGHT) / c0 - 0.5).abs() < 1e-6);
        assert_eq!(e.cost(t0, 0, 0), c0, "weight 0 means the default weight");
    }

    #[test]
    fn two_choices_are_distinct_and_cover_every_pair() {
        let mut seen = std::collections::HashSet::new();
        for r1 in 0..3 {
            for r2 in 0..2 {
                let (a, b) = two_choices(3, r1, r2);
                assert_ne!(a, b);
                assert!(a < 3 && b < 3);
                seen.insert((a.min(b), a.max(b)));
            }
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn p2c_prefers_the_cheaper_endpoint() {
        // One of three endpoints is slow: it is only ever chosen when compared with nothing
        // cheaper, which never happens.
        let costs = [1.0, 50.0, 1.2];
        let mut picks = [0usize; 3];
        for r1 in 0..30 {
            for r2 in 0..30 {
                picks[p2c(&costs, r1, r2).unwrap_or(9)] += 1;
            }
        }
        assert_eq!(picks[1], 0, "{picks:?}");
        assert!(picks[0] > picks[2], "{picks:?}");
        assert_eq!(p2c(&[], 0, 0), None);
        assert_eq!(p2c(&[5.0], 7, 3), Some(0));
    }
}
