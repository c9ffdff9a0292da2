//! An emojivoto-like demo application, one role per process: `weft-testapp demo <role>`.
//!
//! ```text
//! vote-bot ──► web ──► emoji    (GET /api/list)
//!               └────► voting   (GET /api/leaderboard, POST /api/vote)
//! ```
//!
//! - [`emoji`]: the emoji catalogue (`GET /api/list`, `GET /api/find?shortcode=`).
//! - [`voting`]: in-memory vote counts (`POST /api/vote?choice=`, `GET /api/leaderboard`),
//!   failing a configurable share of all requests with 500.
//! - [`web`]: the front end; `GET /api/list` needs *both* emoji and voting, so voting's
//!   failures show up as failed `GET /api/list` calls that a retrying mesh can hide.
//! - [`bot`]: the vote-bot, a paced client of web that never gives up.
//!
//! In a mesh every role sits behind a sidecar and reaches other services through the sidecar's
//! outbound listener in explicit mode (`--proxy`): [`client::Upstream`] connects to the proxy
//! and names the service in the `Host` header, which Weft's outbound proxy routes on. Without
//! `--proxy` the same client connects straight to the authority, which is what the tests use.

pub mod bot;
pub mod cli;
pub mod client;
pub mod emoji;
pub mod voting;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

pub use cli::Role;

use crate::body::{full, Body};

/// Back-off after a failed `accept` (typically EMFILE), as in the test server.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A demo role's request handler: given a request, produce a response.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request. Never fails: errors are responses.
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

/// Serves `handler` on `listener` (HTTP/1.1 and h2c, like the test server) until the process
/// ends. Every response carries `x-testapp-name: NAME`, so tests and `weft tap` show which
/// role answered.
pub(crate) async fn serve<H: Handler>(listener: TcpListener, name: &str, handler: H) {
    let name_header = match HeaderValue::from_str(name) {
        Ok(v) => v,
        // Names come from the command line and are checked there; fall back rather than panic.
        Err(_) => HeaderValue::from_static("demo"),
    };
    let handler = Arc::new(handler);
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(server.addr = %local, demo.name = %name, "serving");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, server.addr = %local, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let name_header = name_header.clone();
        let span = tracing::debug_span!("conn", client.addr = %peer, server.addr = %local);
        tokio::spawn(
            async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    let name_header = name_header.clone();
                    async move {
                        let mut resp = handler.handle(req).await;
                        resp.headers_mut().insert("x-testapp-name", name_header);
                        Ok::<_, Infallible>(resp)
                    }
                });
                if let Err(error) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
}

/// Resolves when the process receives SIGINT or SIGTERM (on Unix; SIGINT only elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops this role");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A response with `content-type` and a complete body.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "application/json", body)
}

/// A plain-text response; `message` should end with a newline.
pub(crate) fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", message)
}

/// The 405 for a known path asked with the wrong method.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}\n"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The 404 for any unknown path.
pub(crate) fn not_found(path: &str) -> Response<Body> {
    text(StatusCode::NOT_FOUND, format!("no route for {path}\n"))
}

/// The percent-decoded value of query parameter `name`; `None` when missing or when the
/// encoding is invalid (a `%` not followed by two hex digits, or bytes that are not UTF-8).
/// `+` stays `+`: shortcodes never contain spaces.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let raw = crate::knobs::query_param(query, name)?;
    percent_decode(raw)
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters and `:`, for query values we send.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes a string for a JSON string literal (without the quotes).
pub(crate) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A small, non-cryptographic random source (SplitMix64) for the vote-bot's choices and
/// voting's injected failures: no
/// dependency for what only has to look random in a demo.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from the clock and a process-wide counter, so two bots differ.
    pub(crate) fn from_entropy() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant for `n` of a few dozen.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            query_value(Some("choice=:joy:"), "choice").as_deref(),
            Some(":joy:")
        );
        assert_eq!(
            query_value(Some("a=1&choice=%3Ajoy%3a"), "choice").as_deref(),
            Some(":joy:")
        );
        assert_eq!(query_value(Some("choice=%3"), "choice"), None);
        assert_eq!(query_value(Some("choice=%zz"), "choice"), None);
        assert_eq!(query_value(Some("choice=%ff"), "choice"), None);
        assert_eq!(query_value(None, "choice"), None);
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in [":joy:", "a b&c=d", "😂", "%"] {
            let enc = percent_encode(s);
            assert!(enc.is_ascii() && !enc.contains(['&', '=', ' ']), "{enc}");
            assert_eq!(percent_decode(&enc).as_deref(), Some(s));
        }
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(json_escape("\n"), "\\u000a");
        assert_eq!(json_escape("😂"), "😂");
    }

    #[test]
    fn rng_stays_in_range_and_varies() {
        let mut rng = Rng::from_entropy();
        let picks: Vec<usize> = (0..200).map(|_| rng.below(20)).collect();
        assert!(picks.iter().all(|&p| p < 20));
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert!(distinct.len() > 10, "{distinct:?}");
        assert_eq!(rng.below(0), 0);
        assert!((0..1000)
            .map(|_| rng.unit())
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
