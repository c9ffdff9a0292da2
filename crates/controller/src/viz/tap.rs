//! Tap fan-out: one `weft.tap.v1.Tap/Observe` stream to every proxy a resource selects,
//! merged into one stream of [`TapLine`]s.
//!
//! Each proxy is reached on its tap port over mTLS: the viz component presents a short-lived
//! leaf for its own identity (the only client identity proxies accept on that port), issued by
//! itself from the identity service's issuer and cached until half its life has passed, and
//! verifies that the proxy presents the identity its ExternalWorkload names, under the current
//! trust anchors. A proxy that cannot be reached, or whose stream fails, yields one `error` line
//! and the others keep streaming; dropping the [`Fanout`] ends every upstream stream.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use weft_api::tap as pb;
use weft_pki::{generate_key_and_csr, Identity};

use super::resource::Workload;
use crate::identity::Credentials;

/// How long the viz component's own leaf is valid.
const LEAF_LIFETIME: Duration = Duration::from_secs(3600);
/// Backdating of the leaf against clock skew.
const LEAF_SKEW: Duration = Duration::from_secs(20);
/// How long connecting to a proxy's tap port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the viz component needs to tap: the identity service's credentials (to issue itself a
/// leaf) and its own identity name.
#[derive(Clone, Debug)]
pub struct TapIdentity {
    /// The identity service's current issuer and anchors.
    pub credentials: watch::Receiver<Arc<Credentials>>,
    /// The viz identity (`ClusterConfig::viz_identity()`).
    pub identity: String,
}

/// Why tapping a proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No credentials were given to the viz component.
    #[error("tap is not configured: the viz component has no identity")]
    NotConfigured,
    /// The viz identity is not a valid identity name.
    #[error("the viz identity {0:?} is invalid: {1}")]
    Identity(String, String),
    /// Issuing the viz leaf failed.
    #[error("cannot issue the viz certificate: {0}")]
    Issue(String),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The proxy could not be reached or the stream failed.
    #[error("{0}")]
    Proxy(String),
}

struct CachedConfig {
    config: Arc<rustls::ClientConfig>,
    refresh_at: SystemTime,
    fingerprint: crate::identity::credentials::Fingerprint,
}

/// The viz component's TLS client configuration for tap, reissued when half its leaf's life has
/// passed or the credentials change.
pub struct TapTls {
    identity: Option<TapIdentity>,
    cached: Mutex<Option<CachedConfig>>,
}

impl TapTls {
    /// Tap credentials from `identity`; `None` disables tap (requests answer 503).
    pub fn new(identity: Option<TapIdentity>) -> Self {
        Self {
            identity,
            cached: Mutex::new(None),
        }
    }

    /// The current client configuration, issuing a new leaf when needed.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TapError> {
        let id = self.identity.as_ref().ok_or(TapError::NotConfigured)?;
        let creds = id.credentials.borrow().clone();
        let now = SystemTime::now();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref() {
            if c.refresh_at > now && c.fingerprint == creds.fingerprint {
                return Ok(c.config.clone());
            }
        }
        let identity = Identity::parse(&id.identity)
            .map_err(|e| TapError::Identity(id.identity.clone(), e.to_string()))?;
        let (key, csr) =
            generate_key_and_csr(&identity).map_err(|e| TapError::Issue(e.to_string()))?;
        let leaf = creds
            .issuer
            .certify(csr.as_ref(), &identity, LEAF_LIFETIME, LEAF_SKEW, now)
            .map_err(|e| TapError::Issue(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(creds.anchors.certs().iter().cloned());
        if added == 0 {
            return Err(TapError::Tls("no usable trust anchor".to_owned()));
        }
        let mut chain = vec![leaf.cert_der.clone()];
        chain.extend(leaf.intermediates.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TapError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key.private_key_der())
            .map_err(|e| TapError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let config = Arc::new(config);
        let life = leaf.not_after.duration_since(now).unwrap_or(Duration::ZERO);
        *cached = Some(CachedConfig {
            config: config.clone(),
            refresh_at: now + life / 2,
            fingerprint: creds.fingerprint,
        });
        tracing::debug!(serial = %leaf.serial_hex, identity = %id.identity, "issued the viz tap certificate");
        Ok(config)
    }
}

/// One line of the tap stream (newline-delimited JSON on `/api/tap`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TapLine {
    /// `req`, `rsp`, `end`, or `error` (a proxy could not be tapped).
    pub kind: &'static str,
    /// The tapped proxy's workload namespace.
    pub namespace: String,
    /// The tapped proxy's workload.
    pub pod: String,
    /// `<base>:<stream>`, per proxy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `in` or `out`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy: String,
    /// The client's address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src: String,
    /// Where the proxy sent the request.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dst: String,
    /// `true` for mTLS, else why not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls: String,
    /// The client's identity (inbound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_identity: Option<String>,
    /// The server's identity (outbound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_identity: Option<String>,
    /// What discovery says about the destination (`deployment`, `pod`, `service`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dst_labels: BTreeMap<String, String>,
    /// Request method (`req`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request authority (`req`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Request path (`req`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Request scheme (`req`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Response status (`rsp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// Microseconds from request to response head (`rsp`; also on `end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Microseconds from response head to end (`end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Response body bytes (`end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    /// gRPC status (`end`), when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Why the response did not complete (`end`), or why the proxy could not be tapped
    /// (`error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TapLine {
    fn from_event(w: &Workload, ev: pb::TapEvent) -> Option<Self> {
        let id = ev
            .request_id
            .map(|r| format!("{}:{}", r.base, r.stream))
            .unwrap_or_default();
        let direction = match pb::Direction::try_from(ev.direction) {
            Ok(pb::Direction::Inbound) => "in",
            Ok(pb::Direction::Outbound) => "out",
            _ => "",
        };
        let mut line = TapLine {
            kind: "",
            namespace: w.namespace.clone(),
            pod: w.name.clone(),
            id,
            proxy: direction.to_owned(),
            src: ev.source,
            dst: ev.destination,
            tls: ev.tls,
            src_identity: Some(ev.source_identity).filter(|s| !s.is_empty()),
            dst_identity: Some(ev.destination_identity).filter(|s| !s.is_empty()),
            dst_labels: ev.destination_labels.into_iter().collect(),
            ..TapLine::default()
        };
        match ev.event? {
            pb::tap_event::Event::RequestInit(r) => {
                line.kind = "req";
                line.method = Some(r.method);
                line.authority = Some(r.authority);
                line.path = Some(r.path);
                line.scheme = Some(r.scheme).filter(|s| !s.is_empty());
            }
            pb::tap_event::Event::ResponseInit(r) => {
                line.kind = "rsp";
                line.status = Some(r.status);
                line.latency_us = Some(r.since_request_init_us);
            }
            pb::tap_event::Event::ResponseEnd(r) => {
                line.kind = "end";
                line.grpc_status = r.grpc_status;
                line.latency_us = Some(r.since_request_init_us);
                line.duration_us = Some(r.since_response_init_us);
                line.response_bytes = Some(r.response_bytes);
                line.error = Some(r.error).filter(|e| !e.is_empty());
            }
        }
        Some(line)
    }

    fn error(w: &Workload, message: String) -> Self {
        TapLine {
            kind: "error",
            namespace: w.namespace.clone(),
            pod: w.name.clone(),
            error: Some(message),
            ..TapLine::default()
        }
    }
}

/// What a tap asks for.
#[derive(Clone, Debug, Default)]
pub struct TapFilter {
    /// Exact method.
    pub method: Option<String>,
    /// Path prefix.
    pub path: Option<String>,
    /// Exact authority.
    pub authority: Option<String>,
    /// Only outbound requests to these destinations: their addresses, and the `dst_*` labels
    /// (namespace, then `deployment`/`pod`/`service` = name) that name them.
    pub to: Option<ToFilter>,
    /// Requests per second per proxy.
    pub max_rps: u32,
}

/// `--to`: the destination's addresses and discovery labels.
#[derive(Clone, Debug, Default)]
pub struct ToFilter {
    /// The destination workloads' addresses.
    pub ips: Vec<IpAddr>,
    /// The destination namespace.
    pub namespace: String,
    /// `deployment`, `pod`, `service` or `namespace`.
    pub label: String,
    /// The destination's name.
    pub name: String,
}

impl ToFilter {
    fn matches(&self, line: &TapLine) -> bool {
        if line.proxy != "out" {
            return false;
        }
        let by_ip = line
            .dst
            .parse::<SocketAddr>()
            .is_ok_and(|a| self.ips.contains(&a.ip()));
        let label = |k: &str| line.dst_labels.get(k).map(String::as_str);
        let by_label = if self.label == "namespace" {
            label("namespace") == Some(self.name.as_str())
        } else {
            label("namespace") == Some(self.namespace.as_str())
                && label(&self.label) == Some(self.name.as_str())
        };
        by_ip || by_label
    }
}

/// The merged tap streams of several proxies. Dropping it ends them all.
pub struct Fanout {
    /// The merged lines.
    pub lines: mpsc::Receiver<TapLine>,
    _tasks: JoinSet<()>,
}

/// Opens a tap on every meshed workload in `workloads`.
pub fn open(tls: &Arc<TapTls>, workloads: &[Workload], filter: &TapFilter) -> Fanout {
    let (tx, rx) = mpsc::channel(1024);
    let mut tasks = JoinSet::new();
    for w in workloads.iter().filter(|w| w.meshed()) {
        let (w, tx, tls, filter) = (w.clone(), tx.clone(), tls.clone(), filter.clone());
        let span = tracing::debug_span!("tap", target = %format!("{}/{}", w.namespace, w.name));
        tasks.spawn(
            async move {
                if let Err(e) = observe(&tls, &w, &filter, &tx).await {
                    tracing::debug!(error = %e, "tap ended");
                    let _ = tx.send(TapLine::error(&w, e.to_string())).await;
                }
            }
            .instrument(span),
        );
    }
    Fanout {
        lines: rx,
        _tasks: tasks,
    }
}

async fn observe(
    tls: &TapTls,
    w: &Workload,
    filter: &TapFilter,
    tx: &mpsc::Sender<TapLine>,
) -> Result<(), TapError> {
    let (Some(addr), Some(identity)) = (w.tap, w.identity.clone()) else {
        return Ok(());
    };
    let config = tls.client_config()?;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        TapError::Proxy(format!(
            "tap {}/{} at {addr}: {what}: {e}",
            w.namespace, w.name
        ))
    };
    let server_name = ServerName::try_from(identity.clone())
        .map_err(|e| fail("its identity is not a DNS name", &e))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = tower::service_fn(move |_: http::Uri| {
        let (connector, server_name) = (connector.clone(), server_name.clone());
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| fail("bad address", &e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(connect)
        .await
        .map_err(|e| fail("cannot connect", &DisplayChain(&e)))?;
    let mut client = pb::tap_client::TapClient::new(channel);
    let request = pb::ObserveRequest {
        filter: Some(pb::Filter {
            method: filter.method.clone(),
            authority: filter.authority.clone(),
            path_prefix: filter.path.clone(),
            source: None,
            destination: None,
            direction: if filter.to.is_some() {
                pb::Direction::Outbound as i32
            } else {
                pb::Direction::Unspecified as i32
            },
        }),
        max_rps: filter.max_rps,
    };
    let mut stream = client
        .observe(request)
        .await
        .map_err(|s| fail("refused", &s.message()))?
        .into_inner();
    loop {
        let ev = tokio::select! {
            ev = stream.message() => ev.map_err(|s| fail("stream failed", &s.message()))?,
            () = tx.closed() => return Ok(()),
        };
        let Some(ev) = ev else {
            return Err(fail("stream ended", &"the proxy closed it"));
        };
        let Some(line) = TapLine::from_event(w, ev) else {
            continue;
        };
        if filter.to.as_ref().is_some_and(|t| !t.matches(&line)) {
            continue;
        }
        if tx.send(line).await.is_err() {
            return Ok(());
        }
    }
}

/// An error and its sources on one line.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
