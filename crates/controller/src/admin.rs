//! The admin server every component has: `/metrics` (Prometheus text), `/ready` and `/live`.
//!
//! `/live` answers 200 while the process serves HTTP at all. `/ready` answers 200 only when every
//! component says it can do its job (the identity service: it holds an issuer that is valid now)
//! and no shutdown has started; otherwise 503 with the reasons, one a line.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::prom::{self, Encoder, Kind};

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a component shows on the admin port.
pub trait Telemetry: Send + Sync {
    /// Appends the component's metric families.
    fn encode_metrics(&self, enc: &mut Encoder);

    /// `Ok` when the component can serve, or why not (one line, for `/ready`).
    fn readiness(&self) -> Result<(), String>;
}

/// Several components' telemetry collected for one admin server (`weft-controller all`): each
/// component started with it adds its [`Telemetry`] here instead of binding an admin port.
#[derive(Default)]
pub struct SharedAdmin {
    addr: Option<std::net::SocketAddr>,
    components: std::sync::Mutex<Vec<Arc<dyn Telemetry>>>,
}

impl SharedAdmin {
    /// A collection for the admin server that will listen on `addr`.
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            addr: Some(addr),
            components: std::sync::Mutex::default(),
        }
    }

    /// The shared admin server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Adds a component.
    pub fn add(&self, component: Arc<dyn Telemetry>) {
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(component);
    }

    /// The admin server over every component added so far.
    pub fn into_admin(self, draining: watch::Receiver<bool>) -> Admin {
        let components = self
            .components
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Admin::new(components, draining)
    }
}

/// The admin server's state.
pub struct Admin {
    components: Vec<Arc<dyn Telemetry>>,
    started: SystemTime,
    draining: watch::Receiver<bool>,
}

impl Admin {
    /// An admin server over `components`; `draining` turns `/ready` to 503 once it is `true`.
    pub fn new(components: Vec<Arc<dyn Telemetry>>, draining: watch::Receiver<bool>) -> Self {
        Self {
            components,
            started: SystemTime::now(),
            draining,
        }
    }

    /// The `/metrics` body: every component's families, then the process's.
    pub fn metrics_text(&self) -> String {
        let mut enc = Encoder::new();
        for c in &self.components {
            c.encode_metrics(&mut enc);
        }
        enc.single(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            prom::unix_seconds(self.started),
        );
        enc.finish()
    }

    /// `Ok` when ready, or the reasons it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if *self.draining.borrow() {
            reasons.push("shutting down".to_owned());
        }
        for c in &self.components {
            if let Err(why) = c.readiness() {
                reasons.push(why);
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    fn handle(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut rsp = text(StatusCode::OK, self.metrics_text());
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(prom::CONTENT_TYPE),
                );
                rsp
            }
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n".to_owned()),
            (&Method::GET, "/ready") => match self.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
                Err(reasons) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready:\n{}\n", reasons.join("\n")),
                ),
            },
            (_, "/metrics" | "/live" | "/ready") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".to_owned(),
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

/// Serves the admin API until `drain` turns `true`; then stops accepting (connections already
/// open finish on their own).
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut drain: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.wait_for(|d| *d) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(
            async move {
                let svc = service_fn(move |req| {
                    let rsp = admin.handle(&req);
                    async move { Ok::<_, Infallible>(rsp) }
                });
                let res = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if let Err(e) = res {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            }
            .instrument(tracing::debug_span!("admin", client.addr = %peer)),
        );
    }
}
