//! Connections to upstreams: a TCP connector (source address, timeout, no-delay), pooled
//! HTTP/1.1 clients, and one multiplexed HTTP/2 connection per upstream address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpSocket, TcpStream};
use tracing::Instrument;

use super::errors::ProxyError;
use super::Body;
use crate::io::BoxedIo;
use crate::tls::{Alpn, Tls};

/// Opens TCP connections to upstreams.
#[derive(Clone, Debug)]
pub struct Connector {
    pub bind_ip: Option<IpAddr>,
    pub timeout: Duration,
}

impl Connector {
    pub async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, ProxyError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| {
            tracing::warn!(%addr, error = %e, "cannot create socket");
            ProxyError::ConnectFailed
        })?;
        if let Some(ip) = self.bind_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
                tracing::warn!(%addr, bind = %ip, error = %e, "cannot bind source address");
                ProxyError::ConnectFailed
            })?;
        }
        let stream = match tokio::time::timeout(self.timeout, socket.connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%addr, error = %e, "connect failed");
                return Err(ProxyError::ConnectFailed);
            }
            Err(_) => {
                tracing::info!(%addr, timeout = ?self.timeout, "connect timed out");
                return Err(ProxyError::ConnectFailed);
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// An upstream address and the identity its peer proxy must prove (if meshed).
type H2Key = (SocketAddr, Option<String>);

/// Upstream clients shared by every connection of a proxy.
pub struct Upstreams {
    pub connector: Connector,
    /// mTLS to meshed peers; `None` when identity is disabled.
    pub tls: Option<Arc<Tls>>,
    http1: Client<HttpConnector, Body>,
    /// One multiplexed connection per (address, expected peer identity).
    h2: Mutex<HashMap<H2Key, http2::SendRequest<Body>>>,
}

impl Upstreams {
    /// Connects to `addr`; with a peer identity (and identity enabled), over mTLS that verifies
    /// the peer is `identity`, announcing `alpn`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        alpn: Alpn,
    ) -> Result<BoxedIo, ProxyError> {
        let stream = self.connector.connect(addr).await?;
        match (&self.tls, identity) {
            (Some(tls), Some(id)) => match tls.connect(stream, id, alpn).await {
                Ok(s) => Ok(Box::new(s)),
                Err(e) => {
                    tracing::warn!(%addr, peer.identity = %id, error = %e, "mTLS handshake with meshed peer failed");
                    Err(ProxyError::TlsHandshake)
                }
            },
            _ => Ok(Box::new(stream)),
        }
    }
}

impl Upstreams {
    pub fn new(connector: Connector, tls: Option<Arc<Tls>>, pool_idle_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connector.timeout));
        http.set_local_address(connector.bind_ip);
        http.enforce_http(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .set_host(false)
            .build(http);
        Upstreams {
            connector,
            tls,
            http1,
            h2: Mutex::new(HashMap::new()),
        }
    }

    /// Sends an HTTP/1.1 request over a pooled connection. The request's URI must be
    /// `http://ADDR/path`, with the Host header already set.
    pub async fn send_http1(
        &self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, ProxyError> {
        self.http1.request(req).await.map_err(|e| {
            if e.is_connect() {
                tracing::info!(error = %e, "connect failed");
                ProxyError::ConnectFailed
            } else {
                tracing::info!(error = %e, "HTTP/1.1 upstream failed");
                ProxyError::Upstream
            }
        })
    }

    /// Sends a request that asks to upgrade (WebSocket) on a dedicated HTTP/1.1 connection.
    pub async fn send_upgrade(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, ProxyError> {
        let stream = self.connect(addr, identity, Alpn::Http1).await?;
        let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| {
            tracing::info!(%addr, error = %e, "HTTP/1.1 handshake failed");
            ProxyError::Upstream
        })?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upgraded upstream connection ended");
                }
            }
            .in_current_span(),
        );
        send.send_request(req).await.map_err(|e| {
            tracing::info!(%addr, error = %e, "upgrade request failed");
            ProxyError::Upstream
        })
    }

    /// Sends a request over the shared HTTP/2 connection to `addr`, opening it if needed.
    pub async fn send_h2(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, ProxyError> {
        let mut send = self.h2_conn(addr, identity).await?;
        send.send_request(req).await.map_err(|e| {
            tracing::info!(%addr, error = %e, "HTTP/2 upstream failed");
            ProxyError::Upstream
        })
    }

    async fn h2_conn(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
    ) -> Result<http2::SendRequest<Body>, ProxyError> {
        let key = (addr, identity.map(str::to_string));
        {
            let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(&key) {
                Some(s) if !s.is_closed() => return Ok(s.clone()),
                Some(_) => {
                    map.remove(&key);
                }
                None => {}
            }
        }
        let stream = self.connect(addr, identity, Alpn::H2).await?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_header_list_size(crate::server::MAX_H2_HEADER_LIST)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                tracing::info!(%addr, error = %e, "HTTP/2 handshake failed");
                ProxyError::Upstream
            })?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "HTTP/2 upstream connection ended");
                }
            }
            .instrument(tracing::debug_span!("h2", server.addr = %addr)),
        );
        self.h2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, send.clone());
        Ok(send)
    }
}

/// Shares [`Upstreams`] cheaply.
pub type SharedUpstreams = Arc<Upstreams>;
