//! A small Prometheus registry: counters, gauges and histograms in label families, encoded in
//! the Prometheus text format (what `promtool check metrics` reads).
//!
//! Families are maps from a label set to shared atomics. A caller looks up its label set once
//! (per connection, or per request) and then updates atomics without locks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Writes a label set as `k="v",k2="v2"` (without braces).
pub trait EncodeLabels {
    fn encode(&self, out: &mut LabelWriter<'_>);
}

/// Accumulates `k="v"` pairs, escaping values.
pub struct LabelWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl LabelWriter<'_> {
    pub fn label(&mut self, key: &str, value: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '"' => self.out.push_str("\\\""),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A monotonically increasing counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Linkerd's latency buckets, in milliseconds.
pub const LATENCY_MS_BUCKETS: &[u64] = &[
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10000, 20000, 30000, 40000, 50000,
];

/// A histogram over fixed millisecond buckets (the last one is +Inf).
#[derive(Debug)]
pub struct Histogram {
    buckets: &'static [u64],
    counts: Box<[AtomicU64]>,
    /// Sum in microseconds, so sub-millisecond observations are not lost.
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_MS_BUCKETS)
    }
}

impl Histogram {
    pub fn new(buckets: &'static [u64]) -> Self {
        Histogram {
            buckets,
            counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let idx = self
            .buckets
            .iter()
            .position(|&b| us <= b * 1000)
            .unwrap_or(self.buckets.len());
        if let Some(c) = self.counts.get(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Something that encodes itself under a metric name with a label prefix.
pub trait EncodeMetric {
    const TYPE: &'static str;
    fn encode(&self, name: &str, labels: &str, out: &mut String);
}

fn braces(labels: &str, extra: &str) -> String {
    match (labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{{{labels}}}"),
        (true, false) => format!("{{{extra}}}"),
        (false, false) => format!("{{{labels},{extra}}}"),
    }
}

impl EncodeMetric for Counter {
    const TYPE: &'static str = "counter";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels, ""), self.get());
    }
}

impl EncodeMetric for Gauge {
    const TYPE: &'static str = "gauge";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels, ""), self.get());
    }
}

impl EncodeMetric for Histogram {
    const TYPE: &'static str = "histogram";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = match self.buckets.get(i) {
                Some(b) => b.to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                braces(labels, &format!("le=\"{le}\""))
            );
        }
        let sum_ms = self.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum{} {sum_ms}", braces(labels, ""));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels, ""));
    }
}

/// A metric family: one metric per label set.
pub struct Family<L, M> {
    name: &'static str,
    help: &'static str,
    metrics: Mutex<HashMap<L, Arc<M>>>,
}

impl<L: Eq + Hash + Clone + EncodeLabels, M: Default + EncodeMetric> Family<L, M> {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            metrics: Mutex::new(HashMap::new()),
        }
    }

    /// The metric for `labels`, created on first use.
    pub fn get(&self, labels: &L) -> Arc<M> {
        let mut map = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = map.get(labels) {
            return m.clone();
        }
        let m = Arc::new(M::default());
        map.insert(labels.clone(), m.clone());
        m
    }

    /// Appends the family in text format. Families with no metrics are written with HELP and
    /// TYPE only, so dashboards can discover them.
    pub fn encode(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, M::TYPE);
        let map = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<(String, &Arc<M>)> = map
            .iter()
            .map(|(l, m)| {
                let mut s = String::new();
                l.encode(&mut LabelWriter {
                    out: &mut s,
                    first: true,
                });
                (s, m)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, m) in rows {
            m.encode(self.name, &labels, out);
        }
    }
}

impl EncodeLabels for () {
    fn encode(&self, _: &mut LabelWriter<'_>) {}
}

impl<const N: usize> EncodeLabels for [(&'static str, &'static str); N] {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        for (k, v) in self {
            out.label(k, v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Clone, PartialEq, Eq, Hash)]
    struct L(String);
    impl EncodeLabels for L {
        fn encode(&self, out: &mut LabelWriter<'_>) {
            out.label("authority", &self.0);
        }
    }

    #[test]
    fn counter_family_escapes_labels() {
        let f: Family<L, Counter> = Family::new("request_total", "Requests.");
        f.get(&L("a\"b\\c\nd".into())).add(3);
        f.get(&L("x".into())).inc();
        let mut s = String::new();
        f.encode(&mut s);
        assert!(s.contains("# TYPE request_total counter\n"));
        assert!(
            s.contains("request_total{authority=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{s}"
        );
        assert!(s.contains("request_total{authority=\"x\"} 1\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(100));
        let mut s = String::new();
        h.encode("response_latency_ms", "direction=\"inbound\"", &mut s);
        assert!(
            s.contains("response_latency_ms_bucket{direction=\"inbound\",le=\"1\"} 1\n"),
            "{s}"
        );
        assert!(s.contains("le=\"5\"} 1\n"));
        assert!(s.contains("le=\"10\"} 2\n"));
        assert!(s.contains("le=\"50000\"} 2\n"));
        assert!(s.contains("le=\"+Inf\"} 3\n"));
        assert!(s.contains("response_latency_ms_count{direction=\"inbound\"} 3\n"));
        assert!(
            s.contains("response_latency_ms_sum{direction=\"inbound\"} 100007.5\n"),
            "{s}"
        );
        assert_eq!(h.count(), 3);
    }
}
