//! The plain HTTP routes: the knob handler, `/echo`, `/sha256`, `/bytes`, `/stream` and
//! `/headers`. Bodies are streamed in both directions; nothing here buffers a whole body.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::body::{empty, full, Body, PatternBody};
use crate::knobs::{self, query_param, KnobError, Knobs};
use crate::server::{version_name, State};

/// Most chunks `/stream` will send, and the longest interval between them: every test wait
/// stays bounded.
const MAX_STREAM_CHUNKS: u64 = 100_000;
const MAX_STREAM_INTERVAL_MS: u64 = 60_000;

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A 400 naming the invalid knob, on one line.
fn bad_knob(error: &KnobError) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("{error}\n"))
}

/// The default handler: status, latency, error rate and size from the request or start-up
/// defaults.
pub(crate) async fn knob(req: Request<Incoming>, state: &State) -> Response<Body> {
    let knobs = match Knobs::resolve(req.uri().query(), req.headers(), &state.cfg) {
        Ok(k) => k,
        Err(e) => return bad_knob(&e),
    };
    // Read (and discard) any request body, streaming, so HTTP/1.1 connections stay reusable
    // and `Expect: 100-continue` clients get their 100.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    if !knobs.latency.is_zero() {
        tokio::time::sleep(knobs.latency).await;
    }
    if state.budget.should_fail(knobs.error_rate) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("injected error from {}\n", state.cfg.name),
        );
    }
    // Validated by `Knobs::resolve`; fall back rather than unwrap.
    let status = StatusCode::from_u16(knobs.status).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let mut resp = Response::new(empty());
        *resp.status_mut() = status;
        return resp;
    }
    match knobs.size {
        None => text(status, format!("hello from {}\n", state.cfg.name)),
        Some(size) => pattern_response(status, size),
    }
}

/// A streamed response of `size` pattern bytes with an exact `content-length`.
fn pattern_response(status: StatusCode, size: u64) -> Response<Body> {
    let mut resp = Response::new(PatternBody::new(size).boxed_unsync());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    resp
}

/// `/echo`: the request body, frame by frame as it arrives, with the request's content-type.
pub(crate) fn echo(req: Request<Incoming>) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let body = req.into_body().map_err(Into::into).boxed_unsync();
    let mut resp = Response::new(body);
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// `/sha256`: `<hex sha256> <byte count>\n` of the request body, hashed as it streams in.
pub(crate) async fn sha256(req: Request<Incoming>) -> Response<Body> {
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut count: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    count += data.len() as u64;
                }
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("request body failed after {count} bytes: {e}\n"),
                )
            }
        }
    }
    text(
        StatusCode::OK,
        format!("{} {count}\n", hex(&hasher.finalize())),
    )
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `/bytes?size=N`: exactly `N` pattern bytes, generated in 64 KiB chunks.
pub(crate) fn bytes(req: &Request<Incoming>) -> Response<Body> {
    let Some(raw) = query_param(req.uri().query(), "size") else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing query parameter size: /bytes?size=N\n",
        );
    };
    match knobs::parse_size("query parameter size", raw) {
        Ok(size) => pattern_response(StatusCode::OK, size),
        Err(e) => bad_knob(&e),
    }
}

/// Parses an optional bounded integer query parameter.
fn bounded_param(
    query: Option<&str>,
    name: &str,
    default: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, KnobError> {
    match query_param(query, name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(KnobError {
                origin: format!("query parameter {name}"),
                value: raw.to_string(),
                expected,
            }),
        },
    }
}

/// `/stream?chunks=N&interval_ms=M`: `N` lines `chunk i\n`, the first at once, then `M` ms apart.
pub(crate) fn stream(req: &Request<Incoming>) -> Response<Body> {
    let query = req.uri().query();
    let chunks = match bounded_param(
        query,
        "chunks",
        5,
        MAX_STREAM_CHUNKS,
        "an integer from 0 to 100000",
    ) {
        Ok(v) => v,
        Err(e) => return bad_knob(&e),
    };
    let interval_ms = match bounded_param(
        query,
        "interval_ms",
        100,
        MAX_STREAM_INTERVAL_MS,
        "an integer number of milliseconds from 0 to 60000",
    ) {
        Ok(v) => v,
        Err(e) => return bad_knob(&e),
    };
    let interval = Duration::from_millis(interval_ms);
    let frames = stream::unfold(0u64, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
        Some((Ok(frame), i + 1))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `/headers`: the request line (`METHOD URI VERSION`), then one `name: value` line per header.
///
/// HTTP/2 carries the host in `:authority`; when there is no `host` header, a `host` line is
/// synthesized from the URI so tests can check the authority whatever the protocol.
pub(crate) fn headers(req: &Request<Incoming>) -> Response<Body> {
    let mut out = format!(
        "{} {} {}\n",
        req.method(),
        req.uri(),
        version_name(req.version())
    );
    if !req.headers().contains_key(header::HOST) {
        if let Some(authority) = req.uri().authority() {
            let _ = writeln!(out, "host: {authority}");
        }
    }
    for (name, value) in req.headers() {
        let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    text(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn bounded_param_defaults_and_limits() {
        assert_eq!(bounded_param(None, "chunks", 5, 10, "x"), Ok(5));
        assert_eq!(bounded_param(Some("chunks=7"), "chunks", 5, 10, "x"), Ok(7));
        let e = bounded_param(Some("chunks=11"), "chunks", 5, 10, "x");
        assert!(e.is_err_and(|e| e.to_string().contains("chunks")));
        assert!(bounded_param(Some("chunks=-1"), "chunks", 5, 10, "x").is_err());
    }
}
