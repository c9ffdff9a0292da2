//! Listeners and connections: accept (with a connection limit), find the original destination,
//! detect the protocol, then serve HTTP/1.1 or HTTP/2 through the request path or forward
//! opaque TCP. Every connection watches the drain signal.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::PortSet;
use crate::detect::{self, Protocol};
use crate::discover::Discover;
use crate::drain;
use crate::http::upstream::Connector;
use crate::http::HttpProxy;
use crate::io::{BoxedIo, CountingIo, PrefixedIo};
use crate::telemetry::{DetectLabels, Direction, Metrics, TcpGuard, TcpLabels, Tls};
use crate::transport;

/// How long an HTTP/1.1 client may take to send a request's headers (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest HTTP/1.1 request head accepted; larger ones are answered 431.
const MAX_HTTP1_HEAD: usize = 128 * 1024;

/// The largest HTTP/2 header list accepted (uncompressed). It is above [`MAX_HTTP1_HEAD`] so a
/// request head that an HTTP/1.1 client may send always fits the HTTP/2 hop between proxies;
/// a block over this makes the peer answer 431, and one over four times this makes it close the
/// whole connection (h2's protection), which must never happen to a shared meshed connection.
pub const MAX_H2_HEADER_LIST: u32 = 256 * 1024;

/// Where a connection or request was headed before it reached the proxy.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` (for redirected connections, the IP:port).
    pub authority: String,
    /// The address, when known without a lookup.
    pub addr: Option<SocketAddr>,
}

impl Target {
    pub fn addr(addr: SocketAddr) -> Self {
        Target {
            authority: addr.to_string(),
            addr: Some(addr),
        }
    }
}

/// What one listener needs to serve its connections.
pub struct Server {
    pub direction: Direction,
    pub http: Arc<HttpProxy>,
    pub metrics: Arc<Metrics>,
    pub detect_timeout: Duration,
    pub opaque_ports: PortSet,
    pub connector: Connector,
    pub discover: Arc<dyn Discover>,
    /// Inbound: the app's address for traffic that was not redirected.
    pub inbound_app_addr: Option<SocketAddr>,
    /// The TLS label of connections before (or without) mTLS.
    pub tls: Tls,
    /// mTLS, unless identity is disabled.
    pub mtls: Option<Arc<crate::tls::Tls>>,
    pub drain: drain::Watch,
}

/// One accepted connection (or CONNECT tunnel).
pub struct ConnInfo {
    pub direction: Direction,
    pub client: SocketAddr,
    /// The address the client connected to (our listener, or the pod IP it was redirected from).
    pub local: Option<SocketAddr>,
    pub target: Option<Target>,
    pub tls: Tls,
    pub server: Arc<Server>,
}

/// Accepts connections until drained.
pub async fn serve_listener(listener: TcpListener, server: Arc<Server>, max_connections: usize) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let drain = server.drain.clone();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = drain.signaled() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = drain.signaled() => break,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let orig_dst = crate::orig_dst::original_dst(&stream);
        let local = stream.local_addr().ok();
        let server = server.clone();
        let span = tracing::debug_span!(
            "conn",
            direction = server.direction.as_str(),
            client.addr = %client,
            dst.addr = ?orig_dst,
        );
        tokio::spawn(
            async move {
                let target_label = orig_dst
                    .or(local)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let stats = server.metrics.tcp_open(&TcpLabels {
                    direction: server.direction,
                    peer: "src",
                    target_addr: target_label,
                    tls: server.tls.clone(),
                });
                let io =
                    CountingIo::new(stream, stats.read_bytes.clone(), stats.write_bytes.clone());
                let _guard = TcpGuard(stats);
                let conn = ConnInfo {
                    direction: server.direction,
                    client,
                    local,
                    target: orig_dst.map(Target::addr),
                    tls: server.tls.clone(),
                    server,
                };
                serve_conn(Box::new(io), conn).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    tracing::debug!(
        direction = server.direction.as_str(),
        "listener stopped accepting"
    );
}

/// Serves the inside of a CONNECT tunnel like a new connection to its target.
pub fn serve_tunnel(io: BoxedIo, conn: ConnInfo) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_conn(io, conn))
}

async fn serve_conn(mut io: BoxedIo, conn: ConnInfo) {
    let server = conn.server.clone();
    let direction = server.direction;
    let target_port = conn
        .target
        .as_ref()
        .and_then(|t| t.addr)
        .map(|a| a.port())
        .or_else(|| {
            conn.target
                .as_ref()
                .and_then(|t| t.authority.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
        });
    let record = |protocol: &'static str, reason: &'static str| {
        server
            .metrics
            .protocol_detect_total
            .get(&DetectLabels {
                direction,
                protocol,
                reason,
            })
            .inc();
    };
    if target_port.is_some_and(|p| server.opaque_ports.contains(p)) {
        record(Protocol::Opaque.as_str(), "opaque_port");
        forward_tcp(io, BytesMut::new(), conn).await;
        return;
    }
    let inbound = direction == Direction::Inbound;
    // Without identity, meshed TCP arrives in plain text; with it, only inside mTLS (by ALPN).
    let plain_transport_header = inbound && server.mtls.is_none();
    let detected = tokio::select! {
        d = detect::detect(&mut io, server.detect_timeout, plain_transport_header) => d,
        _ = server.drain.signaled() => {
            // Nothing was requested yet: closing loses no work.
            record("unknown", "drained");
            return;
        }
    };
    let (protocol, reason, buf) = match detected {
        Ok(d) => d,
        Err(e) => {
            record("unknown", "io_error");
            tracing::debug!(error = %e, "connection failed during protocol detection");
            return;
        }
    };
    record(protocol.as_str(), reason.as_str());
    if reason == detect::Reason::Eof && buf.is_empty() {
        return;
    }
    match protocol {
        Protocol::Http1 => serve_http1(Box::new(PrefixedIo::new(buf.freeze(), io)), conn).await,
        Protocol::H2 => serve_h2(Box::new(PrefixedIo::new(buf.freeze(), io)), conn).await,
        Protocol::MeshedTcp => serve_meshed_tcp(io, buf, conn).await,
        Protocol::Tls => match server.mtls.clone() {
            Some(mtls) if inbound => serve_tls_inbound(io, buf, conn, mtls).await,
            _ => forward_tcp(io, buf, conn).await,
        },
        Protocol::Opaque => forward_tcp(io, buf, conn).await,
    }
}

fn http_service(
    conn: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::http::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<crate::http::Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        let conn = conn.clone();
        let http = conn.server.http.clone();
        async move { Ok::<_, Infallible>(http.handle(req, conn).await) }
    })
}

async fn serve_http1(io: BoxedIo, conn: ConnInfo) {
    let drain = conn.server.drain.clone();
    let conn = Arc::new(conn);
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HTTP1_HEAD)
        .serve_connection(TokioIo::new(io), http_service(conn))
        .with_upgrades();
    tokio::pin!(served);
    let res = tokio::select! {
        res = served.as_mut() => res,
        _ = drain.signaled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "HTTP/1 connection ended with an error");
    }
}

async fn serve_h2(io: BoxedIo, conn: ConnInfo) {
    let drain = conn.server.drain.clone();
    let conn = Arc::new(conn);
    let served = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(1000)
        .max_header_list_size(MAX_H2_HEADER_LIST)
        .serve_connection(TokioIo::new(io), http_service(conn));
    tokio::pin!(served);
    let res = tokio::select! {
        res = served.as_mut() => res,
        _ = drain.signaled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// Inbound TLS: terminate it when the ClientHello names this proxy's identity (meshed traffic),
/// otherwise pass it through to the app as opaque TCP (the app's own TLS).
async fn serve_tls_inbound(
    mut io: BoxedIo,
    mut buf: BytesMut,
    mut conn: ConnInfo,
    mtls: Arc<crate::tls::Tls>,
) {
    use crate::tls::{client_hello_sni, ClientHelloSni, ALPN_H2, ALPN_TRANSPORT};
    let deadline = tokio::time::Instant::now() + conn.server.detect_timeout;
    let sni = loop {
        match client_hello_sni(&buf) {
            ClientHelloSni::Sni(sni) => break sni,
            ClientHelloSni::NotTls => break None,
            ClientHelloSni::NeedMore if buf.len() < 64 * 1024 => {
                match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => {
                        tracing::debug!(
                            "client closed or stalled before its ClientHello was complete"
                        );
                        return;
                    }
                }
            }
            ClientHelloSni::NeedMore => break None,
        }
    };
    if sni.as_deref() != Some(mtls.local_id()) {
        tracing::debug!(?sni, "TLS for another name: passing it through to the app");
        forward_tcp(io, buf, conn).await;
        return;
    }
    let io = PrefixedIo::new(buf.freeze(), io);
    let accepted = tokio::time::timeout_at(deadline, mtls.accept(io)).await;
    let (stream, accepted) = match accepted {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "mTLS handshake from a client failed");
            return;
        }
        Err(_) => {
            tracing::info!("mTLS handshake from a client timed out");
            return;
        }
    };
    tracing::debug!(client.id = ?accepted.client_id, "mTLS established");
    conn.tls = Tls::Established {
        client_id: accepted.client_id,
        server_id: None,
    };
    let stream: BoxedIo = Box::new(stream);
    match accepted.alpn.as_deref() {
        Some(ALPN_H2) => serve_h2(stream, conn).await,
        Some(ALPN_TRANSPORT) => serve_meshed_tcp(stream, BytesMut::new(), conn).await,
        // HTTP/1.1 or no ALPN (e.g. openssl s_client): detect what is inside.
        _ => serve_tunnel(stream, conn).await,
    }
}

/// Inbound meshed TCP: read the transport header, then forward to the named local port.
async fn serve_meshed_tcp(mut io: BoxedIo, mut buf: BytesMut, mut conn: ConnInfo) {
    let header = loop {
        match transport::Header::decode(&mut buf) {
            Ok(h) => break h,
            Err(transport::DecodeError::Incomplete) if buf.len() < 1024 => {
                let read =
                    tokio::time::timeout(conn.server.detect_timeout, io.read_buf(&mut buf)).await;
                match read {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => {
                        tracing::info!(
                            "meshed connection closed before its transport header was complete"
                        );
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "invalid transport header; closing");
                return;
            }
        }
    };
    let ip = conn
        .target
        .as_ref()
        .and_then(|t| t.addr)
        .map(|a| a.ip())
        .or(conn.server.inbound_app_addr.map(|a| a.ip()))
        .or(conn.local.map(|a| a.ip()));
    let Some(ip) = ip else {
        tracing::warn!(
            "meshed TCP arrived but no app address is configured ({})",
            crate::config::INBOUND_APP_ADDR
        );
        return;
    };
    conn.target = Some(Target::addr(SocketAddr::new(ip, header.port)));
    tcp_to(io, buf, conn, None, None).await;
}

/// Opaque TCP: to the meshed peer (with a transport header) or straight to the target.
async fn forward_tcp(io: BoxedIo, buf: BytesMut, mut conn: ConnInfo) {
    let server = conn.server.clone();
    if conn.direction == Direction::Inbound && conn.target.is_none() {
        conn.target = server.inbound_app_addr.map(Target::addr);
    }
    let Some(target) = conn.target.clone() else {
        tracing::info!(
            "opaque connection has no destination (not redirected and not CONNECT); closing"
        );
        return;
    };
    if conn.direction == Direction::Outbound {
        if let Some(ep) = server.discover.meshed(&target.authority) {
            let header = transport::Header {
                port: ep.port,
                authority: None,
            };
            conn.target = Some(Target::addr(ep.peer));
            tcp_to(io, buf, conn, Some(header), ep.identity.as_deref()).await;
            return;
        }
    }
    tcp_to(io, buf, conn, None, None).await;
}

/// Forwards to the connection's target; with a transport header, to a meshed peer (over mTLS
/// verifying `peer_identity`, unless identity is disabled).
async fn tcp_to(
    mut io: BoxedIo,
    buf: BytesMut,
    conn: ConnInfo,
    header: Option<transport::Header>,
    peer_identity: Option<&str>,
) {
    let server = conn.server.clone();
    let Some(target) = conn.target else { return };
    let addr = match target.addr {
        Some(a) => a,
        None => match tokio::net::lookup_host(target.authority.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(a) => a,
            None => {
                tracing::info!(authority = %target.authority, "cannot resolve opaque destination");
                return;
            }
        },
    };
    let connected = server
        .http
        .upstreams
        .connect(addr, peer_identity, crate::tls::Alpn::Transport)
        .await;
    let Ok(mut upstream) = connected else { return };
    let mut first = BytesMut::new();
    if let Some(h) = header {
        first.extend_from_slice(&h.encode());
    }
    first.extend_from_slice(&buf);
    if !first.is_empty() {
        if let Err(e) = upstream.write_all(&first).await {
            tracing::debug!(error = %e, "upstream closed early");
            return;
        }
    }
    match tokio::io::copy_bidirectional(&mut io, &mut upstream).await {
        Ok((up, down)) => {
            tracing::debug!(bytes.up = up, bytes.down = down, "TCP connection closed")
        }
        Err(e) => tracing::debug!(error = %e, "TCP connection ended with an error"),
    }
}
