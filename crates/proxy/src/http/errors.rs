//! The closed set of errors the proxy answers for itself, and their synthetic responses:
//! an HTTP status plus `l5d-proxy-error`, or, for gRPC callers, HTTP 200 with `grpc-status`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;

/// Why the proxy answered a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("connect failed")]
    ConnectFailed,
    #[error("response timeout")]
    ResponseTimeout,
    #[error("load shed")]
    LoadShed,
    #[error("upstream failed")]
    Upstream,
    #[error("unresolvable")]
    Unresolvable,
    #[error("no destination")]
    NoDestination,
    #[error("proxy loop")]
    Loop,
    /// The mTLS handshake with a meshed peer failed (wrong identity, untrusted chain, ...).
    #[error("peer identity not verified")]
    TlsHandshake,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::ConnectFailed
            | ProxyError::Upstream
            | ProxyError::Loop
            | ProxyError::TlsHandshake => StatusCode::BAD_GATEWAY,
            ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::LoadShed | ProxyError::Unresolvable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoDestination => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error` metric label.
    pub fn label(self) -> &'static str {
        match self {
            ProxyError::ConnectFailed => "connect_failed",
            ProxyError::ResponseTimeout => "response_timeout",
            ProxyError::LoadShed => "load_shed",
            ProxyError::Upstream => "upstream_failed",
            ProxyError::Unresolvable => "unresolvable",
            ProxyError::NoDestination => "no_destination",
            ProxyError::Loop => "proxy_loop",
            ProxyError::TlsHandshake => "tls_handshake_failed",
        }
    }

    /// The gRPC status code a gRPC caller receives.
    pub fn grpc_status(self) -> u16 {
        match self {
            ProxyError::ResponseTimeout => 4, // DEADLINE_EXCEEDED
            ProxyError::NoDestination => 3,   // INVALID_ARGUMENT
            _ => 14,                          // UNAVAILABLE
        }
    }

    /// The synthetic response.
    pub fn response(self, grpc: bool) -> Response<Body> {
        let reason = self.to_string();
        let mut rsp = if grpc {
            let mut rsp = Response::new(empty());
            let h = rsp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(self.grpc_status()));
            if let Ok(v) = HeaderValue::from_str(&format!("proxy error: {reason}")) {
                h.insert("grpc-message", v);
            }
            rsp
        } else {
            let mut rsp = Response::new(full(format!("{reason}\n")));
            *rsp.status_mut() = self.status();
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            rsp
        };
        if let Ok(v) = HeaderValue::from_str(&reason) {
            rsp.headers_mut().insert("l5d-proxy-error", v);
        }
        rsp
    }
}

pub fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_mapping() {
        for (e, code) in [
            (ProxyError::ConnectFailed, 502),
            (ProxyError::ResponseTimeout, 504),
            (ProxyError::LoadShed, 503),
            (ProxyError::Upstream, 502),
        ] {
            let rsp = e.response(false);
            assert_eq!(rsp.status().as_u16(), code, "{e:?}");
            assert_eq!(rsp.headers()["l5d-proxy-error"], e.to_string().as_str());
        }
    }

    #[test]
    fn grpc_mapping() {
        let rsp = ProxyError::ResponseTimeout.response(true);
        assert_eq!(rsp.status(), StatusCode::OK);
        assert_eq!(rsp.headers()["grpc-status"], "4");
        let rsp = ProxyError::ConnectFailed.response(true);
        assert_eq!(rsp.headers()["grpc-status"], "14");
        assert_eq!(rsp.headers()["l5d-proxy-error"], "connect failed");
    }
}
