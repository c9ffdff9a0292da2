//! Records `response_total` once per response, when its body ends (so gRPC responses are
//! classified by the `grpc-status` in their trailers), fails or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use super::{Body, BoxError};
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
}

impl Recorder {
    fn finish(self, stream_failed: bool) {
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
            request: self.request,
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
                rec.finish(!ended);
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
                // Trailers are the last frame: the response is complete.
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(mut rec) = this.recorder.take() {
                        if let Some(s) = trailers.get("grpc-status").and_then(parse_grpc_status) {
                            rec.grpc_status = Some(s);
                        }
                        rec.finish(false);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(rec) = this.recorder.take() {
                    rec.finish(true);
                }
            }
            Poll::Ready(None) => {
                if let Some(rec) = this.recorder.take() {
                    rec.finish(false);
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
