//! The accept loop and per-request dispatch: one hyper-util `auto` connection per accepted
//! socket (HTTP/1.1 with upgrades, or h2c prior knowledge), and the headers every response gets.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::body::Body;
use crate::knobs::ErrorBudget;
use crate::{grpc, routes, ServerConfig};

/// Shared state of one server: its configuration and the error-injection accumulator.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cfg: ServerConfig,
    pub(crate) name_header: HeaderValue,
    pub(crate) budget: ErrorBudget,
}

/// How long to back off after a failed `accept` (typically EMFILE): long enough not to spin,
/// short enough that tests recover as soon as descriptors are freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves HTTP/1.1 (keep-alive, chunked, `Expect: 100-continue`, upgrades) and h2c prior
/// knowledge on `listener`, forever.
///
/// Returns an error only if `cfg` is invalid; failed accepts are logged and retried.
pub async fn serve(listener: TcpListener, cfg: ServerConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    let name_header = HeaderValue::from_str(&cfg.name)?;
    let state = Arc::new(State {
        cfg,
        name_header,
        budget: ErrorBudget::default(),
    });
    let local = listener.local_addr()?;
    tracing::info!(server.addr = %local, testapp.name = %state.cfg.name, "serving");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, server.addr = %local, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Latency-sensitive tests and benchmarks: do not let Nagle hold small responses.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let span = tracing::debug_span!("conn", client.addr = %peer, server.addr = %local);
        tokio::spawn(
            async move {
                let service = service_fn(move |req| handle(req, state.clone()));
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
}

/// Dispatches one request and stamps the `x-testapp-*` response headers.
async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let version = req.version();
    let mut resp = if grpc::is_grpc(req.headers()) {
        grpc::handle(req, state.name_header.clone()).await
    } else {
        match req.uri().path() {
            "/echo" => routes::echo(req),
            "/sha256" => routes::sha256(req).await,
            "/bytes" => routes::bytes(&req),
            "/stream" => routes::stream(&req),
            "/headers" => routes::headers(&req),
            "/ws" => crate::ws::upgrade(req),
            _ => routes::knob(req, &state).await,
        }
    };
    let headers = resp.headers_mut();
    headers.insert("x-testapp-name", state.name_header.clone());
    headers.insert(
        "x-testapp-version",
        HeaderValue::from_static(version_name(version)),
    );
    Ok(resp)
}

/// The protocol name reported in `x-testapp-version` and by `/headers`.
pub(crate) fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}
