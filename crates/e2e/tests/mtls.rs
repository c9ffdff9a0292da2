//! mTLS end to end: a real identity service, real proxies that get their certificates from it,
//! real clients (curl, openssl s_client, openssl verify), and issuer rotation under load.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_e2e::*;

/// web's proxy → emoji's proxy → the emoji app, with mTLS between the proxies.
struct Mesh {
    pki: Pki,
    identityd: Identityd,
    _app: Proc,
    app: SocketAddr,
    emoji: Proxy,
    web: Proxy,
    target: String,
}

fn mesh(tag: &str, leaf_lifetime: &str, expect_peer: &str) -> Mesh {
    let pki = Pki::new(tag);
    let identityd = pki.start_identity(leaf_lifetime);
    let (app_proc, app) = testapp("emoji", &pki.dir);
    let emoji = Proxy::spawn(
        &pki,
        "emoji",
        identityd.listen,
        &[("WEFT_PROXY_INBOUND_APP_ADDR", app.to_string())],
    );
    emoji.wait_ready();
    let target = format!("emoji-svc.emojivoto:{}", app.port());
    let peers = format!("{target}={}@{}", emoji.inbound, Pki::identity(expect_peer));
    let web = Proxy::spawn(
        &pki,
        "web",
        identityd.listen,
        &[("WEFT_PROXY_MESHED_PEERS", peers)],
    );
    web.wait_ready();
    Mesh {
        pki,
        identityd,
        _app: app_proc,
        app,
        emoji,
        web,
        target,
    }
}

fn curl_through(m: &Mesh, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--max-time",
            "20",
            "-x",
            &format!("http://{}", m.web.outbound),
        ])
        .arg(format!("http://{}{path}", m.target))
        .output()
        .expect("curl is required (.ci/install-deps installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn meshed_traffic_is_mutual_tls_with_both_identities_recorded() {
    let m = mesh("mtls", "24h", "emoji");
    let text = curl_through(&m, "/headers");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("x-testapp-version: HTTP/1.1"), "{text}");
    let server_id = format!("server_id=\"{}\"", Pki::identity("emoji"));
    let client_id = format!("client_id=\"{}\"", Pki::identity("web"));
    assert_eq!(
        m.web.metric_sum(
            "request_total",
            &["direction=\"outbound\"", "tls=\"true\"", &server_id]
        ),
        1.0,
        "{}",
        m.web.metrics()
    );
    assert_eq!(
        m.emoji.metric_sum(
            "request_total",
            &["direction=\"inbound\"", "tls=\"true\"", &client_id]
        ),
        1.0,
        "{}",
        m.emoji.metrics()
    );
    // Both proxies hold a certificate that expires in the future.
    for p in [&m.web, &m.emoji] {
        assert!(p.metric_sum("identity_cert_expiration_timestamp_seconds", &[]) > 1.0e9);
        assert!(p.metric_sum("identity_cert_refresh_total", &[]) >= 1.0);
    }
    // An unmeshed client (a health probe) still reaches the app through the inbound port, in
    // plain text, and is labelled as such.
    let (status, _) = http(m.emoji.inbound, "GET", "/").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        m.emoji.metric_sum(
            "request_total",
            &[
                "direction=\"inbound\"",
                "tls=\"no_identity\"",
                "no_tls_reason=\"no_tls_from_remote\""
            ]
        ),
        1.0,
        "{}",
        m.emoji.metrics()
    );
    // The identity service issued exactly those two.
    let issued = http(m.identityd.admin, "GET", "/metrics").unwrap().1;
    assert!(
        metric_sum(&issued, "identity_cert_issued_total", &[]) >= 2.0,
        "{issued}"
    );
}

#[test]
fn proxy_is_not_ready_until_it_has_a_certificate() {
    let pki = Pki::new("ready");
    // Point the proxy at an identity service that is not running yet.
    let addr = free_addr();
    let p = Proxy::spawn(&pki, "web", addr, &[]);
    wait_for(Duration::from_secs(10), "the admin server", || {
        http(p.admin, "GET", "/live").is_ok()
    });
    assert_eq!(http(p.admin, "GET", "/ready").unwrap().0, 503);
    wait_for(
        Duration::from_secs(10),
        "a failed certificate request",
        || p.metric_sum("identity_cert_refresh_failure_total", &[]) >= 1.0,
    );
    assert_eq!(http(p.admin, "GET", "/ready").unwrap().0, 503);
    // No private key or certificate was written anywhere in the PKI directory by the proxy.
    let files: Vec<String> = std::fs::read_dir(&pki.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| !f.contains("web.emojivoto") || f.ends_with(".token")),
        "{files:?}"
    );
    drop(p);
}

#[test]
fn peer_with_the_wrong_identity_is_refused() {
    // web expects voting's identity at emoji's proxy.
    let m = mesh("mismatch", "24h", "voting");
    let text = curl_through(&m, "/");
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.contains("l5d-proxy-error: peer identity not verified"),
        "{text}"
    );
    assert_eq!(
        m.web.metric_sum(
            "response_total",
            &[
                "error=\"tls_handshake_failed\"",
                "classification=\"failure\""
            ]
        ),
        1.0
    );
    // Nothing reached the app.
    assert_eq!(
        m.emoji
            .metric_sum("request_total", &["direction=\"inbound\""]),
        0.0
    );
}

fn openssl(args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is required (.ci/install-deps installs it)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn openssl_s_client_against_the_inbound_port() {
    let m = mesh("sclient", "24h", "emoji");
    let connect = m.emoji.inbound.to_string();
    let sni = Pki::identity("emoji");
    let request = "GET /headers HTTP/1.1\r\nHost: emoji\r\nConnection: close\r\n\r\n".to_string();

    // Without a client certificate: TLS works, the request is served, but it is not meshed
    // (no client identity is recorded).
    let (ok, out) = openssl(
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            &sni,
            "-showcerts",
            "-quiet",
            "-ign_eof",
        ],
        request.as_bytes(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert_eq!(
        m.emoji
            .metric_sum("request_total", &["direction=\"inbound\"", "client_id="]),
        0.0
    );
    assert_eq!(
        m.emoji
            .metric_sum("request_total", &["direction=\"inbound\"", "tls=\"true\""]),
        1.0
    );

    // The served chain verifies against the trust anchor with openssl.
    let (_, shown) = openssl(
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            &sni,
            "-showcerts",
        ],
        b"",
    );
    let pems: Vec<String> = shown
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|rest| rest.split_once("-----END CERTIFICATE-----"))
        .map(|(body, _)| format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n"))
        .collect();
    assert!(pems.len() >= 2, "leaf and issuer expected:\n{shown}");
    let leaf = m.pki.dir.join("served-leaf.pem");
    let chain = m.pki.dir.join("served-chain.pem");
    std::fs::write(&leaf, &pems[0]).unwrap();
    std::fs::write(&chain, pems[1..].concat()).unwrap();
    let (ok, out) = openssl(
        &[
            "verify",
            "-CAfile",
            m.pki.ca_cert.to_str().unwrap(),
            "-untrusted",
            chain.to_str().unwrap(),
            "-verify_hostname",
            &sni,
            leaf.to_str().unwrap(),
        ],
        b"",
    );
    assert!(ok && out.contains(": OK"), "{out}");

    // A client certificate from another trust anchor: the handshake fails.
    let other = Pki::new("other-anchor");
    let key = other.dir.join("client.key");
    let csr = other.dir.join("client.csr");
    let crt = other.dir.join("client.crt");
    let (ok, out) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            "/CN=intruder",
        ],
        b"",
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            other.issuer_cert.to_str().unwrap(),
            "-CAkey",
            other.issuer_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            crt.to_str().unwrap(),
        ],
        b"",
    );
    assert!(ok, "{out}");
    let before = m
        .emoji
        .metric_sum("request_total", &["direction=\"inbound\""]);
    let (_, out) = openssl(
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            &sni,
            "-cert",
            crt.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
            "-quiet",
            "-ign_eof",
        ],
        request.as_bytes(),
    );
    assert!(
        !out.contains("HTTP/1.1 200"),
        "a foreign client certificate was accepted:\n{out}"
    );
    assert_eq!(
        m.emoji
            .metric_sum("request_total", &["direction=\"inbound\""]),
        before
    );
}

#[test]
fn issuer_rotation_under_load_fails_no_request() {
    // Short leaves so that both proxies renew (at ~70%) within the test.
    let m = mesh("rotate", "4s", "emoji");
    let load = start_load(&m, 12);
    std::thread::sleep(Duration::from_secs(2));
    let refreshes = |p: &Proxy| p.metric_sum("identity_cert_refresh_total", &[]);
    let before = (refreshes(&m.web), refreshes(&m.emoji));
    m.pki.rotate_issuer("identity-2.linkerd.cluster.local");
    // Both proxies obtain new leaves after the rotation (from the new issuer: the service only
    // signs with the one in the files once it has reloaded them).
    wait_for(
        Duration::from_secs(20),
        "both proxies to renew after the rotation",
        || refreshes(&m.web) >= before.0 + 2.0 && refreshes(&m.emoji) >= before.1 + 2.0,
    );
    assert_load_clean(load);
    let requests = metric_sum(&m.web.metrics(), "response_total", &["status_code=\"200\""]);
    let failures = metric_sum(
        &m.web.metrics(),
        "response_total",
        &["classification=\"failure\""],
    );
    assert!(requests > 500.0, "load ran: {requests}");
    assert_eq!(failures, 0.0, "{}", m.web.metrics());
    // The identity service now signs with the new issuer.
    let log = m.identityd.proc.log_text();
    assert!(
        log.contains("identity-2.linkerd.cluster.local"),
        "issuer reload not logged:\n{log}"
    );
    // The served leaf comes from the new issuer.
    let (_, shown) = openssl(
        &[
            "s_client",
            "-connect",
            &m.emoji.inbound.to_string(),
            "-servername",
            &Pki::identity("emoji"),
        ],
        b"",
    );
    assert!(
        shown.contains("identity-2.linkerd.cluster.local"),
        "{shown}"
    );
    let _ = m.app;
}

/// Starts a load of `secs` seconds through web's proxy.
fn start_load(m: &Mesh, secs: u32) -> std::process::Child {
    Command::new(bin("weft-testapp"))
        .args([
            "load",
            "--target",
            &format!("http://{}/", m.target),
            "--proxy",
            &m.web.outbound.to_string(),
        ])
        .args([
            "--rps",
            "100",
            "--concurrency",
            "4",
            "--duration",
            &format!("{secs}s"),
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_load_clean(load: std::process::Child) {
    let out = load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("\"errors\":0,"), "{report}");
    let statuses = report
        .split_once("\"by_status\":{")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    assert!(
        statuses.starts_with("\"200\":") && !statuses.contains(','),
        "non-200 answers: {report}"
    );
}

#[test]
fn trust_anchor_rotation_in_four_steps_under_load_fails_no_request() {
    let m = mesh("anchors", "3s", "emoji");
    let load = start_load(&m, 30);
    let old_root = std::fs::read_to_string(&m.pki.ca_cert).unwrap();
    let (new_root, new_root_key) = Pki::new_root("root-2.linkerd.cluster.local");
    let reloads = |p: &Proxy| p.metric_sum("identity_trust_anchors_reload_total", &[]);
    let refreshes = |p: &Proxy| p.metric_sum("identity_cert_refresh_total", &[]);

    // 1. Bundle old + new anchors; every proxy picks it up without a restart.
    m.pki.set_anchors(&[&old_root, &new_root]);
    wait_for(
        Duration::from_secs(15),
        "proxies to load the bundle",
        || reloads(&m.web) >= 1.0 && reloads(&m.emoji) >= 1.0,
    );
    // 2. A new issuer from the new root.
    m.pki.rotate_issuer_from(
        "identity-2.linkerd.cluster.local",
        new_root.as_bytes(),
        new_root_key.as_bytes(),
    );
    // 3. Proxies roll onto leaves from the new issuer at their next renewals.
    let before = (refreshes(&m.web), refreshes(&m.emoji));
    wait_for(
        Duration::from_secs(20),
        "proxies to renew under the new issuer",
        || refreshes(&m.web) >= before.0 + 2.0 && refreshes(&m.emoji) >= before.1 + 2.0,
    );
    // 4. Drop the old anchor.
    m.pki.set_anchors(&[&new_root]);
    wait_for(
        Duration::from_secs(15),
        "proxies to load the new anchor alone",
        || reloads(&m.web) >= 2.0 && reloads(&m.emoji) >= 2.0,
    );
    // Traffic keeps flowing on fresh handshakes after the old anchor is gone.
    let before = (refreshes(&m.web), refreshes(&m.emoji));
    wait_for(
        Duration::from_secs(20),
        "renewals under the new anchor alone",
        || refreshes(&m.web) >= before.0 + 1.0 && refreshes(&m.emoji) >= before.1 + 1.0,
    );
    assert_load_clean(load);
    assert_eq!(
        m.web
            .metric_sum("response_total", &["classification=\"failure\""]),
        0.0,
        "{}",
        m.web.metrics()
    );
    assert_eq!(
        m.web
            .metric_sum("identity_trust_anchors_reload_failure_total", &[]),
        0.0
    );
    // No workload was restarted: both proxies are the processes started at the beginning.
    let (_, shown) = openssl(
        &[
            "s_client",
            "-connect",
            &m.emoji.inbound.to_string(),
            "-servername",
            &Pki::identity("emoji"),
        ],
        b"",
    );
    assert!(
        shown.contains("identity-2.linkerd.cluster.local"),
        "{shown}"
    );
}

#[test]
fn identity_service_outage_keeps_traffic_flowing_and_renewal_resumes() {
    let mut m = mesh("outage", "6s", "emoji");
    let load = start_load(&m, 14);
    std::thread::sleep(Duration::from_secs(1));
    // Take the identity service away: renewals fail, proxies keep their current certificates.
    let _ = m.identityd.proc.child.kill();
    let _ = m.identityd.proc.child.wait();
    let failures = |p: &Proxy| p.metric_sum("identity_cert_refresh_failure_total", &[]);
    wait_for(Duration::from_secs(15), "a failed renewal", || {
        failures(&m.web) >= 1.0 && failures(&m.emoji) >= 1.0
    });
    // Still ready, still serving.
    assert_eq!(http(m.web.admin, "GET", "/ready").unwrap().0, 200);
    let text = curl_through(&m, "/");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The service comes back on the same address; renewals resume before the leaves expire.
    let listen = m.identityd.listen;
    let mut cmd = Command::new(bin("weft-controller"));
    cmd.args([
        "identity",
        "--listen",
        &listen.to_string(),
        "--admin-listen",
        &free_addr().to_string(),
    ])
    .arg("--trust-anchors")
    .arg(&m.pki.anchors)
    .arg("--issuer-cert")
    .arg(&m.pki.issuer_cert)
    .arg("--issuer-key")
    .arg(&m.pki.issuer_key)
    .arg("--token-key-file")
    .arg(&m.pki.token_key)
    .args(["--leaf-lifetime", "6s"]);
    let _back = Proc::spawn("identity-restarted", cmd, &m.pki.dir);
    let refreshes = |p: &Proxy| p.metric_sum("identity_cert_refresh_total", &[]);
    let before = (refreshes(&m.web), refreshes(&m.emoji));
    wait_for(Duration::from_secs(15), "renewals after the outage", || {
        refreshes(&m.web) > before.0 && refreshes(&m.emoji) > before.1
    });
    assert_load_clean(load);
}
