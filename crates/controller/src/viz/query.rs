//! The answers to `weft viz stat | edges | routes`, computed from any [`MetricsSource`] and the
//! store's view of workloads and services.
//!
//! - **stat** without `--from`: the inbound `response_total` / `response_latency_ms` of the
//!   resource's own proxies (a service has none: its clients' outbound metrics with
//!   `dst_service` are used); with `--from`: the source's outbound metrics whose `dst_*`
//!   labels name the resource. TCP connections: `tcp_open_connections` (inbound, or outbound to
//!   the resource's addresses).
//! - **edges**: outbound `response_total` with traffic in the window, from each proxy to the
//!   `dst_*` the kind names; plus traffic that reached a proxy in the namespace without mTLS
//!   (an unmeshed client the outbound side cannot name).
//! - **routes**: the `route_*` families, measured on the client side (outbound), by route and
//!   service.
//!
//! Percentiles interpolate linearly within histogram buckets, as Prometheus's
//! `histogram_quantile` does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::resource::{self, Resolved, ResourceKind, ResourceRef, Workload};
use super::source::{MetricsSource, Query, Selector, Series, SourceError};
use weft_store::Snapshot;

/// Why a query failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter is invalid: 400, naming the parameter.
    #[error("{param}: {message}")]
    BadParam {
        /// The parameter.
        param: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The resource does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// The metrics source failed: 503.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Golden metrics of one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Golden {
    /// Responses in the window.
    pub requests: f64,
    /// Successful responses in the window.
    pub successes: f64,
    /// Successes / responses; `None` without traffic.
    pub success_rate: Option<f64>,
    /// Responses per second; `None` without data.
    pub rps: Option<f64>,
    /// Latency percentiles in milliseconds; `None` without traffic.
    pub latency_ms_p50: Option<f64>,
    /// 95th percentile.
    pub latency_ms_p95: Option<f64>,
    /// 99th percentile.
    pub latency_ms_p99: Option<f64>,
}

/// One `stat` row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatRow {
    /// The resource's kind.
    pub kind: ResourceKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Workloads whose proxy is up (scraped successfully).
    pub meshed: usize,
    /// Workloads.
    pub total: usize,
    /// Golden metrics.
    #[serde(flatten)]
    pub golden: Golden,
    /// Open TCP connections; `None` without data.
    pub tcp_connections: Option<f64>,
}

/// One `edges` row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EdgeRow {
    /// The client resource's name (`unmeshed` for clients without a proxy).
    pub src: String,
    /// The server resource's name.
    pub dst: String,
    /// The client's namespace (empty when unknown).
    pub src_namespace: String,
    /// The server's namespace.
    pub dst_namespace: String,
    /// Whether every request on the edge in the window was mTLS.
    pub secured: bool,
    /// Why not, when not (`not_meshed`, `no_tls_from_remote`, …).
    pub no_tls_reason: Option<String>,
    /// The client's identity (of the proxy that reported the edge), when mTLS.
    pub client_id: Option<String>,
    /// The server's identity, when the client verified it.
    pub server_id: Option<String>,
}

/// One `routes` row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteRow {
    /// The route's name (from the ServiceProfile or HTTPRoute; the proxy's default route
    /// otherwise).
    pub route: String,
    /// The service the route belongs to.
    pub service: String,
    /// The service's namespace.
    pub namespace: String,
    /// Golden metrics, after retries.
    #[serde(flatten)]
    pub golden: Golden,
    /// Retries sent in the window.
    pub retries: f64,
    /// Retries skipped because the retry budget was exhausted, in the window.
    pub budget_exhausted: f64,
}

/// What every query is asked.
#[derive(Clone, Debug)]
pub struct Params {
    /// The resource.
    pub resource: ResourceRef,
    /// Its namespace.
    pub namespace: String,
    /// The window.
    pub window: Duration,
    /// `--from` (stat) or `--to` (routes), with its namespace.
    pub other: Option<(ResourceRef, String)>,
}

fn resolve(snapshot: &Snapshot, r: &ResourceRef, ns: &str) -> Result<Vec<Resolved>, QueryError> {
    resource::resolve(snapshot, r, ns).map_err(|e| QueryError::NotFound(e.0))
}

fn selector(workloads: &[Workload]) -> Selector {
    Selector::Workloads(
        workloads
            .iter()
            .filter(|w| w.meshed())
            .map(Workload::key)
            .collect(),
    )
}

/// `dst_*` matchers that name `r` in outbound metrics.
fn dst_matchers(r: &Resolved) -> Vec<(&'static str, &str)> {
    match r.kind {
        ResourceKind::Namespace => vec![("dst_namespace", r.name.as_str())],
        kind => vec![
            ("dst_namespace", r.namespace.as_str()),
            (kind.dst_label(), r.name.as_str()),
        ],
    }
}

/// `stat`.
pub fn stat(
    source: &dyn MetricsSource,
    snapshot: &Snapshot,
    params: &Params,
    is_up: &dyn Fn(&Workload) -> bool,
) -> Result<Vec<StatRow>, QueryError> {
    let resources = resolve(snapshot, &params.resource, &params.namespace)?;
    let from = match &params.other {
        Some((r, ns)) => {
            if r.name.is_none() {
                return Err(QueryError::BadParam {
                    param: "from",
                    message: format!("{r}: name a resource (KIND/NAME)"),
                });
            }
            let mut found = resolve(snapshot, r, ns)?;
            found.pop()
        }
        None => None,
    };
    let mut rows = Vec::new();
    for r in resources {
        let (golden, tcp) = match &from {
            None if r.kind != ResourceKind::Service => {
                let sel = selector(&r.workloads);
                let golden = golden(
                    source,
                    &sel,
                    "response_total",
                    "response_latency_ms_bucket",
                    &[("direction", "inbound")],
                    params.window,
                    &|_| true,
                )?;
                let tcp = sum_latest(
                    source,
                    &Query {
                        name: "tcp_open_connections",
                        targets: &sel,
                        matchers: &[("direction", "inbound"), ("peer", "src")],
                    },
                    &|_| true,
                )?;
                (golden, tcp)
            }
            other => {
                // From the clients' side: the source's proxies, or every proxy for a service.
                let sel = match other {
                    Some(src) => selector(&src.workloads),
                    None => Selector::All,
                };
                let mut matchers = vec![("direction", "outbound")];
                matchers.extend(dst_matchers(&r));
                let golden = golden(
                    source,
                    &sel,
                    "response_total",
                    "response_latency_ms_bucket",
                    &matchers,
                    params.window,
                    &|_| true,
                )?;
                let ips: BTreeSet<IpAddr> = r.ips().collect();
                let tcp = sum_latest(
                    source,
                    &Query {
                        name: "tcp_open_connections",
                        targets: &sel,
                        matchers: &[("direction", "outbound"), ("peer", "dst")],
                    },
                    &|s| target_ip(s.label("target_addr")).is_some_and(|ip| ips.contains(&ip)),
                )?;
                (golden, tcp)
            }
        };
        rows.push(StatRow {
            kind: r.kind,
            meshed: r
                .workloads
                .iter()
                .filter(|w| w.meshed() && is_up(w))
                .count(),
            total: r.workloads.len(),
            namespace: r.namespace,
            name: r.name,
            golden,
            tcp_connections: tcp,
        });
    }
    Ok(rows)
}

fn target_ip(addr: &str) -> Option<IpAddr> {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .or_else(|| addr.parse().ok())
}

fn sum_latest(
    source: &dyn MetricsSource,
    q: &Query<'_>,
    keep: &dyn Fn(&Series) -> bool,
) -> Result<Option<f64>, QueryError> {
    let series = source.latest(q)?;
    let kept: Vec<&Series> = series.iter().filter(|s| keep(s)).collect();
    Ok((!kept.is_empty()).then(|| total(kept.iter().map(|s| s.value))))
}

/// Requests, success and latency from a `response_total`-like counter and a latency histogram.
fn golden(
    source: &dyn MetricsSource,
    targets: &Selector,
    responses: &str,
    buckets: &str,
    matchers: &[(&str, &str)],
    window: Duration,
    keep: &dyn Fn(&Series) -> bool,
) -> Result<Golden, QueryError> {
    let rsp = source.increase(
        &Query {
            name: responses,
            targets,
            matchers,
        },
        window,
    )?;
    let rsp: Vec<Series> = rsp.into_iter().filter(|s| keep(s)).collect();
    let lat = source.increase(
        &Query {
            name: buckets,
            targets,
            matchers,
        },
        window,
    )?;
    let lat: Vec<Series> = lat.into_iter().filter(|s| keep(s)).collect();
    Ok(golden_of(&rsp, &lat))
}

fn golden_of(rsp: &[Series], lat: &[Series]) -> Golden {
    let requests: f64 = total(rsp.iter().map(|s| s.value));
    let successes: f64 = total(
        rsp.iter()
            .filter(|s| s.label("classification") == "success")
            .map(|s| s.value),
    );
    let rps = (!rsp.is_empty()).then(|| total(rsp.iter().map(Series::rate)));
    let buckets = buckets_of(lat);
    let q = |p| {
        if requests > 0.0 {
            histogram_quantile(p, &buckets)
        } else {
            None
        }
    };
    Golden {
        requests,
        successes,
        success_rate: (requests > 0.0).then(|| successes / requests),
        rps,
        latency_ms_p50: q(0.5),
        latency_ms_p95: q(0.95),
        latency_ms_p99: q(0.99),
    }
}

/// Sums bucket series by `le`.
fn buckets_of(series: &[Series]) -> Vec<(f64, f64)> {
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in series {
        let le = match s.label("le") {
            "+Inf" | "Inf" => f64::INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) if !v.is_nan() => v,
                _ => continue,
            },
        };
        // Order-preserving key for non-negative floats (and +Inf).
        let key = if le < 0.0 { 0 } else { le.to_bits() };
        let e = by_le.entry(key).or_insert((le, 0.0));
        e.1 += s.value;
    }
    by_le.into_values().collect()
}

/// Prometheus's `histogram_quantile` over cumulative `(upper bound, count)` buckets sorted by
/// bound: linear interpolation within the bucket the rank falls in, the first bucket starting at
/// 0; a rank in the `+Inf` bucket answers the highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(last_le, total) = buckets.last()?;
    if !last_le.is_infinite() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for (i, &(le, count)) in buckets.iter().enumerate() {
        // Cumulative counts can be non-monotonic when series are summed from scrapes of
        // different instants; treat a dip as flat.
        let count = count.max(prev_count);
        if count >= rank {
            if le.is_infinite() {
                return Some(if i == 0 { 0.0 } else { prev_le });
            }
            if count == prev_count {
                return Some(le);
            }
            return Some(prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count));
        }
        prev_le = le;
        prev_count = count;
    }
    Some(prev_le)
}

/// `edges`.
pub fn edges(
    source: &dyn MetricsSource,
    snapshot: &Snapshot,
    kind: ResourceKind,
    namespace: &str,
    window: Duration,
) -> Result<Vec<EdgeRow>, QueryError> {
    if kind == ResourceKind::Service {
        return Err(QueryError::BadParam {
            param: "resource",
            message: "edges are between workloads: use deployment, pod or namespace".to_owned(),
        });
    }
    let identities: BTreeMap<(String, String), String> = resource::workloads(snapshot)
        .into_iter()
        .filter_map(|w| Some((w.key(), w.identity?)))
        .collect();
    let out = source.increase(
        &Query {
            name: "response_total",
            targets: &Selector::All,
            matchers: &[("direction", "outbound")],
        },
        window,
    )?;
    // (src, dst, src_ns, dst_ns) → (all mTLS, first reason, client id, server id)
    type Edge = (bool, Option<String>, Option<String>, Option<String>);
    let mut acc: BTreeMap<(String, String, String, String), Edge> = BTreeMap::new();
    for s in out.iter().filter(|s| s.value > 0.0) {
        let src = match kind {
            ResourceKind::Deployment => s.target.deployment.clone(),
            ResourceKind::Pod => Some(s.target.pod.clone()),
            _ => Some(s.target.namespace.clone()),
        };
        let dst = s.label(kind.dst_label());
        let dst_ns = s.label("dst_namespace");
        let Some(src) = src else { continue };
        if dst.is_empty() || dst_ns.is_empty() {
            continue;
        }
        let involved = match kind {
            ResourceKind::Namespace => true,
            _ => s.target.namespace == namespace || dst_ns == namespace,
        };
        if !involved {
            continue;
        }
        let tls = s.label("tls") == "true";
        let e = acc
            .entry((
                src,
                dst.to_owned(),
                s.target.namespace.clone(),
                dst_ns.to_owned(),
            ))
            .or_insert((true, None, None, None));
        if !tls {
            e.0 = false;
            e.1.get_or_insert_with(|| reason(s));
        }
        if let Some(id) = non_empty(s.label("server_id")) {
            e.3.get_or_insert(id);
        }
        // The client is the proxy that reported the series: it presented its own identity.
        if let Some(id) = identities.get(&(s.target.namespace.clone(), s.target.pod.clone())) {
            e.2.get_or_insert_with(|| id.clone());
        }
    }
    // Clients without a proxy, as the servers saw them.
    let inbound = source.increase(
        &Query {
            name: "response_total",
            targets: &Selector::All,
            matchers: &[("direction", "inbound")],
        },
        window,
    )?;
    for s in inbound
        .iter()
        .filter(|s| s.value > 0.0 && s.label("tls") != "true")
    {
        if kind != ResourceKind::Namespace && s.target.namespace != namespace {
            continue;
        }
        let dst = match kind {
            ResourceKind::Deployment => s.target.deployment.clone(),
            ResourceKind::Pod => Some(s.target.pod.clone()),
            _ => Some(s.target.namespace.clone()),
        };
        let Some(dst) = dst else { continue };
        let e = acc
            .entry((
                "unmeshed".to_owned(),
                dst,
                String::new(),
                s.target.namespace.clone(),
            ))
            .or_insert((false, None, None, None));
        e.1.get_or_insert_with(|| reason(s));
    }
    Ok(acc
        .into_iter()
        .map(
            |((src, dst, src_namespace, dst_namespace), (secured, why, client_id, server_id))| {
                EdgeRow {
                    src,
                    dst,
                    src_namespace,
                    dst_namespace,
                    secured,
                    no_tls_reason: if secured { None } else { why },
                    client_id: client_id.filter(|_| secured),
                    server_id: server_id.filter(|_| secured),
                }
            },
        )
        .collect())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn reason(s: &Series) -> String {
    match s.label("no_tls_reason") {
        "" => match s.label("tls") {
            "" => "unknown".to_owned(),
            other => other.to_owned(),
        },
        r => r.to_owned(),
    }
}

/// `routes`.
pub fn routes(
    source: &dyn MetricsSource,
    snapshot: &Snapshot,
    params: &Params,
) -> Result<Vec<RouteRow>, QueryError> {
    // The services whose routes to show, and whose proxies' view to read.
    let (services, targets) = match &params.other {
        None => {
            let rs = resolve(snapshot, &params.resource, &params.namespace)?;
            (services_of_resolved(snapshot, &rs), Selector::All)
        }
        Some((to, ns)) => {
            let src = resolve(snapshot, &params.resource, &params.namespace)?;
            let dst = resolve(snapshot, to, ns)?;
            let workloads: Vec<Workload> = src.into_iter().flat_map(|r| r.workloads).collect();
            (services_of_resolved(snapshot, &dst), selector(&workloads))
        }
    };
    let m: &[(&str, &str)] = &[("direction", "outbound")];
    let in_scope = |s: &Series| {
        resource::service_of_authority(s.label("dst"))
            .is_some_and(|(svc, ns)| services.contains(&(ns.to_owned(), svc.to_owned())))
    };
    let inc = |name: &str, extra: &[(&str, &str)]| -> Result<Vec<Series>, QueryError> {
        let mut matchers = m.to_vec();
        matchers.extend_from_slice(extra);
        Ok(source
            .increase(
                &Query {
                    name,
                    targets: &targets,
                    matchers: &matchers,
                },
                params.window,
            )?
            .into_iter()
            .filter(in_scope)
            .collect())
    };
    let rsp = inc("route_response_total", &[])?;
    let lat = inc("route_response_latency_ms_bucket", &[])?;
    let retries = inc("route_retry_total", &[])?;
    let exhausted = inc(
        "route_retry_skipped_total",
        &[("reason", "budget_exhausted")],
    )?;
    let requests = inc("route_request_total", &[])?;

    let key = |s: &Series| -> Option<(String, String, String)> {
        let (svc, ns) = resource::service_of_authority(s.label("dst"))?;
        Some((ns.to_owned(), svc.to_owned(), s.label("route").to_owned()))
    };
    let mut groups: BTreeMap<(String, String, String), [Vec<Series>; 4]> = BTreeMap::new();
    for (i, list) in [rsp, lat, retries, exhausted].into_iter().enumerate() {
        for s in list {
            if let Some(k) = key(&s) {
                groups.entry(k).or_default()[i].push(s);
            }
        }
    }
    // Routes with requests but no response yet still get a row.
    for s in &requests {
        if let Some(k) = key(s) {
            groups.entry(k).or_default();
        }
    }
    Ok(groups
        .into_iter()
        .map(
            |((namespace, service, route), [rsp, lat, retries, exhausted])| RouteRow {
                route,
                service,
                namespace,
                golden: golden_of(&rsp, &lat),
                retries: total(retries.iter().map(|s| s.value)),
                budget_exhausted: total(exhausted.iter().map(|s| s.value)),
            },
        )
        .collect())
}

fn services_of_resolved(snapshot: &Snapshot, rs: &[Resolved]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for r in rs {
        match r.kind {
            ResourceKind::Service => {
                out.insert((r.namespace.clone(), r.name.clone()));
            }
            ResourceKind::Namespace => {
                for svc in snapshot.objects(weft_model::Kind::Service).values() {
                    if svc.namespace() == r.name {
                        out.insert((r.name.clone(), svc.name().to_owned()));
                    }
                }
            }
            _ => out.extend(resource::services_of(snapshot, &r.workloads)),
        }
    }
    out
}

/// The sum of `values`, 0 (not -0, which `Iterator::sum` gives for floats when empty) when
/// there are none.
fn total(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

#[cfg(test)]
mod tests {

    #[test]
    fn empty_sums_are_positive_zero() {
        let zero = super::total(std::iter::empty());
        assert_eq!(zero, 0.0);
        assert!(zero.is_sign_positive(), "printed as 0, never -0");
    }
    use super::*;

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let b = [
            (1.0, 0.0),
            (5.0, 50.0),
            (10.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        // Rank 50 is the top of (1, 5].
        assert_eq!(histogram_quantile(0.5, &b), Some(5.0));
        // Rank 25: halfway through (1, 5].
        assert_eq!(histogram_quantile(0.25, &b), Some(3.0));
        // Rank 95: 90 % through (5, 10].
        assert_eq!(histogram_quantile(0.95, &b), Some(9.5));
        // The first bucket starts at 0.
        let b = [(10.0, 10.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(5.0));
        // A rank in +Inf answers the highest finite bound.
        let b = [(10.0, 1.0), (50000.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &b), Some(50000.0));
        // No observations, or no +Inf bucket: nothing.
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }
}
