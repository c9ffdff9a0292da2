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

/// The metric labels the destination service gave the endpoint a request went to, exported
/// as Linkerd does: `namespace` becomes `dst_namespace`, `pod` `dst_pod`, and so on.
///
/// Only the keys in [`DstLabels::KEYS`] are kept (the control plane's labels must not be able
/// to add arbitrary series), in that order; empty values are left out and long ones cut to
/// [`DstLabels::MAX_VALUE_LEN`] bytes. They are the endpoint's, so they add no series beyond
/// `target_addr`'s. Built once per endpoint update, shared by every request to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DstLabels(Option<Arc<[DstLabel]>>);

/// One exported label: its name (`dst_pod`) and value.
type DstLabel = (&'static str, Box<str>);

impl DstLabels {
    /// Destination-service label → exported label. The set-level `namespace` and `service`,
    /// and the endpoint's workload (Linkerd's workload kinds, and Weft's `external_workload`).
    pub const KEYS: [(&'static str, &'static str); 11] = [
        ("namespace", "dst_namespace"),
        ("service", "dst_service"),
        ("pod", "dst_pod"),
        ("external_workload", "dst_external_workload"),
        ("serviceaccount", "dst_serviceaccount"),
        ("deployment", "dst_deployment"),
        ("statefulset", "dst_statefulset"),
        ("daemonset", "dst_daemonset"),
        ("replicaset", "dst_replicaset"),
        ("job", "dst_job"),
        ("cronjob", "dst_cronjob"),
    ];

    /// Longest value kept, in bytes (a Kubernetes name's limit).
    pub const MAX_VALUE_LEN: usize = 253;

    /// The exported labels of an endpoint's metric labels.
    pub fn from_metric_labels(labels: &std::collections::BTreeMap<String, String>) -> Self {
        let kept: Vec<DstLabel> = Self::KEYS
            .iter()
            .filter_map(|(from, to)| {
                let value = labels.get(*from)?.trim();
                if value.is_empty() {
                    return None;
                }
                let mut end = value.len().min(Self::MAX_VALUE_LEN);
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                Some((*to, Box::from(&value[..end])))
            })
            .collect();
        if kept.is_empty() {
            DstLabels(None)
        } else {
            DstLabels(Some(kept.into()))
        }
    }

    /// The labels, as exported.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0
            .iter()
            .flat_map(|l| l.iter())
            .map(|(k, v)| (*k, v.as_ref()))
    }

    fn encode(&self, out: &mut LabelWriter<'_>) {
        for (k, v) in self.iter() {
            out.label(k, v);
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
    /// The discovered endpoint's `dst_*` labels (outbound requests through a service policy;
    /// empty otherwise).
    pub dst: DstLabels,
}

impl EncodeLabels for RequestLabels {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        out.label("direction", self.direction.as_str());
        out.label("authority", &self.authority);
        out.label("target_addr", &self.target_addr);
        self.tls.encode(out);
        self.dst.encode(out);
    }
}

/// Labels of `response_total` (and, over [`RouteLabels`](crate::outbound::metrics::RouteLabels),
/// of `route_response_total`): the request's labels, then the response's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResponseLabels<L = RequestLabels> {
    pub base: L,
    pub status_code: u16,
    pub grpc_status: Option<u16>,
    pub success: bool,
    /// The proxy's reason when it synthesized the response (a closed set).
    pub error: Option<&'static str>,
}

impl<L: EncodeLabels> EncodeLabels for ResponseLabels<L> {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        self.base.encode(out);
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

/// Labels of `response_latency_ms` (and `route_response_latency_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LatencyLabels<L = RequestLabels> {
    pub base: L,
    pub status_code: u16,
}

impl<L: EncodeLabels> EncodeLabels for LatencyLabels<L> {
    fn encode(&self, out: &mut LabelWriter<'_>) {
        self.base.encode(out);
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
    /// Open taps and tap events sent and dropped.
    pub tap: Arc<crate::tap::TapMetrics>,
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
            tap: Arc::default(),
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
        self.tap.encode(&mut out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dst_labels_keep_known_keys_in_a_fixed_order() {
        let dst = DstLabels::from_metric_labels(&labels(&[
            ("pod", "web-1"),
            ("service", "web"),
            ("namespace", "shop"),
            ("deployment", "web"),
            ("serviceaccount", "web-sa"),
            ("external_workload", "web-1"),
            ("zone_secret_thing", "nope"),
            ("job", "  "),
        ]));
        assert_eq!(
            dst.iter().collect::<Vec<_>>(),
            vec![
                ("dst_namespace", "shop"),
                ("dst_service", "web"),
                ("dst_pod", "web-1"),
                ("dst_external_workload", "web-1"),
                ("dst_serviceaccount", "web-sa"),
                ("dst_deployment", "web"),
            ],
            "unknown keys and empty values are dropped"
        );
        assert_eq!(
            DstLabels::from_metric_labels(&BTreeMap::new()),
            DstLabels::default()
        );
        let long = "é".repeat(200);
        let cut = DstLabels::from_metric_labels(&labels(&[("pod", &long)]));
        let (_, v) = cut.iter().next().unwrap_or_else(|| unreachable!());
        assert!(v.len() <= DstLabels::MAX_VALUE_LEN && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn request_labels_end_with_the_dst_labels() {
        let family: Family<RequestLabels, Counter> = Family::new("request_total", "Requests.");
        let request = RequestLabels {
            direction: Direction::Outbound,
            authority: "web.shop.svc.cluster.local:80".into(),
            target_addr: "10.0.0.1:8080".into(),
            tls: Tls::NoIdentity("not_meshed"),
            dst: DstLabels::from_metric_labels(&labels(&[("namespace", "shop"), ("pod", "we\"b")])),
        };
        family.get(&request).inc();
        let mut text = String::new();
        family.encode(&mut text);
        assert!(
            text.contains(r#"tls="no_identity",no_tls_reason="not_meshed",dst_namespace="shop",dst_pod="we\"b"} 1"#),
            "{text}"
        );
    }
}
