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
    /// The route's request timeout (the whole exchange, across retries) passed.
    #[error("request timeout")]
    RequestTimeout,
    /// An attempt's per-try timeout passed and no retry was possible.
    #[error("per-try timeout")]
    PerTryTimeout,
    /// No response headers within the route's idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
    /// The service has had no usable endpoint for its fail-fast period.
    #[error("fail fast")]
    FailFast,
    /// No route of the service's HTTPRoute policy matches the request.
    #[error("no route")]
    NoRoute,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::ConnectFailed
            | ProxyError::Upstream
            | ProxyError::Loop
            | ProxyError::TlsHandshake => StatusCode::BAD_GATEWAY,
            ProxyError::ResponseTimeout
            | ProxyError::RequestTimeout
            | ProxyError::PerTryTimeout
            | ProxyError::IdleTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::LoadShed | ProxyError::Unresolvable | ProxyError::FailFast => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
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
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::PerTryTimeout => "per_try_timeout",
            ProxyError::IdleTimeout => "idle_timeout",
            ProxyError::FailFast => "fail_fast",
            ProxyError::NoRoute => "no_route",
        }
    }

    /// The gRPC status code a gRPC caller receives.
    pub fn grpc_status(self) -> u16 {
        match self {
            ProxyError::ResponseTimeout
            | ProxyError::RequestTimeout
            | ProxyError::PerTryTimeout
            | ProxyError::IdleTimeout => 4, // DEADLINE_EXCEEDED
            ProxyError::NoDestination => 3, // INVALID_ARGUMENT
            // A 404 maps to UNIMPLEMENTED in gRPC's HTTP status mapping.
            ProxyError::NoRoute => 12,
            _ => 14, // UNAVAILABLE
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
            (ProxyError::RequestTimeout, 504),
            (ProxyError::PerTryTimeout, 504),
            (ProxyError::IdleTimeout, 504),
            (ProxyError::FailFast, 503),
            (ProxyError::NoRoute, 404),
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
        for e in [
            ProxyError::RequestTimeout,
            ProxyError::PerTryTimeout,
            ProxyError::IdleTimeout,
        ] {
            assert_eq!(e.response(true).headers()["grpc-status"], "4", "{e:?}");
        }
        assert_eq!(
            ProxyError::FailFast.response(true).headers()["grpc-status"],
            "14"
        );
        assert_eq!(
            ProxyError::NoRoute.response(true).headers()["grpc-status"],
            "12"
        );
    }
}
