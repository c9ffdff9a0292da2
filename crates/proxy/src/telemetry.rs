//! The proxy's metric families, with Linkerd's names and labels, and process metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::{Counter, EncodeLabels, Family, Gauge, Histogram, LabelWriter};

/// Traffic direction, from this proxy's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The TLS status of a connection (`tls` and `no_tls_reason` labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tls {
    /// No mTLS, and why (`disabled`: identity is switched off; `no_tls_from_remote`: the client
    /// did not use mTLS; `not_meshed`: the destination has no proxy).
    NoIdentity(&'static str),
    /// mTLS: the client's identity (inbound) or the server's (outbound).
    Established {
        client_id: Option<String>,
        server_id: Option<String>,
    },
}

impl Tls {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        match self {
            Tls::NoIdentity(reason) => {
                out.label("tls", "no_identity");
                out.label("no_tls_reason", reason);
            }
            Tls::Established {
                client_id,
                server_id,
            } => {
                out.label("tls", "true");
                if let Some(id) = client_id {
                    out.label("client_id", id);
                }
                if let Some(id) = server_id {
                    out.label("server_id", id);
                }
            }
        }
    }
}

/// Labels shared by request metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    pub direction: Direction,
    pub authority: String,
    pub target_addr: String,
    pub tls: Tls,
}

impl EncodeLabels for RequestLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", self.direction.as_str());
        out.label("authority", &self.authority);
        out.label("target_addr", &self.target_addr);
        self.tls.encode(out);
    }
}

/// Labels of `response_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResponseLabels {
    pub request: RequestLabels,
    pub status_code: u16,
    pub grpc_status: Option<u16>,
    pub success: bool,
    /// The proxy's reason when it synthesized the response (a closed set).
    pub error: Option<&'static str>,
}

impl EncodeLabels for ResponseLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        self.request.encode(out);
        out.label("status_code", &self.status_code.to_string());
        if let Some(g) = self.grpc_status {
            out.label("grpc_status", &g.to_string());
        }
        out.label(
            "classification",
            if self.success { "success" } else { "failure" },
        );
        if let Some(e) = self.error {
            out.label("error", e);
        }
    }
}

/// Labels of `response_latency_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LatencyLabels {
    pub request: RequestLabels,
    pub status_code: u16,
}

impl EncodeLabels for LatencyLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        self.request.encode(out);
        out.label("status_code", &self.status_code.to_string());
    }
}

/// Labels of the `tcp_*` families. `peer` is `src` for accepted connections and `dst` for
/// connections the proxy opens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpLabels {
    pub direction: Direction,
    pub peer: &'static str,
    pub target_addr: String,
    pub tls: Tls,
}

impl EncodeLabels for TcpLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", self.direction.as_str());
        out.label("peer", self.peer);
        out.label("target_addr", &self.target_addr);
        self.tls.encode(out);
    }
}

/// Labels of `protocol_detect_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DetectLabels {
    pub direction: Direction,
    pub protocol: &'static str,
    pub reason: &'static str,
}

impl EncodeLabels for DetectLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", self.direction.as_str());
        out.label("protocol", self.protocol);
        out.label("reason", self.reason);
    }
}

/// Per-connection TCP counters, looked up once when the connection opens.
pub struct TcpStats {
    pub open_total: Arc<Counter>,
    pub close_total: Arc<Counter>,
    pub open_connections: Arc<Gauge>,
    pub read_bytes: Arc<Counter>,
    pub write_bytes: Arc<Counter>,
}

/// Every metric the proxy exports.
pub struct Metrics {
    pub request_total: Family<RequestLabels, Counter>,
    pub response_total: Family<ResponseLabels, Counter>,
    pub response_latency_ms: Family<LatencyLabels, Histogram>,
    pub tcp_open_total: Family<TcpLabels, Counter>,
    pub tcp_close_total: Family<TcpLabels, Counter>,
    pub tcp_open_connections: Family<TcpLabels, Gauge>,
    pub tcp_read_bytes_total: Family<TcpLabels, Counter>,
    pub tcp_write_bytes_total: Family<TcpLabels, Counter>,
    pub protocol_detect_total: Family<DetectLabels, Counter>,
    pub identity: Arc<crate::identity::IdentityMetrics>,
    /// Route, retry, timeout, balancer and discovery metrics of the outbound client.
    pub outbound: Arc<crate::outbound::metrics::OutboundMetrics>,
    start_time: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            request_total: Family::new("request_total", "Total count of HTTP requests."),
            response_total: Family::new(
                "response_total",
                "Total count of HTTP responses, by status and classification.",
            ),
            response_latency_ms: Family::new(
                "response_latency_ms",
                "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds.",
            ),
            tcp_open_total: Family::new("tcp_open_total", "Total count of opened TCP connections."),
            tcp_close_total: Family::new("tcp_close_total", "Total count of closed TCP connections."),
            tcp_open_connections: Family::new("tcp_open_connections", "Number of currently open TCP connections."),
            tcp_read_bytes_total: Family::new("tcp_read_bytes_total", "Total count of bytes read from peers."),
            tcp_write_bytes_total: Family::new("tcp_write_bytes_total", "Total count of bytes written to peers."),
            protocol_detect_total: Family::new(
                "protocol_detect_total",
                "Protocol detection outcomes on accepted connections (reason=timeout means the client sent nothing in time).",
            ),
            identity: Arc::default(),
            outbound: Arc::default(),
            start_time: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// Records a connection opening and returns the counters it updates until it closes.
    pub fn tcp_open(&self, labels: &TcpLabels) -> TcpStats {
        let stats = TcpStats {
            open_total: self.tcp_open_total.get(labels),
            close_total: self.tcp_close_total.get(labels),
            open_connections: self.tcp_open_connections.get(labels),
            read_bytes: self.tcp_read_bytes_total.get(labels),
            write_bytes: self.tcp_write_bytes_total.get(labels),
        };
        stats.open_total.inc();
        stats.open_connections.inc();
        stats
    }

    /// The whole text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.request_total.encode(&mut out);
        self.response_total.encode(&mut out);
        self.response_latency_ms.encode(&mut out);
        self.tcp_open_total.encode(&mut out);
        self.tcp_close_total.encode(&mut out);
        self.tcp_open_connections.encode(&mut out);
        self.tcp_read_bytes_total.encode(&mut out);
        self.tcp_write_bytes_total.encode(&mut out);
        self.protocol_detect_total.encode(&mut out);
        self.identity.encode(&mut out);
        self.outbound.encode(&mut out);
        crate::process::encode(&mut out, self.start_time);
        out
    }
}

/// Closes a connection's metrics exactly once, whichever way the connection ends.
pub struct TcpGuard(pub TcpStats);

impl Drop for TcpGuard {
    fn drop(&mut self) {
        self.0.close_total.inc();
        self.0.open_connections.dec();
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
