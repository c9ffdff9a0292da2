//! The `weft.testapp.Echo` gRPC service, implemented directly on hyper with the gRPC wire
//! format (see [`codec`]); messages are opaque bytes.
//!
//! | method | behaviour |
//! | --- | --- |
//! | `/weft.testapp.Echo/Unary` | echoes the single request message |
//! | `/weft.testapp.Echo/ServerStream` | echoes the request message `x-stream-count` times (default 3) |
//! | `/weft.testapp.Echo/BidiStream` | echoes each message as soon as it arrives |
//! | anything else | `grpc-status: 12` (UNIMPLEMENTED) |
//!
//! Request metadata `x-testapp-grpc-status: N` (and optionally `x-testapp-grpc-message`) ends
//! the call with that status after the echo. Responses are always HTTP 200 with
//! `content-type: application/grpc`, the status in the trailers.

pub mod codec;

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::body::Body;
pub use codec::{encode_message, DecodeError, FrameDecoder, MAX_MESSAGE_SIZE};

/// A gRPC status code (`grpc-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub u32);

impl Code {
    /// 0: success.
    pub const OK: Code = Code(0);
    /// 1: the call was cancelled, typically by the client.
    pub const CANCELLED: Code = Code(1);
    /// 3: the client sent invalid arguments (here: invalid `x-*` metadata).
    pub const INVALID_ARGUMENT: Code = Code(3);
    /// 8: a message exceeded [`MAX_MESSAGE_SIZE`].
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    /// 12: unknown method, or a compressed message.
    pub const UNIMPLEMENTED: Code = Code(12);
    /// 13: malformed framing or a wrong number of request messages.
    pub const INTERNAL: Code = Code(13);
    /// Highest code defined by gRPC (16, UNAUTHENTICATED).
    pub const MAX: u32 = 16;
}

/// A final call status: the `grpc-status` and `grpc-message` trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The status code.
    pub code: Code,
    /// Human-readable detail; may be empty.
    pub message: String,
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The trailers that carry this status, with `grpc-message` percent-encoded as the gRPC
    /// spec requires.
    pub fn to_trailers(&self) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(self.code.0));
        if !self.message.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&self.message)) {
                trailers.insert("grpc-message", v);
            }
        }
        trailers
    }
}

impl From<DecodeError> for Status {
    fn from(e: DecodeError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Percent-encodes a `grpc-message`: bytes outside printable ASCII, and `%`, become `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a request is gRPC: its content-type starts with `application/grpc`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The methods of `weft.testapp.Echo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Unary,
    ServerStream,
    BidiStream,
}

impl Method {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/weft.testapp.Echo/Unary" => Some(Method::Unary),
            "/weft.testapp.Echo/ServerStream" => Some(Method::ServerStream),
            "/weft.testapp.Echo/BidiStream" => Some(Method::BidiStream),
            _ => None,
        }
    }
}

/// Default and maximum of `x-stream-count`: bounded so a typo cannot start an endless stream.
const DEFAULT_STREAM_COUNT: u32 = 3;
const MAX_STREAM_COUNT: u32 = 100_000;

/// Response frames buffered between the call task and hyper; small, so a slow client pushes
/// back on the echo instead of the server queueing messages.
const RESPONSE_QUEUE: usize = 16;

/// Answers a gRPC request: headers at once, then messages and trailers from a spawned call task.
///
/// Besides `grpc-status`/`grpc-message`, the trailers carry `x-testapp-name` (the server's
/// name) and `x-testapp-authority` (the `:authority` or `host` the server saw), so clients that
/// only see trailing metadata can still tell which backend answered and how it was addressed.
pub(crate) async fn handle(req: Request<Incoming>, name: HeaderValue) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(RESPONSE_QUEUE);
    let path = parts.uri.path().to_string();
    let authority = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    let span = tracing::debug_span!("grpc", grpc.method = %path);
    tokio::spawn(
        async move {
            let mut call = Call {
                reader: Reader::new(body),
                tx,
            };
            let status = match Method::from_path(&path) {
                None => Status::new(Code::UNIMPLEMENTED, format!("unknown method {path}")),
                Some(method) => call.run(method, &parts.headers).await,
            };
            tracing::debug!(grpc.status = status.code.0, "call finished");
            let mut trailers = status.to_trailers();
            trailers.insert("x-testapp-name", name);
            if let Some(authority) = authority {
                trailers.insert("x-testapp-authority", authority);
            }
            // The client may be gone; then there is nobody to tell.
            let _ = call.tx.send(Frame::trailers(trailers)).await;
        }
        .instrument(span),
    );
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok(frame), rx))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// Reads request messages from the body as they arrive.
struct Reader {
    body: Incoming,
    decoder: FrameDecoder,
    ended: bool,
}

impl Reader {
    fn new(body: Incoming) -> Self {
        Self {
            body,
            decoder: FrameDecoder::new(),
            ended: false,
        }
    }

    /// The next request message, `None` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            if self.ended {
                self.decoder.finish()?;
                return Ok(None);
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.decoder.push(data);
                    }
                }
                Some(Err(e)) => {
                    return Err(Status::new(
                        Code::CANCELLED,
                        format!("request stream failed: {e}"),
                    ))
                }
            }
        }
    }
}

/// One call in progress: its request reader and the response frame sender.
struct Call {
    reader: Reader,
    tx: mpsc::Sender<Frame<Bytes>>,
}

impl Call {
    /// Runs a known method and returns its final status.
    async fn run(&mut self, method: Method, metadata: &HeaderMap) -> Status {
        let forced = match forced_status(metadata) {
            Ok(forced) => forced,
            Err(status) => return status,
        };
        let result = match method {
            Method::Unary => self.unary(1).await,
            Method::ServerStream => match stream_count(metadata) {
                Ok(n) => self.unary(n).await,
                Err(status) => Err(status),
            },
            Method::BidiStream => self.bidi().await,
        };
        match result {
            Ok(()) => forced.unwrap_or_else(|| Status::new(Code::OK, "")),
            Err(status) => status,
        }
    }

    /// Reads exactly one request message and echoes it `times` times.
    async fn unary(&mut self, times: u32) -> Result<(), Status> {
        let Some(message) = self.reader.next().await? else {
            return Err(Status::new(Code::INTERNAL, "no request message"));
        };
        if self.reader.next().await?.is_some() {
            return Err(Status::new(
                Code::INTERNAL,
                "more than one request message for a unary request",
            ));
        }
        for _ in 0..times {
            self.send(&message).await?;
        }
        Ok(())
    }

    /// Echoes each request message as soon as it is complete.
    async fn bidi(&mut self) -> Result<(), Status> {
        while let Some(message) = self.reader.next().await? {
            self.send(&message).await?;
        }
        Ok(())
    }

    async fn send(&self, message: &[u8]) -> Result<(), Status> {
        self.tx
            .send(Frame::data(encode_message(message)))
            .await
            .map_err(|_| Status::new(Code::CANCELLED, "client went away"))
    }
}

/// `x-testapp-grpc-status` / `x-testapp-grpc-message`: the status to end a successful call with.
fn forced_status(metadata: &HeaderMap) -> Result<Option<Status>, Status> {
    let Some(raw) = metadata.get("x-testapp-grpc-status") else {
        return Ok(None);
    };
    let code = raw
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|c| *c <= Code::MAX)
        .ok_or_else(|| {
            Status::new(
                Code::INVALID_ARGUMENT,
                format!(
                    "invalid x-testapp-grpc-status {:?}: expected an integer from 0 to 16",
                    String::from_utf8_lossy(raw.as_bytes())
                ),
            )
        })?;
    let message = metadata
        .get("x-testapp-grpc-message")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Ok(Some(Status::new(Code(code), message)))
}

/// `x-stream-count`: how many echoes a ServerStream call sends.
fn stream_count(metadata: &HeaderMap) -> Result<u32, Status> {
    let Some(raw) = metadata.get("x-stream-count") else {
        return Ok(DEFAULT_STREAM_COUNT);
    };
    raw.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|n| *n <= MAX_STREAM_COUNT)
        .ok_or_else(|| {
            Status::new(
                Code::INVALID_ARGUMENT,
                format!(
                    "invalid x-stream-count {:?}: expected an integer from 0 to 100000",
                    String::from_utf8_lossy(raw.as_bytes())
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&meta(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&meta(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&meta(&[("content-type", "application/json")])));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn percent_encoding_of_messages() {
        assert_eq!(percent_encode("plain text"), "plain text");
        assert_eq!(percent_encode("100%\n"), "100%25%0A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn trailers_carry_code_and_message() {
        let t = Status::new(Code(5), "not here").to_trailers();
        assert_eq!(t["grpc-status"], "5");
        assert_eq!(t["grpc-message"], "not here");
        let t = Status::new(Code::OK, "").to_trailers();
        assert_eq!(t["grpc-status"], "0");
        assert!(t.get("grpc-message").is_none());
    }

    #[test]
    fn forced_status_parsing() {
        assert_eq!(forced_status(&HeaderMap::new()), Ok(None));
        let s = forced_status(&meta(&[
            ("x-testapp-grpc-status", "7"),
            ("x-testapp-grpc-message", "nope"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s, Status::new(Code(7), "nope"));
        let e = forced_status(&meta(&[("x-testapp-grpc-status", "17")])).unwrap_err();
        assert_eq!(e.code, Code::INVALID_ARGUMENT);
        assert!(e.message.contains("x-testapp-grpc-status"));
    }

    #[test]
    fn stream_count_parsing() {
        assert_eq!(stream_count(&HeaderMap::new()), Ok(3));
        assert_eq!(stream_count(&meta(&[("x-stream-count", "0")])), Ok(0));
        assert_eq!(stream_count(&meta(&[("x-stream-count", "42")])), Ok(42));
        let e = stream_count(&meta(&[("x-stream-count", "many")])).unwrap_err();
        assert_eq!(e.code, Code::INVALID_ARGUMENT);
    }

    #[test]
    fn method_paths() {
        assert_eq!(
            Method::from_path("/weft.testapp.Echo/Unary"),
            Some(Method::Unary)
        );
        assert_eq!(Method::from_path("/weft.testapp.Echo/Nope"), None);
    }
}
