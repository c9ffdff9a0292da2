//! The response body of a policy-routed request: enforces what is left of the request timeout
//! and the idle timeout while the body streams, and, when it ends, records the route's
//! `route_response_total` (classified by the route's response classes, with the gRPC status from
//! trailers) and the endpoint's outcome for failure accrual.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::balance::{Balancer, InFlight};
use super::metrics::{OutboundMetrics, RouteLabels, RouteResponseLabels};
use super::policy::Policy;
use super::route::is_failure;
use crate::http::{Body, BoxError};

/// What the body records when it ends.
pub struct RouteRecorder {
    pub metrics: Arc<OutboundMetrics>,
    pub labels: RouteLabels,
    pub status: u16,
    /// From the response headers (trailers-only gRPC), or the trailers peek.
    pub grpc_status: Option<u16>,
    pub policy: Arc<Policy>,
    /// Index in `policy.routes`; `None` for the default route.
    pub route: Option<usize>,
    /// The endpoint (absent when the request was forwarded unmeshed).
    pub endpoint: Option<(Arc<Balancer>, InFlight)>,
}

enum End {
    Done,
    Failed(Option<&'static str>),
    Dropped,
}

impl RouteRecorder {
    fn finish(self, end: End) {
        let classes = match self.route.and_then(|i| self.policy.routes.get(i)) {
            Some(r) => &r.response_classes,
            None => &self.policy.default_route.response_classes,
        };
        let (failed, error) = match end {
            End::Done => (is_failure(classes, self.status, self.grpc_status), None),
            End::Failed(e) => (true, Some(e.unwrap_or("stream_failed"))),
            End::Dropped => (true, Some("stream_failed")),
        };
        self.metrics
            .route_response_total
            .get(&RouteResponseLabels {
                base: self.labels,
                status_code: self.status,
                grpc_status: self.grpc_status,
                success: !failed,
                error,
            })
            .inc();
        if let Some((balancer, inflight)) = self.endpoint {
            if matches!(end, End::Dropped) {
                balancer.cancelled(&inflight.0);
            } else {
                balancer.record(&inflight.0, failed, self.policy.accrual.as_ref());
            }
        }
    }
}

/// A streamed response body with timeouts and a recorder.
pub struct RouteBody {
    inner: Body,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    recorder: Option<RouteRecorder>,
}

impl RouteBody {
    pub fn new(
        inner: Body,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        recorder: RouteRecorder,
    ) -> Self {
        RouteBody {
            inner,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            recorder: Some(recorder),
        }
    }

    fn finish(&mut self, end: End) {
        if let Some(r) = self.recorder.take() {
            r.finish(end);
        }
    }

    fn timed_out(&mut self, kind: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(r) = &self.recorder {
            r.metrics
                .route_timeout_total
                .get(&OutboundMetrics::extra(&r.labels, "kind", kind))
                .inc();
        }
        let error = if kind == "idle" {
            "idle_timeout"
        } else {
            "request_timeout"
        };
        tracing::info!(kind, "response body timed out");
        self.finish(End::Failed(Some(error)));
        Poll::Ready(Some(Err(format!("{kind} timeout").into())))
    }
}

impl HttpBody for RouteBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Pending => {
                if let Some(d) = this.deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        this.deadline = None;
                        return this.timed_out("request");
                    }
                }
                if let Some((_, s)) = this.idle.as_mut() {
                    if s.as_mut().poll(cx).is_ready() {
                        this.idle = None;
                        return this.timed_out("idle");
                    }
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((d, s)) = this.idle.as_mut() {
                    s.as_mut().reset(Instant::now() + *d);
                }
                if let Some(t) = frame.trailers_ref() {
                    if let Some(r) = this.recorder.as_mut() {
                        if let Some(g) = t
                            .get("grpc-status")
                            .and_then(crate::http::record::parse_grpc_status)
                        {
                            r.grpc_status = Some(g);
                        }
                    }
                    this.finish(End::Done);
                } else if this.inner.is_end_stream() {
                    this.finish(End::Done);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(End::Failed(None)),
            Poll::Ready(None) => this.finish(End::Done),
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

impl Drop for RouteBody {
    fn drop(&mut self) {
        if self.recorder.is_some() {
            let end = if self.inner.is_end_stream() {
                End::Done
            } else {
                End::Dropped
            };
            self.finish(end);
        }
    }
}
