//! The admin server: `/metrics`, `/live`, `/ready`, `/shutdown` (POST, loopback only) and
//! `/proxy-log-level` (GET; PUT from loopback only).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::telemetry::Metrics;

/// Changes and reports the log filter at runtime.
pub trait LogLevel: Send + Sync {
    fn get(&self) -> String;
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// What the admin server reads and controls.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub draining: Arc<AtomicBool>,
    pub shutdown: mpsc::Sender<()>,
    pub log_level: Option<Box<dyn LogLevel>>,
}

type Rsp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Rsp {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

impl Admin {
    async fn handle(&self, req: Request<hyper::body::Incoming>, peer: SocketAddr) -> Rsp {
        let loopback = peer.ip().is_loopback();
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut rsp = text(StatusCode::OK, self.metrics.encode());
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                rsp
            }
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::GET, "/ready") => {
                if self.draining.load(Ordering::Acquire) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if self.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            (&Method::POST, "/shutdown") if loopback => {
                tracing::info!("shutdown requested through the admin server");
                let _ = self.shutdown.try_send(());
                text(StatusCode::OK, "shutdown\n")
            }
            (&Method::PUT, "/proxy-log-level") if loopback => {
                let Some(level) = &self.log_level else {
                    return text(StatusCode::NOT_FOUND, "log level is not adjustable\n");
                };
                let body = match Limited::new(req.into_body(), 4096).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "filter too long\n"),
                };
                let filter = String::from_utf8_lossy(&body).trim().to_string();
                match level.set(&filter) {
                    Ok(()) => {
                        tracing::info!(%filter, "log level changed");
                        text(StatusCode::NO_CONTENT, "")
                    }
                    Err(e) => text(
                        StatusCode::BAD_REQUEST,
                        format!("invalid log filter {filter:?}: {e}\n"),
                    ),
                }
            }
            (&Method::GET, "/proxy-log-level") => match &self.log_level {
                Some(l) => text(StatusCode::OK, format!("{}\n", l.get())),
                None => text(StatusCode::NOT_FOUND, "log level is not adjustable\n"),
            },
            (_, "/shutdown") | (_, "/proxy-log-level") if !loopback => {
                text(StatusCode::FORBIDDEN, "only allowed from loopback\n")
            }
            (_, "/metrics" | "/live" | "/ready" | "/shutdown" | "/proxy-log-level") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Serves the admin API forever.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(
            async move {
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(req, peer).await) }
                });
                let res = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if let Err(e) = res {
                    tracing::debug!(error = %e, "admin connection error");
                }
            }
            .instrument(tracing::debug_span!("admin", client.addr = %peer)),
        );
    }
}
