//! A small load generator: `concurrency` workers, each on its own connection (HTTP/1.1
//! keep-alive or h2c prior knowledge), sending `GET target` until `duration` has passed,
//! optionally paced to a global `rps` and optionally through an HTTP proxy (absolute-form).
//!
//! Everything is bounded: the run stops issuing requests at the deadline, each request has a
//! [`REQUEST_TIMEOUT`], and latencies go into a fixed-size [`Histogram`].

mod histogram;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

pub use histogram::Histogram;

/// Longest a single request (connect, send, full response body) may take before it counts as
/// a `timeout` error. Also bounds how long a run can overshoot its duration.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed connect when unpaced (`rps = 0`), so a dead target does not turn the
/// workers into a busy loop of refused connections.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Upper bounds that keep a typo from becoming a runaway run.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to send, how fast, for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Absolute `http://` URL requested with `GET`.
    pub target: Uri,
    /// Global request rate across all workers; `0` sends as fast as the workers can.
    pub rps: f64,
    /// Number of workers, each with its own connection (1–10000).
    pub concurrency: usize,
    /// How long to keep issuing requests.
    pub duration: Duration,
    /// Send every request to this HTTP proxy, in absolute form, instead of to the target.
    pub proxy: Option<SocketAddr>,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
}

/// An invalid [`LoadConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadConfigError {
    /// The target is not an absolute `http://` URL.
    #[error("target {0} must be an absolute http:// URL (https is not supported)")]
    Target(String),
    /// `rps` is negative or not finite.
    #[error("rps {0} must be a finite number >= 0 (0 = as fast as possible)")]
    Rps(f64),
    /// `concurrency` is 0 or too large.
    #[error("concurrency {0} must be from 1 to 10000")]
    Concurrency(usize),
    /// `duration` is zero or longer than a week.
    #[error("duration {0:?} must be more than 0 and at most 7 days")]
    Duration(Duration),
}

impl LoadConfig {
    /// Checks the configuration; [`run`] calls it first.
    pub fn validate(&self) -> Result<(), LoadConfigError> {
        if self.target.scheme_str() != Some("http") || self.target.host().is_none() {
            return Err(LoadConfigError::Target(self.target.to_string()));
        }
        if !self.rps.is_finite() || self.rps < 0.0 {
            return Err(LoadConfigError::Rps(self.rps));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(LoadConfigError::Concurrency(self.concurrency));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LoadConfigError::Duration(self.duration));
        }
        Ok(())
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Responses received (any status), with their bodies read to the end.
    pub requests: u64,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no complete response.
    pub errors: u64,
    /// Errors by kind: `connect`, `request`, `body`, `timeout`.
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Wall time from start until the last worker finished.
    pub elapsed: Duration,
    /// Median latency (request sent to body complete) of responses.
    pub p50: Duration,
    /// 95th percentile latency.
    pub p95: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl LoadReport {
    /// Responses with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Achieved responses per second.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The report as one JSON object (latencies in milliseconds).
    pub fn to_json(&self) -> String {
        let map = |entries: Vec<(String, u64)>| {
            entries
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            concat!(
                "{{\"requests\":{},\"errors\":{},\"elapsed_seconds\":{:.3},\"rps\":{:.2},",
                "\"by_status\":{{{}}},\"errors_by_kind\":{{{}}},",
                "\"latency_ms\":{{\"p50\":{:.3},\"p95\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}}}"
            ),
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.rps(),
            map(self
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()),
            map(self
                .errors_by_kind
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()),
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
        )
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests: {} in {:.2}s ({:.1} req/s)",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rps()
        )?;
        for (status, n) in &self.by_status {
            writeln!(f, "status {status}: {n}")?;
        }
        write!(f, "errors: {}", self.errors)?;
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            write!(f, " ({})", kinds.join(", "))?;
        }
        writeln!(f)?;
        write!(
            f,
            "latency: p50 {:?} p95 {:?} p99 {:?} max {:?}",
            self.p50, self.p95, self.p99, self.max
        )
    }
}

/// Parses a duration like `10s`, `500ms`, `2m`, `1h` or `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unit must be ms, s, m or h"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected a number and a unit, like 10s"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("invalid duration {s:?}"))
}

/// Everything the workers share.
struct Shared {
    connect_addr: SocketAddr,
    uri: Uri,
    host: HeaderValue,
    http2: bool,
    rps: f64,
    start: Instant,
    deadline: Instant,
    tickets: AtomicU64,
}

impl Shared {
    /// Waits for this worker's next send slot; `false` once the run is over.
    ///
    /// Paced runs hand out global tickets: ticket `k` is due at `start + k / rps`, so the rate
    /// holds across workers and a slow response delays only its own worker.
    async fn next_slot(&self) -> bool {
        if self.rps > 0.0 {
            let k = self.tickets.fetch_add(1, Ordering::Relaxed);
            let due = self.start + Duration::from_secs_f64(k as f64 / self.rps);
            if due >= self.deadline {
                return false;
            }
            tokio::time::sleep_until(due).await;
            true
        } else {
            Instant::now() < self.deadline
        }
    }
}

/// One worker's results.
#[derive(Default)]
struct WorkerStats {
    by_status: BTreeMap<u16, u64>,
    errors_by_kind: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

/// Runs the load described by `cfg` and reports what happened.
///
/// Fails only for an invalid config or an unresolvable target; request failures are counted in
/// the report.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<LoadReport> {
    cfg.validate()?;
    let host = cfg
        .target
        .host()
        .ok_or_else(|| LoadConfigError::Target(cfg.target.to_string()))?;
    let port = cfg.target.port_u16().unwrap_or(80);
    let connect_addr = match cfg.proxy {
        Some(proxy) => proxy,
        None => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| anyhow::anyhow!("cannot resolve target host {host}: {e}"))?
                .next()
                .ok_or_else(|| anyhow::anyhow!("target host {host} resolved to no address"))?
        }
    };
    // Origin-form to a server over HTTP/1.1; absolute-form to a proxy (and always for HTTP/2,
    // where hyper derives :scheme and :authority from it).
    let uri = if cfg.proxy.is_some() || cfg.http2 {
        cfg.target.clone()
    } else {
        let pq = cfg
            .target
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        pq.parse()?
    };
    let authority = cfg
        .target
        .authority()
        .map_or(host.to_string(), |a| a.to_string());
    let start = Instant::now();
    let shared = Arc::new(Shared {
        connect_addr,
        uri,
        host: HeaderValue::from_str(&authority)?,
        http2: cfg.http2,
        rps: cfg.rps,
        start,
        deadline: start + cfg.duration,
        tickets: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..cfg.concurrency)
        .map(|i| {
            tokio::spawn(
                worker(shared.clone()).instrument(tracing::debug_span!("load", worker = i)),
            )
        })
        .collect();
    let mut latency = Histogram::default();
    let mut report = LoadReport::default();
    for w in workers {
        let stats = w.await?;
        latency.merge(&stats.latency);
        for (status, n) in stats.by_status {
            *report.by_status.entry(status).or_default() += n;
            report.requests += n;
        }
        for (kind, n) in stats.errors_by_kind {
            *report.errors_by_kind.entry(kind).or_default() += n;
            report.errors += n;
        }
    }
    report.elapsed = start.elapsed();
    report.p50 = latency.quantile(0.50);
    report.p95 = latency.quantile(0.95);
    report.p99 = latency.quantile(0.99);
    report.max = latency.max();
    Ok(report)
}

/// A worker's connection.
enum Conn {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

async fn worker(shared: Arc<Shared>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut conn: Option<Conn> = None;
    while shared.next_slot().await {
        let started = std::time::Instant::now();
        let kind = match tokio::time::timeout(REQUEST_TIMEOUT, request(&shared, &mut conn)).await {
            Ok(Ok(status)) => {
                stats.latency.record(started.elapsed());
                *stats.by_status.entry(status).or_default() += 1;
                continue;
            }
            Ok(Err(kind)) => kind,
            Err(_) => "timeout",
        };
        *stats.errors_by_kind.entry(kind).or_default() += 1;
        conn = None;
        if kind == "connect" && shared.rps == 0.0 {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
    stats
}

async fn connect(shared: &Shared) -> Result<Conn, &'static str> {
    let tcp = TcpStream::connect(shared.connect_addr)
        .await
        .map_err(|_| "connect")?;
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(tcp);
    if shared.http2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|_| "connect")?;
        tokio::spawn(conn);
        Ok(Conn::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(|_| "connect")?;
        tokio::spawn(conn);
        Ok(Conn::H1(sender))
    }
}

/// Sends one request on `conn` (connecting or reconnecting as needed) and reads the whole
/// response; returns its status or the error kind.
async fn request(shared: &Shared, conn: &mut Option<Conn>) -> Result<u16, &'static str> {
    // A connection the server closed (keep-alive ended) is replaced without counting an error.
    let ready = match conn.as_mut() {
        Some(Conn::H1(s)) => s.ready().await.is_ok(),
        Some(Conn::H2(s)) => s.ready().await.is_ok(),
        None => false,
    };
    if !ready {
        *conn = Some(connect(shared).await?);
    }
    let mut req = Request::get(shared.uri.clone())
        .header(header::USER_AGENT, "weft-testapp-load")
        .body(Empty::<Bytes>::new())
        .map_err(|_| "request")?;
    let resp = match conn.as_mut() {
        Some(Conn::H1(s)) => {
            req.headers_mut().insert(header::HOST, shared.host.clone());
            s.send_request(req).await
        }
        Some(Conn::H2(s)) => s.send_request(req).await,
        None => return Err("connect"),
    }
    .map_err(|_| "request")?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| "body")?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> LoadConfig {
        LoadConfig {
            target: "http://127.0.0.1:1/".parse().unwrap(),
            rps: 0.0,
            concurrency: 1,
            duration: Duration::from_secs(1),
            proxy: None,
            http2: false,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10x").unwrap_err().contains("unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn config_validation() {
        assert_eq!(cfg().validate(), Ok(()));
        let mut c = cfg();
        c.target = "https://example.com/".parse().unwrap();
        assert!(matches!(c.validate(), Err(LoadConfigError::Target(_))));
        let mut c = cfg();
        c.target = "/relative".parse().unwrap();
        assert!(matches!(c.validate(), Err(LoadConfigError::Target(_))));
        let mut c = cfg();
        c.rps = -1.0;
        assert!(matches!(c.validate(), Err(LoadConfigError::Rps(_))));
        let mut c = cfg();
        c.concurrency = 0;
        assert!(matches!(c.validate(), Err(LoadConfigError::Concurrency(0))));
        let mut c = cfg();
        c.duration = Duration::ZERO;
        assert!(matches!(c.validate(), Err(LoadConfigError::Duration(_))));
    }

    #[test]
    fn report_json_and_text() {
        let mut r = LoadReport {
            requests: 3,
            errors: 1,
            elapsed: Duration::from_secs(1),
            p50: Duration::from_millis(2),
            ..LoadReport::default()
        };
        r.by_status.insert(200, 2);
        r.by_status.insert(500, 1);
        r.errors_by_kind.insert("connect", 1);
        let json = r.to_json();
        assert!(
            json.contains("\"by_status\":{\"200\":2,\"500\":1}"),
            "{json}"
        );
        assert!(
            json.contains("\"errors_by_kind\":{\"connect\":1}"),
            "{json}"
        );
        assert!(json.contains("\"p50\":2.000"), "{json}");
        let text = r.to_string();
        assert!(text.contains("status 500: 1"), "{text}");
        assert!(text.contains("errors: 1 (connect: 1)"), "{text}");
        assert_eq!(r.count(200), 2);
        assert_eq!(r.count(404), 0);
    }
}
