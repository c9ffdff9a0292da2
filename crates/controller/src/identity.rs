//! The identity service (`weft-controller identity`): a certificate authority for workloads.
//!
//! A proxy generates its key in memory and sends `Certify(identity, token, CSR)`; the service
//! checks that the identity belongs to this mesh, that the token proves it ([`token`]), and that
//! the CSR names exactly it, then signs a short-lived leaf (24 h by default) with the current
//! issuer and returns it with the issuer chain.
//!
//! Run time (all in one Tokio runtime):
//! - the **gRPC server** (tonic) on `--listen` (8080), serving [`service::IdentityService`];
//! - the **reloader** ([`reload`]), the single writer of a `watch` channel of [`Credentials`]:
//!   it polls the trust anchor and issuer files and publishes new credentials that pass every
//!   check, keeping the old ones otherwise;
//! - the **admin server** ([`crate::admin`]) on `--admin-listen` (9990): `/metrics` with
//!   `identity_*` families, `/ready` (200 while the issuer is valid), `/live`.
//!
//! Shutdown: the drain signal stops the reloader and the admin listener, and the gRPC server
//! stops accepting and finishes in-flight calls, for at most `--shutdown-grace-period`.

pub mod credentials;
pub mod metrics;
pub mod reload;
pub mod service;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tracing::Instrument;
use weft_api::identity::identity_server::IdentityServer;
use weft_pki::{fmt_time, Identity, IdentityError};

use crate::admin::{self, Admin, SharedAdmin, Telemetry};
use crate::cli::IdentityArgs;
use crate::duration::format_duration;
use crate::grpc_task::{BindError, GrpcTask, Listeners};
use crate::prom::Encoder;
use reload::Reloader;

pub use credentials::{CredentialPaths, Credentials, LoadError};
pub use metrics::{FailureReason, IdentityMetrics};
pub use service::{CertifyError, IdentityService, IssuancePolicy, AUDIT_TARGET};
pub use token::{mint_token, HmacTokens, TokenError, TokenValidator};

/// Largest Certify request accepted (a CSR is well under 1 KiB; a token a few KiB at most).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Longest a Certify call may take on the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent calls per HTTP/2 connection (a proxy makes one call a day; this bounds a flood).
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Exit status for configuration problems (EX_USAGE), as the proxy uses.
pub const EX_USAGE: u8 = 64;

/// Why the identity service did not start. Each renders as one line naming the file, flag or
/// address and the problem.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The issuer or trust anchor files.
    #[error(transparent)]
    Credentials(#[from] LoadError),
    /// The token key file cannot be read.
    #[error("{}: cannot read the token key: {source}", path.display())]
    TokenKeyRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token key is unusable.
    #[error("{}: {source}", path.display())]
    TokenKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: token::TokenKeyError,
    },
    /// The trust domain or control-plane namespace cannot appear in identities.
    #[error("--trust-domain/--control-plane-namespace: {0}")]
    Mesh(#[source] IdentityError),
    /// A lifetime that cannot be used.
    #[error("--leaf-lifetime {0}: a workload certificate must live at least 1s")]
    LeafLifetime(String),
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

/// The identity service's view on the admin port.
struct IdentityTelemetry {
    credentials: watch::Receiver<Arc<Credentials>>,
    metrics: Arc<IdentityMetrics>,
}

impl Telemetry for IdentityTelemetry {
    fn encode_metrics(&self, enc: &mut Encoder) {
        let creds = self.credentials.borrow().clone();
        self.metrics.encode(enc, &creds);
    }

    fn readiness(&self) -> Result<(), String> {
        let creds = self.credentials.borrow().clone();
        match creds.unusable_at(SystemTime::now()) {
            None => Ok(()),
            Some(why) => Err(format!("identity: {why}")),
        }
    }
}

/// A running identity service.
pub struct Running {
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    credentials: watch::Receiver<Arc<Credentials>>,
    metrics: Arc<IdentityMetrics>,
    server: GrpcTask,
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

    /// The credentials in use, updated on every accepted reload.
    pub fn credentials(&self) -> watch::Receiver<Arc<Credentials>> {
        self.credentials.clone()
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Arc<IdentityMetrics> {
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

/// Validates the configuration, loads the credentials and token key, binds both listeners and
/// starts every task. Everything is checked before any port is bound.
pub async fn start(args: &IdentityArgs) -> Result<Running, StartError> {
    start_with_tokens(args, None).await
}

/// [`start`] with another token check than the local mesh's HMAC tokens (then
/// `--token-key-file` is not read).
pub async fn start_with_tokens(
    args: &IdentityArgs,
    tokens: Option<Arc<dyn TokenValidator>>,
) -> Result<Running, StartError> {
    start_in(args, tokens, None).await
}

/// [`start_with_tokens`], reporting to `shared` instead of binding `--admin-listen` when given
/// (`weft-controller all`).
pub async fn start_in(
    args: &IdentityArgs,
    tokens: Option<Arc<dyn TokenValidator>>,
    shared: Option<&SharedAdmin>,
) -> Result<Running, StartError> {
    Identity::new(
        "default",
        "default",
        &args.mesh.control_plane_namespace,
        &args.mesh.trust_domain,
    )
    .map_err(StartError::Mesh)?;
    if args.leaf_lifetime < Duration::from_secs(1) {
        return Err(StartError::LeafLifetime(format_duration(
            args.leaf_lifetime,
        )));
    }
    let tokens = match tokens {
        Some(t) => t,
        None => Arc::new(read_token_key(&args.token_key_file)?),
    };
    let paths = CredentialPaths {
        trust_anchors: args.trust_anchors.clone(),
        issuer_cert: args.issuer_cert.clone(),
        issuer_key: args.issuer_key.clone(),
    };
    let initial = Credentials::load(&paths, SystemTime::now())?;
    tracing::info!(
        issuer = %initial.issuer.info().subject,
        issuer.not_after = %fmt_time(initial.issuer.not_after()),
        trust_anchors = initial.anchors.len(),
        trust_anchors.earliest_expiry = %initial.anchors_expiry().map(fmt_time).unwrap_or_default(),
        "loaded identity credentials"
    );

    let Listeners {
        grpc: grpc_listener,
        grpc_addr,
        admin: admin_listener,
        admin_addr,
    } = Listeners::bind_for("--identity-listen", args.listen, args.admin_listen, shared).await?;

    let metrics = Arc::new(IdentityMetrics::default());
    let (reloader, credentials) = Reloader::new(paths, initial, metrics.clone());
    let (drain_tx, drain_rx) = watch::channel(false);

    tokio::spawn(
        reloader
            .run(args.reload_interval, drain_rx.clone())
            .instrument(tracing::info_span!("reload")),
    );

    let telemetry = Arc::new(IdentityTelemetry {
        credentials: credentials.clone(),
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

    let service = IdentityService::new(
        credentials.clone(),
        tokens,
        IssuancePolicy {
            trust_domain: args.mesh.trust_domain.clone(),
            control_plane_namespace: args.mesh.control_plane_namespace.clone(),
            leaf_lifetime: args.leaf_lifetime,
            clock_skew: args.clock_skew,
        },
        metrics.clone(),
    );
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut drain = drain_rx;
    let server = tonic::transport::Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .add_service(IdentityServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = drain.wait_for(|d| *d).await;
        });
    let server =
        tokio::spawn(server.instrument(tracing::info_span!("identity", server.addr = %grpc_addr)));
    tracing::info!(
        %grpc_addr,
        %admin_addr,
        trust_domain = %args.mesh.trust_domain,
        control_plane_namespace = %args.mesh.control_plane_namespace,
        leaf_lifetime = %format_duration(args.leaf_lifetime),
        clock_skew = %format_duration(args.clock_skew),
        "identity service listening"
    );

    Ok(Running {
        grpc_addr,
        admin_addr,
        credentials,
        metrics,
        server: GrpcTask::new("identity", drain_tx, server, args.shutdown_grace_period),
    })
}

fn read_token_key(path: &std::path::Path) -> Result<HmacTokens, StartError> {
    let contents = std::fs::read(path).map_err(|source| StartError::TokenKeyRead {
        path: path.to_owned(),
        source,
    })?;
    HmacTokens::from_key_file_contents(&contents).map_err(|source| StartError::TokenKey {
        path: path.to_owned(),
        source,
    })
}
