//! The scraper: every interval, `GET /metrics` from every meshed workload's proxy (HTTP/1.1 on
//! loopback, bounded in time and size), parse the families the queries read, and record the
//! samples (or the failure) in the [`Window`].
//!
//! Targets come from the store: each ExternalWorkload without `linkerd.io/inject: disabled`,
//! at its first `workloadIPs` address and the admin port (`config.linkerd.io/proxy-admin-port`
//! or 4191). Every target is scraped concurrently; one slow or broken proxy costs only its own
//! sample.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use weft_store::Snapshot;

use super::exposition;
use super::resource;
use super::source::TargetRef;
use super::window::{TargetKey, Window};
use crate::prom::{Encoder, Kind};

/// The sample names the queries read; everything else in a proxy's exposition is skipped.
pub const KEPT_SAMPLES: &[&str] = &[
    "response_total",
    "response_latency_ms_bucket",
    "tcp_open_connections",
    "route_request_total",
    "route_response_total",
    "route_response_latency_ms_bucket",
    "route_retry_total",
    "route_retry_skipped_total",
];

/// The largest `/metrics` body read (a proxy with thousands of authorities stays far below).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Why a scrape failed: a closed set, for the `reason` label.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No TCP connection.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The admin address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// Not 200.
    #[error("answered {0}")]
    Status(StatusCode),
    /// Bigger than [`MAX_BODY_BYTES`].
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// Not Prometheus text.
    #[error("bad metrics text: {0}")]
    Parse(#[from] exposition::ParseError),
}

impl ScrapeError {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Http(_) => "http",
            Self::Status(_) => "status",
            Self::TooLarge => "too_large",
            Self::Parse(_) => "parse",
        }
    }

    const REASONS: [&'static str; 6] =
        ["connect", "timeout", "http", "status", "too_large", "parse"];
}

/// The scraper's counters.
#[derive(Debug, Default)]
pub struct ScrapeMetrics {
    ok: AtomicU64,
    errors: [AtomicU64; 6],
    targets: AtomicU64,
    targets_up: AtomicU64,
}

impl ScrapeMetrics {
    fn failed(&self, e: &ScrapeError) {
        if let Some(i) = ScrapeError::REASONS.iter().position(|r| *r == e.reason()) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Successful scrapes so far.
    pub fn ok_total(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failed scrapes so far.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum()
    }

    /// Appends the `viz_scrape*` families.
    pub fn encode(&self, enc: &mut Encoder) {
        enc.family(
            "viz_scrapes_total",
            Kind::Counter,
            "Proxy /metrics scrapes that succeeded.",
        )
        .sample("viz_scrapes_total", &[], self.ok_total() as f64);
        enc.family(
            "viz_scrape_errors_total",
            Kind::Counter,
            "Proxy /metrics scrapes that failed, by reason.",
        );
        for (i, r) in ScrapeError::REASONS.iter().enumerate() {
            enc.sample(
                "viz_scrape_errors_total",
                &[("reason", r)],
                self.errors[i].load(Ordering::Relaxed) as f64,
            );
        }
        enc.single(
            "viz_scrape_targets",
            Kind::Gauge,
            "Meshed workloads whose proxies the viz component scrapes.",
            self.targets.load(Ordering::Relaxed) as f64,
        );
        enc.single(
            "viz_scrape_targets_up",
            Kind::Gauge,
            "Scrape targets whose last scrape succeeded.",
            self.targets_up.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The scrape targets of a snapshot: every meshed workload's proxy.
pub fn targets_of(snapshot: &Snapshot) -> Vec<(TargetRef, String, SocketAddr)> {
    resource::workloads(snapshot)
        .into_iter()
        .filter_map(|w| {
            let admin = w.admin?;
            Some((
                TargetRef {
                    namespace: w.namespace,
                    pod: w.name,
                    deployment: w.deployment,
                },
                format!("http://{admin}/metrics"),
                admin,
            ))
        })
        .collect()
}

/// GETs `http://addr/metrics` within `timeout` and parses the kept families.
pub async fn scrape(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Vec<exposition::Sample>, ScrapeError> {
    let body = tokio::time::timeout(timeout, fetch(addr))
        .await
        .map_err(|_| ScrapeError::Timeout(timeout))??;
    // Parsing a large body takes a while: keep it off the runtime's worker threads.
    let parsed = tokio::task::spawn_blocking(move || {
        exposition::parse(&body, |name| KEPT_SAMPLES.contains(&name))
    })
    .await
    .map_err(|e| ScrapeError::Http(format!("parser task failed: {e}")))?;
    Ok(parsed?)
}

async fn fetch(addr: SocketAddr) -> Result<Bytes, ScrapeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ScrapeError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ScrapeError::Http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header(header::HOST, addr.to_string())
        .header(header::ACCEPT, "text/plain")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ScrapeError::Http(e.to_string()))?;
    let result = async {
        let rsp = send
            .send_request(req)
            .await
            .map_err(|e| ScrapeError::Http(e.to_string()))?;
        if rsp.status() != StatusCode::OK {
            return Err(ScrapeError::Status(rsp.status()));
        }
        let body = Limited::new(rsp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ScrapeError::TooLarge
                } else {
                    ScrapeError::Http(e.to_string())
                }
            })?;
        Ok(body.to_bytes())
    }
    .await;
    conn.abort();
    result
}

/// Scrapes every target of the store's latest snapshot every `interval` until `drain`.
pub async fn run(
    window: Arc<Window>,
    mut store: watch::Receiver<Arc<Snapshot>>,
    interval: Duration,
    metrics: Arc<ScrapeMetrics>,
    mut drain: watch::Receiver<bool>,
) {
    // A scrape never outlives its interval (but gets at least 1 s on a slow machine, and
    // at most 1 s otherwise: a proxy's /metrics answers in microseconds).
    let timeout = interval.clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = drain.wait_for(|d| *d) => return,
        }
        let snapshot = store.borrow_and_update().clone();
        let targets = targets_of(&snapshot);
        window.set_targets(targets.iter().map(|(t, url, _)| (t.clone(), url.clone())));
        metrics
            .targets
            .store(targets.len() as u64, Ordering::Relaxed);
        let mut set = JoinSet::new();
        for (t, _, addr) in targets {
            let key: TargetKey = (t.namespace.clone(), t.pod.clone());
            let span = tracing::debug_span!("scrape", target = %format!("{}/{}", key.0, key.1), server.addr = %addr);
            set.spawn(
                async move {
                    let at = Instant::now();
                    (key, at, scrape(addr, timeout).await)
                }
                .instrument(span),
            );
        }
        let mut up = 0;
        loop {
            let joined = tokio::select! {
                j = set.join_next() => j,
                _ = drain.wait_for(|d| *d) => return,
            };
            let Some(joined) = joined else { break };
            let Ok((key, at, result)) = joined else {
                continue;
            };
            let result = match result {
                Ok(samples) => {
                    metrics.ok.fetch_add(1, Ordering::Relaxed);
                    up += 1;
                    Ok(samples)
                }
                Err(e) => {
                    tracing::debug!(target = %format!("{}/{}", key.0, key.1), error = %e, "scrape failed");
                    metrics.failed(&e);
                    Err(e.to_string())
                }
            };
            window.record(&key, at, result);
        }
        metrics.targets_up.store(up, Ordering::Relaxed);
    }
}
