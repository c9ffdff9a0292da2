//! Retries: which outcomes a route's retry policy retries, the request body kept for replay
//! (at most [`MAX_REPLAY`] bytes), and the peek at a gRPC response's trailers that
//! classification needs.
//!
//! Responses are streamed: a retry is decided on response headers (status, or `grpc-status` of
//! a trailers-only gRPC response). Only for gRPC requests on a route that retries gRPC codes,
//! and only when the headers carry no `grpc-status`, the proxy reads the response body up to
//! its trailers — at most [`MAX_REPLAY`] bytes, within the attempt's timeout — and replays what
//! it read to the client when it does not retry. A longer response is streamed unclassified.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::policy::RetryPolicy;
use crate::http::{Body, BoxError};

/// Largest request body kept for replay; a 64 KiB body is retryable, one byte more is not.
pub const MAX_REPLAY: usize = 64 * 1024;

/// How one attempt ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Response headers (and, for gRPC, the status from headers or trailers).
    Response { status: u16, grpc: Option<u16> },
    /// The connection failed before the request was sent.
    ConnectFailed,
    /// The per-try timeout fired.
    PerTryTimeout,
    /// Anything else (the request may have reached the server).
    Other,
}

/// Whether `policy` retries this outcome.
pub fn retryable(policy: &RetryPolicy, a: Attempt) -> bool {
    match a {
        Attempt::Response { status, grpc } => {
            policy.retries_status(status) || grpc.is_some_and(|g| policy.retries_grpc(g))
        }
        Attempt::ConnectFailed | Attempt::PerTryTimeout => true,
        Attempt::Other => false,
    }
}

#[derive(Debug)]
struct Shared {
    /// The client's body, until it ends.
    inner: Option<Body>,
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: usize,
    /// More than `MAX_REPLAY` bytes (or a failed body): never replayed.
    overflowed: bool,
    ended: bool,
    hint: SizeHint,
}

/// A request body that can be sent again: it records what it streams, up to [`MAX_REPLAY`].
/// Attempts are sequential, so one clone reads at a time; a retry's clone replays the recorded
/// frames, then continues with the rest of the client's body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    pos: usize,
    trailers_sent: bool,
}

impl ReplayBody {
    pub fn new(body: Body) -> Self {
        let hint = body.size_hint();
        let ended = body.is_end_stream();
        let too_big = hint.lower() > MAX_REPLAY as u64;
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                inner: (!ended).then_some(body),
                chunks: Vec::new(),
                trailers: None,
                len: 0,
                overflowed: too_big,
                ended,
                hint,
            })),
            pos: 0,
            trailers_sent: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether another attempt can send this body again.
    pub fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    /// A body for the next attempt, from the start.
    pub fn replay(&self) -> ReplayBody {
        ReplayBody {
            shared: self.shared.clone(),
            pos: 0,
            trailers_sent: false,
        }
    }
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut sh = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if !sh.overflowed {
            if let Some(chunk) = sh.chunks.get(this.pos) {
                let chunk = chunk.clone();
                this.pos += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        if sh.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = sh.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        let Some(inner) = sh.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                sh.ended = true;
                sh.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken body is never sent again.
                sh.overflowed = true;
                sh.chunks.clear();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    sh.len = sh.len.saturating_add(data.len());
                    if sh.len > MAX_REPLAY {
                        if !sh.overflowed {
                            tracing::debug!("request body over 64 KiB: it will not be retried");
                        }
                        sh.overflowed = true;
                        sh.chunks = Vec::new();
                    } else if !sh.overflowed {
                        sh.chunks.push(data.clone());
                        this.pos = sh.chunks.len();
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    sh.trailers = Some(t.clone());
                    sh.ended = true;
                    sh.inner = None;
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let sh = self.lock();
        sh.ended
            && (sh.overflowed || self.pos >= sh.chunks.len())
            && (self.trailers_sent || sh.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().hint
    }
}

/// A body whose first frames were already read (the gRPC trailers peek), then the rest.
pub struct PrefixedBody {
    prefix: VecDeque<Frame<Bytes>>,
    rest: Option<Body>,
}

impl HttpBody for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(f) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

/// Reads a gRPC response body up to its trailers (at most [`MAX_REPLAY`] bytes of data) and
/// returns the `grpc-status` found there, with a body that replays what was read.
pub async fn peek_grpc_status(mut body: Body) -> (Body, Option<u16>) {
    let mut prefix = VecDeque::new();
    let mut len = 0usize;
    let mut status = None;
    let mut rest = Some(());
    loop {
        match body.frame().await {
            None => {
                rest = None;
                break;
            }
            Some(Err(e)) => {
                // Hand the error to the client in order.
                let failed: Body = http_body_util::StreamBody::new(futures_util::stream::iter(
                    prefix
                        .into_iter()
                        .map(Ok::<_, BoxError>)
                        .chain(std::iter::once(Err(e))),
                ))
                .boxed();
                return (failed, None);
            }
            Some(Ok(frame)) => {
                if let Some(t) = frame.trailers_ref() {
                    status = t
                        .get("grpc-status")
                        .and_then(crate::http::record::parse_grpc_status);
                    prefix.push_back(frame);
                    rest = None;
                    break;
                }
                if let Some(d) = frame.data_ref() {
                    len += d.len();
                }
                prefix.push_back(frame);
                if len > MAX_REPLAY {
                    break;
                }
            }
        }
    }
    let body = PrefixedBody {
        prefix,
        rest: rest.map(|()| body),
    };
    (Body::new(body), status)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            statuses: vec![(500, 504)],
            grpc_codes: 1 << 14,
            limit: 2,
            per_try_timeout: None,
        }
    }

    #[test]
    fn classification() {
        let p = policy();
        let rsp = |status, grpc| Attempt::Response { status, grpc };
        assert!(retryable(&p, rsp(503, None)));
        assert!(!retryable(&p, rsp(505, None)));
        assert!(!retryable(&p, rsp(200, None)));
        assert!(retryable(&p, rsp(200, Some(14))));
        assert!(!retryable(&p, rsp(200, Some(13))));
        assert!(retryable(&p, Attempt::ConnectFailed));
        assert!(retryable(&p, Attempt::PerTryTimeout));
        assert!(!retryable(&p, Attempt::Other));
    }

    fn chunks(sizes: &[usize]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = sizes
            .iter()
            .map(|n| Ok(Frame::data(Bytes::from(vec![b'x'; *n]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    async fn read_all(b: ReplayBody) -> usize {
        b.collect().await.unwrap().to_bytes().len()
    }

    #[tokio::test]
    async fn replays_up_to_64k() {
        let b = ReplayBody::new(chunks(&[32 * 1024, 32 * 1024]));
        let again = b.replay();
        assert_eq!(read_all(b).await, 64 * 1024);
        assert!(again.replayable());
        assert_eq!(read_all(again.replay()).await, 64 * 1024);
        assert_eq!(read_all(again).await, 64 * 1024);
    }

    #[tokio::test]
    async fn one_byte_more_is_not_replayable() {
        let b = ReplayBody::new(chunks(&[32 * 1024, 32 * 1024, 1]));
        let handle = b.replay();
        assert_eq!(read_all(b).await, 64 * 1024 + 1);
        assert!(!handle.replayable());
        // Known too big up front: not replayable before a byte is read.
        let full: Body = Full::new(Bytes::from(vec![0u8; MAX_REPLAY + 1]))
            .map_err(|n| match n {})
            .boxed();
        assert!(!ReplayBody::new(full).replayable());
    }

    #[tokio::test]
    async fn a_retry_continues_a_partly_read_body() {
        let b = ReplayBody::new(chunks(&[10, 20, 30]));
        let mut first = b.replay();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.data_ref().unwrap().len(), 10);
        drop(first); // the first attempt gave up after one frame
        assert_eq!(read_all(b.replay()).await, 60);
        assert_eq!(read_all(b).await, 60);
    }

    #[tokio::test]
    async fn empty_bodies_end_at_once() {
        let empty: Body = crate::http::errors::empty();
        let b = ReplayBody::new(empty);
        assert!(b.is_end_stream());
        assert!(b.replayable());
    }

    #[tokio::test]
    async fn grpc_trailers_are_peeked_and_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body: Body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let (body, status) = peek_grpc_status(body).await;
        assert_eq!(status, Some(14));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"abc"));
    }
}
