//! The local mesh's [`MetricsSource`]: the samples the scraper read from each proxy, kept in
//! time order for the retention period.
//!
//! Per target, every distinct series (name and labels) gets a small integer id the first time
//! it is seen, and a scrape is stored as a vector of values indexed by id (NaN where the series
//! was absent), so ten minutes of scrapes cost a few floats per series each rather than a copy
//! of every label. Ids of series gone from every retained scrape are reclaimed by compaction.
//!
//! Increases follow Prometheus's `increase()`: over the samples from the last one at or before
//! the window's start (or the oldest, when data does not reach back that far) to the newest; a
//! value lower than the one before is a counter reset (the proxy restarted) and counts from
//! zero; a series that appears after the first sample was created since and counts from zero.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::exposition::{Labels, Sample};
use super::source::{MetricsSource, Query, Series, SourceError, TargetHealth, TargetRef};

/// A target is identified by its workload: (namespace, name).
pub type TargetKey = (String, String);

#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: Box<str>,
    labels: Labels,
}

#[derive(Debug)]
struct Scrape {
    at: Instant,
    /// By series id; NaN when absent.
    values: Vec<f64>,
}

impl Scrape {
    fn get(&self, id: usize) -> Option<f64> {
        self.values.get(id).copied().filter(|v| !v.is_nan())
    }
}

#[derive(Debug)]
struct TargetData {
    target: TargetRef,
    url: String,
    series: Vec<Arc<SeriesKey>>,
    ids: HashMap<Arc<SeriesKey>, usize>,
    by_name: HashMap<Box<str>, Vec<usize>>,
    scrapes: VecDeque<Scrape>,
    last_error: Option<String>,
    last_success: Option<SystemTime>,
    /// Whether any scrape was attempted.
    scraped: bool,
}

impl TargetData {
    fn new(target: TargetRef, url: String) -> Self {
        Self {
            target,
            url,
            series: Vec::new(),
            ids: HashMap::new(),
            by_name: HashMap::new(),
            scrapes: VecDeque::new(),
            last_error: None,
            last_success: None,
            scraped: false,
        }
    }

    fn intern(&mut self, name: String, labels: Labels) -> usize {
        let key = Arc::new(SeriesKey {
            name: name.into(),
            labels,
        });
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.series.len();
        self.series.push(key.clone());
        self.by_name.entry(key.name.clone()).or_default().push(id);
        self.ids.insert(key, id);
        id
    }

    fn push(&mut self, at: Instant, samples: Vec<Sample>) {
        let mut values = vec![f64::NAN; self.series.len()];
        for s in samples {
            let id = self.intern(s.name, s.labels);
            if values.len() <= id {
                values.resize(id + 1, f64::NAN);
            }
            values[id] = s.value;
        }
        self.scrapes.push_back(Scrape { at, values });
    }

    /// Drops scrapes older than `keep_after` (keeping the newest), then reclaims series ids
    /// when many are unused.
    fn prune(&mut self, keep_after: Instant) {
        while self.scrapes.len() > 1 && self.scrapes.front().is_some_and(|s| s.at < keep_after) {
            self.scrapes.pop_front();
        }
        let live = self
            .scrapes
            .iter()
            .map(|s| s.values.iter().filter(|v| !v.is_nan()).count())
            .max()
            .unwrap_or(0);
        if self.series.len() > 2 * live + 1024 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let used: Vec<bool> = (0..self.series.len())
            .map(|id| self.scrapes.iter().any(|s| s.get(id).is_some()))
            .collect();
        let mut remap = vec![usize::MAX; self.series.len()];
        let old = std::mem::take(&mut self.series);
        self.ids.clear();
        self.by_name.clear();
        for (id, key) in old.into_iter().enumerate() {
            if used.get(id).copied().unwrap_or(false) {
                let new = self.series.len();
                remap[id] = new;
                self.by_name.entry(key.name.clone()).or_default().push(new);
                self.ids.insert(key.clone(), new);
                self.series.push(key);
            }
        }
        for s in &mut self.scrapes {
            let mut values = vec![f64::NAN; self.series.len()];
            for (old_id, v) in s.values.iter().enumerate() {
                if let Some(&new) = remap.get(old_id).filter(|n| **n != usize::MAX) {
                    values[new] = *v;
                }
            }
            s.values = values;
        }
    }

    fn matching<'a>(&'a self, query: &'a Query<'_>) -> impl Iterator<Item = usize> + 'a {
        self.by_name
            .get(query.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                self.series
                    .get(*id)
                    .is_some_and(|k| query.matches(&k.labels))
            })
    }
}

/// Every target's retained samples.
#[derive(Debug)]
pub struct Window {
    targets: Mutex<BTreeMap<TargetKey, TargetData>>,
    retention: Duration,
    /// A target whose newest sample is older than this has no current data.
    stale_after: Duration,
}

impl Window {
    /// An empty window keeping `retention` of samples; a gauge is current for `stale_after`.
    pub fn new(retention: Duration, stale_after: Duration) -> Self {
        Self {
            targets: Mutex::new(BTreeMap::new()),
            retention,
            stale_after,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TargetKey, TargetData>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the scrape targets: new ones are added, gone ones dropped with their samples, and
    /// changed ones (URL or deployment) updated in place.
    pub fn set_targets(&self, targets: impl IntoIterator<Item = (TargetRef, String)>) {
        let mut map = self.lock();
        let mut seen = Vec::new();
        for (target, url) in targets {
            let key = (target.namespace.clone(), target.pod.clone());
            seen.push(key.clone());
            match map.get_mut(&key) {
                Some(d) if d.url == url => d.target = target,
                _ => {
                    map.insert(key, TargetData::new(target, url));
                }
            }
        }
        seen.sort();
        map.retain(|k, _| seen.binary_search(k).is_ok());
    }

    /// The current targets and their URLs.
    pub fn target_urls(&self) -> Vec<(TargetKey, String)> {
        self.lock()
            .iter()
            .map(|(k, d)| (k.clone(), d.url.clone()))
            .collect()
    }

    /// Records a scrape of `key` made at `at`: its samples, or why it failed.
    pub fn record(&self, key: &TargetKey, at: Instant, result: Result<Vec<Sample>, String>) {
        let mut map = self.lock();
        let Some(d) = map.get_mut(key) else {
            return;
        };
        d.scraped = true;
        match result {
            Ok(samples) => {
                d.push(at, samples);
                d.last_error = None;
                d.last_success = Some(SystemTime::now());
            }
            Err(e) => d.last_error = Some(e),
        }
        if let Some(keep_after) = at.checked_sub(self.retention) {
            d.prune(keep_after);
        }
    }

    fn increase_at(&self, query: &Query<'_>, window: Duration, now: Instant) -> Vec<Series> {
        let map = self.lock();
        let mut out = Vec::new();
        let start = now.checked_sub(window);
        for d in map.values() {
            if !query.targets.selects(&d.target) {
                continue;
            }
            let Some(last) = d.scrapes.back() else {
                continue;
            };
            if start.is_some_and(|s| last.at < s) {
                continue;
            }
            let base = match start {
                Some(s) => d.scrapes.iter().rposition(|x| x.at <= s).unwrap_or(0),
                None => 0,
            };
            let end = d.scrapes.len() - 1;
            if base >= end {
                continue;
            }
            let seconds = last
                .at
                .saturating_duration_since(d.scrapes[base].at)
                .as_secs_f64();
            for id in d.matching(query) {
                let mut prev = d.scrapes[base].get(id);
                let mut inc = 0.0;
                let mut present = prev.is_some();
                for s in d.scrapes.range(base + 1..=end) {
                    let v = s.get(id);
                    match (prev, v) {
                        (Some(p), Some(v)) if v >= p => inc += v - p,
                        // Lower than before: the counter was reset and counts from zero; absent
                        // before: the series was created since.
                        (_, Some(v)) => inc += v,
                        (_, None) => {}
                    }
                    present |= v.is_some();
                    prev = v;
                }
                if present && inc.is_finite() {
                    out.push(Series {
                        target: d.target.clone(),
                        labels: d.series[id].labels.clone(),
                        value: inc,
                        seconds,
                    });
                }
            }
        }
        out
    }

    fn latest_at(&self, query: &Query<'_>, now: Instant) -> Vec<Series> {
        let map = self.lock();
        let mut out = Vec::new();
        for d in map.values() {
            if !query.targets.selects(&d.target) {
                continue;
            }
            let Some(last) = d.scrapes.back() else {
                continue;
            };
            if now.saturating_duration_since(last.at) > self.stale_after {
                continue;
            }
            for id in d.matching(query) {
                if let Some(v) = last.get(id) {
                    out.push(Series {
                        target: d.target.clone(),
                        labels: d.series[id].labels.clone(),
                        value: v,
                        seconds: 0.0,
                    });
                }
            }
        }
        out
    }

    /// Whether the target's last scrape succeeded.
    pub fn is_up(&self, key: &TargetKey) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|d| d.scraped && d.last_error.is_none())
    }
}

impl MetricsSource for Window {
    fn increase(&self, query: &Query<'_>, window: Duration) -> Result<Vec<Series>, SourceError> {
        Ok(self.increase_at(query, window, Instant::now()))
    }

    fn latest(&self, query: &Query<'_>) -> Result<Vec<Series>, SourceError> {
        Ok(self.latest_at(query, Instant::now()))
    }

    fn targets(&self) -> Vec<TargetHealth> {
        self.lock()
            .values()
            .map(|d| TargetHealth {
                target: d.target.clone(),
                url: d.url.clone(),
                up: d.scraped && d.last_error.is_none(),
                last_error: if d.scraped {
                    d.last_error.clone()
                } else {
                    Some("not scraped yet".to_owned())
                },
                last_success: d.last_success,
                samples: d.scrapes.len(),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::viz::source::Selector;

    fn target(pod: &str) -> TargetRef {
        TargetRef {
            namespace: "ns".into(),
            pod: pod.into(),
            deployment: Some("d".into()),
        }
    }

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        let mut labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        Sample {
            name: name.into(),
            labels,
            value,
        }
    }

    fn window_with(values: &[(u64, Option<f64>)]) -> (Window, Instant) {
        let w = Window::new(Duration::from_secs(600), Duration::from_secs(10));
        w.set_targets([(target("a"), "u".to_owned())]);
        let t0 = Instant::now();
        let key = ("ns".to_owned(), "a".to_owned());
        for (secs, v) in values {
            let samples = v
                .map(|v| vec![sample("c", &[("k", "x")], v)])
                .unwrap_or_default();
            w.record(&key, t0 + Duration::from_secs(*secs), Ok(samples));
        }
        (w, t0)
    }

    fn inc(w: &Window, window: u64, now: Instant) -> Option<(f64, f64)> {
        let q = Query {
            name: "c",
            targets: &Selector::All,
            matchers: &[("k", "x")],
        };
        let s = w.increase_at(&q, Duration::from_secs(window), now);
        assert!(s.len() <= 1);
        s.first().map(|s| (s.value, s.seconds))
    }

    #[test]
    fn increase_over_the_window() {
        let pts: Vec<(u64, Option<f64>)> =
            (0..=10).map(|i| (i * 10, Some(i as f64 * 5.0))).collect();
        let (w, t0) = window_with(&pts);
        let now = t0 + Duration::from_secs(100);
        // The last 30 s: from the sample at 70 s (35) to 100 s (50).
        assert_eq!(inc(&w, 30, now), Some((15.0, 30.0)));
        // A window longer than the data: from the oldest.
        assert_eq!(inc(&w, 3600, now), Some((50.0, 100.0)));
        // A window between samples starts at the last sample before it.
        assert_eq!(inc(&w, 25, now), Some((15.0, 30.0)));
        // Data older than the window: nothing current.
        assert_eq!(inc(&w, 30, now + Duration::from_secs(60)), None);
    }

    #[test]
    fn counter_resets_and_new_series() {
        // 10 → 20 → reset to 3 → 8: increase 10 + 3 + 5.
        let (w, t0) = window_with(&[
            (0, Some(10.0)),
            (1, Some(20.0)),
            (2, Some(3.0)),
            (3, Some(8.0)),
        ]);
        assert_eq!(inc(&w, 60, t0 + Duration::from_secs(3)), Some((18.0, 3.0)));
        // Absent in the first scrape, then 4 and 6: created since, so 6.
        let (w, t0) = window_with(&[(0, None), (1, Some(4.0)), (2, Some(6.0))]);
        assert_eq!(inc(&w, 60, t0 + Duration::from_secs(2)), Some((6.0, 2.0)));
        // A single sample gives no rate.
        let (w, t0) = window_with(&[(0, Some(4.0))]);
        assert_eq!(inc(&w, 60, t0), None);
    }

    #[test]
    fn failed_scrapes_keep_samples_and_report_health() {
        let (w, t0) = window_with(&[(0, Some(1.0)), (1, Some(2.0))]);
        let key = ("ns".to_owned(), "a".to_owned());
        w.record(
            &key,
            t0 + Duration::from_secs(2),
            Err("connection refused".into()),
        );
        let t = w.targets();
        assert!(!t[0].up);
        assert_eq!(t[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!(t[0].samples, 2);
        assert!(!w.is_up(&key));
        assert_eq!(inc(&w, 60, t0 + Duration::from_secs(2)), Some((1.0, 1.0)));
    }

    #[test]
    fn retention_and_compaction() {
        let w = Window::new(Duration::from_secs(10), Duration::from_secs(10));
        w.set_targets([(target("a"), "u".to_owned())]);
        let key = ("ns".to_owned(), "a".to_owned());
        let t0 = Instant::now();
        // Each scrape has a fresh set of series: ids must be reclaimed.
        for i in 0..100u64 {
            let samples = (0..100)
                .map(|j| sample("c", &[("k", &format!("{i}-{j}"))], 1.0))
                .collect();
            w.record(&key, t0 + Duration::from_secs(i), Ok(samples));
        }
        let map = w.lock();
        let d = map.get(&key).unwrap();
        assert!(d.scrapes.len() <= 12, "{}", d.scrapes.len());
        assert!(d.series.len() < 3000, "{}", d.series.len());
        drop(map);
        let q = Query {
            name: "c",
            targets: &Selector::All,
            matchers: &[("k", "99-5")],
        };
        assert_eq!(w.latest_at(&q, t0 + Duration::from_secs(99)).len(), 1);
    }

    #[test]
    fn targets_are_replaced() {
        let (w, _) = window_with(&[(0, Some(1.0)), (1, Some(2.0))]);
        w.set_targets([(target("a"), "u".to_owned()), (target("b"), "v".to_owned())]);
        assert_eq!(w.targets().len(), 2);
        assert_eq!(
            w.targets()[0].samples,
            2,
            "an unchanged target keeps its samples"
        );
        w.set_targets([(target("b"), "v2".to_owned())]);
        let t = w.targets();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].url, "v2");
        assert!(!t[0].up);
    }
}
