//! The viz API: HTTP/1.1, JSON, on `--viz-listen` (8085).
//!
//! - `GET /api/stat?resource=deploy/web&namespace=emojivoto[&from=deploy/vote-bot]
//!   [&from_namespace=…][&window=1m]` → `{"window_seconds", "rows": [StatRow…]}`
//! - `GET /api/edges?resource=deploy&namespace=…[&window=…]` → `{"rows": [EdgeRow…]}`
//! - `GET /api/routes?resource=deploy/web&namespace=…[&to=svc/x][&to_namespace=…][&window=…]`
//!   → `{"rows": [RouteRow…]}`
//! - `GET /api/targets` → `{"scrape_interval_seconds", "targets": [TargetHealth…]}`
//! - `GET /api/tap?resource=deploy/web&namespace=…[&path=/api][&method=GET][&authority=…]
//!   [&to=deploy/x][&to_namespace=…][&max_rps=100]` → newline-delimited JSON [`TapLine`]s
//!   until the client goes away (an empty line every few seconds keeps it honest).
//!
//! Errors are `{"error": "<parameter>: <problem>"}` with 400 (bad parameter), 404 (unknown
//! resource or path), 405, or 503 (no metrics source, tap not configured).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use weft_store::Snapshot;

use super::query::{self, Params, QueryError};
use super::resource::{self, ResourceRef};
use super::source::MetricsSource;
use super::tap::{self, TapFilter, TapTls, ToFilter};
use super::window::Window;
use crate::duration::parse_duration;

type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// An empty line on an idle tap stream this often, so a client that went away is noticed.
const TAP_HEARTBEAT: Duration = Duration::from_secs(2);
/// The window when none is given.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Most concurrent API connections.
const MAX_CONNECTIONS: usize = 256;

/// The API's shared state.
pub struct State {
    /// Where queries read metrics.
    pub source: Arc<dyn MetricsSource>,
    /// The local scraper's window (scrape health of workloads).
    pub window: Arc<Window>,
    /// The store.
    pub store: watch::Receiver<Arc<Snapshot>>,
    /// Tap credentials.
    pub tap: Arc<TapTls>,
    /// The scrape interval (reported by `/api/targets`).
    pub scrape_interval: Duration,
    /// Counters.
    pub metrics: Arc<ApiMetrics>,
    /// Ends tap streams on shutdown.
    pub drain: watch::Receiver<bool>,
}

/// The API's counters.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// Requests by endpoint: stat, edges, routes, targets, tap, other.
    requests: [AtomicU64; 6],
    /// Tap streams open now.
    pub taps_open: AtomicU64,
    /// Tap lines sent.
    pub tap_lines: AtomicU64,
}

const ENDPOINTS: [&str; 6] = ["stat", "edges", "routes", "targets", "tap", "other"];

impl ApiMetrics {
    fn request(&self, endpoint: &str) {
        let i = ENDPOINTS
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(ENDPOINTS.len() - 1);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the `viz_api*` families.
    pub fn encode(&self, enc: &mut crate::prom::Encoder) {
        use crate::prom::Kind;
        enc.family(
            "viz_api_requests_total",
            Kind::Counter,
            "Viz API requests, by endpoint.",
        );
        for (i, e) in ENDPOINTS.iter().enumerate() {
            enc.sample(
                "viz_api_requests_total",
                &[("endpoint", e)],
                self.requests[i].load(Ordering::Relaxed) as f64,
            );
        }
        enc.single(
            "viz_tap_streams_open",
            Kind::Gauge,
            "Tap streams open on the viz API.",
            self.taps_open.load(Ordering::Relaxed) as f64,
        );
        enc.single(
            "viz_tap_events_total",
            Kind::Counter,
            "Tap lines sent to viz API clients.",
            self.tap_lines.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Serves the API until `drain` turns `true`.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut drain: watch::Receiver<bool>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = drain.wait_for(|d| *d) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.wait_for(|d| *d) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "viz API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, &req)) }
                });
                let res = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if let Err(e) = res {
                    tracing::debug!(error = %e, "viz API connection ended with an error");
                }
            }
            .instrument(tracing::debug_span!("viz_api", client.addr = %peer)),
        );
    }
}

/// Answers one request.
pub fn handle<B>(state: &State, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let endpoint = path.strip_prefix("/api/").unwrap_or("other");
    state.metrics.request(endpoint);
    if !matches!(endpoint, "stat" | "edges" | "routes" | "targets" | "tap") {
        return error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}"));
    }
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
    }
    let q = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let result = match endpoint {
        "stat" => stat(state, &q),
        "edges" => edges(state, &q),
        "routes" => routes(state, &q),
        "targets" => Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "scrape_interval_seconds": state.scrape_interval.as_secs_f64(),
                "targets": state.source.targets(),
            }),
        )),
        _ => tap(state, &q),
    };
    result.unwrap_or_else(|e| {
        let status = match &e {
            QueryError::BadParam { .. } => StatusCode::BAD_REQUEST,
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::Source(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, &e.to_string())
    })
}

type Query = HashMap<String, String>;

fn bad(param: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        param,
        message: message.into(),
    }
}

const KNOWN_PARAMS: &[&str] = &[
    "resource",
    "namespace",
    "from",
    "from_namespace",
    "to",
    "to_namespace",
    "window",
    "path",
    "method",
    "authority",
    "max_rps",
];

fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k).ok_or_else(|| format!("{k:?}: invalid percent-encoding"))?;
        let v = decode(v).ok_or_else(|| format!("{k}: invalid percent-encoding"))?;
        if !KNOWN_PARAMS.contains(&k.as_str()) {
            return Err(format!(
                "{k}: unknown parameter (known: {})",
                KNOWN_PARAMS.join(", ")
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("{k}: given more than once"));
        }
    }
    Ok(out)
}

/// Percent-decoding (and `+` as space) of a query component.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn resource_param(q: &Query, name: &'static str) -> Result<Option<ResourceRef>, QueryError> {
    match q.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) => ResourceRef::parse(s).map(Some).map_err(|e| bad(name, e)),
    }
}

fn namespace_param(q: &Query, name: &'static str, default: &str) -> Result<String, QueryError> {
    match q.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(default.to_owned()),
        Some(ns) if weft_model::service::is_dns_label(ns) => Ok(ns.to_owned()),
        Some(ns) => Err(bad(name, format!("{ns:?} is not a namespace name"))),
    }
}

fn params(q: &Query, other: Option<&'static str>) -> Result<Params, QueryError> {
    let resource = resource_param(q, "resource")?
        .ok_or_else(|| bad("resource", format!("required: {}", resource::KINDS_HELP)))?;
    let namespace = namespace_param(q, "namespace", "default")?;
    let window = match q.get("window").map(|s| s.trim()) {
        None | Some("") => DEFAULT_WINDOW,
        Some(w) => match parse_duration(w) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => return Err(bad("window", format!("{w:?} is shorter than 1s"))),
            Err(e) => return Err(bad("window", e.to_string())),
        },
    };
    let other = match other {
        Some(p) => {
            let ns_param = if p == "from" {
                "from_namespace"
            } else {
                "to_namespace"
            };
            match resource_param(q, p)? {
                Some(r) => Some((r, namespace_param(q, ns_param, &namespace)?)),
                None => None,
            }
        }
        None => None,
    };
    Ok(Params {
        resource,
        namespace,
        window,
        other,
    })
}

fn stat(state: &State, q: &Query) -> Result<Response<Body>, QueryError> {
    let p = params(q, Some("from"))?;
    let snapshot = state.store.borrow().clone();
    let window = &state.window;
    let rows = query::stat(state.source.as_ref(), &snapshot, &p, &|w| {
        window.is_up(&w.key())
    })?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"window_seconds": p.window.as_secs_f64(), "rows": rows}),
    ))
}

fn edges(state: &State, q: &Query) -> Result<Response<Body>, QueryError> {
    let p = params(q, None)?;
    if p.resource.name.is_some() {
        return Err(bad(
            "resource",
            "edges take a kind only (deployment, pod or namespace), not KIND/NAME",
        ));
    }
    let snapshot = state.store.borrow().clone();
    let rows = query::edges(
        state.source.as_ref(),
        &snapshot,
        p.resource.kind,
        &p.namespace,
        p.window,
    )?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"window_seconds": p.window.as_secs_f64(), "rows": rows}),
    ))
}

fn routes(state: &State, q: &Query) -> Result<Response<Body>, QueryError> {
    let p = params(q, Some("to"))?;
    let snapshot = state.store.borrow().clone();
    let rows = query::routes(state.source.as_ref(), &snapshot, &p)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"window_seconds": p.window.as_secs_f64(), "rows": rows}),
    ))
}

fn tap(state: &State, q: &Query) -> Result<Response<Body>, QueryError> {
    let p = params(q, Some("to"))?;
    let snapshot = state.store.borrow().clone();
    let resolved = resource::resolve(&snapshot, &p.resource, &p.namespace)
        .map_err(|e| QueryError::NotFound(e.0))?;
    let workloads: Vec<_> = resolved.iter().flat_map(|r| r.workloads.clone()).collect();
    let to = match &p.other {
        None => None,
        Some((r, ns)) => {
            let rs = resource::resolve(&snapshot, r, ns).map_err(|e| QueryError::NotFound(e.0))?;
            let name = r
                .name
                .clone()
                .ok_or_else(|| bad("to", format!("{r}: name a resource (KIND/NAME)")))?;
            Some(ToFilter {
                ips: rs.iter().flat_map(|r| r.ips()).collect(),
                namespace: ns.clone(),
                label: r.kind.as_str().to_owned(),
                name,
            })
        }
    };
    let text = |name: &'static str| -> Result<Option<String>, QueryError> {
        match q.get(name).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(v) if v.len() > 1024 || v.chars().any(char::is_control) => {
                Err(bad(name, "too long or contains control characters"))
            }
            Some(v) => Ok(Some(v.to_owned())),
        }
    };
    let method = text("method")?.map(|m| m.to_ascii_uppercase());
    if let Some(m) = &method {
        if !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("method", format!("{m:?} is not an HTTP method")));
        }
    }
    let path = text("path")?;
    if path.as_ref().is_some_and(|p| !p.starts_with('/')) {
        return Err(bad("path", "a path prefix starts with '/'"));
    }
    let max_rps = match q.get("max_rps").map(|s| s.trim()) {
        None | Some("") => 0,
        Some(v) => match v.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 1000.0 => r.ceil() as u32,
            _ => {
                return Err(bad(
                    "max_rps",
                    format!("{v:?}: expected a number in (0, 1000]"),
                ))
            }
        },
    };
    let filter = TapFilter {
        method,
        path,
        authority: text("authority")?,
        to,
        max_rps,
    };
    if workloads.iter().all(|w| !w.meshed()) {
        return Err(bad(
            "resource",
            format!(
                "{} in namespace {:?} has no meshed workloads to tap",
                p.resource, p.namespace
            ),
        ));
    }
    // Fail now rather than streaming one error per proxy when tap cannot work at all.
    if let Err(e) = state.tap.client_config() {
        return Ok(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()));
    }
    let fanout = tap::open(&state.tap, &workloads, &filter);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let metrics = state.metrics.clone();
    let mut drain = state.drain.clone();
    tokio::spawn(
        async move {
            metrics.taps_open.fetch_add(1, Ordering::Relaxed);
            let mut fanout = fanout;
            loop {
                let line = tokio::select! {
                    l = fanout.lines.recv() => l,
                    () = tokio::time::sleep(TAP_HEARTBEAT) => {
                        if tx.send(Bytes::from_static(b"\n")).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    () = tx.closed() => break,
                    () = drained(&mut drain) => break,
                };
                // Every proxy's stream ended.
                let Some(line) = line else { break };
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                metrics.tap_lines.fetch_add(1, Ordering::Relaxed);
                if tx.send(Bytes::from(bytes)).await.is_err() {
                    break;
                }
            }
            metrics.taps_open.fetch_sub(1, Ordering::Relaxed);
            // Dropping the fan-out ends every proxy's stream.
        }
        .instrument(tracing::debug_span!("tap_stream")),
    );
    let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut rsp = Response::new(BodyExt::boxed(body));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(rsp)
}

/// Resolves once `drain` is `true` (or its sender is gone).
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut rsp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let q = parse_query("resource=deploy%2Fweb&namespace=emojivoto&path=/api+x").unwrap();
        assert_eq!(q["resource"], "deploy/web");
        assert_eq!(q["path"], "/api x");
        assert!(parse_query("bogus=1").unwrap_err().starts_with("bogus:"));
        assert!(parse_query("window=1m&window=2m")
            .unwrap_err()
            .starts_with("window:"));
        assert!(parse_query("resource=%zz").is_err());
        assert!(parse_query("resource=%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn params_name_the_parameter() {
        let p = |s: &str| params(&parse_query(s).unwrap(), Some("from"));
        let err = |s: &str| p(s).unwrap_err().to_string();
        assert!(err("").starts_with("resource: required"));
        assert!(err("resource=cronjob/x").starts_with("resource: "));
        assert!(err("resource=deploy&window=5").starts_with("window: "));
        assert!(err("resource=deploy&window=10ms").starts_with("window: "));
        assert!(err("resource=deploy&namespace=Bad_NS").starts_with("namespace: "));
        assert!(err("resource=deploy&from=x/y").starts_with("from: "));
        let ok = p("resource=deploy/web&namespace=e&from=deploy/bot&window=30s").unwrap();
        assert_eq!(ok.window, Duration::from_secs(30));
        assert_eq!(
            ok.other.unwrap().1,
            "e",
            "from_namespace defaults to namespace"
        );
    }
}
