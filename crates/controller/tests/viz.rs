//! The viz component against real HTTP servers that serve proxy-shaped Prometheus text
//! changing over time (the numbers are known, so stat / edges / routes can be checked), a real
//! `weft-proxy` process, and a real mTLS tap server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_controller::viz::{self, VizArgs};
use weft_store::MemoryStore;

/// Parses manifests; panics on any problem.
fn objects(yaml: &str) -> Vec<weft_model::Object> {
    let (objects, errors) = weft_model::parse::parse_documents("test.yaml", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

/// An ExternalWorkload in namespace `e` on 127.0.0.1 whose proxy admin port is `admin_port`.
fn workload(
    name: &str,
    deployment: &str,
    identity: &str,
    admin_port: u16,
    annotation: &str,
) -> String {
    format!(
        "---
apiVersion: workload.linkerd.io/v1beta1
kind: ExternalWorkload
metadata:
  name: {name}
  namespace: e
  labels: {{app: {deployment}, weft.io/deployment: {deployment}}}
  annotations:
    config.linkerd.io/proxy-admin-port: \"{admin_port}\"
    {annotation}
spec:
  meshTLS: {{identity: {identity}, serverName: {identity}}}
  workloadIPs: [{{ip: 127.0.0.1}}]
  ports: [{{port: 8080, name: http}}]
"
    )
}

fn service(name: &str, app: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: e}}
spec: {{selector: {{app: {app}}}, ports: [{{port: 80, targetPort: 8080}}]}}
"
    )
}

/// `GET path` on the viz API: status and JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: viz\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

type Render = Box<dyn Fn(f64) -> String + Send + Sync>;

/// An HTTP server answering `/metrics` with `render(seconds since start)`.
struct FakeProxy {
    addr: SocketAddr,
    render: Arc<Mutex<Render>>,
}

impl FakeProxy {
    async fn start(render: impl Fn(f64) -> String + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let render: Arc<Mutex<Render>> = Arc::new(Mutex::new(Box::new(render)));
        let r = render.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let r = r.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let body = (r.lock().unwrap())(start.elapsed().as_secs_f64());
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, render }
    }

    fn set(&self, render: impl Fn(f64) -> String + Send + Sync + 'static) {
        *self.render.lock().unwrap() = Box::new(render);
    }
}

const WEB_ID: &str = "web.e.serviceaccount.identity.weft.cluster.local";
const BOT_ID: &str = "vote-bot.e.serviceaccount.identity.weft.cluster.local";

/// web's proxy: 10 rps inbound from vote-bot over mTLS, 90 % success; latency half in (1, 5]
/// ms and half in (5, 10] ms; 3 open connections; plus 1 rps from an unmeshed client.
fn web_metrics(t: f64) -> String {
    let l = format!(
        "direction=\"inbound\",authority=\"web-svc.e.svc.cluster.local:80\",target_addr=\"127.0.0.1:8080\",tls=\"true\",client_id=\"{BOT_ID}\""
    );
    format!(
        "# HELP response_total Total count of HTTP responses.\n\
         # TYPE response_total counter\n\
         response_total{{{l},status_code=\"200\",classification=\"success\"}} {s}\n\
         response_total{{{l},status_code=\"500\",classification=\"failure\"}} {f}\n\
         response_total{{direction=\"inbound\",authority=\"web-svc.e.svc.cluster.local:80\",target_addr=\"127.0.0.1:8080\",tls=\"no_identity\",no_tls_reason=\"no_tls_from_remote\",status_code=\"200\",classification=\"success\"}} {u}\n\
         # TYPE response_latency_ms histogram\n\
         response_latency_ms_bucket{{{l},status_code=\"200\",le=\"1\"}} 0\n\
         response_latency_ms_bucket{{{l},status_code=\"200\",le=\"5\"}} {h}\n\
         response_latency_ms_bucket{{{l},status_code=\"200\",le=\"10\"}} {a}\n\
         response_latency_ms_bucket{{{l},status_code=\"200\",le=\"+Inf\"}} {a}\n\
         response_latency_ms_sum{{{l},status_code=\"200\"}} 1\n\
         response_latency_ms_count{{{l},status_code=\"200\"}} {a}\n\
         # TYPE tcp_open_connections gauge\n\
         tcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"127.0.0.1:4143\",tls=\"true\",client_id=\"{BOT_ID}\"}} 3\n\
         process_start_time_seconds 1700000000\n",
        s = 9.0 * t,
        f = 1.0 * t,
        u = 1.0 * t,
        h = 5.0 * t,
        a = 10.0 * t,
    )
}

/// vote-bot's proxy: 4 rps to web over mTLS (all succeed), 2 rps to voting in plain text
/// (voting has no proxy); route `GET /api/list` of web-svc: 3 ok + 1 failed per second,
/// latency half ≤ 10 ms, half in (10, 20]; 0.5 retries and 0.25 budget exhaustions per second.
fn bot_metrics(t: f64) -> String {
    let web = format!(
        "direction=\"outbound\",authority=\"web-svc.e.svc.cluster.local:80\",target_addr=\"127.0.0.1:4143\",tls=\"true\",server_id=\"{WEB_ID}\",dst_namespace=\"e\",dst_service=\"web-svc\",dst_pod=\"web-0\",dst_external_workload=\"web-0\",dst_serviceaccount=\"web\",dst_deployment=\"web\""
    );
    let voting = "direction=\"outbound\",authority=\"voting-svc.e.svc.cluster.local:80\",target_addr=\"127.0.0.1:8082\",tls=\"no_identity\",no_tls_reason=\"not_meshed\",dst_namespace=\"e\",dst_service=\"voting-svc\",dst_pod=\"voting-0\",dst_deployment=\"voting\"";
    let route =
        "direction=\"outbound\",dst=\"web-svc.e.svc.cluster.local:80\",route=\"GET /api/list\"";
    format!(
        "response_total{{{web},status_code=\"200\",classification=\"success\"}} {w}\n\
         response_latency_ms_bucket{{{web},status_code=\"200\",le=\"10\"}} {w}\n\
         response_latency_ms_bucket{{{web},status_code=\"200\",le=\"+Inf\"}} {w}\n\
         response_total{{{voting},status_code=\"200\",classification=\"success\"}} {v}\n\
         tcp_open_connections{{direction=\"outbound\",peer=\"dst\",target_addr=\"127.0.0.1:4143\",tls=\"true\",server_id=\"{WEB_ID}\"}} 2\n\
         route_request_total{{{route}}} {r}\n\
         route_response_total{{{route},status_code=\"200\",classification=\"success\"}} {ok}\n\
         route_response_total{{{route},status_code=\"503\",classification=\"failure\",error=\"unavailable\"}} {bad}\n\
         route_response_latency_ms_bucket{{{route},status_code=\"200\",le=\"10\"}} {half}\n\
         route_response_latency_ms_bucket{{{route},status_code=\"200\",le=\"20\"}} {r}\n\
         route_response_latency_ms_bucket{{{route},status_code=\"200\",le=\"+Inf\"}} {r}\n\
         route_retry_total{{{route}}} {retries}\n\
         route_retry_skipped_total{{{route},reason=\"budget_exhausted\"}} {exhausted}\n\
         route_retry_skipped_total{{{route},reason=\"limit_reached\"}} {exhausted}\n",
        w = 4.0 * t,
        v = 2.0 * t,
        r = 4.0 * t,
        ok = 3.0 * t,
        bad = 1.0 * t,
        half = 2.0 * t,
        retries = 0.5 * t,
        exhausted = 0.25 * t,
    )
}

struct Mesh {
    viz: viz::Running,
    _proxies: Vec<FakeProxy>,
    reset: FakeProxy,
}

async fn mesh() -> Mesh {
    let web = FakeProxy::start(web_metrics).await;
    let bot = FakeProxy::start(bot_metrics).await;
    let broken = FakeProxy::start(|_| "response_total{direction=\"inbound\" 1\n".to_owned()).await;
    let reset = FakeProxy::start(|t| {
        format!(
            "response_total{{direction=\"inbound\",tls=\"true\",classification=\"success\"}} {}\n",
            10.0 * t
        )
    })
    .await;
    // A port with nothing listening.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store = MemoryStore::with_objects(objects(&format!(
        "{}{}{}{}{}{}{}{}",
        workload("web-0", "web", WEB_ID, web.addr.port(), ""),
        workload("vote-bot-0", "vote-bot", BOT_ID, bot.addr.port(), ""),
        workload(
            "voting-0",
            "voting",
            "voting.e.serviceaccount.identity.weft.cluster.local",
            1,
            "linkerd.io/inject: disabled"
        ),
        workload(
            "broken-0",
            "broken",
            "broken.e.serviceaccount.identity.weft.cluster.local",
            broken.addr.port(),
            ""
        ),
        workload(
            "gone-0",
            "gone",
            "gone.e.serviceaccount.identity.weft.cluster.local",
            gone,
            ""
        ),
        workload(
            "reset-0",
            "reset",
            "reset.e.serviceaccount.identity.weft.cluster.local",
            reset.addr.port(),
            ""
        ),
        service("web-svc", "web"),
        service("voting-svc", "voting"),
    )));
    let args = VizArgs {
        viz_listen: "127.0.0.1:0".parse().unwrap(),
        viz_scrape_interval: Duration::from_millis(100),
        viz_retention: Duration::from_secs(60),
    };
    let viz = viz::start(&args, Arc::new(store), None).await.unwrap();
    // Wait for a few scrapes of every healthy target.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, t) = get(viz.addr(), "/api/targets").await;
        let ok = t["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["up"] == true && t["samples"].as_u64().unwrap_or(0) >= 10)
            .count();
        if ok >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "targets never came up: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Mesh {
        viz,
        _proxies: vec![web, bot, broken],
        reset,
    }
}

fn approx(v: &Value, want: f64, tolerance: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!(
        (got - want).abs() <= tolerance * want.abs().max(1.0),
        "got {got}, want {want} ± {tolerance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_edges_and_routes_have_the_right_numbers() {
    let m = mesh().await;
    let addr = m.viz.addr();

    // Inbound golden metrics of web.
    let (status, doc) = get(addr, "/api/stat?resource=deploy/web&namespace=e&window=1s").await;
    assert_eq!(status, 200, "{doc}");
    let row = &doc["rows"][0];
    assert_eq!(row["name"], "web");
    assert_eq!(
        (row["meshed"].as_u64(), row["total"].as_u64()),
        (Some(1), Some(1))
    );
    // 9 + 1 rps from vote-bot and 1 rps unmeshed: 11 rps, 10 of them successes.
    approx(&row["rps"], 11.0, 0.1);
    approx(&row["success_rate"], 10.0 / 11.0, 0.01);
    // Latency: half of 10 rps at ≤ 5 ms, half in (5, 10].
    approx(&row["latency_ms_p50"], 5.0, 0.02);
    approx(&row["latency_ms_p95"], 9.5, 0.02);
    approx(&row["latency_ms_p99"], 9.9, 0.02);
    assert_eq!(row["tcp_connections"], 3.0);

    // Every deployment: voting has no proxy (0/1); broken and gone are down (0/1).
    let (_, doc) = get(addr, "/api/stat?resource=deploy&namespace=e").await;
    let rows = doc["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["broken", "gone", "reset", "vote-bot", "voting", "web"]
    );
    let voting = &rows[4];
    assert_eq!(
        (voting["meshed"].as_u64(), voting["total"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(
        voting["success_rate"].is_null() && voting["latency_ms_p50"].is_null(),
        "{voting}"
    );
    assert_eq!(
        rows[0]["meshed"], 0,
        "a proxy that cannot be scraped is not counted as ready"
    );

    // From vote-bot's side: only what it sent to web.
    let (_, doc) = get(
        addr,
        "/api/stat?resource=deploy/web&namespace=e&from=deploy/vote-bot&window=2s",
    )
    .await;
    let row = &doc["rows"][0];
    approx(&row["rps"], 4.0, 0.1);
    approx(&row["success_rate"], 1.0, 0.0001);
    approx(&row["latency_ms_p99"], 9.9, 0.02);
    assert_eq!(
        row["tcp_connections"], 2.0,
        "outbound connections to web's address"
    );

    // A service has no proxy: its clients' outbound metrics.
    let (_, doc) = get(
        addr,
        "/api/stat?resource=svc/voting-svc&namespace=e&window=2s",
    )
    .await;
    approx(&doc["rows"][0]["rps"], 2.0, 0.1);

    // Edges: mTLS to web, plain text to voting (not meshed), an unmeshed client of web.
    let (_, doc) = get(addr, "/api/edges?resource=deploy&namespace=e").await;
    let edges: Vec<(String, String, bool, String)> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["src"].as_str().unwrap().to_owned(),
                r["dst"].as_str().unwrap().to_owned(),
                r["secured"].as_bool().unwrap(),
                r["no_tls_reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            (
                "unmeshed".into(),
                "web".into(),
                false,
                "no_tls_from_remote".into()
            ),
            (
                "vote-bot".into(),
                "voting".into(),
                false,
                "not_meshed".into()
            ),
            ("vote-bot".into(), "web".into(), true, String::new()),
        ],
        "{doc}"
    );
    let secured = &doc["rows"][2];
    assert_eq!(secured["client_id"], BOT_ID);
    assert_eq!(secured["server_id"], WEB_ID);

    // Routes of the requests sent to web (web-svc), measured by vote-bot.
    let (_, doc) = get(
        addr,
        "/api/routes?resource=deploy/web&namespace=e&window=2s",
    )
    .await;
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{doc}");
    let r = &rows[0];
    assert_eq!(
        (r["route"].as_str(), r["service"].as_str()),
        (Some("GET /api/list"), Some("web-svc"))
    );
    approx(&r["rps"], 4.0, 0.1);
    approx(&r["success_rate"], 0.75, 0.001);
    approx(&r["latency_ms_p50"], 10.0, 0.02);
    approx(&r["latency_ms_p95"], 19.0, 0.02);
    let seconds = r["requests"].as_f64().unwrap() / 4.0;
    approx(&r["retries"], 0.5 * seconds, 0.02);
    approx(&r["budget_exhausted"], 0.25 * seconds, 0.02);
    // The same from vote-bot to svc/web-svc; nothing from web to it.
    let (_, doc) = get(
        addr,
        "/api/routes?resource=deploy/vote-bot&namespace=e&to=svc/web-svc",
    )
    .await;
    assert_eq!(doc["rows"].as_array().unwrap().len(), 1);
    let (_, doc) = get(
        addr,
        "/api/routes?resource=deploy/web&namespace=e&to=svc/web-svc",
    )
    .await;
    assert_eq!(doc["rows"].as_array().unwrap().len(), 0);

    // The component's own metrics.
    let mut enc = weft_controller::prom::Encoder::new();
    m.viz.telemetry().encode_metrics(&mut enc);
    let text = enc.finish();
    assert!(
        text.contains("viz_scrape_errors_total{reason=\"parse\"}"),
        "{text}"
    );
    assert!(text.contains("viz_scrape_targets 5\n"), "{text}");
    m.viz.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_counter_resets_and_broken_targets() {
    let m = mesh().await;
    let addr = m.viz.addr();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A window longer than the data reaches back to the oldest sample.
    let requests = |doc: &Value| doc["rows"][0]["requests"].as_f64().unwrap();
    let (_, short) = get(
        addr,
        "/api/stat?resource=deploy/reset&namespace=e&window=1s",
    )
    .await;
    let (_, long) = get(
        addr,
        "/api/stat?resource=deploy/reset&namespace=e&window=1h",
    )
    .await;
    approx(&short["rows"][0]["rps"], 10.0, 0.1);
    approx(&long["rows"][0]["rps"], 10.0, 0.1);
    assert!(requests(&short) < 13.0, "{short}");
    assert!(requests(&long) > 15.0, "{long}");

    // The proxy restarts: its counter starts again from zero.
    let restarted = Instant::now();
    m.reset.set(move |_| {
        format!(
            "response_total{{direction=\"inbound\",tls=\"true\",classification=\"success\"}} {}\n",
            10.0 * restarted.elapsed().as_secs_f64()
        )
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, doc) = get(
        addr,
        "/api/stat?resource=deploy/reset&namespace=e&window=2s",
    )
    .await;
    let row = &doc["rows"][0];
    // Never negative, and no spike: the increase across the reset counts from zero.
    approx(&row["rps"], 10.0, 0.15);

    // Garbage and unreachable targets are reported, the others keep working.
    let (_, doc) = get(addr, "/api/targets").await;
    let targets = doc["targets"].as_array().unwrap();
    let find = |pod: &str| targets.iter().find(|t| t["pod"] == pod).unwrap().clone();
    let broken = find("broken-0");
    assert_eq!(broken["up"], false);
    assert!(
        broken["last_error"]
            .as_str()
            .unwrap()
            .starts_with("bad metrics text: line 1"),
        "{broken}"
    );
    let gone = find("gone-0");
    assert_eq!(gone["up"], false);
    assert!(
        gone["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connect to 127.0.0.1:"),
        "{gone}"
    );
    assert_eq!(find("web-0")["up"], true);
    assert!(
        targets.iter().all(|t| t["pod"] != "voting-0"),
        "no proxy, no target"
    );
    m.viz.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_parameter() {
    let store = MemoryStore::with_objects(objects(&workload("web-0", "web", WEB_ID, 1, "")));
    let args = VizArgs {
        viz_listen: "127.0.0.1:0".parse().unwrap(),
        viz_scrape_interval: Duration::from_secs(2),
        viz_retention: Duration::from_secs(600),
    };
    let viz = viz::start(&args, Arc::new(store), None).await.unwrap();
    let addr = viz.addr();
    for (path, status, prefix) in [
        ("/api/stat", 400, "resource: required"),
        ("/api/stat?resource=cronjob/x", 400, "resource: "),
        ("/api/stat?resource=deploy&window=5", 400, "window: "),
        (
            "/api/stat?resource=deploy&namespace=Not_A_Namespace",
            400,
            "namespace: ",
        ),
        ("/api/stat?resource=deploy&from=deploy", 400, "from: "),
        (
            "/api/stat?resource=deploy&bogus=1",
            400,
            "bogus: unknown parameter",
        ),
        ("/api/edges?resource=deploy/web", 400, "resource: "),
        ("/api/edges?resource=svc", 400, "resource: "),
        (
            "/api/tap?resource=deploy/web&namespace=e&max_rps=-1",
            400,
            "max_rps: ",
        ),
        (
            "/api/tap?resource=deploy/web&namespace=e&path=api",
            400,
            "path: ",
        ),
        (
            "/api/stat?resource=deploy/nope&namespace=e",
            404,
            "deployment \"nope\" not found",
        ),
        (
            "/api/tap?resource=deploy/web&namespace=e",
            503,
            "tap is not configured",
        ),
        ("/api/nope", 404, "no such endpoint"),
    ] {
        let (got, doc) = get(addr, path).await;
        assert_eq!(got, status, "{path}: {doc}");
        let message = doc["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(prefix),
            "{path}: {message:?} should start with {prefix:?}"
        );
    }
    // Not GET.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /api/stat HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.0 405"), "{buf}");
    // Bad durations on the command line name the flag; retention is checked.
    let mut bad = args.clone();
    bad.viz_retention = Duration::from_secs(1);
    let err = viz::start(&bad, Arc::new(MemoryStore::new()), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("--viz-retention 1s"), "{err}");
    viz.shutdown().await;
}

/// Builds the workspace's `weft-proxy` (once) with the tests' profile and target directory.
fn proxy_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .args(["build", "-q", "-p", "weft-proxy", "--bin", "weft-proxy"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "building weft-proxy failed"
            );
            dir.join("weft-proxy")
        })
        .clone()
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `weft-proxy` on its own loopback address with the standard ports: the viz component
/// scrapes its /metrics and taps it over mTLS with its own leaf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_and_taps_a_real_proxy() {
    use weft_controller::test_util::{TestPki, TOKEN_KEY};
    use weft_controller::viz::source::{Query, Selector};
    use weft_controller::viz::{MetricsSource, TapIdentity};

    let pki = TestPki::new();
    let identityd = pki.start().await;
    let app_id = "app.e.serviceaccount.identity.weft.cluster.local";
    let viz_id = "viz.weft.serviceaccount.identity.weft.cluster.local";
    let token = pki.dir.write(
        "app.token",
        weft_controller::identity::mint_token(TOKEN_KEY.as_bytes(), app_id),
    );
    let ip = format!("127.93.{}.1", std::process::id() % 250);
    // The application: any HTTP server.
    let app = FakeProxy::start(|_| "hello\n".to_owned()).await;
    let log = std::fs::File::create(pki.dir.path("proxy.log")).unwrap();
    let _proxy = Child(
        std::process::Command::new(proxy_bin())
            .env_clear()
            .env("WEFT_PROXY_OUTBOUND_LISTEN_ADDR", format!("{ip}:4140"))
            .env("WEFT_PROXY_INBOUND_LISTEN_ADDR", format!("{ip}:4143"))
            .env("WEFT_PROXY_ADMIN_LISTEN_ADDR", format!("{ip}:4191"))
            .env("WEFT_PROXY_TAP_LISTEN_ADDR", format!("{ip}:4190"))
            .env("WEFT_PROXY_TAP_SVC_NAME", viz_id)
            .env("WEFT_PROXY_OUTBOUND_BIND_IP", &ip)
            .env("WEFT_PROXY_INBOUND_APP_ADDR", app.addr.to_string())
            .env("WEFT_PROXY_IDENTITY_NAME", app_id)
            .env("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", pki.anchors_path())
            .env(
                "WEFT_PROXY_IDENTITY_SVC_ADDR",
                identityd.grpc_addr().to_string(),
            )
            .env("WEFT_PROXY_IDENTITY_TOKEN_FILE", &token)
            .env("WEFT_PROXY_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let manifest = workload("app-0", "app", app_id, 4191, "").replace("127.0.0.1", &ip);
    let store = MemoryStore::with_objects(objects(&manifest));
    let args = VizArgs {
        viz_listen: "127.0.0.1:0".parse().unwrap(),
        viz_scrape_interval: Duration::from_millis(200),
        viz_retention: Duration::from_secs(60),
    };
    let tap = TapIdentity {
        credentials: identityd.credentials(),
        identity: viz_id.to_owned(),
    };
    let viz = viz::start(&args, Arc::new(store), Some(tap)).await.unwrap();
    let log_text = || std::fs::read_to_string(pki.dir.path("proxy.log")).unwrap_or_default();

    // Scraped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, t) = get(viz.addr(), "/api/targets").await;
        if t["targets"][0]["up"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never scraped: {t}\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Tap: open the stream, then send requests through the proxy until one shows up.
    let mut tap = TcpStream::connect(viz.addr()).await.unwrap();
    tap.write_all(b"GET /api/tap?resource=deploy/app&namespace=e&path=/hello HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = tap.read(&mut chunk).await {
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let _ = lines_tx.send(String::from_utf8_lossy(&line).trim().to_owned());
            }
        }
    });
    let target = format!("http://{}/hello", app.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let req = loop {
        let outbound: SocketAddr = format!("{ip}:4140").parse().unwrap();
        if let Ok(mut s) = TcpStream::connect(outbound).await {
            let _ = s
                .write_all(
                    format!(
                        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                        app.addr
                    )
                    .as_bytes(),
                )
                .await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
        }
        let mut found = None;
        while let Ok(line) = lines_rx.try_recv() {
            if line.starts_with('{') {
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_ne!(v["kind"], "error", "{v}\n{}", log_text());
                if v["kind"] == "req" {
                    found = Some(v);
                }
            }
        }
        if let Some(v) = found {
            break v;
        }
        assert!(Instant::now() < deadline, "no tap event\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(req["pod"], "app-0");
    assert_eq!(req["proxy"], "out");
    assert_eq!(req["method"], "GET");
    assert_eq!(req["path"], "/hello");

    // The real exposition parses, and the requests are counted (once a scrape after them has
    // landed).
    let counted = || {
        viz.window()
            .increase(
                &Query {
                    name: "response_total",
                    targets: &Selector::All,
                    matchers: &[("direction", "outbound")],
                },
                Duration::from_secs(60),
            )
            .map(|sent| sent.iter().map(|s| s.value).sum::<f64>())
            .unwrap_or(0.0)
    };
    weft_controller::test_util::wait_until(
        "the proxy's outbound responses to be counted",
        Duration::from_secs(10),
        || std::future::ready(counted() >= 1.0),
    )
    .await;
    viz.shutdown().await;
}
