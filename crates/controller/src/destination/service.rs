//! The gRPC service: `weft.destination.v1.Destination/Get` and `/GetPolicy`.
//!
//! Each call parses its authority (a malformed one is refused with `INVALID_ARGUMENT`), then
//! returns a stream that waits for a synced index, sends the current state, and then the
//! changes each new index brings, until the client goes away or the server drains (then the
//! stream ends with OK and proxies reconnect elsewhere or later).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use weft_api::destination as pb;
use weft_api::destination::destination_server::Destination;

use super::authority::{self, Target};
use super::index::{drained, Index};
use super::metrics::{Call, DestinationMetrics, WatchGuard};
use super::watch::{EndpointWatch, PolicyWatch};

/// The stream of a `Get` call.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::Update, Status>> + Send>>;
/// The stream of a `GetPolicy` call.
pub type PolicyStream = Pin<Box<dyn Stream<Item = Result<pb::PolicyUpdate, Status>> + Send>>;

/// The destination service over a shared index.
#[derive(Clone, Debug)]
pub struct DestinationService {
    index: watch::Receiver<Arc<Index>>,
    cluster_domain: Arc<str>,
    metrics: Arc<DestinationMetrics>,
    drain: watch::Receiver<bool>,
}

impl DestinationService {
    /// A service reading `index`, for a cluster whose DNS domain is `cluster_domain`; its
    /// streams end when `drain` turns true.
    pub fn new(
        index: watch::Receiver<Arc<Index>>,
        cluster_domain: &str,
        metrics: Arc<DestinationMetrics>,
        drain: watch::Receiver<bool>,
    ) -> Self {
        Self {
            index,
            cluster_domain: Arc::from(cluster_domain),
            metrics,
            drain,
        }
    }

    fn target(
        &self,
        call: Call,
        req: &pb::GetDestination,
    ) -> Result<(Target, Option<String>), Status> {
        match authority::parse(&req.authority, &self.cluster_domain) {
            Ok(target) => {
                let key = match &target {
                    Target::Service(s) => Some(s.canonical(&self.cluster_domain)),
                    Target::External(_) => None,
                };
                Ok((target, key))
            }
            Err(e) => {
                self.metrics.invalid_request(call);
                Err(Status::invalid_argument(e.to_string()))
            }
        }
    }
}

/// What every stream holds besides its diff state.
struct Feed {
    index: watch::Receiver<Arc<Index>>,
    drain: watch::Receiver<bool>,
    metrics: Arc<DestinationMetrics>,
    started: bool,
    _guard: WatchGuard,
}

impl Feed {
    /// The next index to diff against: the current one first (once synced), then each new one.
    /// `None` when the stream should end (draining, or the index is gone).
    async fn next_index(&mut self) -> Option<Arc<Index>> {
        let Feed {
            index,
            drain,
            started,
            ..
        } = self;
        if *drain.borrow() {
            return None;
        }
        let wait = async {
            if *started {
                index.changed().await.ok()?;
            }
            *started = true;
            let current = index.wait_for(|i| i.is_synced()).await.ok()?;
            Some(current.clone())
        };
        tokio::select! {
            current = wait => current,
            () = drained(drain) => None,
        }
    }
}

#[tonic::async_trait]
impl Destination for DestinationService {
    type GetStream = UpdateStream;
    type GetPolicyStream = PolicyStream;

    #[tracing::instrument(skip_all, fields(
        dst.authority = %request.get_ref().authority,
        client.id = %request.get_ref().caller_identity,
        client.addr = ?request.remote_addr(),
    ))]
    async fn get(
        &self,
        request: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let (target, key) = self.target(Call::Get, request.get_ref())?;
        tracing::debug!(%target, "endpoint watch opened");
        let feed = Feed {
            index: self.index.clone(),
            drain: self.drain.clone(),
            metrics: self.metrics.clone(),
            started: false,
            _guard: self.metrics.watch_opened(Call::Get),
        };
        let state = (
            feed,
            EndpointWatch::new(key),
            std::collections::VecDeque::new(),
        );
        let stream =
            futures_util::stream::unfold(state, |(mut feed, mut watch, mut queue)| async move {
                loop {
                    if let Some((kind, msg)) = queue.pop_front() {
                        feed.metrics.sent(kind);
                        return Some((Ok(msg), (feed, watch, queue)));
                    }
                    let index = feed.next_index().await?;
                    queue.extend(watch.update(&index));
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(
        dst.authority = %request.get_ref().authority,
        client.id = %request.get_ref().caller_identity,
        client.addr = ?request.remote_addr(),
    ))]
    async fn get_policy(
        &self,
        request: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetPolicyStream>, Status> {
        let (target, key) = self.target(Call::GetPolicy, request.get_ref())?;
        tracing::debug!(%target, "policy watch opened");
        let feed = Feed {
            index: self.index.clone(),
            drain: self.drain.clone(),
            metrics: self.metrics.clone(),
            started: false,
            _guard: self.metrics.watch_opened(Call::GetPolicy),
        };
        let domain = self.cluster_domain.clone();
        let state = (feed, PolicyWatch::new(target, key));
        let stream = futures_util::stream::unfold(state, move |(mut feed, mut watch)| {
            let domain = domain.clone();
            async move {
                loop {
                    let index = feed.next_index().await?;
                    if let Some((kind, msg)) = watch.update(&index, &domain) {
                        feed.metrics.sent(kind);
                        return Some((Ok(msg), (feed, watch)));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
