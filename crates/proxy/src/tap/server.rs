//! The tap server: `weft.tap.v1.Tap` over mTLS on the tap port (default 4190).
//!
//! Only a client whose certificate chains to the trust anchors and names
//! `WEFT_PROXY_TAP_SVC_NAME` completes the handshake ([`crate::tls::Tls::tap_acceptor`]); until
//! this proxy has its own certificate, connections are closed at once. The generated tonic
//! service is served through hyper's HTTP/2 server directly (no tonic router). Every tap stream
//! ends when its client goes away or the proxy drains.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tonic::codegen::Service as _;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use weft_api::tap as pb;
use weft_api::tap::tap_server::{Tap, TapServer};

use super::{Filter, Registration, Taps};
use crate::drain;
use crate::tls::TapAcceptor;

/// Bound on a tap client's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent tap connections; the viz component needs one per proxy.
const MAX_CONNECTIONS: usize = 64;
/// Largest `ObserveRequest` accepted (filters are short strings).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The `Tap` service: opens a tap per `Observe` call.
#[derive(Clone)]
pub struct TapService {
    pub taps: Arc<Taps>,
    pub drain: drain::Watch,
}

#[tonic::async_trait]
impl Tap for TapService {
    type ObserveStream = TapStream;

    async fn observe(
        &self,
        request: Request<pb::ObserveRequest>,
    ) -> Result<Response<TapStream>, Status> {
        let req = request.into_inner();
        let filter = Filter::from_proto(req.filter.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rps = super::effective_rps(req.max_rps);
        let (registration, rx) = self
            .taps
            .register(filter.clone(), req.max_rps)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        tracing::info!(
            tap = registration.base(),
            ?filter,
            max_rps = rps,
            "tap started"
        );
        let drain = self.drain.clone();
        Ok(Response::new(TapStream {
            rx,
            drained: Box::pin(async move { drain.signaled().await }),
            registration,
        }))
    }
}

/// A tap's events until its client goes away (the stream is dropped) or the proxy drains.
pub struct TapStream {
    rx: mpsc::Receiver<pb::TapEvent>,
    /// Resolves when the proxy drains; owns a drain watch, so the drain waits for this stream.
    drained: Pin<Box<dyn Future<Output = ()> + Send>>,
    registration: Registration,
}

impl futures_util::Stream for TapStream {
    type Item = Result<pb::TapEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.drained.as_mut().poll(cx).is_ready() {
            // Ends the stream with OK trailers: the proxy is going away.
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|e| e.map(Ok))
    }
}

impl Drop for TapStream {
    fn drop(&mut self) {
        tracing::info!(tap = self.registration.base(), "tap ended");
    }
}

/// Accepts tap clients until drained.
pub async fn serve(
    listener: TcpListener,
    acceptor: TapAcceptor,
    has_certificate: Arc<dyn Fn() -> bool + Send + Sync>,
    service: TapService,
) {
    let drain = service.drain.clone();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let grpc = TapServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = drain.signaled() => break,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "tap accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::info!(client.addr = %client, "too many tap connections; closing");
            continue;
        };
        if !has_certificate() {
            tracing::info!(client.addr = %client, "tap client refused: this proxy has no certificate yet");
            continue;
        }
        let acceptor = acceptor.clone();
        let grpc = grpc.clone();
        let drain = drain.clone();
        tokio::spawn(
            async move {
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, "tap client refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!("tap client refused: handshake timed out");
                            return;
                        }
                    };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut grpc = grpc.clone();
                    async move {
                        let rsp = match grpc.call(req).await {
                            Ok(rsp) => rsp,
                            Err(never) => match never {},
                        };
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let served = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(16)
                    .serve_connection(TokioIo::new(tls), svc);
                tokio::pin!(served);
                let res = tokio::select! {
                    res = served.as_mut() => res,
                    _ = drain.signaled() => {
                        served.as_mut().graceful_shutdown();
                        served.await
                    }
                };
                if let Err(e) = res {
                    tracing::debug!(error = %e, "tap connection ended with an error");
                }
                drop(permit);
            }
            .instrument(tracing::info_span!("tap", client.addr = %client)),
        );
    }
    tracing::debug!("tap listener stopped accepting");
}
