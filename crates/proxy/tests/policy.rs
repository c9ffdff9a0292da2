//! Discovery and traffic policy through a real `weft-proxy` process: an in-test destination
//! service feeds exact endpoints and policies; backends are real testapps (and, where the load
//! reaching a backend must be counted independently of the client proxy, a meshed server-side
//! proxy whose inbound metrics count arrivals).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::destination::{
    endpoint, meshed_endpoint, policy, retry_5xx, route, ControlPlane, CpState,
};
use support::{metric_sum, Proxy, ProxyEnv, TestApp};
use weft_api::destination as pb;

const SVC: &str = "web-svc.test:80";

/// A keep-alive HTTP/1.1 connection to the proxy's outbound port.
struct Client {
    proxy: SocketAddr,
    send: Option<http1::SendRequest<Full<Bytes>>>,
}

/// Status, response headers' `x-testapp-name` and `l5d-proxy-error`, body length.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    name: String,
    proxy_error: String,
}

impl Client {
    fn new(proxy: SocketAddr) -> Self {
        Client { proxy, send: None }
    }

    async fn conn(&mut self) -> &mut http1::SendRequest<Full<Bytes>> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.proxy).await.unwrap();
            let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.send = Some(send);
        }
        self.send.as_mut().unwrap()
    }

    async fn request(&mut self, method: &str, authority: &str, path: &str, body: Bytes) -> Answer {
        for _ in 0..3 {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", authority)
                .body(Full::new(body.clone()))
                .unwrap();
            let send = self.conn().await;
            if send.ready().await.is_err() {
                self.send = None;
                continue;
            }
            match send.send_request(req).await {
                Ok(rsp) => {
                    let status = rsp.status().as_u16();
                    let header = |n: &str| {
                        rsp.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let (name, proxy_error) = (header("x-testapp-name"), header("l5d-proxy-error"));
                    let _ = rsp.into_body().collect().await;
                    return Answer {
                        status,
                        name,
                        proxy_error,
                    };
                }
                Err(e) => panic!("request to the proxy failed: {e}"),
            }
        }
        panic!("cannot keep a connection to the proxy");
    }

    async fn get(&mut self, authority: &str, path: &str) -> Answer {
        self.request("GET", authority, path, Bytes::new()).await
    }
}

fn proxy_with(cp: &ControlPlane) -> Proxy {
    Proxy::start(ProxyEnv::new().set("WEFT_PROXY_DESTINATION_SVC_ADDR", cp.addr))
}

fn app(name: &str, latency_ms: u64) -> TestApp {
    TestApp::start(weft_testapp::ServerConfig {
        name: name.to_string(),
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    })
}

/// A testapp behind its own (server-side) proxy, as a meshed endpoint. The server proxy's
/// inbound `request_total` counts what reached the backend.
struct MeshedApp {
    app: TestApp,
    server: Proxy,
}

impl MeshedApp {
    fn start(name: &str) -> Self {
        let app = app(name, 0);
        let server = Proxy::start(ProxyEnv::new().app(app.addr));
        MeshedApp { app, server }
    }
    fn endpoint(&self) -> pb::Endpoint {
        meshed_endpoint(self.app.addr, self.server.inbound, "")
    }
    fn arrivals(&self) -> f64 {
        self.server
            .metric_sum("request_total", &["direction=\"inbound\""])
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn counter(proxy: &Proxy, name: &str, labels: &[&str]) -> f64 {
    proxy.metric_sum(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_get_succeeds_and_non_retryable_post_is_sent_once() {
    let cp = ControlPlane::start(CpState::default());
    let backend = MeshedApp::start("web");
    cp.state.set_endpoints(SVC, vec![backend.endpoint()]);
    let mut list = route("list", Some("GET"), "/api/list");
    list.retry = Some(retry_5xx(1, 0));
    let vote = route("vote", Some("POST"), "/api/vote");
    cp.state.set_policy(
        SVC,
        policy(SVC, pb::PolicySource::ServiceProfile, vec![list, vote]),
    );
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);

    // The testapp fails exactly every other request (error_rate=0.5 is deterministic).
    for _ in 0..50 {
        let a = c.get(SVC, "/api/list?error_rate=0.5").await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let retries = counter(&proxy, "route_retry_total", &["route=\"list\""]);
    assert!((20.0..=50.0).contains(&retries), "retries: {retries}");
    let arrived = backend.arrivals();
    assert_eq!(
        arrived,
        50.0 + retries,
        "every retry reached the backend once"
    );

    for _ in 0..10 {
        let a = c
            .request(
                "POST",
                SVC,
                "/api/vote?status=500",
                Bytes::from_static(b"x"),
            )
            .await;
        assert_eq!(a.status, 500);
    }
    assert_eq!(
        backend.arrivals(),
        arrived + 10.0,
        "POST on a non-retryable route: once each"
    );
    assert_eq!(
        counter(&proxy, "route_retry_total", &["route=\"vote\""]),
        0.0
    );
    assert_eq!(
        counter(
            &proxy,
            "route_response_total",
            &["route=\"vote\"", "classification=\"failure\""]
        ),
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_when_everything_fails() {
    let cp = ControlPlane::start(CpState::default());
    let backend = MeshedApp::start("web");
    cp.state.set_endpoints(SVC, vec![backend.endpoint()]);
    let mut all = route("all", None, "/");
    all.retry = Some(retry_5xx(3, 0));
    let mut p = policy(SVC, pb::PolicySource::ServiceProfile, vec![all]);
    p.retry_budget = Some(pb::RetryBudget {
        retry_ratio: 0.2,
        min_retries_per_second: 1,
        ttl_ms: 10_000,
    });
    cp.state.set_policy(SVC, p);
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);
    let requests = 200.0;
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(c.get(SVC, "/?status=503").await.status, 503);
    }
    let elapsed = started.elapsed();
    let retries = counter(&proxy, "route_retry_total", &[]);
    let bound = 0.2 * requests + 1.0 * 10.0;
    assert!(retries <= bound, "retries {retries} > budget {bound}");
    // The budget was used (not just retries switched off).
    if elapsed < Duration::from_secs(9) {
        assert!(retries >= bound - 2.0, "retries {retries}, budget {bound}");
    }
    let skipped = counter(
        &proxy,
        "route_retry_skipped_total",
        &["reason=\"budget_exhausted\""],
    );
    assert!(skipped >= requests - retries - 1.0, "skipped {skipped}");
    assert_eq!(
        backend.arrivals(),
        requests + retries,
        "load on the backend is bounded too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_up_to_64k_are_retried_larger_ones_never() {
    let cp = ControlPlane::start(CpState::default());
    let backend = MeshedApp::start("web");
    cp.state.set_endpoints(SVC, vec![backend.endpoint()]);
    let mut all = route("upload", None, "/");
    all.retry = Some(retry_5xx(1, 0));
    cp.state.set_policy(
        SVC,
        policy(SVC, pb::PolicySource::ServiceProfile, vec![all]),
    );
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);

    let before = backend.arrivals();
    let a = c
        .request(
            "POST",
            SVC,
            "/?status=503",
            Bytes::from(vec![7u8; 64 * 1024]),
        )
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(
        backend.arrivals(),
        before + 2.0,
        "64 KiB: first try + 1 retry"
    );

    let a = c
        .request(
            "POST",
            SVC,
            "/?status=503",
            Bytes::from(vec![7u8; 64 * 1024 + 1]),
        )
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(backend.arrivals(), before + 3.0, "64 KiB + 1: sent once");
    assert_eq!(
        counter(
            &proxy,
            "route_retry_skipped_total",
            &["reason=\"body_too_large\""]
        ),
        1.0
    );
}

/// A backend whose odd-numbered requests hang for 2 s and even ones answer at once.
async fn slow_every_other() -> SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let n = count.fetch_add(1, Ordering::Relaxed);
                    async move {
                        if n % 2 == 0 {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_are_retried_and_the_request_timeout_bounds_the_total() {
    let cp = ControlPlane::start(CpState::default());
    let flaky = slow_every_other().await;
    cp.state.set_endpoints(SVC, vec![endpoint(flaky)]);
    let mut r = route("flaky", None, "/flaky");
    r.retry = Some(retry_5xx(2, 200));
    let slow_app = app("slow", 3000);
    const SLOW: &str = "slow-svc.test:80";
    cp.state.set_endpoints(SLOW, vec![endpoint(slow_app.addr)]);
    let mut s = route("slow", None, "/");
    s.retry = Some(retry_5xx(10, 100));
    s.timeouts = Some(pb::Timeouts {
        request_ms: 500,
        response_ms: 0,
        idle_ms: 0,
    });
    cp.state
        .set_policy(SVC, policy(SVC, pb::PolicySource::ServiceProfile, vec![r]));
    cp.state.set_policy(
        SLOW,
        policy(SLOW, pb::PolicySource::ServiceProfile, vec![s]),
    );
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);

    for _ in 0..5 {
        let started = Instant::now();
        let a = c.get(SVC, "/flaky").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        counter(
            &proxy,
            "route_timeout_total",
            &["route=\"flaky\"", "kind=\"per_try\""]
        ),
        5.0
    );
    assert_eq!(
        counter(&proxy, "route_retry_total", &["route=\"flaky\""]),
        5.0
    );

    let started = Instant::now();
    let a = c.get(SLOW, "/").await;
    let took = started.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert_eq!(a.proxy_error, "request timeout");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert!(counter(&proxy, "route_retry_total", &["route=\"slow\""]) >= 2.0);
    assert_eq!(
        counter(
            &proxy,
            "route_timeout_total",
            &["route=\"slow\"", "kind=\"request\""]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_follows_weights_and_weight_changes_drop_nothing() {
    let cp = ControlPlane::start(CpState::default());
    let (a, b) = (app("a", 0), app("b", 0));
    cp.state.set_endpoints("a.test:80", vec![endpoint(a.addr)]);
    cp.state.set_endpoints("b.test:80", vec![endpoint(b.addr)]);
    let split = |wa, wb| {
        let mut p = policy(SVC, pb::PolicySource::Default, vec![]);
        p.backends = vec![
            pb::Backend {
                authority: "a.test:80".into(),
                weight: wa,
            },
            pb::Backend {
                authority: "b.test:80".into(),
                weight: wb,
            },
        ];
        p
    };
    cp.state.set_policy(SVC, split(900, 100));
    let proxy = proxy_with(&cp);

    async fn load(proxy: SocketAddr, workers: usize, per_worker: usize) -> Vec<Answer> {
        let mut tasks = Vec::new();
        for _ in 0..workers {
            tasks.push(tokio::spawn(async move {
                let mut c = Client::new(proxy);
                let mut out = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    out.push(c.get(SVC, "/").await);
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    }

    let answers = load(proxy.outbound, 8, 1250).await;
    assert_eq!(answers.len(), 10_000);
    assert!(answers.iter().all(|a| a.status == 200));
    let to_b = answers.iter().filter(|a| a.name == "b").count();
    assert!(
        (800..=1200).contains(&to_b),
        "b got {to_b} of 10000 (want 1000 ± 200)"
    );
    let per_backend = counter(
        &proxy,
        "route_backend_request_total",
        &["backend=\"b.test:80\""],
    );
    assert_eq!(per_backend, to_b as f64);

    // Move the weights while load runs: nothing fails.
    let running = tokio::spawn(load(proxy.outbound, 4, 500));
    for (wa, wb) in [(500, 500), (100, 900), (0, 1000)] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cp.state.set_policy(SVC, split(wa, wb));
    }
    let answers = running.await.unwrap();
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Weight 0 gets nothing.
    let answers = load(proxy.outbound, 2, 100).await;
    assert!(answers.iter().all(|a| a.name == "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_prefers_the_fast_endpoints() {
    let cp = ControlPlane::start(CpState::default());
    let apps = [app("fast1", 0), app("slow", 50), app("fast2", 0)];
    cp.state
        .set_endpoints(SVC, apps.iter().map(|a| endpoint(a.addr)).collect());
    cp.state
        .set_policy(SVC, policy(SVC, pb::PolicySource::Default, vec![]));
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);
    let mut slow = 0;
    for _ in 0..300 {
        let a = c.get(SVC, "/").await;
        assert_eq!(a.status, 200);
        if a.name == "slow" {
            slow += 1;
        }
    }
    // Uniform would be ~100.
    assert!(slow < 30, "the slow endpoint got {slow} of 300");
    let ready = counter(&proxy, "balancer_endpoints", &["endpoint_state=\"ready\""]);
    assert_eq!(ready, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_fails_nothing_and_proxies_resubscribe() {
    let state = CpState::default();
    let mut cp = ControlPlane::start(state.clone());
    let a = app("a", 0);
    state.set_endpoints(SVC, vec![endpoint(a.addr)]);
    state.set_policy(SVC, policy(SVC, pb::PolicySource::Default, vec![]));
    let proxy = proxy_with(&cp);
    let outbound = proxy.outbound;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut c = Client::new(outbound);
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let a = c.get(SVC, "/").await;
                if a.status == 200 {
                    ok += 1;
                } else {
                    failed.push(a);
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = cp.addr;
    tokio::task::spawn_blocking(move || cp.stop())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed, e.g. {:?}",
            failed.len(),
            failed[0]
        );
        total += ok;
    }
    assert!(total > 100, "only {total} requests");

    // Restarted with a new endpoint: the proxy resubscribes and uses it.
    let b = app("b", 0);
    state.set_endpoints(SVC, vec![endpoint(b.addr)]);
    let opened = state.opened("get");
    let _cp = tokio::task::spawn_blocking(move || ControlPlane::start_at(state, addr))
        .await
        .unwrap();
    let mut c = Client::new(proxy.outbound);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = c.get(SVC, "/").await;
        assert_eq!(a.status, 200);
        if a.name == "b" {
            break;
        }
        assert!(Instant::now() < deadline, "the proxy never resubscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(_cp.state.opened("get") > opened);
    assert!(counter(&proxy, "destination_reconnect_total", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_are_forwarded_and_empty_ones_fail_fast() {
    let cp = ControlPlane::start(CpState::default());
    let a = app("plain", 0);
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);
    // Unknown to the control plane: forwarded as before.
    let direct = a.addr.to_string();
    let ans = c.get(&direct, "/").await;
    assert_eq!((ans.status, ans.name.as_str()), (200, "plain"));

    // A service with no endpoints: requests wait, then fail fast with 503.
    const EMPTY: &str = "empty-svc.test:80";
    cp.state.set_endpoints(EMPTY, vec![]);
    let mut p = policy(EMPTY, pb::PolicySource::Default, vec![]);
    p.fail_fast_ms = 300;
    cp.state.set_policy(EMPTY, p);
    let started = Instant::now();
    let ans = c.get(EMPTY, "/").await;
    assert_eq!(ans.status, 503);
    assert_eq!(ans.proxy_error, "fail fast");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(c.get(EMPTY, "/").await.status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "already failing fast"
    );

    // An endpoint appears: served at once.
    cp.state.set_endpoints(EMPTY, vec![endpoint(a.addr)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.get(EMPTY, "/").await.status != 200 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_misses_are_404_and_metrics_pass_promtool() {
    let cp = ControlPlane::start(CpState::default());
    let a = app("web", 0);
    cp.state.set_endpoints(SVC, vec![endpoint(a.addr)]);
    cp.state.set_policy(
        SVC,
        policy(
            SVC,
            pb::PolicySource::HttpRoute,
            vec![route("api", None, "/api")],
        ),
    );
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);
    assert_eq!(c.get(SVC, "/api/list").await.status, 200);
    let miss = c.get(SVC, "/apis").await;
    assert_eq!((miss.status, miss.proxy_error.as_str()), (404, "no route"));
    let text = proxy.metrics();
    assert_eq!(
        metric_sum(
            &text,
            "route_request_total",
            &["route=\"api\"", "dst=\"web-svc.test:80\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "route_response_total",
            &[
                "route=\"api\"",
                "classification=\"success\"",
                "status_code=\"200\""
            ]
        ),
        1.0
    );
    assert_promtool_clean(&text);
    let _ = StatusCode::OK;
}

/// `promtool check metrics` finds nothing but the `_ms` unit names Linkerd uses.
fn assert_promtool_clean(text: &str) {
    support::require_tool("promtool");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.ends_with("metric names should not contain abbreviated units"))
        .collect();
    assert!(findings.is_empty(), "promtool: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_accrual_ejects_a_failing_endpoint_then_probes_it() {
    let cp = ControlPlane::start(CpState::default());
    // The failing endpoint answers at once, the healthy one in 5 ms: whenever the failing one
    // is available, P2C prefers it, so its ejection (not its latency) is what keeps it idle.
    let good = app("good", 5);
    let bad = TestApp::start(weft_testapp::ServerConfig {
        name: "bad".to_string(),
        status: 500,
        ..Default::default()
    });
    cp.state
        .set_endpoints(SVC, vec![endpoint(good.addr), endpoint(bad.addr)]);
    let mut p = policy(SVC, pb::PolicySource::Default, vec![]);
    p.failure_accrual = Some(pb::FailureAccrual {
        consecutive_failures: 3,
        min_backoff_ms: 600,
        max_backoff_ms: 60_000,
    });
    cp.state.set_policy(SVC, p);
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);

    // Sequential requests, each with the time its answer came back.
    let mut answers: Vec<(Instant, String)> = Vec::new();
    let mut ejected_at = None;
    let mut probe_at = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let a = c.get(SVC, "/").await;
        let now = Instant::now();
        match a.name.as_str() {
            "good" => assert_eq!(a.status, 200, "{a:?}"),
            "bad" => assert_eq!(a.status, 500, "{a:?}"),
            _ => panic!("{a:?}"),
        }
        let bad_so_far =
            answers.iter().filter(|(_, n)| n == "bad").count() + usize::from(a.name == "bad");
        if a.name == "bad" {
            match (bad_so_far, ejected_at, probe_at) {
                (3, None, _) => ejected_at = Some(now),
                (4, Some(_), None) => probe_at = Some(now),
                _ => {}
            }
        }
        answers.push((now, a.name));
        if probe_at.is_some_and(|t| now >= t + Duration::from_millis(1100)) {
            break;
        }
        if ejected_at.is_some() && probe_at.is_none() && answers.len() % 20 == 0 {
            // While ejected, the balancer counts it as pending.
            let pending = counter(
                &proxy,
                "balancer_endpoints",
                &["endpoint_state=\"pending\""],
            );
            assert_eq!(pending, 1.0);
        }
    }
    let ejected_at = ejected_at.expect("the failing endpoint was never ejected");
    let probe_at = probe_at.expect("the failing endpoint was never probed");
    let bad_between = |from: Instant, to: Instant| {
        answers
            .iter()
            .filter(|(t, n)| n == "bad" && *t > from && *t < to)
            .count()
    };
    let before = answers.iter().take_while(|(t, _)| *t <= ejected_at).count();
    assert!(before <= 10, "ejected after {before} requests: {answers:?}");
    // No request during the penalty (600 ms, minus the time the answer took to come back)…
    let penalty = probe_at - ejected_at;
    assert!(
        penalty >= Duration::from_millis(550),
        "probed {penalty:?} after the ejection"
    );
    assert_eq!(bad_between(ejected_at, probe_at), 0);
    // …then one probe, which failed: the penalty doubles (1.2 s) and nothing else goes there.
    let after_probe = bad_between(probe_at, probe_at + Duration::from_millis(1100));
    assert_eq!(after_probe, 0, "{answers:?}");
    let served_by_good = answers.iter().filter(|(_, n)| n == "good").count();
    assert!(
        served_by_good > 50,
        "the healthy endpoint served {served_by_good}"
    );
    assert_eq!(answers.len() - served_by_good, 4, "3 failures and 1 probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_discovered_endpoints_carry_dst_labels() {
    let cp = ControlPlane::start(CpState::default());
    let a = app("web", 0);
    cp.state
        .set_metric_labels(SVC, &[("namespace", "test"), ("service", "web-svc")]);
    let mut ep = endpoint(a.addr);
    ep.metric_labels = [
        ("pod", "web-7d9f-abcde"),
        ("external_workload", "web-1"),
        ("deployment", "web"),
        ("serviceaccount", "web-sa"),
        ("pod_template_hash", "7d9f"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    cp.state.set_endpoints(SVC, vec![ep]);
    cp.state
        .set_policy(SVC, policy(SVC, pb::PolicySource::Default, vec![]));
    let proxy = proxy_with(&cp);
    let mut c = Client::new(proxy.outbound);
    for _ in 0..3 {
        assert_eq!(c.get(SVC, "/").await.status, 200);
    }
    assert_eq!(c.get(SVC, "/?status=503").await.status, 503);

    let text = proxy.metrics();
    let target = format!("target_addr=\"{}\"", a.addr);
    let dst = [
        "dst_namespace=\"test\"",
        "dst_service=\"web-svc\"",
        "dst_pod=\"web-7d9f-abcde\"",
        "dst_external_workload=\"web-1\"",
        "dst_serviceaccount=\"web-sa\"",
        "dst_deployment=\"web\"",
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        let mut labels = vec!["direction=\"outbound\"".to_string(), target.clone()];
        labels.extend(dst.iter().chain(extra).map(|l| l.to_string()));
        labels
    };
    assert_eq!(
        metric_sum(&text, "request_total", &refs(&with(&[]))),
        4.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "response_total",
            &refs(&with(&[
                "status_code=\"200\"",
                "classification=\"success\""
            ]))
        ),
        3.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "response_total",
            &refs(&with(&[
                "status_code=\"503\"",
                "classification=\"failure\""
            ]))
        ),
        1.0
    );
    assert_eq!(
        metric_sum(&text, "response_latency_ms_count", &refs(&with(&[]))),
        4.0
    );
    assert!(
        !text.contains("pod_template_hash"),
        "only the known keys are exported"
    );
    // Route families stay per route: the endpoint's labels are not multiplied into them.
    let route_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("route_")).collect();
    assert!(!route_lines.is_empty());
    assert!(
        route_lines.iter().all(|l| !l.contains("dst_pod")),
        "{route_lines:?}"
    );
    assert_promtool_clean(&text);
}

/// One request's answer and when it was sent and answered.
struct Timed {
    sent: Instant,
    done: Instant,
    answer: Answer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_removal_under_load_fails_no_in_flight_request() {
    let cp = ControlPlane::start(CpState::default());
    let (a, b) = (app("a", 0), app("b", 0));
    cp.state
        .set_endpoints(SVC, vec![endpoint(a.addr), endpoint(b.addr)]);
    cp.state
        .set_policy(SVC, policy(SVC, pb::PolicySource::Default, vec![]));
    let proxy = proxy_with(&cp);
    let outbound = proxy.outbound;

    // Every request takes 300 ms at the app, and the 8 workers start staggered over those
    // 300 ms (not in lockstep), so both endpoints have requests in flight at every moment.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..8u64 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 37)).await;
            let mut c = Client::new(outbound);
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answer = c.get(SVC, "/?latency_ms=300").await;
                out.push(Timed {
                    sent,
                    done: Instant::now(),
                    answer,
                });
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let removed_at = Instant::now();
    cp.state.set_endpoints(SVC, vec![endpoint(a.addr)]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = app("c", 0);
    let added_at = Instant::now();
    cp.state
        .set_endpoints(SVC, vec![endpoint(a.addr), endpoint(c.addr)]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }

    let failed: Vec<&Answer> = all
        .iter()
        .map(|t| &t.answer)
        .filter(|a| a.status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed, e.g. {:?}",
        failed.len(),
        all.len(),
        failed.first()
    );
    let named = |name: &str, from: Instant, to: Instant| {
        all.iter()
            .filter(|t| t.answer.name == name && t.sent >= from && t.sent < to)
            .count()
    };
    // Requests to `b` were in flight when it was removed (and stayed in flight well past the
    // moment the proxy applied the removal), and they were answered by `b`.
    let in_flight_to_b = all
        .iter()
        .filter(|t| {
            t.answer.name == "b"
                && t.sent < removed_at
                && t.done > removed_at + Duration::from_millis(100)
        })
        .count();
    assert!(
        in_flight_to_b >= 1,
        "no request was in flight to the removed endpoint"
    );
    // Once the removal reached the proxy (well within 200 ms), only `a` serves.
    let settle = Duration::from_millis(200);
    let far = added_at + Duration::from_secs(3600);
    assert_eq!(
        named("b", removed_at + settle, far),
        0,
        "the removed endpoint still got requests"
    );
    let only_a = named("a", removed_at + settle, added_at);
    assert!(only_a >= 8, "a served {only_a} after the removal");
    assert_eq!(
        all.iter()
            .filter(|t| t.sent >= removed_at + settle && t.sent < added_at)
            .count(),
        only_a,
        "something other than a answered between removal and addition"
    );
    // The new endpoint takes its share.
    let to_c = named("c", added_at + settle, far);
    assert!(to_c >= 2, "the new endpoint got {to_c} requests");
    let after_add = all.iter().filter(|t| t.sent >= added_at + settle).count();
    assert_eq!(named("a", added_at + settle, far) + to_c, after_add);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_watches_are_shared_and_dropped_when_idle() {
    let cp = ControlPlane::start(CpState::default());
    let a = app("web", 0);
    cp.state.set_endpoints(SVC, vec![endpoint(a.addr)]);
    cp.state
        .set_policy(SVC, policy(SVC, pb::PolicySource::Default, vec![]));
    let idle = Duration::from_secs(1);
    let proxy = Proxy::start(
        ProxyEnv::new()
            .set("WEFT_PROXY_DESTINATION_SVC_ADDR", cp.addr)
            .set("WEFT_PROXY_DESTINATION_IDLE_TIMEOUT", "1s"),
    );
    let state = &cp.state;
    let watches = |f: fn(&CpState, &'static str, &str) -> usize| {
        (f(state, "policy", SVC), f(state, "get", SVC))
    };
    assert_eq!(watches(CpState::opened_for), (0, 0));

    // 24 concurrent first requests, each on its own connection, overlapping for 200 ms.
    let outbound = proxy.outbound;
    let barrier = Arc::new(tokio::sync::Barrier::new(24));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(outbound);
            c.conn().await;
            barrier.wait().await;
            c.get(SVC, "/?latency_ms=200").await
        }));
    }
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!((a.status, a.name.as_str()), (200, "web"), "{a:?}");
    }
    assert_eq!(
        watches(CpState::opened_for),
        (1, 1),
        "one GetPolicy and one Get for the authority, shared by all requests"
    );
    assert_eq!(watches(CpState::open_now), (1, 1));

    // Idle: both watches are closed after the idle timeout.
    let idle_from = Instant::now();
    let deadline = idle_from + idle + Duration::from_secs(15);
    while watches(CpState::open_now) != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "watches still open after {:?} idle: {:?}",
            idle_from.elapsed(),
            watches(CpState::open_now)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idle_from.elapsed() >= idle / 2,
        "closed after only {:?}",
        idle_from.elapsed()
    );
    assert_eq!(watches(CpState::opened_for), (1, 1), "nothing reopened");

    // A new request opens them again and is served.
    let mut c = Client::new(proxy.outbound);
    let a = c.get(SVC, "/").await;
    assert_eq!((a.status, a.name.as_str()), (200, "web"), "{a:?}");
    assert_eq!(watches(CpState::opened_for), (2, 2));
    assert_eq!(watches(CpState::open_now), (1, 1));
}
