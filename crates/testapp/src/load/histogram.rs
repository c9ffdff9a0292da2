//! A fixed-size log-linear latency histogram: constant memory however long a load run lasts,
//! with a relative error under 1/64 (~1.6%) per bucket.

use std::time::Duration;

/// Values below this many microseconds get one bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 6;
const SUBS: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64` microsecond value.
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize) * SUBS;

/// Latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (exp - SUB_BITS)) as usize - SUBS;
    LINEAR as usize + (exp - SUB_BITS) as usize * SUBS + sub
}

/// The smallest value that falls in bucket `idx`.
fn lower_bound(idx: usize) -> u64 {
    if idx < LINEAR as usize {
        return idx as u64;
    }
    let rel = idx - LINEAR as usize;
    let exp = (rel / SUBS) as u32 + SUB_BITS;
    let sub = (rel % SUBS) as u64;
    (SUBS as u64 + sub) << (exp - SUB_BITS)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get_mut(bucket_of(us)) {
            *c += 1;
        }
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded latency (exact).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The latency at quantile `q` (0.0–1.0): the lower bound of the bucket holding the
    /// `ceil(q * count)`-th smallest sample, capped at the exact maximum. Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(lower_bound(idx).min(self.max_us));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let idx = bucket_of(us);
            assert!(idx >= last, "bucket of {us} went backwards");
            last = idx;
        }
        for us in (0..100_000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX]) {
            let idx = bucket_of(us);
            assert!(idx < BUCKETS, "{us} -> {idx}");
            let lo = lower_bound(idx);
            assert!(lo <= us, "{lo} > {us}");
            // Relative error below 1/64.
            assert!(us - lo <= us / 64, "{us} in bucket starting {lo}");
        }
    }

    #[test]
    fn quantiles_of_uniform_samples() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        let within = |got: Duration, want_ms: u64| {
            let want = want_ms as f64 * 1000.0;
            let got = got.as_micros() as f64;
            assert!(
                got <= want && got >= want * (1.0 - 1.0 / 64.0),
                "{got} vs {want}"
            );
        };
        within(h.quantile(0.5), 50);
        within(h.quantile(0.95), 95);
        within(h.quantile(0.99), 99);
        assert_eq!(h.max(), Duration::from_millis(100));
        within(h.quantile(1.0), 100);
    }

    #[test]
    fn merge_and_empty() {
        let empty = Histogram::default();
        assert_eq!(empty.quantile(0.5), Duration::ZERO);
        let mut a = Histogram::default();
        a.record(Duration::from_micros(10));
        let mut b = Histogram::default();
        b.record(Duration::from_micros(20));
        b.record(Duration::from_micros(30));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.5), Duration::from_micros(20));
        assert_eq!(a.max(), Duration::from_micros(30));
    }
}
