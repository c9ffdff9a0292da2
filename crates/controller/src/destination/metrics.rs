//! The destination service's metrics. Labels are closed sets ([`Call`], [`UpdateKind`]);
//! authorities and error text never become labels.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::prom::{Encoder, Kind};

use super::index::Index;

/// The two calls of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `Get`: endpoints.
    Get,
    /// `GetPolicy`: policy.
    GetPolicy,
}

impl Call {
    /// Both calls, in label order.
    pub const ALL: [Call; 2] = [Call::Get, Call::GetPolicy];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Get => "get",
            Call::GetPolicy => "get_policy",
        }
    }

    fn index(self) -> usize {
        match self {
            Call::Get => 0,
            Call::GetPolicy => 1,
        }
    }
}

/// The messages a watch sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// `Update.add`.
    Add,
    /// `Update.remove`.
    Remove,
    /// `Update.no_endpoints`.
    NoEndpoints,
    /// `PolicyUpdate.policy`.
    Policy,
    /// `PolicyUpdate.not_found`.
    NotFound,
}

impl UpdateKind {
    /// Every kind, in label order.
    pub const ALL: [UpdateKind; 5] = [
        UpdateKind::Add,
        UpdateKind::Remove,
        UpdateKind::NoEndpoints,
        UpdateKind::Policy,
        UpdateKind::NotFound,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Add => "add",
            UpdateKind::Remove => "remove",
            UpdateKind::NoEndpoints => "no_endpoints",
            UpdateKind::Policy => "policy",
            UpdateKind::NotFound => "not_found",
        }
    }

    /// The call that sends it.
    pub fn call(self) -> Call {
        match self {
            UpdateKind::Add | UpdateKind::Remove | UpdateKind::NoEndpoints => Call::Get,
            UpdateKind::Policy | UpdateKind::NotFound => Call::GetPolicy,
        }
    }

    fn index(self) -> usize {
        match self {
            UpdateKind::Add => 0,
            UpdateKind::Remove => 1,
            UpdateKind::NoEndpoints => 2,
            UpdateKind::Policy => 3,
            UpdateKind::NotFound => 4,
        }
    }
}

/// Counters and gauges of the destination service.
#[derive(Debug, Default)]
pub struct DestinationMetrics {
    watches: [AtomicI64; 2],
    watches_opened: [AtomicU64; 2],
    invalid_requests: [AtomicU64; 2],
    updates: [AtomicU64; UpdateKind::ALL.len()],
    store_revision: AtomicU64,
    store_changes_applied: AtomicU64,
    index_build_micros: AtomicU64,
    service_ports: AtomicU64,
    endpoints: AtomicU64,
    policy_errors: AtomicU64,
    policy_warnings: AtomicU64,
    endpoint_problems: AtomicU64,
}

/// Decrements the active-watch gauge of its call when the watch ends (however it ends).
#[derive(Debug)]
pub struct WatchGuard {
    metrics: std::sync::Arc<DestinationMetrics>,
    call: Call,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(g) = self.metrics.watches.get(self.call.index()) {
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl DestinationMetrics {
    /// Counts a new watch; the returned guard counts its end.
    pub fn watch_opened(self: &std::sync::Arc<Self>, call: Call) -> WatchGuard {
        if let Some(g) = self.watches.get(call.index()) {
            g.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self.watches_opened.get(call.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        WatchGuard {
            metrics: self.clone(),
            call,
        }
    }

    /// Counts a request refused as malformed.
    pub fn invalid_request(&self, call: Call) {
        if let Some(c) = self.invalid_requests.get(call.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a message sent.
    pub fn sent(&self, kind: UpdateKind) {
        if let Some(c) = self.updates.get(kind.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a new index.
    pub fn indexed(&self, index: &Index, took: Duration) {
        let set = |a: &AtomicU64, v: usize| a.store(v as u64, Ordering::Relaxed);
        self.store_revision
            .store(index.revision(), Ordering::Relaxed);
        self.store_changes_applied.fetch_add(1, Ordering::Relaxed);
        self.index_build_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        set(&self.service_ports, index.endpoints.sets.len());
        set(&self.endpoints, index.endpoint_count());
        set(&self.policy_errors, index.policy_errors.len());
        set(&self.policy_warnings, index.policy_warnings.len());
        set(&self.endpoint_problems, index.endpoint_problems.len());
    }

    /// Watches of `call` open now.
    pub fn active_watches(&self, call: Call) -> i64 {
        self.watches
            .get(call.index())
            .map_or(0, |g| g.load(Ordering::Relaxed))
    }

    /// Messages of `kind` sent so far.
    pub fn sent_total(&self, kind: UpdateKind) -> u64 {
        self.updates
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Indexes built so far (store changes applied).
    pub fn changes_applied_total(&self) -> u64 {
        self.store_changes_applied.load(Ordering::Relaxed)
    }

    /// Appends the destination families.
    pub fn encode(&self, enc: &mut Encoder) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        enc.family(
            "destination_watches",
            Kind::Gauge,
            "Watches open now, by call.",
        );
        for call in Call::ALL {
            enc.sample(
                "destination_watches",
                &[("call", call.as_str())],
                self.active_watches(call) as f64,
            );
        }
        enc.family(
            "destination_watches_opened_total",
            Kind::Counter,
            "Watches opened, by call.",
        );
        for call in Call::ALL {
            let v = self.watches_opened.get(call.index()).map_or(0.0, load);
            enc.sample(
                "destination_watches_opened_total",
                &[("call", call.as_str())],
                v,
            );
        }
        enc.family(
            "destination_invalid_requests_total",
            Kind::Counter,
            "Requests refused because the authority is malformed, by call.",
        );
        for call in Call::ALL {
            let v = self.invalid_requests.get(call.index()).map_or(0.0, load);
            enc.sample(
                "destination_invalid_requests_total",
                &[("call", call.as_str())],
                v,
            );
        }
        enc.family(
            "destination_updates_sent_total",
            Kind::Counter,
            "Messages sent to watches, by call and kind.",
        );
        for kind in UpdateKind::ALL {
            enc.sample(
                "destination_updates_sent_total",
                &[("call", kind.call().as_str()), ("update", kind.as_str())],
                self.sent_total(kind) as f64,
            );
        }
        enc.single(
            "destination_store_revision",
            Kind::Gauge,
            "The store revision the served state was built from.",
            load(&self.store_revision),
        );
        enc.single(
            "destination_store_changes_applied_total",
            Kind::Counter,
            "Store changes applied (each rebuilds the index once, however many watches there are).",
            load(&self.store_changes_applied),
        );
        enc.single(
            "destination_index_build_seconds",
            Kind::Gauge,
            "How long the last index build took.",
            load(&self.index_build_micros) / 1e6,
        );
        enc.single(
            "destination_service_ports",
            Kind::Gauge,
            "Service ports known (each an authority proxies can watch).",
            load(&self.service_ports),
        );
        enc.single(
            "destination_endpoints",
            Kind::Gauge,
            "Endpoints over every Service port.",
            load(&self.endpoints),
        );
        enc.family(
            "destination_policy_problems",
            Kind::Gauge,
            "Problems found compiling policies now (errors: a setting is not applied; warnings: probably not what was meant). The messages are in the log.",
        );
        enc.sample(
            "destination_policy_problems",
            &[("severity", "error")],
            load(&self.policy_errors),
        );
        enc.sample(
            "destination_policy_problems",
            &[("severity", "warning")],
            load(&self.policy_warnings),
        );
        enc.single(
            "destination_endpoint_problems",
            Kind::Gauge,
            "Workload or Service annotations that could not be used to derive endpoints (defaults apply; the messages are in the log).",
            load(&self.endpoint_problems),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn labels_are_distinct_and_indices_dense() {
        for (i, k) in UpdateKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, c) in Call::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn guards_count_watches_down() {
        let m = Arc::new(DestinationMetrics::default());
        let a = m.watch_opened(Call::Get);
        let b = m.watch_opened(Call::Get);
        let _c = m.watch_opened(Call::GetPolicy);
        assert_eq!(m.active_watches(Call::Get), 2);
        drop(a);
        drop(b);
        assert_eq!(m.active_watches(Call::Get), 0);
        assert_eq!(m.active_watches(Call::GetPolicy), 1);
        m.sent(UpdateKind::Remove);
        let mut enc = Encoder::new();
        m.encode(&mut enc);
        let text = enc.finish();
        assert!(
            text.contains("destination_watches{call=\"get_policy\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("destination_watches_opened_total{call=\"get\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("destination_updates_sent_total{call=\"get\",update=\"remove\"} 1\n"),
            "{text}"
        );
    }
}
