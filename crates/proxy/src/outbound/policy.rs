//! A service's policy as the proxy uses it: compiled once from each `ServicePolicy` the
//! destination service sends (routes with compiled matches, retries, timeouts, response
//! classes, weighted backends, budget, failure accrual, fail-fast), with every value from the
//! control plane checked and clamped so that nothing it sends can panic the proxy.

use std::time::Duration;

use http::{HeaderMap, Method, Uri};
use weft_api::destination as pb;

use super::accrual::AccrualConfig;
use super::budget::BudgetParams;
use super::route::{clamp_status, RequestMatch, ResponseMatch};
use super::split::Split;

/// With no usable endpoint for this long, requests fail fast with 503 (`fail_fast_ms` = 0).
pub const DEFAULT_FAIL_FAST: Duration = Duration::from_secs(3);
/// Most retries per request the proxy allows, whatever the policy says.
pub const MAX_RETRY_LIMIT: u32 = 10;
/// The `route` label of requests that match no named route on a policy with a catch-all.
pub const DEFAULT_ROUTE: &str = "default";

/// Where the routes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    HttpRoute,
    ServiceProfile,
}

/// When to retry, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Inclusive HTTP status ranges.
    pub statuses: Vec<(u16, u16)>,
    /// Bit `n` set: gRPC status `n` is retried.
    pub grpc_codes: u32,
    /// Retries per request, not counting the first attempt.
    pub limit: u32,
    pub per_try_timeout: Option<Duration>,
}

impl RetryPolicy {
    pub fn retries_status(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    pub fn retries_grpc(&self, code: u16) -> bool {
        code < 32 && self.grpc_codes & (1 << code) != 0
    }
}

/// A route's timeouts; `None` is no timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub request: Option<Duration>,
    pub response: Option<Duration>,
    pub idle: Option<Duration>,
}

/// One route.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub condition: RequestMatch,
    pub retry: Option<RetryPolicy>,
    pub timeouts: Timeouts,
    pub response_classes: Vec<(ResponseMatch, bool)>,
    /// `None`: the service's backends.
    pub backends: Option<Split>,
}

/// A service's compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub authority: String,
    pub source: Source,
    pub routes: Vec<Route>,
    /// Used for requests that match no route on policies that are not HTTPRoute-sourced.
    pub default_route: Route,
    pub backends: Split,
    pub budget: BudgetParams,
    pub accrual: Option<AccrualConfig>,
    pub fail_fast: Duration,
}

fn ms(v: u64) -> Option<Duration> {
    // At most a day: a larger value is a unit mistake, and it keeps Instant arithmetic safe.
    (v > 0).then(|| Duration::from_millis(v.min(86_400_000)))
}

fn split(backends: &[pb::Backend], what: &str) -> Option<Split> {
    if backends.is_empty() {
        return None;
    }
    let s = Split::new(backends.iter().map(|b| (b.authority.as_str(), b.weight)));
    if s.is_none() {
        tracing::warn!(
            what,
            "every backend has weight 0 or no authority; using the service itself"
        );
    }
    s
}

impl Policy {
    /// Compiles a policy for `authority` (the authority the proxy asked for).
    pub fn compile(authority: &str, p: &pb::ServicePolicy) -> Policy {
        let service = if p.authority.is_empty() {
            authority.to_string()
        } else {
            p.authority.clone()
        };
        let source = match pb::PolicySource::try_from(p.source) {
            Ok(pb::PolicySource::HttpRoute) => Source::HttpRoute,
            Ok(pb::PolicySource::ServiceProfile) => Source::ServiceProfile,
            _ => Source::Default,
        };
        let routes = p
            .routes
            .iter()
            .map(|r| compile_route(r, &service))
            .collect();
        let backends = split(&p.backends, &service).unwrap_or_else(|| Split::single(&service));
        let budget = match &p.retry_budget {
            Some(b) => BudgetParams::sanitized(
                b.retry_ratio,
                b.min_retries_per_second,
                Duration::from_millis(b.ttl_ms),
            ),
            None => BudgetParams::default(),
        };
        let accrual = p.failure_accrual.as_ref().and_then(|a| {
            AccrualConfig::sanitized(a.consecutive_failures, a.min_backoff_ms, a.max_backoff_ms)
        });
        for o in &p.overridden {
            tracing::info!(dst.authority = %service, "policy note: {o}");
        }
        Policy {
            authority: service,
            source,
            routes,
            default_route: Route {
                name: DEFAULT_ROUTE.to_string(),
                condition: RequestMatch::Always,
                retry: None,
                timeouts: Timeouts::default(),
                response_classes: Vec::new(),
                backends: None,
            },
            backends,
            budget,
            accrual,
            fail_fast: ms(p.fail_fast_ms).unwrap_or(DEFAULT_FAIL_FAST),
        }
    }

    /// The route a request takes: the first whose condition holds. `None` (answered 404) only
    /// for HTTPRoute-sourced policies; others fall back to a default route.
    pub fn route_for(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<&Route> {
        match self
            .routes
            .iter()
            .find(|r| r.condition.matches(method, uri, headers))
        {
            Some(r) => Some(r),
            None if self.source == Source::HttpRoute => None,
            None => Some(&self.default_route),
        }
    }

    /// The backends of a route.
    pub fn backends_of<'a>(&'a self, route: &'a Route) -> &'a Split {
        route.backends.as_ref().unwrap_or(&self.backends)
    }
}

fn compile_route(r: &pb::Route, service: &str) -> Route {
    let name = if r.name.trim().is_empty() {
        DEFAULT_ROUTE.to_string()
    } else {
        r.name.clone()
    };
    let retry = r.retry.as_ref().map(|rp| {
        let mut grpc_codes = 0u32;
        for c in &rp.grpc_codes {
            if *c <= 16 {
                grpc_codes |= 1 << c;
            } else {
                tracing::warn!(route = %name, code = c, "ignoring gRPC code outside 0-16 in retry policy");
            }
        }
        let statuses = rp
            .http_statuses
            .iter()
            .map(|s| (clamp_status(s.min), clamp_status(s.max)))
            .filter(|(lo, hi)| lo <= hi)
            .collect();
        if rp.limit > MAX_RETRY_LIMIT {
            tracing::warn!(route = %name, limit = rp.limit, max = MAX_RETRY_LIMIT, "retry limit capped");
        }
        RetryPolicy {
            statuses,
            grpc_codes,
            limit: rp.limit.min(MAX_RETRY_LIMIT),
            per_try_timeout: ms(rp.per_try_timeout_ms),
        }
    });
    let timeouts = r
        .timeouts
        .as_ref()
        .map(|t| Timeouts {
            request: ms(t.request_ms),
            response: ms(t.response_ms),
            idle: ms(t.idle_ms),
        })
        .unwrap_or_default();
    Route {
        condition: RequestMatch::compile(r.condition.as_ref(), &name),
        retry,
        timeouts,
        response_classes: r
            .response_classes
            .iter()
            .map(|c| (ResponseMatch::compile(c.condition.as_ref()), c.is_failure))
            .collect(),
        backends: split(&r.backends, service),
        name,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str) -> pb::Route {
        pb::Route {
            name: name.into(),
            condition: Some(pb::RequestMatch {
                kind: Some(pb::request_match::Kind::Path(pb::PathMatch {
                    kind: Some(pb::path_match::Kind::Prefix(prefix.into())),
                })),
            }),
            ..Default::default()
        }
    }

    fn get(p: &Policy, path: &str) -> Option<String> {
        p.route_for(&Method::GET, &path.parse().unwrap(), &HeaderMap::new())
            .map(|r| r.name.clone())
    }

    #[test]
    fn routes_match_in_order_and_http_route_misses_are_none() {
        let mut pb = pb::ServicePolicy {
            authority: "web.ns.svc.cluster.local:80".into(),
            source: pb::PolicySource::HttpRoute as i32,
            routes: vec![route("api-list", "/api/list"), route("api", "/api")],
            ..Default::default()
        };
        let p = Policy::compile("web.ns:80", &pb);
        assert_eq!(get(&p, "/api/list").as_deref(), Some("api-list"));
        assert_eq!(get(&p, "/api/vote").as_deref(), Some("api"));
        assert_eq!(get(&p, "/other"), None);
        pb.source = pb::PolicySource::ServiceProfile as i32;
        let p = Policy::compile("web.ns:80", &pb);
        assert_eq!(get(&p, "/other").as_deref(), Some(DEFAULT_ROUTE));
        assert_eq!(p.backends.pick(0), "web.ns.svc.cluster.local:80");
        assert_eq!(p.fail_fast, DEFAULT_FAIL_FAST);
    }

    #[test]
    fn hostile_values_are_clamped() {
        let pb = pb::ServicePolicy {
            routes: vec![pb::Route {
                name: "".into(),
                retry: Some(pb::RetryPolicy {
                    http_statuses: vec![
                        pb::StatusRange { min: 500, max: 599 },
                        pb::StatusRange { min: 9, max: 1 },
                    ],
                    grpc_codes: vec![14, 99],
                    limit: 1_000_000,
                    per_try_timeout_ms: u64::MAX,
                }),
                backends: vec![pb::Backend {
                    authority: "x:80".into(),
                    weight: 0,
                }],
                ..Default::default()
            }],
            backends: vec![],
            failure_accrual: Some(pb::FailureAccrual {
                consecutive_failures: 0,
                min_backoff_ms: 0,
                max_backoff_ms: 0,
            }),
            retry_budget: Some(pb::RetryBudget {
                retry_ratio: f64::INFINITY,
                min_retries_per_second: 1,
                ttl_ms: 0,
            }),
            ..Default::default()
        };
        let p = Policy::compile("svc:80", &pb);
        let r = &p.routes[0];
        assert_eq!(r.name, DEFAULT_ROUTE);
        let retry = r.retry.as_ref().unwrap();
        assert_eq!(retry.limit, MAX_RETRY_LIMIT);
        assert_eq!(retry.statuses, vec![(500, 599)]);
        assert!(retry.retries_grpc(14) && !retry.retries_grpc(13) && !retry.retries_grpc(99));
        assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(86_400)));
        assert!(
            r.backends.is_none(),
            "all-zero weights fall back to the service"
        );
        assert_eq!(p.backends_of(r).pick(3), "svc:80");
        assert_eq!(p.accrual, None);
        assert_eq!(p.budget.ttl, super::super::budget::DEFAULT_TTL);
    }
}
