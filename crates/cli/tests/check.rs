//! `weft check` through the real `weft` binary, against cluster directories built in a
//! temporary `$WEFT_HOME`, with real control-plane and proxy processes.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use weft_e2e::{bin, free_addr_on, http, wait_for, Proc};
use weft_store::cluster::{ClusterConfig, ClusterDir, WorkloadState};

const DAY: Duration = Duration::from_secs(86_400);

/// A cluster `west` in a temporary `$WEFT_HOME`, on a loopback /24 of its own (so parallel
/// tests never share the control plane's or a proxy's address).
struct Cluster {
    home: tempfile::TempDir,
    dir: ClusterDir,
    config: ClusterConfig,
    /// The root's certificate and key (PEM), for issuing issuers.
    root: (String, String),
}

impl Cluster {
    fn new() -> Cluster {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        // 127.<a>.<b>.0/24: `a` from the process id (e2e tests use 100 and up), `b` counting.
        let a = 1 + (std::process::id() % 90) as u8;
        let net = [a, NEXT.fetch_add(1, Ordering::Relaxed)];
        let home = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(home.path(), "west");
        let config = ClusterConfig::new("west", net);
        dir.write_config(&config).unwrap();
        std::fs::create_dir_all(dir.manifests_dir()).unwrap();
        std::fs::create_dir_all(dir.logs_dir()).unwrap();
        let now = SystemTime::now();
        let root = weft_pki::create_root("root.linkerd.cluster.local", 3650 * DAY, now - 500 * DAY)
            .unwrap();
        std::fs::create_dir_all(dir.pki_dir()).unwrap();
        std::fs::write(dir.trust_anchors(), &root.cert_pem).unwrap();
        std::fs::write(
            dir.token_key(),
            "0123456789abcdef0123456789abcdef-check-token-key\n",
        )
        .unwrap();
        let cluster = Cluster {
            home,
            dir,
            config,
            root: (root.cert_pem, root.key_pem),
        };
        cluster.issuer(365 * DAY, now);
        cluster
    }

    /// Writes an issuer from the cluster's root, valid from `start` for `lifetime`.
    fn issuer(&self, lifetime: Duration, start: SystemTime) {
        let issuer = weft_pki::create_issuer(
            "identity.linkerd.cluster.local",
            self.root.0.as_bytes(),
            self.root.1.as_bytes(),
            lifetime,
            start,
        )
        .unwrap();
        std::fs::write(self.dir.issuer_cert(), &issuer.cert_pem).unwrap();
        std::fs::write(self.dir.issuer_key(), &issuer.key_pem).unwrap();
    }

    /// `weft check ARGS` with this cluster's `$WEFT_HOME`.
    fn check(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("check")
            .args(args)
            .env("WEFT_HOME", self.home.path())
            .env_remove("WEFT_CONTEXT")
            .output()
            .unwrap()
    }

    /// `weft check -o json ARGS`: exit status and the parsed report.
    fn check_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.check(&all);
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.logs_dir()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The check with `id` in a JSON report.
fn find<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["checks"].as_array().unwrap())
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn result(report: &Value, id: &str) -> String {
    find(report, id)["result"].as_str().unwrap().to_owned()
}

fn categories(report: &Value) -> Vec<String> {
    report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A running control plane: `weft-controller all --store local:DIR`, which records itself in
/// `run/control-plane.json`.
struct ControlPlane {
    proc: Proc,
}

impl ControlPlane {
    fn start(c: &Cluster) -> ControlPlane {
        let mut cmd = Command::new(bin("weft-controller"));
        cmd.arg("all")
            .arg(format!("--store=local:{}", c.dir.root().display()));
        let mut proc = Proc::spawn("control-plane", cmd, &c.log_dir());
        let admin = c.config.admin_addr();
        wait_for(
            Duration::from_secs(30),
            "the control plane to be ready",
            || {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    panic!("the control plane exited ({status}):\n{}", proc.log_text());
                }
                matches!(http(admin, "GET", "/ready"), Ok((200, _)))
                    && c.dir.read_control_plane().is_ok_and(|s| s.is_some())
            },
        );
        ControlPlane { proc }
    }

    fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

#[test]
fn a_healthy_cluster_passes() {
    let c = Cluster::new();
    // Built before the clock of `--wait` starts.
    bin("weft-controller");
    // `--wait` retries until the control plane, started meanwhile, is up.
    let waiting = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["check", "--wait", "60s"])
        .env("WEFT_HOME", c.home.path())
        .env_remove("WEFT_CONTEXT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _cp = ControlPlane::start(&c);
    let out = waiting.wait_with_output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("Status check results are √"), "{shown}");
    for line in [
        "weft-existence\n--------------\n√ cluster directory exists\n√ control plane is running\n",
        "√ control plane is ready\n",
        "√ viz API accepts connections\n",
        "weft-identity\n-------------\n",
        "√ issuer was issued by the trust anchors\n",
        "√ issuer certificate is not expiring within 60 days\n",
        "weft-config\n-----------\n√ manifests parse and are valid\n",
    ] {
        assert!(shown.contains(line), "no {line:?} in:\n{shown}");
    }
    assert!(!shown.contains('×') && !shown.contains('‼'), "{shown}");
    assert!(!shown.contains("weft-data-plane"), "{shown}");

    let (code, report) = c.check_json(&["--proxy"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["success"], true);
    assert_eq!(
        categories(&report),
        [
            "weft-existence",
            "weft-identity",
            "weft-config",
            "weft-data-plane"
        ]
    );
    // No workloads: nothing to complain about.
    assert_eq!(
        result(&report, "weft-data-plane/no-workload-without-proxy"),
        "success"
    );

    let verbose = text(&c.check(&["--verbose"]));
    assert!(
        verbose.contains("√ control plane is running [weft-existence/control-plane-running]\n"),
        "{verbose}"
    );
}

#[test]
fn every_category_runs_when_the_first_fails_and_json_has_stable_ids() {
    let c = Cluster::new();
    // Never started; and an issuer that expired 35 days ago.
    c.issuer(365 * DAY, SystemTime::now() - 400 * DAY);
    let (code, report) = c.check_json(&[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["success"], false);
    assert_eq!(
        categories(&report),
        ["weft-existence", "weft-identity", "weft-config"]
    );
    assert_eq!(result(&report, "weft-existence/cluster-exists"), "success");
    let running = find(&report, "weft-existence/control-plane-running");
    assert_eq!(running["result"], "error");
    assert!(
        running["error"]
            .as_str()
            .unwrap()
            .contains("no control plane was started for \"west\""),
        "{running}"
    );
    assert_eq!(running["hint"], "weft install");
    for skipped in [
        "weft-existence/control-plane-live",
        "weft-existence/control-plane-ready",
        "weft-existence/identity-reachable",
        "weft-existence/destination-reachable",
        "weft-existence/viz-reachable",
    ] {
        assert_eq!(result(&report, skipped), "skipped", "{skipped}");
        assert_eq!(
            find(&report, skipped)["error"],
            "skipped: weft-existence/control-plane-running did not pass"
        );
    }
    let expired = find(&report, "weft-identity/issuer-not-expired");
    assert_eq!(expired["result"], "error", "{expired}");
    assert!(
        expired["error"]
            .as_str()
            .unwrap()
            .contains("issuer certificate pki/issuer.crt expired at"),
        "{expired}"
    );
    assert!(expired["hint"].as_str().unwrap().contains("weft upgrade"));
    assert_eq!(
        result(&report, "weft-identity/issuer-not-expiring-soon"),
        "skipped"
    );
    for ok in [
        "weft-identity/trust-anchors-parse",
        "weft-identity/trust-anchors-are-ca",
        "weft-identity/trust-anchors-not-expired",
        "weft-identity/trust-anchors-not-expiring-soon",
        "weft-identity/issuer-parses",
        "weft-identity/issuer-key-matches",
        "weft-identity/issuer-chains-to-anchors",
        "weft-config/manifests-valid",
        "weft-config/settings-valid",
        "weft-config/no-suspicious-settings",
        "weft-config/nothing-overridden",
    ] {
        assert_eq!(result(&report, ok), "success", "{ok}");
    }

    // The text says the same, with the failures' details and hints.
    let out = c.check(&[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Status check results are ×"), "{shown}");
    assert!(
        shown.contains("× control plane is running\n    no control plane was started for \"west\""),
        "{shown}"
    );
    assert!(shown.contains("    see: weft install\n"), "{shown}");
    assert!(
        shown.contains("× issuer certificate is valid now\n"),
        "{shown}"
    );

    // A missing cluster: every category still appears, all skipped after the first check.
    let (code, report) = c.check_json(&["--context", "east", "--proxy"]);
    assert_eq!(code, 1);
    assert_eq!(
        categories(&report),
        [
            "weft-existence",
            "weft-identity",
            "weft-config",
            "weft-data-plane"
        ]
    );
    let exists = find(&report, "weft-existence/cluster-exists");
    assert_eq!(
        exists["hint"],
        "weft install --context east (or `weft demo`)"
    );
    assert_eq!(
        result(&report, "weft-identity/issuer-not-expired"),
        "skipped"
    );
}

#[test]
fn an_issuer_from_another_anchor_fails() {
    let c = Cluster::new();
    let other =
        weft_pki::create_root("root.linkerd.cluster.local", 3650 * DAY, SystemTime::now()).unwrap();
    let issuer = weft_pki::create_issuer(
        "identity.linkerd.cluster.local",
        other.cert_pem.as_bytes(),
        other.key_pem.as_bytes(),
        365 * DAY,
        SystemTime::now(),
    )
    .unwrap();
    std::fs::write(c.dir.issuer_cert(), &issuer.cert_pem).unwrap();
    std::fs::write(c.dir.issuer_key(), &issuer.key_pem).unwrap();
    let out = c.check(&[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("× issuer was issued by the trust anchors\n    issuer was not issued by the trust anchors: pki/issuer.crt (\"CN=identity.linkerd.cluster.local\") names issuer \"CN=root.linkerd.cluster.local\", and no anchor in pki/ca.crt signed it\n"),
        "{shown}"
    );
    let (_, report) = c.check_json(&[]);
    assert_eq!(
        result(&report, "weft-identity/issuer-chains-to-anchors"),
        "error"
    );
    assert_eq!(
        result(&report, "weft-identity/issuer-key-matches"),
        "success"
    );
    assert_eq!(
        result(&report, "weft-identity/issuer-not-expired"),
        "success"
    );

    // A key from another pair is named too.
    std::fs::write(c.dir.issuer_key(), &other.key_pem).unwrap();
    let (_, report) = c.check_json(&[]);
    assert_eq!(result(&report, "weft-identity/issuer-key-matches"), "error");
    // And anchors that are not CAs, or not PEM.
    std::fs::write(c.dir.trust_anchors(), "not a certificate").unwrap();
    let (_, report) = c.check_json(&[]);
    assert_eq!(
        result(&report, "weft-identity/trust-anchors-parse"),
        "error"
    );
    assert_eq!(
        result(&report, "weft-identity/trust-anchors-are-ca"),
        "skipped"
    );
    assert_eq!(
        result(&report, "weft-identity/issuer-chains-to-anchors"),
        "skipped"
    );
}

#[test]
fn a_stopped_control_plane_fails() {
    let c = Cluster::new();
    let mut cp = ControlPlane::start(&c);
    let out = c.check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pid = cp.pid();
    // SIGKILL: it cannot remove its run/control-plane.json.
    cp.proc.child.kill().unwrap();
    cp.proc.child.wait().unwrap();
    let out = c.check(&[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "× control plane is running\n    the control plane of \"west\" is not running (pid {pid} is gone)\n    see: weft install starts it again"
        )),
        "{shown}"
    );
    assert!(shown.contains("- control plane is ready\n"), "{shown}");
    // The other categories still ran.
    assert!(
        shown.contains("√ issuer was issued by the trust anchors"),
        "{shown}"
    );
    assert!(shown.contains("√ manifests parse and are valid"), "{shown}");
}

#[test]
fn an_issuer_expiring_in_30_days_passes_with_a_warning() {
    let c = Cluster::new();
    c.issuer(30 * DAY, SystemTime::now());
    let _cp = ControlPlane::start(&c);
    let out = c.check(&[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("‼ issuer certificate is not expiring within 60 days\n    issuer certificate pki/issuer.crt expires in 30 days ("),
        "{shown}"
    );
    assert!(
        shown.contains("    see: rotate it with `weft upgrade"),
        "{shown}"
    );
    assert!(shown.contains("Status check results are √"), "{shown}");
    let (code, report) = c.check_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(report["success"], true);
    assert_eq!(
        result(&report, "weft-identity/issuer-not-expiring-soon"),
        "warning"
    );
}

#[test]
fn a_malformed_manifest_is_reported_with_file_and_line_and_the_rest_runs() {
    let c = Cluster::new();
    let manifests = c.dir.manifests_dir();
    std::fs::write(
        manifests.join("good.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-svc, namespace: emojivoto}\nspec:\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("bad.yaml"),
        "# a comment\napiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: emojivoto}\nspec:\n  ports: [{port: 99999}]\n",
    )
    .unwrap();
    std::fs::write(manifests.join("broken.yaml"), "kind: [unclosed\n").unwrap();
    // A ServiceProfile with routes hides an HTTPRoute's retry annotation.
    std::fs::write(
        manifests.join("routes.yaml"),
        "apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
  - name: list
    condition: {method: GET, pathRegex: /api/list}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-route
  namespace: emojivoto
  annotations: {retry.linkerd.io/http: 5xx}
spec:
  parentRefs: [{name: web-svc, kind: Service, group: core, port: 80}]
  rules: [{backendRefs: [{name: web-svc, port: 80}]}]
",
    )
    .unwrap();
    let out = c.check(&[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("× manifests parse and are valid\n"),
        "{shown}"
    );
    // The line of the bad field, not of the document.
    assert!(
        shown.contains("    manifests/bad.yaml:6: Service emojivoto/bad: spec.ports[0].port: 99999 is not a port"),
        "{shown}"
    );
    assert!(shown.contains("    manifests/broken.yaml:"), "{shown}");
    assert!(
        shown.contains(
            "‼ no HTTPRoute or annotation is overridden by a ServiceProfile or TrafficSplit\n    HTTPRoute emojivoto/web-route is ignored because ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local takes precedence (annotations retry.linkerd.io/http)"
        ),
        "{shown}"
    );
    // Everything else still ran.
    assert!(
        shown.contains("√ issuer was issued by the trust anchors"),
        "{shown}"
    );
    assert!(shown.contains("× control plane is running"), "{shown}");
    let (_, report) = c.check_json(&[]);
    let valid = find(&report, "weft-config/manifests-valid");
    assert_eq!(valid["result"], "error");
    let lines: Vec<&str> = valid["error"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("manifests/bad.yaml:"), "{lines:?}");
    assert_eq!(result(&report, "weft-config/nothing-overridden"), "warning");
}

/// An ExternalWorkload in the manifests.
fn external_workload(c: &Cluster, name: &str, deployment: &str, n: u8, disabled: bool) {
    let annotations = if disabled {
        "\n  annotations: {linkerd.io/inject: disabled}"
    } else {
        ""
    };
    let identity = c.config.workload_identity(deployment, "emojivoto");
    std::fs::write(
        c.dir.manifests_dir().join(format!("{name}.yaml")),
        format!(
            "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata:\n  name: {name}\n  namespace: emojivoto\n  labels: {{weft.io/deployment: {deployment}}}{annotations}\nspec:\n  meshTLS: {{identity: {identity}, serverName: {identity}}}\n  workloadIPs: [{{ip: {}}}]\n  ports: [{{port: 8080}}]\n",
            c.config.ip(n)
        ),
    )
    .unwrap();
}

/// A record in `run/workloads/`, as `weft demo` writes it.
fn workload_record(c: &Cluster, name: &str, deployment: &str, n: u8, proxy_pid: Option<u32>) {
    let identity = proxy_pid.map(|_| c.config.workload_identity(deployment, "emojivoto"));
    workload_record_as(c, name, deployment, n, proxy_pid, identity);
}

/// As [`workload_record`], naming the proxy's identity (or none).
fn workload_record_as(
    c: &Cluster,
    name: &str,
    deployment: &str,
    n: u8,
    proxy_pid: Option<u32>,
    identity: Option<String>,
) {
    let state: WorkloadState = serde_json::from_value(serde_json::json!({
        "namespace": "emojivoto",
        "name": name,
        "deployment": deployment,
        "ip": c.config.ip(n).to_string(),
        "identity": identity,
        "app_pid": std::process::id(),
        "proxy_pid": proxy_pid,
    }))
    .unwrap();
    c.dir.write_workload(&state).unwrap();
}

#[test]
fn workloads_without_a_proxy_fail_with_proxy() {
    let c = Cluster::new();
    let _cp = ControlPlane::start(&c);
    // web-0 runs without its proxy; emoji-0 is meshed by its ExternalWorkload but nothing
    // listens at its address; voting-0 and voting-1 are half meshed; db-0 is unmeshed on
    // purpose.
    external_workload(&c, "web-0", "web", 1, false);
    workload_record(&c, "web-0", "web", 1, None);
    external_workload(&c, "emoji-0", "emoji", 2, false);
    external_workload(&c, "voting-0", "voting", 3, false);
    external_workload(&c, "voting-1", "voting", 4, true);
    external_workload(&c, "db-0", "db", 5, true);
    workload_record(&c, "db-0", "db", 5, None);

    // Without --proxy the data plane is not checked.
    let out = c.check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let started = std::time::Instant::now();
    let out = c.check(&["--proxy"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    // Unreachable proxies are bounded by the probe timeout, not hangs.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        shown.contains("× every meshed workload has a running proxy\n"),
        "{shown}"
    );
    assert!(
        shown.contains("    emojivoto/web-0: runs without a proxy, but is meshed (its ExternalWorkload does not say linkerd.io/inject: disabled)\n"),
        "{shown}"
    );
    let emoji_inbound = SocketAddr::new(IpAddr::V4(c.config.ip(2)), 4143);
    assert!(
        shown.contains(&format!(
            "    emojivoto/emoji-0: no proxy is listening: {emoji_inbound}: connection refused"
        )),
        "{shown}"
    );
    assert!(!shown.contains("emojivoto/db-0:"), "{shown}");
    assert!(
        shown.contains("× no deployment is partially meshed\n    deployment emojivoto/voting: meshed [voting-0], not meshed [voting-1]\n"),
        "{shown}"
    );
    // Nothing could be probed, so the proxy checks are skipped, not passed.
    assert!(
        shown.contains("- data plane proxies are ready\n    skipped: weft-data-plane/no-workload-without-proxy did not pass"),
        "{shown}"
    );

    // A record whose proxy process is gone.
    workload_record(&c, "web-0", "web", 1, Some(u32::MAX - 1));
    let (code, report) = c.check_json(&["--proxy"]);
    assert_eq!(code, 1);
    let missing = find(&report, "weft-data-plane/no-workload-without-proxy");
    assert!(
        missing["error"].as_str().unwrap().contains(&format!(
            "emojivoto/web-0: its proxy (pid {}) is not running",
            u32::MAX - 1
        )),
        "{missing}"
    );
}

/// Starts a real proxy for workload `n` of the cluster, with its identity from the control
/// plane, listening on the workload's address (inbound 4143, admin 4191).
fn proxy(c: &Cluster, deployment: &str, n: u8) -> Proc {
    let ip = IpAddr::V4(c.config.ip(n));
    let identity = c.config.workload_identity(deployment, "emojivoto");
    let key = std::fs::read(c.dir.token_key()).unwrap();
    let token = c.dir.token_file(&identity);
    std::fs::create_dir_all(c.dir.tokens_dir()).unwrap();
    std::fs::write(&token, weft_pki::token::mint_token(&key, &identity)).unwrap();
    let mut cmd = Command::new(bin("weft-proxy"));
    cmd.env_clear()
        .env(
            "WEFT_PROXY_OUTBOUND_LISTEN_ADDR",
            free_addr_on(ip).to_string(),
        )
        .env("WEFT_PROXY_INBOUND_LISTEN_ADDR", format!("{ip}:4143"))
        .env("WEFT_PROXY_ADMIN_LISTEN_ADDR", format!("{ip}:4191"))
        .env("WEFT_PROXY_OUTBOUND_BIND_IP", ip.to_string())
        .env("WEFT_PROXY_IDENTITY_NAME", &identity)
        .env("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", c.dir.trust_anchors())
        .env(
            "WEFT_PROXY_IDENTITY_SVC_ADDR",
            c.config.identity_addr().to_string(),
        )
        .env("WEFT_PROXY_IDENTITY_TOKEN_FILE", &token)
        .env("WEFT_PROXY_LOG", "info");
    Proc::spawn(&format!("proxy-{deployment}-{n}"), cmd, &c.log_dir())
}

#[test]
fn a_real_proxy_passes_and_fails_after_a_trust_anchor_change() {
    let c = Cluster::new();
    let _cp = ControlPlane::start(&c);
    external_workload(&c, "web-0", "web", 1, false);
    let p = proxy(&c, "web", 1);
    workload_record(&c, "web-0", "web", 1, Some(p.child.id()));

    let out = c.check(&["--proxy", "--wait", "30s"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", p.log_text());
    for line in [
        "√ every meshed workload has a running proxy\n",
        "√ data plane proxies are ready\n",
        "√ data plane proxies have certificates valid now\n",
        "√ data plane proxies have the expected identities\n",
        "√ data plane proxy certificates are issued under the current trust anchors\n",
        "√ data plane proxy certificates are not past their renewal time\n",
        "√ no deployment is partially meshed\n",
    ] {
        assert!(shown.contains(line), "no {line:?} in:\n{shown}");
    }

    // The ExternalWorkload now names another identity than the proxy has.
    let other = c.config.workload_identity("voting", "emojivoto");
    let ew = c.dir.manifests_dir().join("web-0.yaml");
    let yaml = std::fs::read_to_string(&ew).unwrap();
    std::fs::write(&ew, yaml.replace("identity: web.", "identity: voting.")).unwrap();
    // (a record names the proxy's own identity; without one the object's is expected)
    workload_record_as(&c, "web-0", "web", 1, Some(p.child.id()), None);
    let (code, report) = c.check_json(&["--proxy"]);
    assert_eq!(code, 1, "{report:#}");
    let mismatch = find(&report, "weft-data-plane/proxy-identities-match");
    assert!(
        mismatch["error"].as_str().unwrap().contains(&format!(
            "emojivoto/web-0: its certificate is for [{}], not {other}",
            c.config.workload_identity("web", "emojivoto")
        )),
        "{mismatch}"
    );
    std::fs::write(&ew, yaml).unwrap();
    workload_record(&c, "web-0", "web", 1, Some(p.child.id()));

    // A new trust anchor replaces the old one: the proxy's certificate no longer chains.
    let new_root =
        weft_pki::create_root("root.linkerd.cluster.local", 3650 * DAY, SystemTime::now()).unwrap();
    std::fs::write(c.dir.trust_anchors(), &new_root.cert_pem).unwrap();
    let (code, report) = c.check_json(&["--proxy"]);
    assert_eq!(code, 1, "{report:#}");
    let trusted = find(&report, "weft-data-plane/proxy-certificates-trusted");
    assert_eq!(trusted["result"], "error", "{trusted}");
    assert!(
        trusted["error"]
            .as_str()
            .unwrap()
            .starts_with("emojivoto/web-0: its certificate (issued by \"CN=identity.linkerd.cluster.local\") does not chain to pki/ca.crt"),
        "{trusted}"
    );
    assert_eq!(
        result(&report, "weft-data-plane/proxy-certificates-valid"),
        "success"
    );
    assert_eq!(
        result(&report, "weft-identity/issuer-chains-to-anchors"),
        "error"
    );
}
