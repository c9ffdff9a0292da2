//! Live tap against real proxies with identity: a tap client with the viz identity's
//! certificate (issued by the test CA) receives request, response and end events for inbound
//! and outbound requests; filters and the rate cap apply; other clients are refused; streams end
//! when the client goes away or the proxy drains.
#![allow(clippy::unwrap_used)]

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use support::identity::{Identityd, Pki};
use support::*;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Streaming;
use weft_api::tap as pb;
use weft_api::tap::tap_client::TapClient;
use weft_api::tap::tap_event::Event;
use weft_pki::{CertificateDer, PrivateKeyDer};

const TAP_SA: &str = "tap";

/// web's proxy → emoji's proxy → the emoji app, with mTLS between the proxies; both proxies
/// serve tap to the `tap` identity.
struct Mesh {
    pki: Pki,
    identityd: Identityd,
    app: TestApp,
    emoji: Proxy,
    emoji_tap: SocketAddr,
    web: Proxy,
    web_tap: SocketAddr,
    /// The authority clients name (`emoji-svc.test:PORT`).
    target: String,
}

fn tap_env(pki: &Pki, identityd: &Identityd, sa: &str) -> (ProxyEnv, SocketAddr) {
    let tap: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = pki
        .proxy_env(sa, identityd)
        .set("WEFT_PROXY_TAP_LISTEN_ADDR", tap)
        .set("WEFT_PROXY_TAP_SVC_NAME", Pki::identity(TAP_SA));
    (env, tap)
}

fn mesh(tag: &str) -> Mesh {
    let pki = Pki::new(tag);
    let identityd = pki.start_identity();
    let app = TestApp::named("emoji");
    let (env, emoji_tap) = tap_env(&pki, &identityd, "emoji");
    let emoji = Proxy::start(env.app(app.addr));
    let target = format!("emoji-svc.test:{}", app.addr.port());
    let (env, web_tap) = tap_env(&pki, &identityd, "web");
    let web = Proxy::start(env.set(
        "WEFT_PROXY_MESHED_PEERS",
        format!("{target}={}@{}", emoji.inbound, Pki::identity("emoji")),
    ));
    Mesh {
        pki,
        identityd,
        app,
        emoji,
        emoji_tap,
        web,
        web_tap,
        target,
    }
}

impl Mesh {
    /// Sends requests for `paths` (one curl, one connection) through web's outbound proxy.
    async fn curl(&self, args: &[&str], paths: &[&str]) -> String {
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.push("-x".into());
        argv.push(format!("http://{}", self.web.outbound));
        for p in paths {
            argv.push(format!("http://{}{p}", self.target));
        }
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = curl(&args);
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).to_string()
        })
        .await
        .unwrap()
    }
}

/// Connects TLS to a proxy's tap port (verifying the proxy's identity), presenting `client`.
#[derive(Clone)]
struct TapConnector {
    addr: SocketAddr,
    proxy_id: String,
    config: Arc<rustls::ClientConfig>,
}

impl tonic::codegen::Service<Uri> for TapConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(this.addr).await?;
            let name = rustls::pki_types::ServerName::try_from(this.proxy_id).unwrap();
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

async fn connect_tap(
    pki: &Pki,
    addr: SocketAddr,
    proxy_sa: &str,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<TapClient<Channel>, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TapConnector {
        addr,
        proxy_id: Pki::identity(proxy_sa),
        config: Arc::new(config),
    };
    let channel = Endpoint::from_static("http://tap.test")
        .connect_with_connector(connector)
        .await?;
    Ok(TapClient::new(channel))
}

/// Opens a tap with the viz identity and waits until the proxy counts it.
async fn observe(
    pki: &Pki,
    proxy: &Proxy,
    tap: SocketAddr,
    proxy_sa: &str,
    req: pb::ObserveRequest,
) -> Streaming<pb::TapEvent> {
    let mut client = connect_tap(pki, tap, proxy_sa, Some(pki.leaf(TAP_SA)))
        .await
        .unwrap();
    let before = tap_gauge(proxy).await;
    let stream = client.observe(req).await.unwrap().into_inner();
    wait_gauge(proxy, before + 1.0).await;
    stream
}

async fn tap_gauge(proxy: &Proxy) -> f64 {
    let admin = proxy.admin;
    let text = tokio::task::spawn_blocking(move || http_get(admin, "/metrics").unwrap().1)
        .await
        .unwrap();
    metric_sum(&text, "tap_active_streams", &[])
}

async fn wait_gauge(proxy: &Proxy, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let admin = proxy.admin;
        let text = tokio::task::spawn_blocking(move || http_get(admin, "/metrics").unwrap().1)
            .await
            .unwrap();
        if metric_sum(&text, "tap_active_streams", &[]) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tap_active_streams never became {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next(stream: &mut Streaming<pb::TapEvent>) -> pb::TapEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no tap event within 10s")
        .unwrap()
        .expect("tap stream ended")
}

/// The next request's three events, checked to belong together.
async fn next_request(stream: &mut Streaming<pb::TapEvent>) -> [pb::TapEvent; 3] {
    let events = [next(stream).await, next(stream).await, next(stream).await];
    for e in &events[1..] {
        assert_eq!(e.request_id, events[0].request_id, "{events:#?}");
    }
    events
}

fn request_init(e: &pb::TapEvent) -> &pb::RequestInit {
    match &e.event {
        Some(Event::RequestInit(r)) => r,
        other => panic!("expected RequestInit, got {other:?}"),
    }
}

fn response_init(e: &pb::TapEvent) -> &pb::ResponseInit {
    match &e.event {
        Some(Event::ResponseInit(r)) => r,
        other => panic!("expected ResponseInit, got {other:?}"),
    }
}

fn response_end(e: &pb::TapEvent) -> &pb::ResponseEnd {
    match &e.event {
        Some(Event::ResponseEnd(r)) => r,
        other => panic!("expected ResponseEnd, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_and_outbound_requests_are_tapped() {
    let m = mesh("both");
    let mut outbound = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest::default(),
    )
    .await;
    let mut inbound = observe(
        &m.pki,
        &m.emoji,
        m.emoji_tap,
        "emoji",
        pb::ObserveRequest::default(),
    )
    .await;
    let size = m
        .curl(
            &["-o", "/dev/null", "-w", "%{size_download}"],
            &["/bytes?size=1234"],
        )
        .await;
    assert_eq!(size, "1234");

    // web's proxy, outbound: mTLS to emoji's proxy.
    let [req, rsp, end] = next_request(&mut outbound).await;
    assert_eq!(req.direction, pb::Direction::Outbound as i32);
    assert_eq!(req.tls, "true");
    assert_eq!(req.destination, m.emoji.inbound.to_string());
    assert_eq!(req.destination_identity, Pki::identity("emoji"));
    assert!(req.source.starts_with("127.0.0.1:"), "{}", req.source);
    let init = request_init(&req);
    assert_eq!(init.method, "GET");
    assert_eq!(init.authority, m.target);
    assert_eq!(init.path, "/bytes");
    assert_eq!(init.scheme, "http");
    assert_eq!(response_init(&rsp).status, 200);
    let end = response_end(&end);
    assert_eq!(end.response_bytes, 1234);
    assert_eq!(end.error, "");
    assert_eq!(end.grpc_status, None);
    assert!(end.since_request_init_us >= end.since_response_init_us);

    // emoji's proxy, inbound: from web's proxy over mTLS, to the app.
    let [req, rsp, end] = next_request(&mut inbound).await;
    assert_eq!(req.direction, pb::Direction::Inbound as i32);
    assert_eq!(req.tls, "true");
    assert_eq!(req.source_identity, Pki::identity("web"));
    assert_eq!(req.destination, m.app.addr.to_string());
    let init = request_init(&req);
    assert_eq!(
        (init.method.as_str(), init.path.as_str()),
        ("GET", "/bytes")
    );
    assert_eq!(init.authority, m.target);
    assert_eq!(response_init(&rsp).status, 200);
    assert_eq!(response_end(&end).response_bytes, 1234);

    // Request ids: one tap stream per proxy, requests numbered within it.
    assert_eq!(req.request_id, Some(pb::RequestId { base: 0, stream: 0 }));
    let text = m.web.metrics();
    assert!(
        metric_sum(&text, "tap_events_sent_total", &[]) >= 3.0,
        "{text}"
    );
    assert_eq!(metric_sum(&text, "tap_events_dropped_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_comes_from_the_trailers() {
    use http_body_util::{BodyExt, Full};
    let m = mesh("grpc");
    let mut stream = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest::default(),
    )
    .await;
    // HTTP/2 (prior knowledge) to web's outbound listener, naming the target in :authority.
    let tcp = tokio::net::TcpStream::connect(m.web.outbound)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let message = weft_testapp::grpc::encode_message(b"hello");
    let req = http::Request::post(format!("http://{}/weft.testapp.Echo/Unary", m.target))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-testapp-grpc-status", "7")
        .body(Full::new(message.clone()))
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let body = rsp.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().unwrap();
    assert_eq!(trailers["grpc-status"], "7");

    let [req, rsp, end] = next_request(&mut stream).await;
    let init = request_init(&req);
    assert_eq!(
        (init.method.as_str(), init.path.as_str()),
        ("POST", "/weft.testapp.Echo/Unary")
    );
    assert_eq!(init.authority, m.target);
    assert_eq!(req.tls, "true");
    assert_eq!(response_init(&rsp).status, 200);
    let end = response_end(&end);
    assert_eq!(end.grpc_status, Some(7));
    assert_eq!(end.response_bytes, message.len() as u64);
    assert_eq!(end.error, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_requests_carry_the_endpoint_and_its_labels() {
    use support::destination::{self as dst, ControlPlane, CpState};
    const SVC: &str = "emoji-svc.emojivoto.svc.cluster.local:80";
    let m = mesh("discovery");
    let cp = ControlPlane::start(CpState::default());
    cp.state
        .set_metric_labels(SVC, &[("namespace", "emojivoto"), ("service", "emoji-svc")]);
    let mut ep = dst::meshed_endpoint(m.app.addr, m.emoji.inbound, &Pki::identity("emoji"));
    ep.metric_labels
        .insert("pod".into(), "emoji-6d66d87995-abcde".into());
    ep.metric_labels.insert("deployment".into(), "emoji".into());
    cp.state.set_endpoints(SVC, vec![ep]);
    cp.state.set_policy(
        SVC,
        dst::policy(
            SVC,
            weft_api::destination::PolicySource::ServiceProfile,
            vec![dst::route("all", None, "/")],
        ),
    );
    let (env, tap) = tap_env(&m.pki, &m.identityd, "web");
    let web = Proxy::start(env.set("WEFT_PROXY_DESTINATION_SVC_ADDR", cp.addr));
    let mut stream = observe(&m.pki, &web, tap, "web", pb::ObserveRequest::default()).await;
    let proxy = format!("http://{}", web.outbound);
    let url = format!("http://{SVC}/api/list");
    let out = tokio::task::spawn_blocking(move || curl(&["-x", &proxy, &url]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let [req, rsp, _] = next_request(&mut stream).await;
    assert_eq!(req.direction, pb::Direction::Outbound as i32);
    assert_eq!(req.destination, m.emoji.inbound.to_string());
    assert_eq!(req.tls, "true");
    assert_eq!(req.destination_identity, Pki::identity("emoji"));
    let labels: Vec<(&str, &str)> = req
        .destination_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for want in [
        ("namespace", "emojivoto"),
        ("service", "emoji-svc"),
        ("deployment", "emoji"),
        ("pod", "emoji-6d66d87995-abcde"),
    ] {
        assert!(labels.contains(&want), "{labels:?}");
    }
    assert_eq!(request_init(&req).path, "/api/list");
    assert_eq!(response_init(&rsp).status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_exclude_other_requests() {
    let m = mesh("filter");
    let mut stream = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest {
            filter: Some(pb::Filter {
                method: Some("POST".into()),
                path_prefix: Some("/api".into()),
                direction: pb::Direction::Outbound as i32,
                ..Default::default()
            }),
            max_rps: 0,
        },
    )
    .await;
    m.curl(&[], &["/api/list", "/other"]).await;
    m.curl(
        &["-X", "POST", "-d", ""],
        &["/other", "/api/vote?status=201"],
    )
    .await;
    // The first event is the matching request's: the three before it were filtered out.
    let [req, rsp, _] = next_request(&mut stream).await;
    let init = request_init(&req);
    assert_eq!(
        (init.method.as_str(), init.path.as_str()),
        ("POST", "/api/vote")
    );
    assert_eq!(response_init(&rsp).status, 201);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.message())
            .await
            .is_err(),
        "no further events"
    );

    // A destination filter that matches nothing here: the requests go to 127.0.0.1.
    let mut elsewhere = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest {
            filter: Some(pb::Filter {
                destination: Some("10.0.0.0/8".into()),
                ..Default::default()
            }),
            max_rps: 0,
        },
    )
    .await;
    m.curl(&[], &["/x"]).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), elsewhere.message())
            .await
            .is_err(),
        "the destination filter excludes 127.0.0.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_filters_are_invalid_arguments() {
    let m = mesh("invalid");
    let mut client = connect_tap(&m.pki, m.web_tap, "web", Some(m.pki.leaf(TAP_SA)))
        .await
        .unwrap();
    let status = client
        .observe(pb::ObserveRequest {
            filter: Some(pb::Filter {
                source: Some("10.0.0.0/99".into()),
                ..Default::default()
            }),
            max_rps: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("source"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_cap_limits_reported_requests() {
    let m = mesh("rate");
    let mut stream = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest {
            filter: None,
            max_rps: 5,
        },
    )
    .await;
    let paths = vec!["/fast"; 50];
    let started = Instant::now();
    m.curl(&["-o", "/dev/null"], &paths).await;
    let took = started.elapsed();
    let mut requests = 0;
    while let Ok(Ok(Some(e))) =
        tokio::time::timeout(Duration::from_millis(500), stream.message()).await
    {
        if matches!(e.event, Some(Event::RequestInit(_))) {
            requests += 1;
        }
    }
    // A burst of 5, then 5 per second while the 50 requests ran.
    let allowed = 5 + (took.as_secs_f64() * 5.0).ceil() as usize;
    assert!(requests >= 5, "{requests}");
    assert!(
        requests <= allowed.max(10),
        "{requests} requests reported in {took:?}"
    );
    assert!(requests < 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_are_refused() {
    let m = mesh("refused");
    // Another identity of the same CA, and no certificate at all.
    for client in [Some(m.pki.leaf("emoji")), None] {
        let anonymous = client.is_none();
        let refused = match connect_tap(&m.pki, m.web_tap, "web", client).await {
            // TLS 1.3: the client may finish its side before the server refuses it; then the
            // first call fails.
            Ok(mut c) => {
                let call = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.observe(pb::ObserveRequest::default()),
                )
                .await
                .unwrap();
                match call {
                    Err(_) => true,
                    Ok(rsp) => {
                        let mut s = rsp.into_inner();
                        matches!(
                            tokio::time::timeout(Duration::from_secs(5), s.message()).await,
                            Ok(Err(_))
                        )
                    }
                }
            }
            Err(_) => true,
        };
        assert!(refused, "anonymous={anonymous}");
    }
    let text = m.web.metrics();
    assert_eq!(metric_sum(&text, "tap_active_streams", &[]), 0.0, "{text}");
    assert!(m.web.log_text().contains("tap client refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_when_the_client_goes_or_the_proxy_drains() {
    let m = mesh("end");
    let stream = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest::default(),
    )
    .await;
    drop(stream);
    wait_gauge(&m.web, 0.0).await;
    // Traffic with nobody tapping is not reported anywhere.
    m.curl(&[], &["/quiet"]).await;

    let mut stream = observe(
        &m.pki,
        &m.web,
        m.web_tap,
        "web",
        pb::ObserveRequest::default(),
    )
    .await;
    let admin = m.web.admin;
    let (status, _) =
        tokio::task::spawn_blocking(move || http_request(admin, "POST", "/shutdown").unwrap())
            .await
            .unwrap();
    assert_eq!(status, 200);
    // The drain ends the stream cleanly (OK trailers), promptly.
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the tap stream outlived the drain");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[test]
fn tap_is_off_without_a_tap_identity() {
    let pki = Pki::new("off");
    let identityd = pki.start_identity();
    let tap: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(
        pki.proxy_env("web", &identityd)
            .set("WEFT_PROXY_TAP_LISTEN_ADDR", tap),
    );
    assert!(std::net::TcpStream::connect(tap).is_err(), "tap port bound");
    assert!(
        proxy
            .log_text()
            .contains("tap is disabled: WEFT_PROXY_TAP_SVC_NAME is not set"),
        "{}",
        proxy.log_text()
    );
}
