//! The compiled policy: what a proxy needs to route, time out, retry and split requests to one
//! service port. Plain data, serde-serializable (JSON for `weft check -o json`), with no YAML
//! in it; the destination service converts it to protobuf.

use crate::annotations::{GrpcCode, StatusRange};
use crate::duration;
use crate::error::ModelError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The policies of every service port, keyed by authority
/// (`web-svc.emojivoto.svc.cluster.local:80`), and the problems found compiling them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Policies {
    /// One policy per Service port, keyed by `<name>.<namespace>.svc.<domain>:<port>`.
    pub services: BTreeMap<String, ServicePolicy>,
    /// Settings that could not be used (bad annotation values, conflicting objects). What
    /// happened instead is in each message; the rest of the policy is unaffected.
    pub errors: Vec<ModelError>,
    /// Things that are valid but probably not what was meant (references to Services that do
    /// not exist, filters Weft does not apply, unknown `retry.linkerd.io/` annotations).
    pub warnings: Vec<ModelError>,
}

impl Policies {
    /// The policy for an authority (`web-svc.emojivoto.svc.cluster.local:80`).
    pub fn get(&self, authority: &str) -> Option<&ServicePolicy> {
        self.services.get(authority)
    }

    /// The policies of every port of a Service.
    pub fn for_service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ServicePolicy> + 'a {
        self.services
            .values()
            .filter(move |p| p.namespace == namespace && p.name == name)
    }
}

/// Where a service's routes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicySource {
    /// No routes configured: one default route, with the Service's annotations.
    Default,
    /// HTTPRoutes attached to the Service.
    HttpRoute,
    /// A ServiceProfile (or a TrafficSplit, which stands for a profile's `dstOverrides`).
    ServiceProfile,
}

/// The policy of one Service port.
///
/// Requests are matched against `routes` in order and the first whose condition holds is used.
/// Profile-based policies end with a catch-all `default` route; HTTPRoute-based policies do
/// not, and a request matching none of their routes is answered 404, as in Linkerd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicePolicy {
    /// `<name>.<namespace>.svc.<domain>:<port>`.
    pub authority: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service port.
    pub port: u16,
    /// Where the routes came from.
    pub source: PolicySource,
    /// Routes in match order.
    pub routes: Vec<Route>,
    /// Where requests go when their route names no backends; never empty (the Service itself
    /// when nothing splits it).
    pub backends: Vec<Backend>,
    /// The budget every retry of this service withdraws from.
    pub retry_budget: RetryBudget,
    /// Per-endpoint circuit breaking, from the Service's `balancer.linkerd.io/failure-accrual*`
    /// annotations; `None` (off) without them. It applies whatever the routes came from.
    #[serde(default)]
    pub failure_accrual: Option<FailureAccrual>,
    /// Configuration that exists but is not used because something else takes precedence.
    pub overridden: Vec<Override>,
}

/// One route: a request condition and what to do with matching requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The name used in metrics (`route` label): the ServiceProfile route's name, the
    /// HTTPRoute's name (or its rule's, when named), or `default`.
    pub name: String,
    /// The object (and rule) it came from: `HTTPRoute emojivoto/web-default rules[0]`.
    pub origin: String,
    /// Which requests use this route.
    pub condition: RequestMatch,
    /// How to retry; `None` when the route is not retryable.
    pub retry: Option<RetryPolicy>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// How responses are classified (ServiceProfile `responseClasses`). Empty: 5xx (and gRPC
    /// statuses other than OK) are failures.
    pub response_classes: Vec<ResponseClass>,
    /// Where matching requests go; empty means the service's `backends`.
    pub backends: Vec<Backend>,
}

/// A condition on a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestMatch {
    /// Every condition holds (an empty list always holds).
    All(Vec<RequestMatch>),
    /// At least one condition holds (an empty list never holds).
    Any(Vec<RequestMatch>),
    /// The condition does not hold.
    Not(Box<RequestMatch>),
    /// The method is this one (e.g. `GET`).
    Method(String),
    /// The path matches.
    Path(PathMatch),
    /// A header matches (names are lowercase).
    Header {
        /// Header name, lowercase.
        name: String,
        /// How its value must match.
        value: ValueMatch,
    },
    /// A query parameter matches.
    QueryParam {
        /// Parameter name.
        name: String,
        /// How its value must match.
        value: ValueMatch,
    },
}

/// How a path matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this, element by element: `/api` matches `/api` and `/api/list`,
    /// not `/apis`.
    Prefix(String),
    /// The whole path matches this regular expression (as if it were `^(?:…)$`).
    Regex(String),
}

/// How a header or query parameter value matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueMatch {
    /// Equal.
    Exact(String),
    /// The whole value matches this regular expression.
    Regex(String),
}

/// A request, as seen by [`RequestMatch::matches`].
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// Headers (names lowercase).
    pub headers: &'a [(&'a str, &'a str)],
    /// Query parameters.
    pub query: &'a [(&'a str, &'a str)],
}

fn full_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

impl PathMatch {
    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                let p = p.trim_end_matches('/');
                path.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(re) => full_match(re, path),
        }
    }
}

impl ValueMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(re) => full_match(re, value),
        }
    }
}

impl RequestMatch {
    /// Whether a request matches. Regular expressions are compiled on each call: this is for
    /// tools and tests (`weft check`: which route would `GET /api/list` take?), not a proxy's
    /// hot path.
    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        match self {
            RequestMatch::All(all) => all.iter().all(|m| m.matches(request)),
            RequestMatch::Any(any) => any.iter().any(|m| m.matches(request)),
            RequestMatch::Not(m) => !m.matches(request),
            RequestMatch::Method(method) => request.method == method,
            RequestMatch::Path(p) => p.matches(request.path),
            RequestMatch::Header { name, value } => request
                .headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && value.matches(v)),
            RequestMatch::QueryParam { name, value } => request
                .query
                .iter()
                .any(|(n, v)| n == name && value.matches(v)),
        }
    }
}

impl ServicePolicy {
    /// The first route a request would take, if any.
    pub fn route_for(&self, request: &RequestInfo<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.condition.matches(request))
    }
}

/// When and how often to retry a request on a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retry responses with these HTTP statuses.
    pub http_statuses: Vec<StatusRange>,
    /// Retry gRPC responses with these statuses.
    pub grpc_codes: Vec<GrpcCode>,
    /// The most retries of one request (not counting the first attempt). Retries also need
    /// the service's budget.
    pub limit: u32,
    /// Cancel and retry an attempt that takes longer than this.
    #[serde(with = "duration::serde_opt")]
    pub per_try_timeout: Option<Duration>,
}

/// Timeouts of a route; `None` means no timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// The whole exchange, across retries (answered 504 when it fires).
    #[serde(with = "duration::serde_opt")]
    pub request: Option<Duration>,
    /// One backend response.
    #[serde(with = "duration::serde_opt")]
    pub response: Option<Duration>,
    /// A stream with no activity.
    #[serde(with = "duration::serde_opt")]
    pub idle: Option<Duration>,
}

/// A retry budget: retries may add at most `retry_ratio` of first attempts, plus
/// `min_retries_per_second`, counted over a sliding window of `ttl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryBudget {
    /// Retries per first attempt, e.g. 0.2.
    pub retry_ratio: f64,
    /// Retries allowed each second regardless of the ratio.
    pub min_retries_per_second: u32,
    /// The window over which attempts are counted.
    #[serde(with = "duration::serde_req")]
    pub ttl: Duration,
}

impl Default for RetryBudget {
    /// Linkerd's default: 20% more load plus 10 retries a second, over 10 seconds.
    fn default() -> Self {
        Self {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// Consecutive-failure accrual (Linkerd's `consecutive` mode): an endpoint that fails
/// `max_failures` requests in a row leaves the load balancer; after `min_penalty` it gets one
/// probe request, and each failed probe doubles the penalty up to `max_penalty`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureAccrual {
    /// Failures in a row that eject an endpoint (at least 1).
    pub max_failures: u32,
    /// The first penalty.
    #[serde(with = "duration::serde_req")]
    pub min_penalty: Duration,
    /// The longest penalty (never shorter than `min_penalty`).
    #[serde(with = "duration::serde_req")]
    pub max_penalty: Duration,
    /// Linkerd's jitter ratio, kept for `weft check`; proxies do not apply it.
    pub jitter_ratio: f64,
}

/// A response class: responses matching `condition` are failures (or successes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseClass {
    /// Which responses.
    pub condition: ResponseMatch,
    /// Whether they are failures.
    pub is_failure: bool,
}

/// A condition on a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResponseMatch {
    /// The status is in the range.
    Status(StatusRange),
    /// Every condition holds.
    All(Vec<ResponseMatch>),
    /// At least one holds.
    Any(Vec<ResponseMatch>),
    /// The condition does not hold.
    Not(Box<ResponseMatch>),
}

impl ResponseMatch {
    /// Whether a response with `status` matches.
    pub fn matches(&self, status: u16) -> bool {
        match self {
            ResponseMatch::Status(r) => r.contains(status),
            ResponseMatch::All(all) => all.iter().all(|m| m.matches(status)),
            ResponseMatch::Any(any) => any.iter().any(|m| m.matches(status)),
            ResponseMatch::Not(m) => !m.matches(status),
        }
    }
}

/// Whether `classes` make `status` a failure: the first class that matches decides, and
/// without one, 5xx statuses are failures.
pub fn is_failure(classes: &[ResponseClass], status: u16) -> bool {
    classes
        .iter()
        .find(|c| c.condition.matches(status))
        .map_or(status >= 500, |c| c.is_failure)
}

/// A weighted destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// `host:port`, e.g. `web-canary.emojivoto.svc.cluster.local:80`.
    pub authority: String,
    /// The Service behind it, when it is one in this cluster.
    pub service: Option<ServiceRef>,
    /// Relative weight in thousandths (TrafficSplit `90` is 90000, `500m` is 500; HTTPRoute
    /// weights are scaled the same way). Only ratios between backends matter; 0 gets nothing.
    pub weight: u32,
}

/// A Service port in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
}

/// Configuration that is not used because other configuration takes precedence, so that
/// `weft check` can say so instead of leaving users to wonder why their annotations do nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// What wins: `ServiceProfile web-svc.emojivoto.svc.cluster.local` or
    /// `TrafficSplit emojivoto/web-split`.
    pub by: String,
    /// What is ignored: `HTTPRoute emojivoto/web-default` or `Service emojivoto/web-svc
    /// annotations`.
    pub ignored: String,
    /// The ignored annotations, if any (`retry.linkerd.io/http`, …).
    pub annotations: Vec<String>,
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is ignored because {} takes precedence",
            self.ignored, self.by
        )?;
        if !self.annotations.is_empty() {
            write!(f, " (annotations {})", self.annotations.join(", "))?;
        }
        Ok(())
    }
}
