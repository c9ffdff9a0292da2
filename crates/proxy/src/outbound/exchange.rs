//! One request through a service's policy: pick the route, then attempts — backend (split),
//! endpoint (balancer, waiting with fail-fast), send under the attempt's timeout — retried
//! under the route's retry policy and the service's budget, with jittered exponential backoff.
//! The winning response is streamed back through [`RouteBody`].
//!
//! Timeouts, each answered 504 with `l5d-proxy-error` naming it (gRPC callers get
//! DEADLINE_EXCEEDED): `request` bounds the whole exchange across attempts (and the response
//! body), `response` bounds each attempt's wait for response headers, `per-try` too but is
//! retryable, `idle` bounds the wait for headers and every gap in the response body.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::backoff::{jitter, Backoff};
use super::balance::{self, EndpointSpec, Unready};
use super::body::{RouteBody, RouteRecorder};
use super::metrics::{
    OutboundMetrics, RouteLabels, RouteLatencyLabels, RouteResponseLabels, SkipReason,
};
use super::policy::{Policy, Route};
use super::retry::{self, Attempt, ReplayBody};
use super::{Outbound, ServiceHandle};
use crate::http::errors::ProxyError;
use crate::http::{Body, BoxError, HttpProxy, UpstreamKind};
use crate::server::Target;
use crate::telemetry::DstLabels;

/// Backoff between attempts: 25 ms, doubling, at most 250 ms, jittered.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(25);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The result of an exchange and the upstream of its last attempt (for metric labels).
pub struct Outcome {
    pub result: Result<Response<Body>, ProxyError>,
    pub upstream: Option<UpstreamKind>,
    /// The `dst_*` labels of the last attempt's endpoint (empty when it was not a discovered
    /// endpoint).
    pub dst: DstLabels,
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
    Idle,
    PerTry,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Idle => "idle",
            Kind::PerTry => "per_try",
        }
    }
    fn error(self) -> ProxyError {
        match self {
            Kind::Request => ProxyError::RequestTimeout,
            Kind::Response => ProxyError::ResponseTimeout,
            Kind::Idle => ProxyError::IdleTimeout,
            Kind::PerTry => ProxyError::PerTryTimeout,
        }
    }
}

/// The request head, rebuilt for every attempt (extensions are not carried: upgrades never
/// take this path).
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    fn request(&self, body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The request body: replayable on retryable routes, else sent once.
enum ReqBody {
    Replay(ReplayBody),
    Once(Option<Body>),
}

impl ReqBody {
    fn next(&mut self) -> Body {
        match self {
            ReqBody::Replay(b) => Body::new(b.replay()),
            ReqBody::Once(b) => b.take().unwrap_or_else(crate::http::errors::empty),
        }
    }
    fn replayable(&self) -> bool {
        match self {
            ReqBody::Replay(b) => b.replayable(),
            ReqBody::Once(_) => false,
        }
    }
}

/// The earliest of the attempt's timeouts. Ties go to the earlier-listed kind (request first).
fn attempt_deadline(
    route: &Route,
    default_response: Option<Duration>,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<(Instant, Kind)> {
    let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
    let response = route.timeouts.response.or(default_response);
    [
        (deadline, Kind::Request),
        (response.map(|d| now + d), Kind::Response),
        (route.timeouts.idle.map(|d| now + d), Kind::Idle),
        (per_try.map(|d| now + d), Kind::PerTry),
    ]
    .into_iter()
    .filter_map(|(at, k)| at.map(|at| (at, k)))
    .fold(None, |best: Option<(Instant, Kind)>, (at, k)| match best {
        Some((b, _)) if b <= at => best,
        _ => Some((at, k)),
    })
}

/// Where an attempt to `spec` connects. A meshed endpoint whose identity discovery did not
/// provide is, when this proxy has identity, sent straight to the workload in plain text (and
/// recorded as not meshed) rather than to its proxy unauthenticated: the peer proxy would take it
/// for meshed traffic that nobody verified.
fn upstream_of(spec: &EndpointSpec, identity_enabled: bool) -> UpstreamKind {
    match &spec.meshed {
        Some(m) if m.identity.is_some() || !identity_enabled => UpstreamKind::Meshed {
            peer: m.inbound,
            port: spec.addr.port(),
            identity: m.identity.clone(),
        },
        _ => UpstreamKind::Direct(spec.addr),
    }
}

/// Everything one exchange needs.
pub struct Exchange {
    pub proxy: Arc<HttpProxy>,
    pub outbound: Arc<Outbound>,
    pub service: Arc<ServiceHandle>,
    pub policy: Arc<Policy>,
    /// Where the request would go without discovery (used when a backend does not exist).
    pub fallback: Target,
    pub grpc: bool,
    /// The request, when a tap may report it: dispatched at the first attempt's endpoint.
    pub tap: Option<Arc<crate::tap::TapRequest>>,
}

impl Exchange {
    /// Serves one request.
    pub async fn serve(self, req: Request<Body>) -> Outcome {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let policy = self.policy.clone();
        let Some(route) = policy.route_for(&parts.method, &parts.uri, &parts.headers) else {
            tracing::debug!(dst.authority = %policy.authority, path = parts.uri.path(), "no route matches");
            return Outcome {
                result: Err(ProxyError::NoRoute),
                upstream: None,
                dst: DstLabels::default(),
            };
        };
        let route_idx = policy.routes.iter().position(|r| std::ptr::eq(r, route));
        let labels = RouteLabels {
            dst: policy.authority.clone(),
            route: route.name.clone(),
        };
        let metrics = self.outbound.metrics.clone();
        metrics.route_request_total.get(&labels).inc();
        self.service.budget.deposit(balance::now());

        let head = Head {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        let body = match route.retry {
            Some(_) => ReqBody::Replay(ReplayBody::new(body)),
            None => ReqBody::Once(Some(body)),
        };
        let outcome = self
            .attempts(route, route_idx, &labels, head, body, start)
            .await;
        if let Err(e) = &outcome.result {
            let status = e.status().as_u16();
            metrics
                .route_response_latency_ms
                .get(&RouteLatencyLabels {
                    base: labels.clone(),
                    status_code: status,
                })
                .observe(start.elapsed());
            metrics
                .route_response_total
                .get(&RouteResponseLabels {
                    base: labels,
                    status_code: status,
                    grpc_status: self.grpc.then_some(e.grpc_status()),
                    success: false,
                    error: Some(e.label()),
                })
                .inc();
        }
        outcome
    }

    async fn attempts(
        &self,
        route: &Route,
        route_idx: Option<usize>,
        labels: &RouteLabels,
        head: Head,
        mut body: ReqBody,
        start: Instant,
    ) -> Outcome {
        let metrics = &self.outbound.metrics;
        let policy = &self.policy;
        let deadline = route.timeouts.request.map(|d| start + d);
        let default_response = self.proxy.settings.response_timeout;
        let mut retries = 0u32;
        let mut last_upstream = None;
        let mut last_dst = DstLabels::default();
        let fail = |e: ProxyError, upstream: Option<UpstreamKind>, dst: &DstLabels| Outcome {
            result: Err(e),
            upstream,
            dst: dst.clone(),
        };
        loop {
            // Backend (traffic split), then endpoint.
            let backend = policy
                .backends_of(route)
                .pick(fastrand::u64(..))
                .to_string();
            let handle = self.outbound.balancer(&backend);
            let balancer = handle.balancer.clone();
            let ready = balancer.ready(policy.fail_fast, deadline).await;
            let (upstream, endpoint) = match ready {
                Ok(ep) => (
                    upstream_of(&ep.spec, self.proxy.settings.identity_enabled),
                    Some(ep),
                ),
                Err(Unready::NotFound) => {
                    match self.proxy.fallback_upstream(&self.fallback).await {
                        Ok(u) => (u, None),
                        Err(e) => return fail(e, last_upstream, &last_dst),
                    }
                }
                Err(Unready::FailFast) => {
                    tracing::info!(dst.authority = %backend, fail_fast = ?policy.fail_fast, "no usable endpoint; failing fast");
                    return fail(ProxyError::FailFast, last_upstream, &last_dst);
                }
                Err(Unready::Deadline) => {
                    self.count_timeout(labels, Kind::Request);
                    return fail(ProxyError::RequestTimeout, last_upstream, &last_dst);
                }
            };
            last_upstream = Some(upstream.clone());
            last_dst = endpoint
                .as_ref()
                .map(|ep| ep.spec.dst.clone())
                .unwrap_or_default();
            if let Some(tap) = &self.tap {
                // The first attempt's endpoint; retries are the same request.
                tap.dispatch(
                    Some(upstream.addr()),
                    &self.proxy.outbound_tls(&upstream),
                    &last_dst,
                );
            }
            metrics
                .route_backend_request_total
                .get(&OutboundMetrics::extra(labels, "backend", &backend))
                .inc();
            let inflight = endpoint.as_ref().map(|e| e.start());
            let req = head.request(body.next());
            let sent = Instant::now();
            let limit = attempt_deadline(route, default_response, deadline, sent);
            let peek_grpc = self.grpc && route.retry.as_ref().is_some_and(|r| r.grpc_codes != 0);
            let attempt = async {
                let rsp = self
                    .proxy
                    .send_attempt(req, &upstream, &self.fallback.authority)
                    .await?;
                let (mut parts, rbody) = rsp.into_parts();
                crate::http::strip_response_hop_by_hop(&mut parts.headers);
                let rbody: Body = rbody.map_err(BoxError::from).boxed();
                let header_grpc = parts
                    .headers
                    .get("grpc-status")
                    .and_then(crate::http::record::parse_grpc_status);
                let rtt = sent.elapsed();
                let (rbody, grpc) = if peek_grpc && header_grpc.is_none() {
                    retry::peek_grpc_status(rbody).await
                } else {
                    (rbody, header_grpc)
                };
                Ok::<_, ProxyError>((Response::from_parts(parts, rbody), grpc, rtt))
            };
            let result = match limit {
                Some((at, kind)) => match tokio::time::timeout_at(at, attempt).await {
                    Ok(r) => r.map_err(|e| (e, None)),
                    Err(_) => Err((kind.error(), Some(kind))),
                },
                None => attempt.await.map_err(|e| (e, None)),
            };
            let classes = &route.response_classes;
            let outcome_attempt = match &result {
                Ok((rsp, grpc, rtt)) => {
                    if let Some(ep) = &endpoint {
                        ep.observe_rtt(*rtt, balance::now());
                    }
                    Attempt::Response {
                        status: rsp.status().as_u16(),
                        grpc: *grpc,
                    }
                }
                Err((_, Some(kind))) => {
                    self.count_timeout(labels, *kind);
                    if let Some(ep) = &endpoint {
                        ep.observe_rtt(sent.elapsed(), balance::now());
                    }
                    if *kind == Kind::PerTry {
                        Attempt::PerTryTimeout
                    } else {
                        Attempt::Other
                    }
                }
                Err((ProxyError::ConnectFailed, None)) => Attempt::ConnectFailed,
                Err(_) => Attempt::Other,
            };
            let wants_retry = route
                .retry
                .as_ref()
                .is_some_and(|p| retry::retryable(p, outcome_attempt));
            let may_retry = wants_retry && {
                let limit = route.retry.as_ref().map_or(0, |p| p.limit);
                let skip = if retries >= limit {
                    Some(SkipReason::LimitReached)
                } else if !body.replayable() {
                    Some(SkipReason::BodyTooLarge)
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Out of time: the request timeout answers, not a skip.
                    None
                } else if !self.service.budget.withdraw(balance::now()) {
                    Some(SkipReason::BudgetExhausted)
                } else {
                    None
                };
                if let Some(reason) = skip {
                    metrics
                        .route_retry_skipped_total
                        .get(&OutboundMetrics::extra(labels, "reason", reason.as_str()))
                        .inc();
                }
                skip.is_none() && deadline.is_none_or(|d| Instant::now() < d)
            };
            if may_retry {
                // This attempt failed: account for it on the endpoint, then back off.
                if let (Some(ep), Some(_)) = (&endpoint, &inflight) {
                    let failed = match outcome_attempt {
                        Attempt::Response { status, grpc } => {
                            super::route::is_failure(classes, status, grpc)
                        }
                        _ => true,
                    };
                    balancer.record(ep, failed, policy.accrual.as_ref());
                }
                drop(result);
                drop(inflight);
                retries += 1;
                metrics.route_retry_total.get(labels).inc();
                let pause = jitter(Backoff::nominal(
                    RETRY_BACKOFF_MIN,
                    RETRY_BACKOFF_MAX,
                    retries - 1,
                ));
                let wake = Instant::now() + pause;
                if let Some(d) = deadline.filter(|d| *d <= wake) {
                    tokio::time::sleep_until(d).await;
                    self.count_timeout(labels, Kind::Request);
                    return fail(ProxyError::RequestTimeout, last_upstream, &last_dst);
                }
                tokio::time::sleep_until(wake).await;
                tracing::debug!(dst.authority = %policy.authority, route = %route.name, retry = retries, "retrying");
                continue;
            }
            return match result {
                Ok((rsp, grpc, _)) => {
                    let status = rsp.status().as_u16();
                    metrics
                        .route_response_latency_ms
                        .get(&RouteLatencyLabels {
                            base: labels.clone(),
                            status_code: status,
                        })
                        .observe(start.elapsed());
                    let recorder = RouteRecorder {
                        metrics: metrics.clone(),
                        labels: labels.clone(),
                        status,
                        grpc_status: grpc,
                        policy: policy.clone(),
                        route: route_idx,
                        endpoint: endpoint.and(inflight).map(|f| (balancer.clone(), f)),
                    };
                    let (parts, rbody) = rsp.into_parts();
                    let rbody = RouteBody::new(rbody, deadline, route.timeouts.idle, recorder);
                    Outcome {
                        result: Ok(Response::from_parts(parts, Body::new(rbody))),
                        upstream: last_upstream,
                        dst: last_dst,
                    }
                }
                Err((e, _)) => {
                    if let (Some(ep), Some(_)) = (&endpoint, &inflight) {
                        balancer.record(ep, true, policy.accrual.as_ref());
                    }
                    fail(e, last_upstream, &last_dst)
                }
            };
        }
    }

    fn count_timeout(&self, labels: &RouteLabels, kind: Kind) {
        self.outbound
            .metrics
            .route_timeout_total
            .get(&OutboundMetrics::extra(labels, "kind", kind.label()))
            .inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outbound::balance::MeshedProxy;

    #[test]
    fn meshed_endpoints_without_identity_are_never_sent_unauthenticated_to_a_proxy() {
        let spec = |identity: Option<&str>| EndpointSpec {
            addr: "127.0.1.5:8080"
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            weight: 10_000,
            meshed: Some(MeshedProxy {
                inbound: "127.0.1.5:4143"
                    .parse()
                    .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                identity: identity.map(str::to_string),
            }),
            labels: Default::default(),
            dst: Default::default(),
        };
        let with_id = spec(Some("web.ns.serviceaccount.identity.weft.cluster.local"));
        assert!(matches!(
            upstream_of(&with_id, true),
            UpstreamKind::Meshed { peer, port: 8080, identity: Some(_) } if peer.port() == 4143
        ));
        // Identity on, none from discovery: straight to the workload, not to its proxy.
        assert!(matches!(
            upstream_of(&spec(None), true),
            UpstreamKind::Direct(addr) if addr.port() == 8080
        ));
        // Identity off everywhere (development): the proxy-to-proxy hop is plain h2 anyway.
        assert!(matches!(
            upstream_of(&spec(None), false),
            UpstreamKind::Meshed { identity: None, .. }
        ));
    }
    use crate::outbound::policy::{RetryPolicy, Timeouts};
    use crate::outbound::route::RequestMatch;

    fn route(per_try: Option<u64>, response: Option<u64>, idle: Option<u64>) -> Route {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        Route {
            name: "r".into(),
            condition: RequestMatch::Always,
            retry: Some(RetryPolicy {
                statuses: vec![],
                grpc_codes: 0,
                limit: 1,
                per_try_timeout: ms(per_try),
            }),
            timeouts: Timeouts {
                request: None,
                response: ms(response),
                idle: ms(idle),
            },
            response_classes: vec![],
            backends: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_timeout_wins_and_names_itself() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let r = route(Some(100), Some(500), None);
        assert_eq!(
            attempt_deadline(&r, None, None, now),
            Some((now + ms(100), Kind::PerTry))
        );
        assert_eq!(
            attempt_deadline(&r, None, Some(now + ms(50)), now),
            Some((now + ms(50), Kind::Request))
        );
        assert_eq!(
            attempt_deadline(&r, None, Some(now + ms(100)), now),
            Some((now + ms(100), Kind::Request)),
            "ties go to the request timeout"
        );
        let r = route(None, None, Some(30));
        assert_eq!(
            attempt_deadline(&r, Some(ms(10)), None, now),
            Some((now + ms(10), Kind::Response))
        );
        assert_eq!(
            attempt_deadline(&route(None, None, None), None, None, now),
            None
        );
        assert_eq!(Kind::PerTry.error().status().as_u16(), 504);
        assert_eq!(Kind::Idle.error().grpc_status(), 4);
    }
}
