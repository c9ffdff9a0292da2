//! Wiring: binds the listeners, starts the servers, and runs until SIGTERM/SIGINT or
//! `POST /shutdown`, then drains within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::admin::{self, Admin, LogLevel};
use crate::config::Config;
use crate::discover::{Discover, Discovery, StaticDiscover};
use crate::drain;
use crate::http::upstream::{Connector, Upstreams};
use crate::http::{HttpProxy, HttpSettings};
use crate::identity;
use crate::server::{self, Server};
use crate::telemetry::{Direction, Metrics, Tls};

/// Pending-connection queue of each listener.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({name}): {source}")]
pub struct BindError {
    pub name: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The bound listeners, before serving.
pub struct Bound {
    pub outbound: TcpListener,
    pub inbound: TcpListener,
    pub admin: TcpListener,
    /// The tap server's listener, when tap is enabled ([`Config::tap_enabled`]).
    pub tap: Option<TcpListener>,
}

impl Bound {
    pub async fn bind(config: &Config) -> Result<Self, BindError> {
        fn one(name: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
            let bind = || {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                // Tokio's default backlog (128) overflows when many clients connect at once;
                // the kernel caps this at net.core.somaxconn.
                socket.listen(LISTEN_BACKLOG)
            };
            bind().map_err(|source| BindError { name, addr, source })
        }
        Ok(Bound {
            admin: one(crate::config::ADMIN_LISTEN_ADDR, config.admin_listen)?,
            outbound: one(crate::config::OUTBOUND_LISTEN_ADDR, config.outbound_listen)?,
            inbound: one(crate::config::INBOUND_LISTEN_ADDR, config.inbound_listen)?,
            tap: match config.tap_enabled() {
                Some(_) => Some(one(crate::config::TAP_LISTEN_ADDR, config.tap_listen)?),
                None => None,
            },
        })
    }
}

/// Serves until `shutdown` resolves (or a POST /shutdown), then drains.
pub async fn run(
    config: Config,
    bound: Bound,
    log_level: Option<Box<dyn LogLevel>>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (tls, mtls) = match &config.identity {
        None => {
            tracing::warn!(
                "identity is disabled: traffic between proxies is NOT encrypted or authenticated"
            );
            (Tls::NoIdentity("disabled"), None)
        }
        Some(id) => match crate::tls::Tls::new(&id.name, &id.trust_anchors) {
            Ok(t) => {
                let t = Arc::new(t);
                let anchors = Arc::new(std::sync::RwLock::new(id.trust_anchors.clone()));
                let certifier = identity::ServiceCertifier {
                    config: id.clone(),
                    tls: t.clone(),
                    anchors: anchors.clone(),
                };
                let span = tracing::info_span!("identity", identity = %id.name);
                tokio::spawn(
                    identity::run(certifier, metrics.identity.clone(), ready.clone())
                        .instrument(span.clone()),
                );
                tokio::spawn(
                    identity::watch_anchors(
                        id.trust_anchors_path.clone(),
                        t.clone(),
                        anchors,
                        metrics.identity.clone(),
                    )
                    .instrument(span),
                );
                (Tls::NoIdentity("no_tls_from_remote"), Some(t))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot set up mTLS; exiting");
                return;
            }
        },
    };
    let connector = Connector {
        bind_ip: config.outbound_bind_ip,
        timeout: config.connect_timeout,
    };
    let destination = match &config.destination_svc_addr {
        None => None,
        Some(addr) => {
            let caller = config
                .identity
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_default();
            match crate::outbound::discovery::Destination::new(
                addr,
                caller,
                metrics.outbound.destination_reconnect_total.clone(),
            ) {
                Ok(d) => {
                    tracing::info!(destination = %addr, idle_timeout = ?config.destination_idle_timeout, "outbound discovery and policy from the destination service");
                    Some(crate::outbound::Outbound::spawn(
                        d,
                        crate::outbound::OutboundConfig {
                            idle_timeout: config.destination_idle_timeout,
                            initial_wait: crate::outbound::policy::DEFAULT_FAIL_FAST,
                        },
                        metrics.outbound.clone(),
                    ))
                }
                Err(e) => {
                    tracing::error!(destination = %addr, error = %e, "cannot use the destination service; exiting");
                    return;
                }
            }
        }
    };
    let discover: Arc<dyn Discover> = Arc::new(Discovery {
        statics: StaticDiscover::new(&config.meshed_peers),
        destination,
    });
    let mut own_addrs = vec![
        bound
            .outbound
            .local_addr()
            .unwrap_or(config.outbound_listen),
        bound.inbound.local_addr().unwrap_or(config.inbound_listen),
        bound.admin.local_addr().unwrap_or(config.admin_listen),
    ];
    if let Some(tap) = &bound.tap {
        own_addrs.push(tap.local_addr().unwrap_or(config.tap_listen));
    }
    let taps = crate::tap::Taps::new(metrics.tap.clone());
    let http = Arc::new(HttpProxy::new(
        HttpSettings {
            response_timeout: config.response_timeout,
            inbound_app_addr: config.inbound_app_addr,
            own_addrs,
            identity_enabled: mtls.is_some(),
        },
        metrics.clone(),
        Upstreams::new(connector.clone(), mtls.clone(), config.pool_idle_timeout),
        discover.clone(),
        config.max_in_flight_requests,
        taps.clone(),
    ));
    let (drain_signal, drain_watch) = drain::channel();
    let (shutdown_tx, mut shutdown_rx) = mpsc::channel(1);
    let draining = Arc::new(AtomicBool::new(false));
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        ready: ready.clone(),
        draining: draining.clone(),
        shutdown: shutdown_tx,
        log_level,
    });
    tokio::spawn(admin::serve(bound.admin, admin).instrument(tracing::info_span!("admin")));

    for (direction, listener) in [
        (Direction::Outbound, bound.outbound),
        (Direction::Inbound, bound.inbound),
    ] {
        let server = Arc::new(Server {
            direction,
            http: http.clone(),
            metrics: metrics.clone(),
            detect_timeout: config.detect_timeout,
            opaque_ports: config.opaque_ports.clone(),
            connector: connector.clone(),
            discover: discover.clone(),
            inbound_app_addr: config.inbound_app_addr,
            tls: tls.clone(),
            mtls: mtls.clone(),
            drain: drain_watch.clone(),
        });
        let span = tracing::info_span!("listener", direction = direction.as_str());
        tokio::spawn(
            server::serve_listener(listener, server, config.max_connections).instrument(span),
        );
    }
    serve_tap(&config, bound.tap, mtls.as_ref(), taps, drain_watch.clone());
    drop(drain_watch);
    if mtls.is_none() {
        ready.store(true, Ordering::Release);
    }
    tracing::info!(
        outbound = %config.outbound_listen,
        inbound = %config.inbound_listen,
        admin = %config.admin_listen,
        "proxy ready"
    );

    tokio::select! {
        _ = shutdown => tracing::info!("signal received, draining"),
        _ = shutdown_rx.recv() => {}
    }
    draining.store(true, Ordering::Release);
    let grace = config.shutdown_grace_period;
    match tokio::time::timeout(grace, drain_signal.drain()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            ?grace,
            "grace period over with work still in flight; exiting"
        ),
    }
}

/// Starts the tap server when tap is enabled; otherwise says once why it is off.
fn serve_tap(
    config: &Config,
    listener: Option<TcpListener>,
    mtls: Option<&Arc<crate::tls::Tls>>,
    taps: Arc<crate::tap::Taps>,
    drain: drain::Watch,
) {
    let (Some(listener), Some(mtls), Some(client_id)) = (listener, mtls, config.tap_enabled())
    else {
        let why = if config.identity.is_none() {
            "identity is disabled"
        } else {
            "WEFT_PROXY_TAP_SVC_NAME is not set"
        };
        tracing::info!("tap is disabled: {why}");
        return;
    };
    let acceptor = match mtls.tap_acceptor(client_id) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the tap server's TLS; tap is disabled");
            return;
        }
    };
    let addr = listener.local_addr().unwrap_or(config.tap_listen);
    tracing::info!(tap = %addr, client.id = %client_id, "tap server listening");
    let certified = mtls.clone();
    let service = crate::tap::server::TapService { taps, drain };
    tokio::spawn(
        crate::tap::server::serve(
            listener,
            acceptor,
            Arc::new(move || certified.has_certificate()),
            service,
        )
        .instrument(tracing::info_span!("tap")),
    );
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::warn!(
                    "cannot install signal handlers; only POST /shutdown stops the proxy"
                );
                std::future::pending::<()>().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
