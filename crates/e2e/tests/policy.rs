//! Discovery and traffic policy end to end: the real destination service reading manifests
//! (Services, ExternalWorkloads, ServiceProfiles, HTTPRoutes with Linkerd's annotations,
//! TrafficSplits), a client-side `weft-proxy` that discovers through it, and meshed workloads —
//! each a testapp behind its own server-side proxy, on a loopback address of its own — as in the
//! local mesh of DESIGN.md. All over real sockets with mTLS from the real identity service.
//!
//! What reached a backend is counted independently of the client proxy, by the workload's own
//! proxy (inbound `request_total`).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_e2e::*;

const NS: &str = "emojivoto";
/// The service the tests address, as clients of the mesh do.
const WEB: &str = "web-svc.emojivoto.svc.cluster.local:80";
/// The `dst` label of the client proxy's `route_*` metrics for [`WEB`].
const WEB_DST: &str = "dst=\"web-svc.emojivoto.svc.cluster.local:80\"";

/// The spec's ServiceProfile for `web-svc`, unchanged.
const WEB_PROFILE: &str = include_str!("../../model/tests/fixtures/spec/web-svc-profile.yaml");

/// The identity service and the PKI every proxy of a test gets its certificate from.
struct Mesh {
    pki: Pki,
    identityd: Identityd,
}

impl Mesh {
    fn new(tag: &str) -> Mesh {
        let pki = Pki::new(tag);
        let identityd = pki.start_identity("24h");
        Mesh { pki, identityd }
    }

    /// Writes `docs` as `dir_name/mesh.yaml` under the test's directory and returns the dir.
    fn manifests(&self, dir_name: &str, docs: &[String]) -> PathBuf {
        let dir = self.pki.dir.join(dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mesh.yaml"), docs.join("---\n")).unwrap();
        dir
    }

    fn destination(&self, manifests: &Path, listen: SocketAddr) -> Destinationd {
        Destinationd::start(&self.pki.dir, manifests, listen)
    }

    /// The client-side proxy (service account `vote-bot`, its own loopback address),
    /// discovering through the destination service at `dst`. Waits until it is ready.
    fn client(&self, dst: SocketAddr) -> Proxy {
        let p = Proxy::spawn_on(
            &self.pki,
            "vote-bot",
            self.identityd.listen,
            workload_ip(),
            &[("WEFT_PROXY_DESTINATION_SVC_ADDR", dst.to_string())],
        );
        p.wait_ready();
        p
    }

    /// Starts meshed workloads `(name, service account, inbound port)` and waits until every
    /// proxy is ready.
    fn workloads(&self, specs: &[(&str, &str, Inbound)]) -> Vec<Workload> {
        let started: Vec<Workload> = specs
            .iter()
            .map(|&(name, sa, inbound)| Workload::spawn(self, name, sa, inbound))
            .collect();
        for w in &started {
            w.proxy.wait_ready();
        }
        started
    }
}

/// Where a workload's proxy takes meshed traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// The mesh's default, 4143 (no annotation needed).
    Default,
    /// Another port, announced with `config.linkerd.io/proxy-inbound-port`.
    Annotated,
}

/// A meshed workload: a testapp and its server-side proxy, both on the workload's own
/// loopback address.
struct Workload {
    name: String,
    ip: IpAddr,
    app: SocketAddr,
    _app: Proc,
    proxy: Proxy,
}

impl Workload {
    fn spawn(mesh: &Mesh, name: &str, sa: &str, inbound: Inbound) -> Workload {
        let ip = workload_ip();
        let app = free_addr_on(ip);
        let app_proc = testapp_at(name, app, &mesh.pki.dir, &[]);
        let env = [
            ("WEFT_PROXY_INBOUND_APP_ADDR", app.to_string()),
            ("WEFT_PROXY_OUTBOUND_BIND_IP", ip.to_string()),
        ];
        let id = mesh.identityd.listen;
        let proxy = match inbound {
            Inbound::Default => Proxy::spawn_on(&mesh.pki, sa, id, ip, &env),
            Inbound::Annotated => {
                let addrs = (free_addr_on(ip), free_addr_on(ip), free_addr_on(ip));
                Proxy::spawn_at(&mesh.pki, sa, id, addrs, &env)
            }
        };
        assert_eq!(
            proxy.inbound.port() == 4143,
            inbound == Inbound::Default,
            "{name}: inbound {}",
            proxy.inbound
        );
        Workload {
            name: name.to_string(),
            ip,
            app,
            _app: app_proc,
            proxy,
        }
    }

    /// This workload as an ExternalWorkload labelled `app: <app_label>`, meshed with its
    /// proxy's identity (and its inbound port when that is not the default 4143).
    fn yaml(&self, app_label: &str) -> String {
        let annotations = if self.proxy.inbound.port() == 4143 {
            String::new()
        } else {
            format!(
                "  annotations:\n    config.linkerd.io/proxy-inbound-port: \"{}\"\n",
                self.proxy.inbound.port()
            )
        };
        format!(
            "apiVersion: workload.linkerd.io/v1beta1
kind: ExternalWorkload
metadata:
  name: {name}
  namespace: {NS}
  labels:
    app: {app_label}
{annotations}spec:
  meshTLS:
    identity: {identity}
    serverName: {identity}
  ports:
    - name: http
      port: {port}
  workloadIPs:
    - ip: \"{ip}\"
",
            name = self.name,
            identity = self.proxy.identity,
            port = self.app.port(),
            ip = self.ip,
        )
    }

    /// Requests that reached this workload (its proxy's inbound side).
    fn arrivals(&self) -> f64 {
        self.proxy
            .metric_sum("request_total", &["direction=\"inbound\""])
    }

    /// Waits (bounded) until [`Workload::arrivals`] reaches `want`, lets stragglers land, and
    /// returns the count then: a request is recorded when its response ends, a moment after
    /// the client has seen it.
    fn arrivals_settled(&self, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.arrivals() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150));
        self.arrivals()
    }
}

/// A Service `name` on port 80 selecting `app: <name>`, with optional annotations.
fn service(name: &str, annotations: &[(&str, &str)]) -> String {
    let mut meta = format!("  name: {name}\n  namespace: {NS}\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (k, v) in annotations {
            meta.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    format!(
        "apiVersion: v1
kind: Service
metadata:
{meta}spec:
  selector:
    app: {name}
  ports:
    - name: http
      port: 80
      targetPort: http
"
    )
}

/// `http://web-svc.emojivoto.svc.cluster.local:80<path>` through `proxy`'s outbound.
fn web(proxy: &Proxy, method: &str, path: &str) -> Answer {
    let url = format!("http://{WEB}{path}");
    proxy_request(proxy.outbound, method, &url, &[])
        .unwrap_or_else(|e| panic!("{method} {url} through the client proxy: {e}"))
}

/// The client proxy's `route_*` counter for `route`.
fn route_metric(proxy: &Proxy, name: &str, route: &str, more: &[&str]) -> f64 {
    let route = format!("route=\"{route}\"");
    let mut labels = vec![WEB_DST, route.as_str()];
    labels.extend_from_slice(more);
    proxy.metric_sum(name, &labels)
}

/// The series of `name` in `proxy`'s metrics (for failure messages).
fn series(proxy: &Proxy, name: &str) -> String {
    proxy
        .metrics()
        .lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn service_profile_retries_the_retryable_route_and_never_the_other() {
    let mesh = Mesh::new("pol-sp");
    let backend = mesh
        .workloads(&[("web-1", "web", Inbound::Default)])
        .remove(0);
    let manifests = mesh.manifests(
        "manifests",
        &[
            service("web-svc", &[]),
            backend.yaml("web-svc"),
            WEB_PROFILE.to_string(),
        ],
    );
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);

    // error_rate=0.5 is deterministic in the testapp: every other request it serves fails.
    const LIST: usize = 40;
    for i in 0..LIST {
        let a = web(&client, "GET", "/api/list?error_rate=0.5");
        assert_eq!(a.status, 200, "GET /api/list #{i}: {a:?}");
        assert_eq!(a.name, "web-1");
    }
    let retries = route_metric(&client, "route_retry_total", "GET /api/list", &[]);
    // Half of what the backend serves fails, so about every first attempt after the first
    // fails and is retried; the budget (10% + 5/s over 10s) covers that.
    assert!(
        (LIST as f64 / 2.0..LIST as f64).contains(&retries),
        "retries: {retries}\n{}",
        series(&client, "route_")
    );
    let arrived = backend.arrivals_settled(LIST as f64 + retries);
    assert_eq!(
        arrived,
        LIST as f64 + retries,
        "every first attempt and every retry reached the backend once"
    );

    // POST /api/vote is not retryable: a failing backend sees each request exactly once.
    const VOTES: usize = 10;
    for _ in 0..VOTES {
        let a = web(&client, "POST", "/api/vote?status=500");
        assert_eq!(a.status, 500, "{a:?}");
        assert!(a.proxy_error.is_empty(), "{a:?}");
    }
    assert_eq!(
        backend.arrivals_settled(arrived + VOTES as f64),
        arrived + VOTES as f64,
        "POST on a non-retryable route: once each"
    );
    assert_eq!(
        route_metric(&client, "route_retry_total", "POST /api/vote", &[]),
        0.0
    );

    // The route metrics carry the profile's route names.
    assert_eq!(
        route_metric(&client, "route_request_total", "GET /api/list", &[]),
        LIST as f64,
        "{}",
        series(&client, "route_request_total")
    );
    assert_eq!(
        route_metric(
            &client,
            "route_response_total",
            "GET /api/list",
            &["classification=\"success\"", "status_code=\"200\""]
        ),
        LIST as f64,
        "{}",
        series(&client, "route_response_total")
    );
    assert_eq!(
        route_metric(
            &client,
            "route_response_total",
            "POST /api/vote",
            &["classification=\"failure\"", "status_code=\"500\""]
        ),
        VOTES as f64,
        "{}",
        series(&client, "route_response_total")
    );
    // And the requests went meshed, to the workload's identity.
    let server_id = format!("server_id=\"{}\"", backend.proxy.identity);
    assert_eq!(
        client.metric_sum(
            "request_total",
            &["direction=\"outbound\"", "tls=\"true\"", &server_id]
        ),
        (LIST + VOTES) as f64,
        "{}",
        series(&client, "request_total")
    );
}

/// The spec's HTTPRoute for `web-svc`, with a 1 s request timeout.
fn web_route() -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: web-default
  namespace: {NS}
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: \"2\"
    timeout.linkerd.io/request: 1s
spec:
  parentRefs:
    - name: web-svc
      kind: Service
      group: core
      port: 80
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: \"/api\"
"
    )
}

#[test]
fn http_route_annotations_apply_until_a_service_profile_overrides_them() {
    let mesh = Mesh::new("pol-route");
    let backend = mesh
        .workloads(&[("web-1", "web", Inbound::Default)])
        .remove(0);
    let base = [
        service("web-svc", &[]),
        backend.yaml("web-svc"),
        web_route(),
    ];
    let manifests = mesh.manifests("manifests-1", &base);
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);

    // 5xx is retried twice (limit "2"): three arrivals per request.
    for _ in 0..5 {
        let a = web(&client, "GET", "/api/fail?status=500");
        assert_eq!(a.status, 500, "{a:?}");
    }
    assert_eq!(backend.arrivals_settled(15.0), 15.0);
    assert_eq!(
        client.metric_sum("route_retry_total", &[WEB_DST]),
        10.0,
        "{}",
        series(&client, "route_")
    );

    // timeout.linkerd.io/request bounds the exchange: 504 from the proxy.
    let started = Instant::now();
    let a = web(&client, "GET", "/api/slow?latency_ms=4000");
    let took = started.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert_eq!(a.proxy_error, "request timeout", "{a:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    assert_eq!(
        client.metric_sum("route_timeout_total", &[WEB_DST, "kind=\"request\""]),
        1.0,
        "{}",
        series(&client, "route_timeout_total")
    );
    // Outside the HTTPRoute's matches: 404, as in Linkerd.
    let a = web(&client, "GET", "/other");
    assert_eq!(
        (a.status, a.proxy_error.as_str()),
        (404, "no route"),
        "{a:?}"
    );

    // A ServiceProfile for the same service takes precedence. --manifests is read once, so
    // the control plane is restarted (same port) with the new set.
    let profile = format!(
        "apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web-svc.{NS}.svc.cluster.local
  namespace: {NS}
spec:
  routes:
    - name: api
      condition:
        pathRegex: /api/.*
      isRetryable: false
      timeout: 5s
"
    );
    let mut with_profile = base.to_vec();
    with_profile.push(profile);
    let manifests = mesh.manifests("manifests-2", &with_profile);
    let listen = dst.listen;
    dst.kill();
    let dst = mesh.destination(&manifests, listen);
    // The proxy resubscribes and applies the new policy: no more 404s outside /api.
    wait_for(
        Duration::from_secs(15),
        "the proxy to apply the ServiceProfile",
        || web(&client, "GET", "/other").status == 200,
    );
    assert!(client.metric_sum("destination_reconnect_total", &[]) >= 1.0);
    // The policy says why the HTTPRoute no longer applies (the proxy logs the policy's notes).
    let note = "HTTPRoute emojivoto/web-default is ignored because ServiceProfile \
                emojivoto/web-svc.emojivoto.svc.cluster.local takes precedence";
    assert!(
        client.proc.log_text().contains(note),
        "no {note:?} in the client proxy's log:\n{}",
        client.proc.log_text()
    );
    let retries = client.metric_sum("route_retry_total", &[WEB_DST]);
    let before = backend.arrivals_settled(0.0);
    for _ in 0..5 {
        let a = web(&client, "GET", "/api/fail?status=500");
        assert_eq!(a.status, 500, "{a:?}");
    }
    assert_eq!(
        backend.arrivals_settled(before + 5.0),
        before + 5.0,
        "the profile's route is not retryable: the HTTPRoute's retries are ignored"
    );
    assert_eq!(client.metric_sum("route_retry_total", &[WEB_DST]), retries);
    assert!(
        route_metric(&client, "route_request_total", "api", &[]) >= 5.0,
        "{}",
        series(&client, "route_request_total")
    );
    // …and so is its 1 s request timeout (the profile route allows 5 s).
    let a = web(&client, "GET", "/api/slow?latency_ms=1300");
    assert_eq!(a.status, 200, "{a:?}");
    drop(dst);
}

#[test]
fn traffic_split_90_10_lands_within_3_percent() {
    let mesh = Mesh::new("pol-split");
    let ws = mesh.workloads(&[
        ("web-1", "web", Inbound::Default),
        ("canary-1", "web-canary", Inbound::Annotated),
    ]);
    let (web1, canary) = (&ws[0], &ws[1]);
    let split = format!(
        "apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: web-split
  namespace: {NS}
spec:
  service: web-svc
  backends:
    - service: web-svc
      weight: 90
    - service: web-canary
      weight: 10
"
    );
    let manifests = mesh.manifests(
        "manifests",
        &[
            service("web-svc", &[]),
            service("web-canary", &[]),
            web1.yaml("web-svc"),
            canary.yaml("web-canary"),
            split,
        ],
    );
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);

    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    const TOTAL: usize = THREADS * PER_THREAD;
    let outbound = client.outbound;
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|_| {
                            proxy_request(outbound, "GET", &format!("http://{WEB}/"), &[]).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed[0]
    );
    let to_canary = answers.iter().filter(|a| a.name == "canary-1").count();
    let to_web = answers.iter().filter(|a| a.name == "web-1").count();
    assert_eq!(to_canary + to_web, TOTAL);
    let share = to_canary as f64 / TOTAL as f64;
    assert!(
        (0.07..=0.13).contains(&share),
        "the canary got {to_canary} of {TOTAL} ({:.1}%, want 10 ± 3%)",
        share * 100.0
    );
    // The backends' own proxies agree.
    assert_eq!(canary.arrivals_settled(to_canary as f64), to_canary as f64);
    assert_eq!(web1.arrivals_settled(to_web as f64), to_web as f64);
    assert_eq!(
        client.metric_sum(
            "route_backend_request_total",
            &[
                WEB_DST,
                "backend=\"web-canary.emojivoto.svc.cluster.local:80\""
            ]
        ),
        to_canary as f64,
        "{}",
        series(&client, "route_backend_request_total")
    );
}

#[test]
fn control_plane_outage_fails_nothing_and_the_proxy_resubscribes() {
    let mesh = Mesh::new("pol-outage");
    let ws = mesh.workloads(&[
        ("web-1", "web", Inbound::Default),
        ("web-2", "web", Inbound::Annotated),
    ]);
    let (web1, web2) = (&ws[0], &ws[1]);
    let manifests = mesh.manifests(
        "manifests-1",
        &[service("web-svc", &[]), web1.yaml("web-svc")],
    );
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);
    assert_eq!(web(&client, "GET", "/").status, 200);

    // Continuous requests from two threads for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let outbound = client.outbound;
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures) = (stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut ok = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match proxy_request(outbound, "GET", &format!("http://{WEB}/"), &[]) {
                        Ok(a) if a.status == 200 => ok += 1,
                        Ok(a) => failures.lock().unwrap().push(format!("{a:?}")),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let listen = dst.listen;
    dst.kill();
    let during = web1.arrivals();
    std::thread::sleep(Duration::from_millis(2000));
    let served_while_down = web1.arrivals() - during;
    assert!(
        served_while_down > 50.0,
        "only {served_while_down} requests while the control plane was down"
    );

    // Restarted on the same port with a second endpoint: the proxy resubscribes and sends
    // traffic to it.
    let manifests = mesh.manifests(
        "manifests-2",
        &[
            service("web-svc", &[]),
            web1.yaml("web-svc"),
            web2.yaml("web-svc"),
        ],
    );
    let _dst = mesh.destination(&manifests, listen);
    wait_for(
        Duration::from_secs(15),
        "the new endpoint to receive traffic",
        || web2.arrivals() >= 20.0,
    );
    stop.store(true, Ordering::Relaxed);
    let total: u64 = load.into_iter().map(|t| t.join().unwrap()).sum();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {}",
        failures.len(),
        total + failures.len() as u64,
        failures[0]
    );
    assert!(client.metric_sum("destination_reconnect_total", &[]) >= 1.0);
}

/// Runs `crates/testapp/tests/grpc_client.py` with the test venv.
fn grpc_call(target: SocketAddr, args: &[&str]) -> (bool, String) {
    let script = workspace().join("crates/testapp/tests/grpc_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(target.to_string()).args(args);
    for k in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "grpc_proxy",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn grpc_unavailable_is_retried_per_the_service_annotation() {
    let mesh = Mesh::new("pol-grpc");
    let backend = mesh
        .workloads(&[("web-1", "web", Inbound::Default)])
        .remove(0);
    let manifests = mesh.manifests(
        "manifests",
        &[
            service(
                "web-svc",
                &[
                    ("retry.linkerd.io/grpc", "unavailable"),
                    ("retry.linkerd.io/limit", "1"),
                ],
            ),
            backend.yaml("web-svc"),
        ],
    );
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);

    // A call that succeeds reaches the backend once.
    let (ok, out) = grpc_call(client.outbound, &["Unary", "hello", "--authority", WEB]);
    assert!(ok, "{out}\nclient proxy log:\n{}", client.proc.log_text());
    assert!(out.contains("message: hello"), "{out}");
    assert_eq!(backend.arrivals_settled(1.0), 1.0);

    // UNAVAILABLE on every attempt: with limit 1, each call arrives twice and the client gets
    // the backend's UNAVAILABLE.
    for _ in 0..3 {
        let (ok, out) = grpc_call(
            client.outbound,
            &[
                "Unary",
                "hello",
                "--authority",
                WEB,
                "--metadata",
                "x-testapp-grpc-status=14",
                "--expect-status",
                "UNAVAILABLE",
            ],
        );
        assert!(ok, "{out}");
    }
    assert_eq!(
        backend.arrivals_settled(7.0),
        7.0,
        "{}",
        series(&client, "route_")
    );
    assert_eq!(client.metric_sum("route_retry_total", &[WEB_DST]), 3.0);

    // Other codes are not retried.
    let (ok, out) = grpc_call(
        client.outbound,
        &[
            "Unary",
            "hello",
            "--authority",
            WEB,
            "--metadata",
            "x-testapp-grpc-status=13",
            "--expect-status",
            "INTERNAL",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(backend.arrivals_settled(8.0), 8.0);
}

#[test]
fn unknown_authority_is_forwarded_unmeshed() {
    let mesh = Mesh::new("pol-unknown");
    let backend = mesh
        .workloads(&[("web-1", "web", Inbound::Default)])
        .remove(0);
    let manifests = mesh.manifests(
        "manifests",
        &[service("web-svc", &[]), backend.yaml("web-svc")],
    );
    let dst = mesh.destination(&manifests, free_addr());
    let client = mesh.client(dst.listen);
    // A plain (unmeshed) app on an address of its own.
    let plain = free_addr_on(workload_ip());
    let _plain = testapp_at("plain", plain, &mesh.pki.dir, &[]);

    // The service is meshed…
    let a = web(&client, "GET", "/");
    assert_eq!((a.status, a.name.as_str()), (200, "web-1"), "{a:?}");
    // …an IP:port and a host name that are no Service are forwarded as before, in plain text
    // (localhost is 127.0.0.1, so that one goes to an app listening there).
    let a = proxy_request(client.outbound, "GET", &format!("http://{plain}/"), &[]).unwrap();
    assert_eq!((a.status, a.name.as_str()), (200, "plain"), "{a:?}");
    let (_local, local) = testapp("plain-localhost", &mesh.pki.dir);
    let a = proxy_request(
        client.outbound,
        "GET",
        &format!("http://localhost:{}/", local.port()),
        &[],
    )
    .unwrap();
    assert_eq!(
        (a.status, a.name.as_str()),
        (200, "plain-localhost"),
        "{a:?}"
    );
    assert_eq!(
        client.metric_sum(
            "request_total",
            &[
                "direction=\"outbound\"",
                "tls=\"no_identity\"",
                "no_tls_reason=\"not_meshed\""
            ]
        ),
        2.0,
        "{}",
        series(&client, "request_total")
    );
    // The proxy did ask, and was told these are no services.
    let text = dst.metrics();
    assert!(
        metric_sum(
            &text,
            "destination_updates_sent_total",
            &["call=\"get_policy\"", "update=\"not_found\""]
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(backend.arrivals_settled(1.0), 1.0);
}
