//! The seam between the viz queries and where metrics come from.
//!
//! Queries ([`super::query`]) ask a [`MetricsSource`] for the increase of counter series over a
//! window and the latest value of gauges, restricted to some workloads' proxies and to series
//! whose labels equal given values. That is what PromQL's `increase(x{…}[1m])` and `x{…}`
//! answer, so the local mesh's in-memory scraper ([`super::window::Window`]) and a Prometheus
//! client (Kubernetes, later) implement the same trait; the target labels
//! (`namespace`, `pod`, `deployment`) are what a Prometheus scrape configuration adds.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::exposition::Labels;

/// The workload whose proxy a series was scraped from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TargetRef {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name (its ExternalWorkload, the pod in Kubernetes).
    pub pod: String,
    /// Its deployment (`weft.io/deployment`), when it has one.
    pub deployment: Option<String>,
}

/// Which proxies a query reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every proxy.
    All,
    /// The proxies of these workloads (namespace, name).
    Workloads(BTreeSet<(String, String)>),
}

impl Selector {
    /// Whether `target` is selected.
    pub fn selects(&self, target: &TargetRef) -> bool {
        match self {
            Self::All => true,
            Self::Workloads(set) => set.contains(&(target.namespace.clone(), target.pod.clone())),
        }
    }
}

/// One family, on some proxies, with some labels fixed.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The sample name (`response_total`, `response_latency_ms_bucket`).
    pub name: &'a str,
    /// The proxies to read.
    pub targets: &'a Selector,
    /// Labels that must have these values.
    pub matchers: &'a [(&'a str, &'a str)],
}

impl Query<'_> {
    /// Whether a series' labels satisfy the matchers.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(k, v)| {
            labels
                .iter()
                .find(|(lk, _)| lk == k)
                .is_some_and(|(_, lv)| lv == v)
        })
    }
}

/// A series' value in an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The proxy it comes from.
    pub target: TargetRef,
    /// Its labels.
    pub labels: Labels,
    /// The increase over the window (counters) or the latest value (gauges).
    pub value: f64,
    /// The time the increase is over: the window, or less when the data does not reach back
    /// that far (rates divide by this). Zero for gauges.
    pub seconds: f64,
}

impl Series {
    /// A label's value, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Per second over the window; zero when the window is empty.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.value / self.seconds
        } else {
            0.0
        }
    }
}

/// A scrape target's health.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetHealth {
    /// The workload.
    #[serde(flatten)]
    pub target: TargetRef,
    /// Where its metrics are read (`http://127.0.1.3:4191/metrics`).
    pub url: String,
    /// Whether the last scrape succeeded.
    pub up: bool,
    /// Why the last failed scrape failed (one line), if the last scrape failed.
    pub last_error: Option<String>,
    /// Unix seconds of the last successful scrape.
    #[serde(serialize_with = "unix_opt")]
    pub last_success: Option<SystemTime>,
    /// Samples held for it.
    pub samples: usize,
}

fn unix_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Why a source could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metrics source: {0}")]
pub struct SourceError(pub String);

/// Where queries read metrics from.
pub trait MetricsSource: Send + Sync {
    /// The increase of every series of counter `query.name` over `window` (ending now), one
    /// [`Series`] per proxy and label set; series without data in the window are left out.
    fn increase(&self, query: &Query<'_>, window: Duration) -> Result<Vec<Series>, SourceError>;

    /// The latest value of every series of gauge `query.name` on proxies scraped recently.
    fn latest(&self, query: &Query<'_>) -> Result<Vec<Series>, SourceError>;

    /// The scrape targets and their health.
    fn targets(&self) -> Vec<TargetHealth>;
}
