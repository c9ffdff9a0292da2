//! The HTTP request path, shared by the inbound and outbound sides: load shedding, routing a
//! request to its upstream, protocol translation for meshed hops (HTTP/1.1 carried over HTTP/2
//! and restored), upgrades and CONNECT tunnels, response timeouts, synthetic errors and metrics.

pub mod errors;
mod headers;
pub mod record;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::discover::Discover;
use crate::server::{ConnInfo, Target};
use crate::telemetry::{Direction, LatencyLabels, Metrics, RequestLabels};
use errors::ProxyError;
use record::{RecordBody, Recorder};
use upstream::Upstreams;

/// Boxed error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the proxy serves and sends.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Marks a request that rode HTTP/2 between proxies but was HTTP/1.x at the client.
pub const ORIG_PROTO: &str = "l5d-orig-proto";
/// Names the target port at the receiving proxy for meshed requests.
pub const DST_PORT: &str = "weft-dst-port";

/// Where a request goes.
#[derive(Debug)]
struct Route {
    /// The authority the client asked for (metrics label, discovery key).
    authority: String,
    upstream: UpstreamKind,
}

#[derive(Clone, Debug)]
pub enum UpstreamKind {
    /// Plain HTTP to an address, in the request's own protocol.
    Direct(SocketAddr),
    /// To a meshed peer's inbound proxy, naming the target port there; over mTLS verifying the
    /// peer's identity (unless identity is disabled).
    Meshed {
        peer: SocketAddr,
        port: u16,
        identity: Option<String>,
    },
}

impl UpstreamKind {
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            UpstreamKind::Direct(a) => *a,
            UpstreamKind::Meshed { peer, .. } => *peer,
        }
    }
}

/// Removes hop-by-hop headers from an upstream response.
pub(crate) fn strip_response_hop_by_hop(h: &mut http::HeaderMap) {
    headers::strip_hop_by_hop(h);
}

/// Settings of the request path.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub response_timeout: Option<Duration>,
    /// The app's address for inbound traffic that was not redirected.
    pub inbound_app_addr: Option<SocketAddr>,
    /// The proxy's own listening addresses, never valid upstreams.
    pub own_addrs: Vec<SocketAddr>,
    /// Whether identity (mTLS) is on; labels unmeshed traffic accordingly.
    pub identity_enabled: bool,
}

/// The request path's shared state.
pub struct HttpProxy {
    pub settings: HttpSettings,
    pub metrics: Arc<Metrics>,
    pub upstreams: Upstreams,
    pub discover: Arc<dyn Discover>,
    /// Open taps (live request events); idle, they cost one atomic load per request.
    pub taps: Arc<crate::tap::Taps>,
    in_flight: Arc<Semaphore>,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl HttpProxy {
    pub fn new(
        settings: HttpSettings,
        metrics: Arc<Metrics>,
        upstreams: Upstreams,
        discover: Arc<dyn Discover>,
        max_in_flight: usize,
        taps: Arc<crate::tap::Taps>,
    ) -> Self {
        HttpProxy {
            settings,
            metrics,
            upstreams,
            discover,
            taps,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// Handles one request from a client connection.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<Body> {
        let start = Instant::now();
        let grpc = is_grpc(&req);
        let fallback_authority = conn
            .target
            .as_ref()
            .map(|t| t.authority.clone())
            .unwrap_or_default();
        let mut labels = RequestLabels {
            direction: conn.direction,
            authority: request_authority(&req).unwrap_or(fallback_authority),
            target_addr: String::new(),
            tls: conn.tls.clone(),
            dst: Default::default(),
        };
        // Tap: when nobody taps this is one relaxed atomic load, and `tap` stays `None` (see
        // `crate::tap`).
        let tap = if self.taps.is_active() {
            self.tap_request(&req, &conn, &labels.authority)
        } else {
            None
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!("too many requests in flight, shedding load");
            return self.synthesize(ProxyError::LoadShed, grpc, labels, start, tap);
        };

        if req.method() == Method::CONNECT && conn.direction == Direction::Outbound {
            return self.connect_tunnel(req, conn);
        }

        // An outbound request's target and static discovery answer are worked out once: they
        // decide between the service-policy path and plain routing.
        let mut resolved = None;
        if conn.direction == Direction::Outbound && !headers::wants_upgrade(&req) {
            let target = match outbound_target(&req, &conn) {
                Ok(t) => t,
                Err(e) => return self.synthesize(e, grpc, labels, start, tap),
            };
            let meshed = self.static_meshed(&target, &conn);
            if meshed.is_none() {
                if let Some(outbound) = self.discover.outbound() {
                    if let Some((service, policy)) = outbound.policy(&target.authority).await {
                        labels.authority = target.authority.clone();
                        let exchange = crate::outbound::exchange::Exchange {
                            proxy: self.clone(),
                            outbound: outbound.clone(),
                            service,
                            policy,
                            fallback: target,
                            grpc,
                            tap,
                        };
                        return self
                            .serve_policy(req, exchange, labels, permit, start)
                            .await;
                    }
                }
            }
            resolved = Some((target, meshed));
        }

        let route = match resolved {
            Some((target, meshed)) => self.route_target(target, meshed).await,
            None => self.route(&req, &conn).await,
        };
        let route = match route {
            Ok(r) => r,
            Err(e) => return self.synthesize(e, grpc, labels, start, tap),
        };
        labels.authority = route.authority.clone();
        labels.target_addr = route.upstream.addr().to_string();
        if conn.direction == Direction::Outbound {
            labels.tls = self.outbound_tls(&route.upstream);
        }
        self.metrics.request_total.get(&labels).inc();
        if let Some(tap) = &tap {
            tap.dispatch(Some(route.upstream.addr()), &labels.tls, &labels.dst);
        }

        let forward = self.clone().forward(req, route, conn.direction);
        let result = match self.settings.response_timeout {
            Some(t) => match tokio::time::timeout(t, forward).await {
                Ok(r) => r,
                Err(_) => Err(ProxyError::ResponseTimeout),
            },
            None => forward.await,
        };
        match result {
            Ok(rsp) => self.respond(rsp, grpc, labels, permit, start, tap),
            Err(e) => self.synthesize(e, grpc, labels, start, tap),
        }
    }

    /// Starts tapping a request (only called when some tap is open).
    fn tap_request<B>(
        &self,
        req: &Request<B>,
        conn: &ConnInfo,
        normalized_authority: &str,
    ) -> Option<Arc<crate::tap::TapRequest>> {
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(normalized_authority),
        };
        let head = crate::tap::Head {
            direction: conn.direction,
            source: conn.client.ip(),
            method: req.method().as_str(),
            authority,
            normalized_authority,
            path: req.uri().path(),
        };
        self.taps
            .request(head, conn.client, req.uri().scheme_str().unwrap_or("http"))
    }

    /// The `tls` label of an outbound request to `upstream`.
    pub(crate) fn outbound_tls(&self, upstream: &UpstreamKind) -> crate::telemetry::Tls {
        match upstream {
            UpstreamKind::Meshed {
                identity: Some(id), ..
            } => crate::telemetry::Tls::Established {
                client_id: None,
                server_id: Some(id.clone()),
            },
            _ if self.settings.identity_enabled => crate::telemetry::Tls::NoIdentity("not_meshed"),
            _ => crate::telemetry::Tls::NoIdentity("disabled"),
        }
    }

    /// What static discovery (`WEFT_PROXY_MESHED_PEERS`) says of an outbound target, by its
    /// authority or by the original destination's; it wins over the destination service.
    fn static_meshed(
        &self,
        target: &Target,
        conn: &ConnInfo,
    ) -> Option<crate::discover::MeshedEndpoint> {
        let key = conn
            .target
            .as_ref()
            .map(|t| t.authority.as_str())
            .unwrap_or(&target.authority);
        self.discover
            .meshed(&target.authority)
            .or_else(|| self.discover.meshed(key))
    }

    /// Serves an outbound request through its service's policy (routes, balancer, retries,
    /// timeouts, splits).
    async fn serve_policy(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        exchange: crate::outbound::exchange::Exchange,
        mut labels: RequestLabels,
        permit: tokio::sync::OwnedSemaphorePermit,
        start: Instant,
    ) -> Response<Body> {
        let grpc = exchange.grpc;
        let tap = exchange.tap.clone();
        req.headers_mut().remove(ORIG_PROTO);
        let req = req.map(|b| b.map_err(BoxError::from).boxed());
        let outcome = exchange.serve(req).await;
        if let Some(upstream) = &outcome.upstream {
            labels.target_addr = upstream.addr().to_string();
            labels.tls = self.outbound_tls(upstream);
            labels.dst = outcome.dst.clone();
            self.metrics.request_total.get(&labels).inc();
        }
        match outcome.result {
            Ok(rsp) => self.respond(rsp, grpc, labels, permit, start, tap),
            Err(e) => self.synthesize(e, grpc, labels, start, tap),
        }
    }

    /// Records an upstream response and hands it to the client.
    fn respond(
        &self,
        rsp: Response<Body>,
        grpc: bool,
        labels: RequestLabels,
        permit: tokio::sync::OwnedSemaphorePermit,
        start: Instant,
        tap: Option<Arc<crate::tap::TapRequest>>,
    ) -> Response<Body> {
        let status = rsp.status().as_u16();
        if let Some(tap) = &tap {
            // Dispatched already unless the request went nowhere (e.g. an upgrade).
            tap.dispatch(labels.target_addr.parse().ok(), &labels.tls, &labels.dst);
            tap.response_init(status);
        }
        self.metrics
            .response_latency_ms
            .get(&LatencyLabels {
                base: labels.clone(),
                status_code: status,
            })
            .observe(start.elapsed());
        let grpc_status = rsp
            .headers()
            .get("grpc-status")
            .and_then(record::parse_grpc_status);
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            request: labels,
            status_code: status,
            grpc,
            grpc_status,
            error: None,
            permit: Some(permit),
            tap: tap.map(record::Tapped::new),
        };
        let (parts, body) = rsp.into_parts();
        let body = RecordBody::new(body.map_err(BoxError::from).boxed(), recorder);
        Response::from_parts(parts, Body::new(body))
    }

    /// Answers for the proxy itself and records it.
    fn synthesize(
        &self,
        e: ProxyError,
        grpc: bool,
        labels: RequestLabels,
        start: Instant,
        tap: Option<Arc<crate::tap::TapRequest>>,
    ) -> Response<Body> {
        tracing::debug!(error = %e, authority = %labels.authority, "synthesized response");
        if labels.target_addr.is_empty() {
            // The request never reached routing; count it here.
            self.metrics.request_total.get(&labels).inc();
        }
        let rsp = e.response(grpc);
        let status = rsp.status().as_u16();
        if let Some(tap) = &tap {
            // The proxy answers itself, possibly before choosing a destination.
            tap.dispatch(labels.target_addr.parse().ok(), &labels.tls, &labels.dst);
            tap.response_init(status);
        }
        self.metrics
            .response_latency_ms
            .get(&LatencyLabels {
                base: labels.clone(),
                status_code: status,
            })
            .observe(start.elapsed());
        let grpc_status = grpc.then_some(e.grpc_status());
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            request: labels,
            status_code: status,
            grpc,
            grpc_status,
            error: Some(e.label()),
            permit: None,
            tap: tap.map(record::Tapped::new),
        };
        let (parts, body) = rsp.into_parts();
        Response::from_parts(parts, Body::new(RecordBody::new(body, recorder)))
    }

    /// Decides where a request goes.
    async fn route(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Result<Route, ProxyError> {
        match conn.direction {
            Direction::Outbound => self.route_outbound(req, conn).await,
            Direction::Inbound => self.route_inbound(req, conn),
        }
    }

    async fn route_outbound(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Route, ProxyError> {
        let target = outbound_target(req, conn)?;
        let meshed = self.static_meshed(&target, conn);
        self.route_target(target, meshed).await
    }

    /// Where an outbound target goes: to its statically meshed peer, else to its fallback.
    async fn route_target(
        &self,
        target: Target,
        meshed: Option<crate::discover::MeshedEndpoint>,
    ) -> Result<Route, ProxyError> {
        if let Some(ep) = meshed {
            return Ok(Route {
                authority: target.authority,
                upstream: UpstreamKind::Meshed {
                    peer: ep.peer,
                    port: ep.port,
                    identity: ep.identity,
                },
            });
        }
        let upstream = self.fallback_upstream(&target).await?;
        Ok(Route {
            authority: target.authority,
            upstream,
        })
    }

    /// Where an outbound request goes without discovery: its original destination, or its
    /// authority resolved; never this proxy's own listeners.
    pub(crate) async fn fallback_upstream(
        &self,
        target: &Target,
    ) -> Result<UpstreamKind, ProxyError> {
        let addr = match target.addr {
            Some(a) => a,
            None => resolve(&target.authority).await?,
        };
        if self
            .settings
            .own_addrs
            .iter()
            .any(|own| is_same_listener(*own, addr))
        {
            tracing::warn!(%addr, "request would loop back into this proxy");
            return Err(ProxyError::Loop);
        }
        Ok(UpstreamKind::Direct(addr))
    }

    fn route_inbound(&self, req: &Request<Incoming>, conn: &ConnInfo) -> Result<Route, ProxyError> {
        let own_port = |a: SocketAddr| {
            self.settings
                .own_addrs
                .iter()
                .any(|own| is_local_listener(*own, a))
        };
        // Redirected by iptables to us from the app's port: that port is the target.
        let redirected = conn
            .target
            .as_ref()
            .and_then(|t| t.addr)
            .filter(|a| !own_port(*a));
        let meshed_port = req
            .headers()
            .get(DST_PORT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|p| *p != 0);
        let app = self.settings.inbound_app_addr;
        // Inbound traffic only ever goes to this workload: the redirected-from IP, the configured
        // app IP, or the IP the client connected to.
        let ip = redirected
            .map(|a| a.ip())
            .or(app.map(|a| a.ip()))
            .or(conn.local.map(|a| a.ip()));
        let port = meshed_port
            .or(redirected.map(|a| a.port()))
            .or(app.map(|a| a.port()));
        let (Some(ip), Some(port)) = (ip, port) else {
            return Err(ProxyError::NoDestination);
        };
        let addr = SocketAddr::new(ip, port);
        if own_port(addr) {
            tracing::warn!(%addr, "inbound request names the proxy's own port");
            return Err(ProxyError::Loop);
        }
        Ok(Route {
            authority: request_authority(req).unwrap_or_else(|| addr.to_string()),
            upstream: UpstreamKind::Direct(addr),
        })
    }

    /// Sends the request to its upstream and returns the upstream's response.
    async fn forward(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        route: Route,
        direction: Direction,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = headers::wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let orig_proto = req.headers_mut().remove(ORIG_PROTO);
        if direction == Direction::Inbound {
            req.headers_mut().remove(DST_PORT);
        }
        let (mut parts, body) = req.into_parts();
        let body: Body = body.map_err(BoxError::from).boxed();
        let authority = route.authority.clone();
        let rsp = match route.upstream {
            UpstreamKind::Meshed {
                peer,
                port,
                identity,
            } if upgrade => {
                parts.headers.insert(DST_PORT, HeaderValue::from(port));
                headers::to_http1(&mut parts, &authority, peer, true)?;
                self.upstreams
                    .send_upgrade(peer, identity.as_deref(), Request::from_parts(parts, body))
                    .await?
            }
            UpstreamKind::Direct(addr) if upgrade => {
                headers::to_http1(&mut parts, &authority, addr, true)?;
                self.upstreams
                    .send_upgrade(addr, None, Request::from_parts(parts, body))
                    .await?
            }
            upstream => {
                self.send(parts, body, &upstream, &authority, direction, orig_proto)
                    .await?
            }
        };
        let (mut rparts, rbody) = rsp.into_parts();
        if let (Some(client_upgrade), true) = (
            client_upgrade,
            rparts.status == http::StatusCode::SWITCHING_PROTOCOLS,
        ) {
            let mut upstream_rsp = Response::from_parts(rparts.clone(), ());
            let upstream_upgrade = hyper::upgrade::on(&mut upstream_rsp);
            tokio::spawn(
                async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            let mut client = hyper_util::rt::TokioIo::new(client);
                            let mut upstream = hyper_util::rt::TokioIo::new(upstream);
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                            {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::info!(error = %e, "upgrade failed"),
                    }
                }
                .in_current_span(),
            );
            return Ok(Response::from_parts(rparts, errors::empty()));
        }
        headers::strip_hop_by_hop(&mut rparts.headers);
        Ok(Response::from_parts(
            rparts,
            rbody.map_err(BoxError::from).boxed(),
        ))
    }

    /// Sends one outbound request (not an upgrade) to `upstream`: one attempt of the policy
    /// path.
    pub(crate) async fn send_attempt(
        &self,
        req: Request<Body>,
        upstream: &UpstreamKind,
        authority: &str,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (parts, body) = req.into_parts();
        self.send(parts, body, upstream, authority, Direction::Outbound, None)
            .await
    }

    /// Sends a request that does not upgrade, adapting its protocol to the hop.
    async fn send(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        upstream: &UpstreamKind,
        authority: &str,
        direction: Direction,
        orig_proto: Option<HeaderValue>,
    ) -> Result<Response<Incoming>, ProxyError> {
        match upstream {
            UpstreamKind::Meshed {
                peer,
                port,
                identity,
            } => {
                // HTTP/1.x rides HTTP/2 between proxies; the peer restores it.
                if parts.version != Version::HTTP_2 {
                    let v = if parts.version == Version::HTTP_10 {
                        "HTTP/1.0"
                    } else {
                        "HTTP/1.1"
                    };
                    parts
                        .headers
                        .insert(ORIG_PROTO, HeaderValue::from_static(v));
                }
                parts.headers.insert(DST_PORT, HeaderValue::from(*port));
                headers::to_h2(&mut parts, authority)?;
                self.upstreams
                    .send_h2(*peer, identity.as_deref(), Request::from_parts(parts, body))
                    .await
            }
            UpstreamKind::Direct(addr) => {
                let addr = *addr;
                let restore_http1 = orig_proto.is_some() && direction == Direction::Inbound;
                if parts.version == Version::HTTP_2 && !restore_http1 {
                    headers::to_h2(&mut parts, authority)?;
                    self.upstreams
                        .send_h2(addr, None, Request::from_parts(parts, body))
                        .await
                } else {
                    if restore_http1 && orig_proto.as_ref().is_some_and(|v| v == "HTTP/1.0") {
                        parts.version = Version::HTTP_10;
                    }
                    headers::to_http1(&mut parts, authority, addr, false)?;
                    self.upstreams
                        .send_http1(Request::from_parts(parts, body))
                        .await
                }
            }
        }
    }

    /// Accepts a `CONNECT host:port` tunnel and serves what flows through it as a connection
    /// to that target (detected again, so HTTP inside the tunnel still gets HTTP features).
    fn connect_tunnel(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<Body> {
        let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
            let mut rsp = Response::new(errors::full("CONNECT needs host:port\n"));
            *rsp.status_mut() = http::StatusCode::BAD_REQUEST;
            return rsp;
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let server = conn.server.clone();
        let tunnel = ConnInfo {
            direction: conn.direction,
            client: conn.client,
            local: conn.local,
            target: Some(Target {
                addr: authority.parse().ok(),
                authority: authority.clone(),
            }),
            tls: conn.tls.clone(),
            server,
        };
        tokio::spawn(
            async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = Box::new(hyper_util::rt::TokioIo::new(upgraded));
                        crate::server::serve_tunnel(io, tunnel).await;
                    }
                    Err(e) => tracing::info!(error = %e, "CONNECT upgrade failed"),
                }
            }
            .instrument(tracing::info_span!("tunnel", dst.authority = %authority)),
        );
        Response::new(errors::empty())
    }
}

/// The destination of an outbound request. The client chose where to connect (iptables
/// redirect or CONNECT): that address wins, named by the request's authority.
fn outbound_target<B>(req: &Request<B>, conn: &ConnInfo) -> Result<Target, ProxyError> {
    let authority = request_authority(req);
    match (&conn.target, authority) {
        (Some(t), authority) => Ok(Target {
            authority: authority.unwrap_or_else(|| t.authority.clone()),
            addr: t.addr,
        }),
        (None, Some(a)) => Ok(Target {
            authority: a,
            addr: None,
        }),
        (None, None) => Err(ProxyError::NoDestination),
    }
}

/// The authority a request names: absolute-form or HTTP/2 `:authority`, else `Host`.
fn request_authority<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.to_string(),
    };
    normalize_authority(&raw, req.uri())
}

/// Lower-cases the host and adds the scheme's default port.
fn normalize_authority(raw: &str, uri: &Uri) -> Option<String> {
    let raw = raw.rsplit_once('@').map(|(_, h)| h).unwrap_or(raw).trim();
    if raw.is_empty() {
        return None;
    }
    let has_port = match raw.rfind(']') {
        Some(i) => raw[i..].contains(':'),
        None => raw.contains(':'),
    };
    if has_port {
        Some(raw.to_ascii_lowercase())
    } else {
        let port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        Some(format!("{}:{port}", raw.to_ascii_lowercase()))
    }
}

/// Resolves `host:port` to one address (IP literals need no lookup).
async fn resolve(authority: &str) -> Result<SocketAddr, ProxyError> {
    if let Ok(a) = authority.parse::<SocketAddr>() {
        return Ok(a);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| {
            tracing::info!(%authority, error = %e, "cannot resolve");
            ProxyError::Unresolvable
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or(ProxyError::Unresolvable)
}

/// Whether `addr`, an address on this host (inbound targets always are), is the listener bound
/// at `own`.
fn is_local_listener(own: SocketAddr, addr: SocketAddr) -> bool {
    own.port() == addr.port() && (own.ip() == addr.ip() || own.ip().is_unspecified())
}

/// Whether connecting to `addr` would reach the listener bound at `own`.
fn is_same_listener(own: SocketAddr, addr: SocketAddr) -> bool {
    own.port() == addr.port()
        && (own.ip() == addr.ip() || (own.ip().is_unspecified() && addr.ip().is_loopback()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_normalized() {
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(normalize_authority("Web-Svc", &uri).unwrap(), "web-svc:80");
        assert_eq!(normalize_authority("web:8080", &uri).unwrap(), "web:8080");
        assert_eq!(normalize_authority("[::1]", &uri).unwrap(), "[::1]:80");
        assert_eq!(normalize_authority("[::1]:9", &uri).unwrap(), "[::1]:9");
        assert_eq!(normalize_authority("u:p@h:1", &uri).unwrap(), "h:1");
        assert!(normalize_authority(" ", &uri).is_none());
    }

    #[test]
    fn loops_are_recognized() {
        let any: SocketAddr = "0.0.0.0:4143".parse().unwrap();
        assert!(is_same_listener(any, "127.0.0.1:4143".parse().unwrap()));
        assert!(!is_same_listener(any, "127.0.0.1:4144".parse().unwrap()));
        let lo: SocketAddr = "127.0.0.1:4140".parse().unwrap();
        assert!(!is_same_listener(lo, "127.0.0.2:4140".parse().unwrap()));
        // Inbound targets are on this host: any IP at a wildcard listener's port is a loop.
        assert!(is_local_listener(any, "10.1.2.3:4143".parse().unwrap()));
        assert!(!is_local_listener(any, "10.1.2.3:8080".parse().unwrap()));
        assert!(!is_local_listener(lo, "127.0.0.2:4140".parse().unwrap()));
    }

    #[tokio::test]
    async fn resolves_literals_and_localhost() {
        assert_eq!(
            resolve("127.0.0.1:80").await.unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert!(resolve("localhost:80").await.unwrap().ip().is_loopback());
        assert_eq!(
            resolve("no-such-host.invalid:80").await,
            Err(ProxyError::Unresolvable)
        );
    }
}
