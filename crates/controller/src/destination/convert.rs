//! The compiled policy ([`weft_model::ServicePolicy`]) as the protobuf the proxies receive
//! (`weft.destination.v1.ServicePolicy`).
//!
//! Rules: durations become whole milliseconds, rounded *up*, because 0 means "no timeout" on
//! the wire and a 500µs timeout must not silently become none; `None` becomes 0. Status ranges
//! and gRPC codes keep their numbers. Every route gets a condition (an always-true `All([])`
//! when the model says so). Overrides are sent as their sentences (`HTTPRoute emojivoto/web
//! is ignored because ServiceProfile … takes precedence`). Failure accrual maps Linkerd's names
//! to the wire's (`max_failures` → `consecutive_failures`, penalties → backoffs in ms); its
//! jitter ratio has no field and is dropped. The model has no fail-fast setting, so
//! `fail_fast_ms` is 0 (the proxy's default).

use std::time::Duration;

use weft_api::destination as pb;
use weft_model::policy::{PathMatch, ResponseClass, ResponseMatch, ValueMatch};
use weft_model::{
    Backend, FailureAccrual, PolicySource, RequestMatch, RetryBudget, RetryPolicy, Route,
    ServicePolicy, StatusRange, Timeouts,
};

/// The proto of a compiled service policy.
pub fn service_policy(p: &ServicePolicy) -> pb::ServicePolicy {
    pb::ServicePolicy {
        authority: p.authority.clone(),
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        port: u32::from(p.port),
        source: source(p.source) as i32,
        routes: p.routes.iter().map(route).collect(),
        backends: p.backends.iter().map(backend).collect(),
        retry_budget: Some(retry_budget(&p.retry_budget)),
        failure_accrual: p.failure_accrual.as_ref().map(failure_accrual),
        fail_fast_ms: 0,
        overridden: p.overridden.iter().map(ToString::to_string).collect(),
    }
}

/// Whole milliseconds, rounded up (so a non-zero duration never becomes "none").
pub fn millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn opt_millis(d: Option<Duration>) -> u64 {
    d.map_or(0, millis)
}

fn source(s: PolicySource) -> pb::PolicySource {
    match s {
        PolicySource::Default => pb::PolicySource::Default,
        PolicySource::HttpRoute => pb::PolicySource::HttpRoute,
        PolicySource::ServiceProfile => pb::PolicySource::ServiceProfile,
    }
}

fn route(r: &Route) -> pb::Route {
    pb::Route {
        name: r.name.clone(),
        condition: Some(request_match(&r.condition)),
        retry: r.retry.as_ref().map(retry),
        timeouts: Some(timeouts(&r.timeouts)),
        response_classes: r.response_classes.iter().map(response_class).collect(),
        backends: r.backends.iter().map(backend).collect(),
    }
}

/// The proto of a request condition (the tree is kept as it is).
pub fn request_match(m: &RequestMatch) -> pb::RequestMatch {
    use pb::request_match::Kind;
    let list = |ms: &[RequestMatch]| pb::MatchList {
        matches: ms.iter().map(request_match).collect(),
    };
    let kind = match m {
        RequestMatch::All(ms) => Kind::All(list(ms)),
        RequestMatch::Any(ms) => Kind::Any(list(ms)),
        RequestMatch::Not(m) => Kind::Not(Box::new(request_match(m))),
        RequestMatch::Method(method) => Kind::Method(method.clone()),
        RequestMatch::Path(p) => Kind::Path(path_match(p)),
        RequestMatch::Header { name, value } => Kind::Header(value_match(name, value)),
        RequestMatch::QueryParam { name, value } => Kind::QueryParam(value_match(name, value)),
    };
    pb::RequestMatch { kind: Some(kind) }
}

fn path_match(p: &PathMatch) -> pb::PathMatch {
    use pb::path_match::Kind;
    let kind = match p {
        PathMatch::Exact(s) => Kind::Exact(s.clone()),
        PathMatch::Prefix(s) => Kind::Prefix(s.clone()),
        PathMatch::Regex(s) => Kind::Regex(s.clone()),
    };
    pb::PathMatch { kind: Some(kind) }
}

fn value_match(name: &str, v: &ValueMatch) -> pb::ValueMatch {
    use pb::value_match::Kind;
    let kind = match v {
        ValueMatch::Exact(s) => Kind::Exact(s.clone()),
        ValueMatch::Regex(s) => Kind::Regex(s.clone()),
    };
    pb::ValueMatch {
        name: name.to_string(),
        kind: Some(kind),
    }
}

fn status_range(r: &StatusRange) -> pb::StatusRange {
    pb::StatusRange {
        min: u32::from(r.min),
        max: u32::from(r.max),
    }
}

fn retry(r: &RetryPolicy) -> pb::RetryPolicy {
    pb::RetryPolicy {
        http_statuses: r.http_statuses.iter().map(status_range).collect(),
        grpc_codes: r.grpc_codes.iter().map(|c| c.code()).collect(),
        limit: r.limit,
        per_try_timeout_ms: opt_millis(r.per_try_timeout),
    }
}

fn timeouts(t: &Timeouts) -> pb::Timeouts {
    pb::Timeouts {
        request_ms: opt_millis(t.request),
        response_ms: opt_millis(t.response),
        idle_ms: opt_millis(t.idle),
    }
}

fn response_class(c: &ResponseClass) -> pb::ResponseClass {
    pb::ResponseClass {
        condition: Some(response_match(&c.condition)),
        is_failure: c.is_failure,
    }
}

/// The proto of a response condition.
pub fn response_match(m: &ResponseMatch) -> pb::ResponseMatch {
    use pb::response_match::Kind;
    let list = |ms: &[ResponseMatch]| pb::ResponseMatchList {
        matches: ms.iter().map(response_match).collect(),
    };
    let kind = match m {
        ResponseMatch::Status(r) => Kind::Status(status_range(r)),
        ResponseMatch::All(ms) => Kind::All(list(ms)),
        ResponseMatch::Any(ms) => Kind::Any(list(ms)),
        ResponseMatch::Not(m) => Kind::Not(Box::new(response_match(m))),
    };
    pb::ResponseMatch { kind: Some(kind) }
}

fn backend(b: &Backend) -> pb::Backend {
    pb::Backend {
        authority: b.authority.clone(),
        weight: b.weight,
    }
}

fn retry_budget(b: &RetryBudget) -> pb::RetryBudget {
    pb::RetryBudget {
        retry_ratio: b.retry_ratio,
        min_retries_per_second: b.min_retries_per_second,
        ttl_ms: millis(b.ttl),
    }
}

fn failure_accrual(a: &FailureAccrual) -> pb::FailureAccrual {
    pb::FailureAccrual {
        consecutive_failures: a.max_failures,
        min_backoff_ms: millis(a.min_penalty),
        max_backoff_ms: millis(a.max_penalty),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
