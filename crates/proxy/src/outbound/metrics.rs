//! Outbound policy metrics: per-route request/response families (Linkerd's `route_*` names,
//! with a `route` label), retries attempted and skipped, timeouts by kind, requests per
//! backend, balancer endpoint counts and destination-service reconnects.

use std::sync::Arc;

use crate::metrics::{Counter, EncodeLabels, Family, Gauge, Histogram, LabelWriter};
use crate::telemetry::{LatencyLabels, ResponseLabels};

/// `direction="outbound", dst, route`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    /// The service authority of the policy.
    pub dst: String,
    pub route: String,
}

impl EncodeLabels for RouteLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", "outbound");
        out.label("dst", &self.dst);
        out.label("route", &self.route);
    }
}

/// Labels of `route_response_total`.
pub type RouteResponseLabels = ResponseLabels<RouteLabels>;

/// Labels of `route_response_latency_ms`.
pub type RouteLatencyLabels = LatencyLabels<RouteLabels>;

/// A route label set plus one fixed-set label (`reason`, `kind`) or a backend authority.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteExtraLabels {
    pub route: RouteLabels,
    pub key: &'static str,
    pub value: String,
}

impl EncodeLabels for RouteExtraLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        self.route.encode(out);
        out.label(self.key, &self.value);
    }
}

/// Labels of `balancer_endpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BalancerLabels {
    pub authority: String,
    pub state: &'static str,
}

impl EncodeLabels for BalancerLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", "outbound");
        out.label("authority", &self.authority);
        out.label("endpoint_state", self.state);
    }
}

/// Why a retry that a condition asked for was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    BudgetExhausted,
    BodyTooLarge,
    LimitReached,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::BudgetExhausted => "budget_exhausted",
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::LimitReached => "limit_reached",
        }
    }
}

/// Every outbound policy metric.
pub struct OutboundMetrics {
    pub route_request_total: Family<RouteLabels, Counter>,
    pub route_response_total: Family<RouteResponseLabels, Counter>,
    pub route_response_latency_ms: Family<RouteLatencyLabels, Histogram>,
    pub route_retry_total: Family<RouteLabels, Counter>,
    pub route_retry_skipped_total: Family<RouteExtraLabels, Counter>,
    pub route_timeout_total: Family<RouteExtraLabels, Counter>,
    pub route_backend_request_total: Family<RouteExtraLabels, Counter>,
    pub balancer_endpoints: Family<BalancerLabels, Gauge>,
    pub destination_reconnect_total: Arc<Counter>,
}

impl Default for OutboundMetrics {
    fn default() -> Self {
        OutboundMetrics {
            route_request_total: Family::new("route_request_total", "Requests per outbound route (first attempts)."),
            route_response_total: Family::new("route_response_total", "Responses per outbound route, by status and classification (after retries)."),
            route_response_latency_ms: Family::new("route_response_latency_ms", "Time from a request's headers to its response's headers per outbound route, across retries, in milliseconds."),
            route_retry_total: Family::new("route_retry_total", "Retries sent per outbound route."),
            route_retry_skipped_total: Family::new("route_retry_skipped_total", "Retries a condition asked for but that were not sent, by reason (budget_exhausted, body_too_large, limit_reached)."),
            route_timeout_total: Family::new("route_timeout_total", "Timeouts per outbound route, by kind (request, response, per_try, idle)."),
            route_backend_request_total: Family::new("route_backend_request_total", "Attempts (first tries and retries) per outbound route and backend service."),
            balancer_endpoints: Family::new("balancer_endpoints", "Endpoints per balancer: ready, or pending (ejected by failure accrual)."),
            destination_reconnect_total: Arc::default(),
        }
    }
}

impl OutboundMetrics {
    pub fn extra(route: &RouteLabels, key: &'static str, value: &str) -> RouteExtraLabels {
        RouteExtraLabels {
            route: route.clone(),
            key,
            value: value.to_string(),
        }
    }

    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write as _;
        self.route_request_total.encode(out);
        self.route_response_total.encode(out);
        self.route_response_latency_ms.encode(out);
        self.route_retry_total.encode(out);
        self.route_retry_skipped_total.encode(out);
        self.route_timeout_total.encode(out);
        self.route_backend_request_total.encode(out);
        self.balancer_endpoints.encode(out);
        let _ = writeln!(out, "# HELP destination_reconnect_total Destination-service watches restarted after a failure or end.");
        let _ = writeln!(out, "# TYPE destination_reconnect_total counter");
        let _ = writeln!(
            out,
            "destination_reconnect_total {}",
            self.destination_reconnect_total.get()
        );
    }
}
