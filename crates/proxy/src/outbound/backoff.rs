//! Jittered exponential backoff, for reconnecting to the control plane and between retries.

use std::time::Duration;

/// Doubles from `min` up to `max`; each delay is drawn uniformly from [d/2, d] so that many
/// proxies (or requests) that failed together do not come back together.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The nominal (un-jittered) delay of attempt `n` (0-based), for a fresh backoff.
    pub fn nominal(min: Duration, max: Duration, n: u32) -> Duration {
        min.saturating_mul(1u32.checked_shl(n.min(20)).unwrap_or(u32::MAX))
            .min(max)
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(d)
    }

    /// Back to the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A delay drawn uniformly from [d/2, d].
pub fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_caps() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for nominal in [100, 200, 400, 800, 1000, 1000] {
            let d = b.next_delay();
            assert!(
                d >= ms(nominal / 2) && d <= ms(nominal),
                "{d:?} vs {nominal}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
        assert_eq!(Backoff::nominal(ms(25), ms(250), 0), ms(25));
        assert_eq!(Backoff::nominal(ms(25), ms(250), 3), ms(200));
        assert_eq!(Backoff::nominal(ms(25), ms(250), 40), ms(250));
    }
}
