//! The demo's HTTP/1.1 client for calls to other services: pooled keep-alive connections,
//! either through the sidecar's outbound listener in explicit mode or straight to the service.
//!
//! Through a proxy, every request goes to the proxy address in origin-form with
//! `Host: <service authority>`: Weft's outbound proxy routes explicit HTTP/1 requests on the
//! absolute-form authority or, as here, on `Host`, and one pool of connections to the proxy
//! then serves every service. Without a proxy the authority is resolved and connected to
//! directly.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one upstream call (connect, request, whole response body) may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest upstream response body we read; the demo's bodies are a few kilobytes.
const MAX_BODY: usize = 1 << 20;

/// How long an idle pooled connection is kept. Below the usual 60–90 s idle timeouts of
/// proxies and servers, so we rarely pick a connection the other side is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The authority is not a valid `host:port`.
    #[error("invalid authority {authority:?}")]
    Authority {
        /// The authority as given.
        authority: String,
    },
    /// Connecting or exchanging the request failed.
    #[error("request to {authority} failed")]
    Request {
        /// The service called.
        authority: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No full response within [`UPSTREAM_TIMEOUT`].
    #[error("request to {authority} timed out after {UPSTREAM_TIMEOUT:?}")]
    Timeout {
        /// The service called.
        authority: String,
    },
}

impl UpstreamError {
    /// The status a gateway answers with for this error: 504 for a timeout, else 502.
    pub fn gateway_status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the call failed before any response (refused or reset connection, bad
    /// authority), which callers back off from.
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Authority { .. } => true,
            Self::Request { source, .. } => source
                .downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|e| e.is_connect()),
            Self::Timeout { .. } => false,
        }
    }
}

/// A complete upstream response.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its body (at most 1 MiB).
    pub body: Bytes,
}

/// A pooled client for calls to other services, optionally through an explicit HTTP proxy.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    proxy: Option<SocketAddr>,
}

impl Upstream {
    /// A client that sends every request to `proxy` when given, else to the service itself.
    pub fn new(proxy: Option<SocketAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { client, proxy }
    }

    /// Sends `method` `path_and_query` (starting with `/`) to the service at `authority`
    /// (`host:port`) and reads the whole response, within [`UPSTREAM_TIMEOUT`].
    pub async fn call(
        &self,
        method: Method,
        authority: &str,
        path_and_query: &str,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let bad_authority = || UpstreamError::Authority {
            authority: authority.to_string(),
        };
        let host = HeaderValue::from_str(authority).map_err(|_| bad_authority())?;
        let connect_to = match self.proxy {
            Some(proxy) => proxy.to_string(),
            None => authority.to_string(),
        };
        let uri: Uri = format!("http://{connect_to}{path_and_query}")
            .parse()
            .map_err(|_| bad_authority())?;
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        req.headers_mut().insert(header::HOST, host);
        let request_error = |source| UpstreamError::Request {
            authority: authority.to_string(),
            source,
        };
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| request_error(e.into()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(request_error)?
                .to_bytes();
            Ok(UpstreamResponse { status, body })
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout {
                authority: authority.to_string(),
            }),
        }
    }
}
