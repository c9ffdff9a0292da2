//! Records `response_total` once per response, when its body ends (so gRPC responses are
//! classified by the `grpc-status` in their trailers), fails or is dropped; and, for a tapped
//! request, counts the body's bytes and emits the tap's `ResponseEnd` at the same moment.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use super::{Body, BoxError};
use crate::tap::TapRequest;
use crate::telemetry::{Metrics, RequestLabels, ResponseLabels};

/// What is known about a response when its headers are sent.
pub struct Recorder {
    pub metrics: Arc<Metrics>,
    pub request: RequestLabels,
    pub status_code: u16,
    pub grpc: bool,
    /// From the response headers (a trailers-only gRPC response), if present.
    pub grpc_status: Option<u16>,
    pub error: Option<&'static str>,
    /// Held until the response ends: counts toward the in-flight limit.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The request, when a tap reports it (`None` whenever nobody taps).
    pub tap: Option<Tapped>,
}

/// A tapped response: its request and the body bytes sent so far.
pub struct Tapped {
    request: Arc<TapRequest>,
    bytes: u64,
}

impl Tapped {
    pub fn new(request: Arc<TapRequest>) -> Self {
        Tapped { request, bytes: 0 }
    }
}

/// Why a response body did not complete.
enum Failure<'a> {
    /// The body failed with this error.
    Error(&'a BoxError),
    /// The body was dropped before its end (the client reset the stream or went away).
    Abandoned,
}

impl Recorder {
    fn finish(self, failure: Option<Failure<'_>>) {
        let stream_failed = failure.is_some();
        if let Some(tap) = &self.tap {
            let error = match failure {
                Some(Failure::Error(e)) => Some(e.to_string()),
                Some(Failure::Abandoned) => Some("stream reset before the response ended".into()),
                None => self.error.map(str::to_string),
            };
            tap.request
                .response_end(self.grpc_status, tap.bytes, error.as_deref());
        }
        let grpc_status = self.grpc_status;
        let success = self.error.is_none()
            && !stream_failed
            && self.status_code < 500
            && match (self.grpc, grpc_status) {
                (true, Some(s)) => s == 0,
                (true, None) => false,
                (false, Some(s)) => s == 0,
                (false, None) => true,
            };
        let labels = ResponseLabels {
            base: self.request,
            status_code: self.status_code,
            grpc_status,
            success,
            error: self.error.or(stream_failed.then_some("stream_failed")),
        };
        self.metrics.response_total.get(&labels).inc();
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the response when it ends.
    pub struct RecordBody {
        #[pin]
        inner: Body,
        recorder: Option<Recorder>,
    }

    impl PinnedDrop for RecordBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(rec) = this.recorder.take() {
                let ended = this.inner.is_end_stream();
                rec.finish((!ended).then_some(Failure::Abandoned));
            }
        }
    }
}

impl RecordBody {
    pub fn new(inner: Body, recorder: Recorder) -> Self {
        RecordBody {
            inner,
            recorder: Some(recorder),
        }
    }
}

pub fn parse_grpc_status(v: &http::HeaderValue) -> Option<u16> {
    v.to_str().ok()?.trim().parse().ok()
}

impl HttpBody for RecordBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tap)) = (
                    frame.data_ref(),
                    this.recorder.as_mut().and_then(|r| r.tap.as_mut()),
                ) {
                    tap.bytes += data.len() as u64;
                }
                // Trailers are the last frame: the response is complete.
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(mut rec) = this.recorder.take() {
                        if let Some(s) = trailers.get("grpc-status").and_then(parse_grpc_status) {
                            rec.grpc_status = Some(s);
                        }
                        rec.finish(None);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(rec) = this.recorder.take() {
                    rec.finish(Some(Failure::Error(e)));
                }
            }
            Poll::Ready(None) => {
                if let Some(rec) = this.recorder.take() {
                    rec.finish(None);
                }
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::telemetry::{Direction, Tls};
    use http_body_util::{BodyExt, StreamBody};

    fn labels() -> RequestLabels {
        RequestLabels {
            direction: Direction::Outbound,
            authority: "a:80".into(),
            target_addr: "127.0.0.1:80".into(),
            tls: Tls::NoIdentity("disabled"),
            dst: Default::default(),
        }
    }

    /// A body that never reports its end on its own, ending with `grpc-status` trailers.
    fn grpc_body(status: &'static str) -> Body {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(status));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x01x"))),
            Ok(Frame::trailers(trailers)),
        ];
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    fn recorder(metrics: &Arc<Metrics>) -> Recorder {
        Recorder {
            metrics: metrics.clone(),
            request: labels(),
            status_code: 200,
            grpc: true,
            grpc_status: None,
            error: None,
            permit: None,
            tap: None,
        }
    }

    async fn drain_frames(mut body: RecordBody) -> RecordBody {
        // Poll exactly as far as the trailers, like hyper's HTTP/2 server does.
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            if frame.is_trailers() {
                return body;
            }
        }
    }

    #[tokio::test]
    async fn grpc_status_in_trailers_classifies() {
        let metrics = Arc::new(Metrics::default());
        let body = drain_frames(RecordBody::new(grpc_body("0"), recorder(&metrics))).await;
        drop(body);
        let body = drain_frames(RecordBody::new(grpc_body("14"), recorder(&metrics))).await;
        drop(body);
        let text = metrics.encode();
        assert!(
            text.contains("grpc_status=\"0\",classification=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("grpc_status=\"14\",classification=\"failure\"} 1"),
            "{text}"
        );
        assert!(!text.contains("stream_failed"), "{text}");
    }

    #[tokio::test]
    async fn body_dropped_midway_is_a_failure() {
        let metrics = Arc::new(Metrics::default());
        let mut body = RecordBody::new(grpc_body("0"), recorder(&metrics));
        let _first = body.frame().await.unwrap().unwrap();
        drop(body);
        let text = metrics.encode();
        assert!(
            text.contains("classification=\"failure\",error=\"stream_failed\"} 1"),
            "{text}"
        );
    }
}
