//! An in-test destination service (`weft.destination.v1`) that serves exactly the endpoints
//! and policies a test sets, on its own runtime thread, stoppable and restartable on the same
//! port (to test proxies that lose the control plane).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use weft_api::destination as pb;
use weft_api::destination::destination_server::{Destination, DestinationServer};

/// One service's state: `None` endpoints means the service does not exist.
struct Svc {
    endpoints: watch::Sender<Option<Vec<pb::Endpoint>>>,
    policy: watch::Sender<Option<pb::ServicePolicy>>,
    /// The `AddSet`-level metric labels (`namespace`, `service`).
    set_labels: Mutex<HashMap<String, String>>,
}

/// What the control plane knows, shared across restarts.
#[derive(Clone, Default)]
pub struct CpState {
    services: Arc<Mutex<HashMap<String, Arc<Svc>>>>,
    /// Watches opened, per kind ("get", "policy").
    pub opened: Arc<Mutex<HashMap<&'static str, usize>>>,
    /// Per (kind, authority): watches opened so far, and watches open now (whose response
    /// stream the server has not dropped yet: the client has not cancelled it).
    streams: Arc<Mutex<HashMap<(&'static str, String), StreamCount>>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct StreamCount {
    opened: usize,
    open: usize,
}

/// A response stream that counts itself open until the server drops it (which it does when
/// the client resets the stream or the connection goes).
struct Tracked<S> {
    inner: S,
    key: (&'static str, String),
    streams: Arc<Mutex<HashMap<(&'static str, String), StreamCount>>>,
}

impl<S: tokio_stream::Stream + Unpin> tokio_stream::Stream for Tracked<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        if let Some(c) = self.streams.lock().unwrap().get_mut(&self.key) {
            c.open -= 1;
        }
    }
}

impl CpState {
    fn svc(&self, authority: &str) -> Arc<Svc> {
        let mut map = self.services.lock().unwrap();
        map.entry(authority.to_string())
            .or_insert_with(|| {
                Arc::new(Svc {
                    endpoints: watch::channel(None).0,
                    policy: watch::channel(None).0,
                    set_labels: Mutex::default(),
                })
            })
            .clone()
    }

    /// Sets the endpoints of `authority` (the service exists from now on).
    pub fn set_endpoints(&self, authority: &str, endpoints: Vec<pb::Endpoint>) {
        self.svc(authority).endpoints.send_replace(Some(endpoints));
    }

    /// Sets the metric labels of every `AddSet` of `authority` sent from now on (set them
    /// before the endpoints).
    pub fn set_metric_labels(&self, authority: &str, labels: &[(&str, &str)]) {
        *self.svc(authority).set_labels.lock().unwrap() = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Sets the policy of `authority`.
    pub fn set_policy(&self, authority: &str, policy: pb::ServicePolicy) {
        self.svc(authority).policy.send_replace(Some(policy));
    }

    pub fn opened(&self, kind: &str) -> usize {
        self.opened.lock().unwrap().get(kind).copied().unwrap_or(0)
    }

    /// `kind` ("get", "policy") watches of `authority` opened so far.
    pub fn opened_for(&self, kind: &'static str, authority: &str) -> usize {
        let streams = self.streams.lock().unwrap();
        streams
            .get(&(kind, authority.to_string()))
            .map_or(0, |c| c.opened)
    }

    /// `kind` ("get", "policy") watches of `authority` open now.
    pub fn open_now(&self, kind: &'static str, authority: &str) -> usize {
        let streams = self.streams.lock().unwrap();
        streams
            .get(&(kind, authority.to_string()))
            .map_or(0, |c| c.open)
    }

    /// Counts a new `kind` watch of `authority` and wraps its response stream.
    fn track<T: Send + 'static>(
        &self,
        kind: &'static str,
        authority: &str,
        out: mpsc::Receiver<Result<T, Status>>,
    ) -> Stream<T> {
        *self.opened.lock().unwrap().entry(kind).or_default() += 1;
        let key = (kind, authority.to_string());
        {
            let mut streams = self.streams.lock().unwrap();
            let c = streams.entry(key.clone()).or_default();
            c.opened += 1;
            c.open += 1;
        }
        Box::pin(Tracked {
            inner: ReceiverStream::new(out),
            key,
            streams: self.streams.clone(),
        })
    }
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn diff(old: &[pb::Endpoint], new: &[pb::Endpoint]) -> (Vec<String>, Vec<pb::Endpoint>) {
    let removed = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.addr == o.addr))
        .map(|o| o.addr.clone())
        .collect();
    let added = new.iter().filter(|n| !old.contains(n)).cloned().collect();
    (removed, added)
}

fn add(endpoints: Vec<pb::Endpoint>, metric_labels: HashMap<String, String>) -> pb::Update {
    pb::Update {
        update: Some(pb::update::Update::Add(pb::AddSet {
            endpoints,
            metric_labels,
        })),
    }
}

#[tonic::async_trait]
impl Destination for CpState {
    type GetStream = Stream<pb::Update>;
    type GetPolicyStream = Stream<pb::PolicyUpdate>;

    async fn get(
        &self,
        req: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let authority = req.into_inner().authority;
        let svc = self.svc(&authority);
        let mut rx = svc.endpoints.subscribe();
        let (tx, out) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut last: Option<Vec<pb::Endpoint>> = None;
            loop {
                let current = rx.borrow_and_update().clone();
                let labels = svc.set_labels.lock().unwrap().clone();
                let msgs = match (&last, &current) {
                    (_, None) => vec![pb::update::Update::NoEndpoints(pb::NoEndpoints {
                        exists: false,
                    })],
                    (_, Some(new)) if new.is_empty() => {
                        vec![pb::update::Update::NoEndpoints(pb::NoEndpoints {
                            exists: true,
                        })]
                    }
                    (None, Some(new)) => add(new.clone(), labels).update.into_iter().collect(),
                    (Some(old), Some(new)) => {
                        let (removed, added) = diff(old, new);
                        let mut m = Vec::new();
                        if !removed.is_empty() {
                            m.push(pb::update::Update::Remove(pb::RemoveSet { addrs: removed }));
                        }
                        if !added.is_empty() {
                            m.extend(add(added, labels).update);
                        }
                        m
                    }
                };
                for u in msgs {
                    if tx.send(Ok(pb::Update { update: Some(u) })).await.is_err() {
                        return;
                    }
                }
                last = current.filter(|c| !c.is_empty());
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(self.track("get", &authority, out)))
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetDestination>,
    ) -> Result<Response<Self::GetPolicyStream>, Status> {
        let authority = req.into_inner().authority;
        let mut rx = self.svc(&authority).policy.subscribe();
        let (tx, out) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let update = match rx.borrow_and_update().clone() {
                    Some(p) => pb::policy_update::Update::Policy(p),
                    None => pb::policy_update::Update::NotFound(pb::NotFound {
                        reason: "no such service".into(),
                    }),
                };
                if tx
                    .send(Ok(pb::PolicyUpdate {
                        update: Some(update),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(self.track("policy", &authority, out)))
    }
}

/// A running control plane; stopped (every connection closed) on `stop` or drop.
pub struct ControlPlane {
    pub addr: SocketAddr,
    pub state: CpState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    pub fn start(state: CpState) -> ControlPlane {
        let addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        Self::start_at(state, addr)
    }

    pub fn start_at(state: CpState, addr: SocketAddr) -> ControlPlane {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let svc_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut listener = None;
                for _ in 0..100 {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                let listener = listener.expect("control plane port stays taken");
                ready_tx.send(()).unwrap();
                let serve = tonic::transport::Server::builder()
                    .add_service(DestinationServer::new(svc_state))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Drops every connection and stream task.
            rt.shutdown_background();
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        ControlPlane {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An unmeshed endpoint.
pub fn endpoint(addr: SocketAddr) -> pb::Endpoint {
    pb::Endpoint {
        addr: addr.to_string(),
        weight: 10_000,
        ..Default::default()
    }
}

/// A meshed endpoint: the app at `addr`, behind the proxy whose inbound is `inbound`.
pub fn meshed_endpoint(addr: SocketAddr, inbound: SocketAddr, identity: &str) -> pb::Endpoint {
    pb::Endpoint {
        addr: addr.to_string(),
        weight: 10_000,
        proxy: Some(pb::MeshedProxy {
            inbound_addr: inbound.to_string(),
            identity: identity.to_string(),
            authority_override: String::new(),
        }),
        ..Default::default()
    }
}

/// A route matching `method` (if any) and a path prefix.
pub fn route(name: &str, method: Option<&str>, prefix: &str) -> pb::Route {
    let path = pb::RequestMatch {
        kind: Some(pb::request_match::Kind::Path(pb::PathMatch {
            kind: Some(pb::path_match::Kind::Prefix(prefix.into())),
        })),
    };
    let condition = match method {
        None => path,
        Some(m) => pb::RequestMatch {
            kind: Some(pb::request_match::Kind::All(pb::MatchList {
                matches: vec![
                    pb::RequestMatch {
                        kind: Some(pb::request_match::Kind::Method(m.into())),
                    },
                    path,
                ],
            })),
        },
    };
    pb::Route {
        name: name.into(),
        condition: Some(condition),
        ..Default::default()
    }
}

/// Retries on 5xx, at most `limit` times.
pub fn retry_5xx(limit: u32, per_try_ms: u64) -> pb::RetryPolicy {
    pb::RetryPolicy {
        http_statuses: vec![pb::StatusRange { min: 500, max: 599 }],
        grpc_codes: vec![],
        limit,
        per_try_timeout_ms: per_try_ms,
    }
}

/// A policy for `authority` with these routes, backed by the service itself.
pub fn policy(
    authority: &str,
    source: pb::PolicySource,
    routes: Vec<pb::Route>,
) -> pb::ServicePolicy {
    pb::ServicePolicy {
        authority: authority.into(),
        source: source as i32,
        routes,
        backends: vec![pb::Backend {
            authority: authority.into(),
            weight: 1000,
        }],
        retry_budget: Some(pb::RetryBudget {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl_ms: 10_000,
        }),
        ..Default::default()
    }
}
