//! The destination service (`weft-controller destination`): where a proxy sends requests for a
//! service authority, and how.
//!
//! - `Get(authority)` streams the Service port's endpoints ([`endpoints`]: ExternalWorkloads
//!   selected by the Service, each with its proxy's identity and inbound address when meshed):
//!   first every endpoint (or `NoEndpoints`), then diffs.
//! - `GetPolicy(authority)` streams the compiled policy ([`weft_model::compile()`], converted by
//!   [`convert`]), a new message only when it actually changed.
//!
//! Authorities are normalized ([`authority`]): `web-svc.emojivoto:80`,
//! `web-svc.emojivoto.svc:80` and `web-svc.emojivoto.svc.cluster.local:80` are one service; no
//! port means 80. An unknown service answers `NoEndpoints { exists: false }` /
//! `PolicyUpdate.not_found` and the stream stays open, so a service created later reaches the
//! proxy.
//!
//! Run time (one Tokio runtime):
//! - the **indexer** ([`index`]), the single writer of a `watch` of [`Index`]: after each
//!   store change it recompiles once (not once per watch), on a blocking thread;
//! - the **gRPC server** (tonic) on `--listen` (8086): one stream per call, each diffing the
//!   shared index against what it sent ([`watch`]);
//! - the **admin server** ([`crate::admin`]) on `--admin-listen` (9996): `/metrics` with
//!   `destination_*` families ([`metrics`]), `/ready` (200 once the store is synced), `/live`.
//!
//! Shutdown: the drain signal ends every stream (proxies keep their last state and
//! reconnect), stops the indexer and the admin listener; the gRPC server then stops, after
//! at most `--shutdown-grace-period`.

pub mod authority;
pub mod convert;
pub mod endpoints;
pub mod index;
pub mod metrics;
pub mod service;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as channel;
use tonic::transport::server::TcpIncoming;
use tracing::Instrument;
use weft_api::destination::destination_server::DestinationServer;
use weft_model::CompileOptions;
use weft_store::{manifests, LocalStore, MemoryStore, Store};

use crate::admin::{self, Admin, SharedAdmin, Telemetry};
use crate::cli::{DestinationArgs, StoreBackend};
use crate::grpc_task::{BindError, GrpcTask, Listeners};
use crate::identity::EX_USAGE;
use crate::prom::Encoder;

pub use index::Index;
pub use metrics::DestinationMetrics;
pub use service::DestinationService;

/// Largest request accepted (an authority and an identity: well under 1 KiB).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Concurrent streams per HTTP/2 connection: a proxy holds two per authority it talks to.
const MAX_CONCURRENT_STREAMS: u32 = 10_000;

/// HTTP/2 pings on idle connections, so a proxy that vanished (no FIN) is noticed and its
/// streams freed: a ping every 10 s, dropped after 20 s without an answer.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the destination service did not start. Each renders as one line naming the flag or
/// path and the problem.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--manifests` names something that cannot be read.
    #[error("--manifests: {0}")]
    Manifests(#[from] manifests::ReadError),
    /// `--store local:DIR` names a directory that cannot be read.
    #[error("--store: {0}")]
    Store(manifests::ReadError),
    /// The cluster domain cannot be part of a DNS name.
    #[error("--cluster-domain {0:?}: expected a DNS domain such as cluster.local")]
    ClusterDomain(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl StartError {
    /// The process exit status for this error: 64 for configuration, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Bind(_) => 1,
            _ => EX_USAGE,
        }
    }
}

/// The destination service's view on the admin port.
struct DestinationTelemetry {
    index: channel::Receiver<Arc<Index>>,
    metrics: Arc<DestinationMetrics>,
}

impl Telemetry for DestinationTelemetry {
    fn encode_metrics(&self, enc: &mut Encoder) {
        self.metrics.encode(enc);
    }

    fn readiness(&self) -> Result<(), String> {
        if self.index.borrow().is_synced() {
            Ok(())
        } else {
            Err("destination: the store has not finished reading its resources".to_owned())
        }
    }
}

/// A running destination service.
pub struct Running {
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    index: channel::Receiver<Arc<Index>>,
    metrics: Arc<DestinationMetrics>,
    server: GrpcTask,
    /// Kept so the store lives (and publishes) as long as the service.
    _store: Arc<dyn Store>,
}

impl Running {
    /// Where the gRPC service listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The index the watches read, updated after every store change.
    pub fn index(&self) -> channel::Receiver<Arc<Index>> {
        self.index.clone()
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Arc<DestinationMetrics> {
        &self.metrics
    }

    /// Runs until `signal` resolves (then drains) or the gRPC server fails.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.server.run_until(signal).await
    }

    /// Resolves when the gRPC server stops on its own (see [`GrpcTask::stopped`]).
    pub async fn stopped(&mut self) -> anyhow::Error {
        self.server.stopped().await
    }

    /// Drains and stops (see [`GrpcTask::shutdown`]).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Validates the configuration, builds the store `--store` names (loading `--manifests`),
/// then starts the service on it (see [`start_with_store`]).
pub async fn start(args: &DestinationArgs) -> Result<Running, StartError> {
    check_cluster_domain(&args.cluster_domain)?;
    let store: Arc<dyn Store> = match &args.store {
        StoreBackend::Memory => Arc::new(load_memory_store(args)?),
        StoreBackend::Local(dir) => {
            let store = LocalStore::open(dir).map_err(StartError::Store)?;
            tracing::info!(
                dir = %store.manifests_dir().display(),
                objects = store.snapshot().len(),
                problems = store.problems().len(),
                "watching manifests"
            );
            Arc::new(store)
        }
    };
    start_with_store(args, store).await
}

/// Starts the service over `store` (tests and benchmarks pass a [`MemoryStore`] they feed):
/// binds both listeners and starts every task. `--store` and `--manifests` are not read.
pub async fn start_with_store(
    args: &DestinationArgs,
    store: Arc<dyn Store>,
) -> Result<Running, StartError> {
    start_in(args, store, None).await
}

/// [`start_with_store`], reporting to `shared` instead of binding `--admin-listen` when given
/// (`weft-controller all`).
pub async fn start_in(
    args: &DestinationArgs,
    store: Arc<dyn Store>,
    shared: Option<&SharedAdmin>,
) -> Result<Running, StartError> {
    check_cluster_domain(&args.cluster_domain)?;
    let cluster_domain = args
        .cluster_domain
        .trim()
        .trim_matches('.')
        .to_ascii_lowercase();
    let Listeners {
        grpc: grpc_listener,
        grpc_addr,
        admin: admin_listener,
        admin_addr,
    } = Listeners::bind_for(
        "--destination-listen",
        args.listen,
        args.admin_listen,
        shared,
    )
    .await?;

    let metrics = Arc::new(DestinationMetrics::default());
    let (drain_tx, drain_rx) = channel::channel(false);
    let index = index::spawn_indexer(
        store.watch(),
        CompileOptions {
            cluster_domain: cluster_domain.clone(),
        },
        metrics.clone(),
        drain_rx.clone(),
    );

    let telemetry = Arc::new(DestinationTelemetry {
        index: index.clone(),
        metrics: metrics.clone(),
    });
    match admin_listener {
        Some(listener) => {
            let admin = Arc::new(Admin::new(vec![telemetry], drain_rx.clone()));
            tokio::spawn(
                admin::serve(listener, admin, drain_rx.clone())
                    .instrument(tracing::info_span!("admin", server.addr = %admin_addr)),
            );
        }
        None => {
            if let Some(shared) = shared {
                shared.add(telemetry);
            }
        }
    }

    let service = DestinationService::new(
        index.clone(),
        &cluster_domain,
        metrics.clone(),
        drain_rx.clone(),
    );
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut drain = drain_rx;
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(DestinationServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = drain.wait_for(|d| *d).await;
        });
    let server = tokio::spawn(
        server.instrument(tracing::info_span!("destination", server.addr = %grpc_addr)),
    );
    tracing::info!(
        %grpc_addr,
        %admin_addr,
        store = store.backend(),
        cluster_domain = %cluster_domain,
        "destination service listening"
    );
    Ok(Running {
        grpc_addr,
        admin_addr,
        index,
        metrics,
        server: GrpcTask::new("destination", drain_tx, server, args.shutdown_grace_period),
        _store: store,
    })
}

/// Reads `--manifests` into a memory store, reporting every problem and keeping the good
/// objects.
fn load_memory_store(args: &DestinationArgs) -> Result<MemoryStore, StartError> {
    let loaded = manifests::read_all(&args.manifests)?;
    for problem in &loaded.problems {
        tracing::warn!("manifest skipped: {problem}");
    }
    tracing::info!(
        files = loaded.files.len(),
        objects = loaded.objects.len(),
        problems = loaded.problems.len(),
        "manifests read"
    );
    Ok(MemoryStore::with_objects(loaded.objects))
}

fn check_cluster_domain(domain: &str) -> Result<(), StartError> {
    let d = domain.trim().trim_matches('.');
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(StartError::ClusterDomain(domain.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_domains_are_checked() {
        for ok in ["cluster.local", "cluster.local.", "example.org", "k8s"] {
            assert!(check_cluster_domain(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "a..b", "-a.b", "a b", "a_b.c"] {
            assert!(check_cluster_domain(bad).is_err(), "{bad}");
        }
        let err = check_cluster_domain("a b").unwrap_err();
        assert_eq!(err.exit_code(), EX_USAGE);
        assert_eq!(
            err.to_string(),
            "--cluster-domain \"a b\": expected a DNS domain such as cluster.local"
        );
    }
}
