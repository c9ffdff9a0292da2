//! Header and URI rewriting between HTTP/1.1 and HTTP/2 hops.

use std::net::SocketAddr;

use http::{header, request::Parts, HeaderMap, HeaderValue, Uri, Version};

use super::errors::ProxyError;

/// Connection-specific headers that must not be forwarded (RFC 9110 §7.6.1); HTTP/2 forbids them.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
];

/// Removes hop-by-hop headers, including those listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<header::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| header::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers
        .get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// Whether an HTTP/1.1 request asks to switch protocols (e.g. WebSocket).
pub fn wants_upgrade<B>(req: &http::Request<B>) -> bool {
    req.version() != Version::HTTP_2
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// Prepares a request for an HTTP/2 upstream: absolute URI carrying the authority, no Host,
/// no connection-specific headers.
pub fn to_h2(parts: &mut Parts, authority: &str) -> Result<(), ProxyError> {
    strip_hop_by_hop(&mut parts.headers);
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| authority.to_string());
    let scheme = parts.uri.scheme_str().unwrap_or("http").to_string();
    parts.uri = Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.as_str())
        .path_and_query(path_and_query(&parts.uri))
        .build()
        .map_err(|_| ProxyError::NoDestination)?;
    parts.headers.remove(header::HOST);
    parts.version = Version::HTTP_2;
    Ok(())
}

/// Prepares a request for an HTTP/1.1 upstream at `addr`. `Host` keeps (or gets) the original
/// authority. With `dedicated`, the URI is origin-form (a connection of its own, used for
/// upgrades, which keep their `Connection`/`Upgrade` headers); otherwise it is
/// `http://ADDR/path` for the pooled client, which picks the connection from it.
pub fn to_http1(
    parts: &mut Parts,
    authority: &str,
    addr: SocketAddr,
    dedicated: bool,
) -> Result<(), ProxyError> {
    if !parts.headers.contains_key(header::HOST) {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| authority.to_string());
        let v = HeaderValue::from_str(&host).map_err(|_| ProxyError::NoDestination)?;
        parts.headers.insert(header::HOST, v);
    }
    if !dedicated {
        strip_hop_by_hop(&mut parts.headers);
    }
    let pq = path_and_query(&parts.uri).to_string();
    parts.uri = if dedicated {
        pq.parse().map_err(|_| ProxyError::NoDestination)?
    } else {
        Uri::builder()
            .scheme("http")
            .authority(addr.to_string().as_str())
            .path_and_query(pq.as_str())
            .build()
            .map_err(|_| ProxyError::NoDestination)?
    };
    if parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-foo"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-foo").is_none() && h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn http1_request_becomes_h2_with_authority() {
        let mut p = parts(
            http::Request::get("/a?b=1")
                .header("host", "web:80")
                .header("connection", "keep-alive")
                .body(())
                .unwrap(),
        );
        to_h2(&mut p, "ignored:1").unwrap();
        assert_eq!(p.uri.to_string(), "http://web:80/a?b=1");
        assert!(p.headers.get(header::HOST).is_none());
        assert_eq!(p.version, Version::HTTP_2);
    }

    #[test]
    fn h2_request_becomes_http1_with_host() {
        let mut p = parts(
            http::Request::get("http://web:80/x")
                .version(Version::HTTP_2)
                .body(())
                .unwrap(),
        );
        to_http1(&mut p, "web:80", "127.0.0.1:8080".parse().unwrap(), false).unwrap();
        assert_eq!(p.headers["host"], "web:80");
        assert_eq!(p.uri.to_string(), "http://127.0.0.1:8080/x");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let req = http::Request::get("/ws")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(wants_upgrade(&req));
        let mut p = parts(req);
        to_http1(&mut p, "a:80", "127.0.0.1:1".parse().unwrap(), true).unwrap();
        assert_eq!(p.uri.to_string(), "/ws");
        assert_eq!(p.headers["upgrade"], "websocket");
    }
}
