//! Routes from HTTPRoutes (flattened to one entry per match, in Gateway API precedence order)
//! and from ServiceProfiles (in the profile's order), and a profile's `dstOverrides`.

use super::{nonzero, Index, PolicyAnnotations, PROFILE_RETRY_LIMIT, PROFILE_ROUTE_TIMEOUT};
use crate::annotations::{normalize_ranges, StatusRange, TimeoutAnnotations};
use crate::httproute::{
    HttpRouteMatch, HttpRouteRule, HttpRouteSpec, PathMatchType, ValueMatchSpec, ValueMatchType,
};
use crate::object::Object;
use crate::policy::{
    is_failure, Backend, PathMatch, RequestMatch, ResponseClass, ResponseMatch, RetryPolicy, Route,
    ServiceRef, Timeouts, ValueMatch,
};
use crate::profile::{split_authority, RequestCondition, ResponseCondition, ServiceProfileSpec};
use crate::service::ServicePort;
use std::cmp::Reverse;

/// Whether an HTTPRoute applies to this Service port: a Service parent with the Service's
/// name, in the route's own namespace (producer routes), on this port (or on every port).
pub(super) fn attaches(
    route: &Object,
    spec: &HttpRouteSpec,
    svc: &Object,
    port: &ServicePort,
) -> bool {
    route.namespace() == svc.namespace()
        && spec.parent_refs.iter().any(|p| {
            p.is_service()
                && p.name == svc.name()
                && p.namespace.as_deref().unwrap_or(route.namespace()) == svc.namespace()
                && match (p.port, &p.section_name) {
                    (Some(n), _) => n == port.port,
                    (None, Some(section)) => port.name.as_deref() == Some(section.as_str()),
                    (None, None) => true,
                }
        })
}

/// What routes inherit from their Service's annotations.
pub(super) struct Defaults {
    pub(super) retry: Option<RetryPolicy>,
    pub(super) timeouts: Option<TimeoutAnnotations>,
}

/// Gateway API precedence of one match, smallest first: exact paths, then regular
/// expressions, then prefixes (longer before shorter, as in Linkerd's proxy); then a method
/// before none; more headers, then more query parameters; then the older route, then by
/// namespace/name; then rule and match order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Precedence {
    path_kind: u8,
    path_len: Reverse<usize>,
    no_method: bool,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    no_timestamp: bool,
    created: String,
    namespace: String,
    name: String,
    rule: usize,
    matched: usize,
}

fn path_of(m: &HttpRouteMatch) -> (PathMatchType, String) {
    let path = m.path.as_ref();
    (
        path.and_then(|p| p.match_type)
            .unwrap_or(PathMatchType::PathPrefix),
        path.and_then(|p| p.value.clone())
            .unwrap_or_else(|| "/".to_string()),
    )
}

fn precedence(route: &Object, rule: usize, matched: usize, m: &HttpRouteMatch) -> Precedence {
    let (kind, value) = path_of(m);
    let (path_kind, path_len) = match kind {
        PathMatchType::Exact => (0, value.len()),
        PathMatchType::RegularExpression => (1, value.len()),
        PathMatchType::PathPrefix => (2, value.trim_end_matches('/').len()),
    };
    let created = route.metadata.creation_timestamp.clone();
    Precedence {
        path_kind,
        path_len: Reverse(path_len),
        no_method: m.method.is_none(),
        headers: Reverse(m.headers.len()),
        query: Reverse(m.query_params.len()),
        no_timestamp: created.is_none(),
        created: created.unwrap_or_default(),
        namespace: route.namespace().to_string(),
        name: route.name().to_string(),
        rule,
        matched,
    }
}

fn value_match(v: &ValueMatchSpec) -> ValueMatch {
    match v.match_type.unwrap_or(ValueMatchType::Exact) {
        ValueMatchType::Exact => ValueMatch::Exact(v.value.clone()),
        ValueMatchType::RegularExpression => ValueMatch::Regex(v.value.clone()),
    }
}

/// One HTTPRoute match as a condition (a prefix of `/` adds no condition).
fn http_match(m: &HttpRouteMatch) -> RequestMatch {
    let mut parts = Vec::new();
    match path_of(m) {
        (PathMatchType::Exact, v) => parts.push(RequestMatch::Path(PathMatch::Exact(v))),
        (PathMatchType::RegularExpression, v) => {
            parts.push(RequestMatch::Path(PathMatch::Regex(v)))
        }
        (PathMatchType::PathPrefix, v) if v.trim_end_matches('/').is_empty() => {}
        (PathMatchType::PathPrefix, v) => parts.push(RequestMatch::Path(PathMatch::Prefix(v))),
    }
    if let Some(method) = &m.method {
        parts.push(RequestMatch::Method(method.clone()));
    }
    for h in &m.headers {
        parts.push(RequestMatch::Header {
            name: h.name.to_ascii_lowercase(),
            value: value_match(h),
        });
    }
    for q in &m.query_params {
        parts.push(RequestMatch::QueryParam {
            name: q.name.clone(),
            value: value_match(q),
        });
    }
    single_or_all(parts)
}

fn single_or_all(mut parts: Vec<RequestMatch>) -> RequestMatch {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return only;
        }
    }
    RequestMatch::All(parts)
}

/// The routes of one HTTPRoute for one Service port, with their precedence.
#[allow(clippy::too_many_arguments)]
pub(super) fn http_routes(
    index: &Index<'_>,
    route: &Object,
    spec: &HttpRouteSpec,
    annotations: Option<&PolicyAnnotations>,
    defaults: &Defaults,
    port: u16,
    entries: &mut Vec<(Precedence, Route)>,
) {
    let retry = match annotations {
        Some(a) => a.retry_or(&defaults.retry),
        None => defaults.retry.clone(),
    };
    let own_timeouts = annotations.and_then(PolicyAnnotations::timeouts);
    let catch_all = [HttpRouteRule::default()];
    let rules = if spec.rules.is_empty() {
        &catch_all[..]
    } else {
        &spec.rules[..]
    };
    for (ri, rule) in rules.iter().enumerate() {
        let field = rule.timeouts.clone().unwrap_or_default();
        let timeouts = match own_timeouts {
            // The route's annotations beat its `timeouts` field (as in Linkerd).
            Some(t) => Timeouts {
                request: nonzero(t.request.or(field.request)),
                response: nonzero(t.response.or(field.backend_request)),
                idle: nonzero(t.idle),
            },
            // The route's field beats the Service's annotations (the more specific wins).
            None => {
                let d = defaults.timeouts.as_ref();
                Timeouts {
                    request: nonzero(field.request.or(d.and_then(|d| d.request))),
                    response: nonzero(field.backend_request.or(d.and_then(|d| d.response))),
                    idle: nonzero(d.and_then(|d| d.idle)),
                }
            }
        };
        let backends: Vec<Backend> = rule
            .backend_refs
            .iter()
            .filter(|b| b.is_service())
            .map(|b| {
                index.backend(
                    b.namespace.as_deref().unwrap_or(route.namespace()),
                    &b.name,
                    b.port.unwrap_or(port),
                    b.weight.saturating_mul(1_000),
                )
            })
            .collect();
        let origin = format!("{} rules[{ri}]", route.describe());
        let catch_all = [HttpRouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &catch_all[..]
        } else {
            &rule.matches[..]
        };
        for (mi, m) in matches.iter().enumerate() {
            entries.push((
                precedence(route, ri, mi, m),
                Route {
                    name: route.name().to_string(),
                    origin: origin.clone(),
                    condition: http_match(m),
                    retry: retry.clone(),
                    timeouts: timeouts.clone(),
                    response_classes: Vec::new(),
                    backends: backends.clone(),
                },
            ));
        }
    }
}

fn request_match(c: &RequestCondition) -> RequestMatch {
    let mut parts = Vec::new();
    if let Some(method) = &c.method {
        parts.push(RequestMatch::Method(method.clone()));
    }
    if let Some(re) = &c.path_regex {
        parts.push(RequestMatch::Path(PathMatch::Regex(re.clone())));
    }
    if let Some(all) = &c.all {
        parts.push(RequestMatch::All(all.iter().map(request_match).collect()));
    }
    if let Some(any) = &c.any {
        parts.push(RequestMatch::Any(any.iter().map(request_match).collect()));
    }
    if let Some(not) = &c.negate {
        parts.push(RequestMatch::Not(Box::new(request_match(not))));
    }
    single_or_all(parts)
}

fn response_match(c: &ResponseCondition) -> ResponseMatch {
    let mut parts = Vec::new();
    if let Some(status) = c.status {
        parts.push(ResponseMatch::Status(StatusRange {
            min: status.min.unwrap_or(100),
            max: status.max.unwrap_or(599),
        }));
    }
    if let Some(all) = &c.all {
        parts.push(ResponseMatch::All(all.iter().map(response_match).collect()));
    }
    if let Some(any) = &c.any {
        parts.push(ResponseMatch::Any(any.iter().map(response_match).collect()));
    }
    if let Some(not) = &c.negate {
        parts.push(ResponseMatch::Not(Box::new(response_match(not))));
    }
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return only;
        }
    }
    ResponseMatch::All(parts)
}

/// The statuses `classes` call failures, as ranges: what a retryable profile route retries.
pub(crate) fn failure_ranges(classes: &[ResponseClass]) -> Vec<StatusRange> {
    let ranges = (100..=599)
        .filter(|status| is_failure(classes, *status))
        .map(|status| StatusRange {
            min: status,
            max: status,
        })
        .collect();
    normalize_ranges(ranges)
}

/// A ServiceProfile's routes, in its order.
pub(super) fn profile_routes(profile: &Object, spec: &ServiceProfileSpec) -> Vec<Route> {
    spec.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let response_classes: Vec<ResponseClass> = r
                .response_classes
                .iter()
                .filter_map(|c| {
                    c.condition.as_ref().map(|cond| ResponseClass {
                        condition: response_match(cond),
                        is_failure: c.is_failure.unwrap_or(false),
                    })
                })
                .collect();
            let retry = (r.is_retryable == Some(true)).then(|| RetryPolicy {
                http_statuses: failure_ranges(&response_classes),
                grpc_codes: Vec::new(),
                limit: PROFILE_RETRY_LIMIT,
                per_try_timeout: None,
            });
            Route {
                name: r.name.clone(),
                origin: format!("{} routes[{i}]", profile.describe()),
                // A route without a condition is rejected when parsed; one built in code
                // without it matches nothing rather than everything.
                condition: r
                    .condition
                    .as_ref()
                    .map_or(RequestMatch::Any(Vec::new()), request_match),
                retry,
                timeouts: Timeouts {
                    request: nonzero(Some(r.timeout.unwrap_or(PROFILE_ROUTE_TIMEOUT))),
                    ..Timeouts::default()
                },
                response_classes,
                backends: Vec::new(),
            }
        })
        .collect()
}

/// A profile's `dstOverrides` as backends (the port defaults to the service's).
pub(super) fn dst_overrides(
    index: &Index<'_>,
    spec: &ServiceProfileSpec,
    port: u16,
) -> Vec<Backend> {
    let suffix = format!(".svc.{}", index.domain);
    spec.dst_overrides
        .iter()
        .filter_map(|d| {
            let (host, p) = split_authority(&d.authority).ok()?;
            let port = p.unwrap_or(port);
            let service = host
                .strip_suffix(&suffix)
                .and_then(|rest| rest.split_once('.'))
                .filter(|(_, ns)| !ns.contains('.'))
                .map(|(name, ns)| ServiceRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    port,
                });
            Some(Backend {
                authority: format!("{host}:{port}"),
                service,
                weight: d.weight,
            })
        })
        .collect()
}
