//! The identity service in-process, Certify end to end: the real tonic server on port 0, a real
//! gRPC client, its admin port scraped over HTTP, and the real binary for start-up errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;
use weft_api::identity::CertifyRequest;
use weft_controller::identity::AUDIT_TARGET;
use weft_controller::test_util::{
    capture_logs, certify_once as certify, certify_request, client, der, http_get, identity,
    intermediates, new_issuer, new_root, sample, scrape_metrics as metrics, verify_against,
    TestPki, TOKEN_KEY,
};
use weft_pki::CertInfo;

const DAY: Duration = Duration::from_secs(24 * 3600);
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn certify_returns_a_verified_24h_leaf_and_logs_an_audit_line() {
    let logs = capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let web = identity("web", "audit-ns");
    let (_key, req) = certify_request(&web, TOKEN_KEY);
    let before = SystemTime::now();
    let rsp = certify(&running, req).await.unwrap();

    let chain = verify_against(&pki, &rsp, &web);
    assert_eq!(chain.chain.len(), 3, "leaf, issuer, anchor");
    assert_eq!(intermediates(&rsp), vec![pki.issuer.cert_der.clone()]);
    let info = CertInfo::from_der(&rsp.leaf_certificate).unwrap();
    assert_eq!(info.dns_sans, vec![web.clone()]);
    assert_eq!(
        info.uri_sans,
        vec!["spiffe://cluster.local/ns/audit-ns/sa/web".to_owned()]
    );
    assert!(!info.is_ca);
    assert!(info.ext_key_usage.contains(&"serverAuth".to_owned()));
    assert!(info.ext_key_usage.contains(&"clientAuth".to_owned()));
    // ~24h from now, starting 20s (the clock-skew allowance) before now.
    let lifetime = info.not_after.duration_since(before).unwrap();
    assert!(
        lifetime >= DAY - Duration::from_secs(1) && lifetime <= DAY + Duration::from_secs(5),
        "{lifetime:?}"
    );
    let head_start = before.duration_since(info.not_before).unwrap();
    assert!(
        head_start >= Duration::from_secs(19) && head_start <= Duration::from_secs(21),
        "{head_start:?}"
    );
    let not_after_ms = info
        .not_after
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(
        u128::try_from(rsp.valid_until_unix_ms).unwrap(),
        not_after_ms
    );

    // One audit line: identity, serial and expiry.
    let lines = logs.lines_with(&format!("identity={web}"));
    let audit: Vec<_> = lines.iter().filter(|l| l.contains(AUDIT_TARGET)).collect();
    assert_eq!(audit.len(), 1, "{lines:#?}");
    let line = audit[0];
    assert!(
        line.contains(&format!("serial={}", info.serial_hex)),
        "{line}"
    );
    assert!(
        line.contains(&format!("not_after={}", weft_pki::fmt_time(info.not_after))),
        "{line}"
    );
    assert!(line.contains("certificate issued"), "{line}");
    running.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_unauthenticated() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let web = identity("web", "emojivoto");
    let voting = identity("voting", "emojivoto");
    // A token for another workload, a token under another key, no token.
    let (_key, voting_req) = certify_request(&voting, TOKEN_KEY);
    let (_key, other_key_req) = certify_request(&web, &"ab".repeat(32));
    let (_key, mut req) = certify_request(&web, TOKEN_KEY);
    for token in [voting_req.token, other_key_req.token, Vec::new()] {
        req.token = token;
        let status = certify(&running, req.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let m = metrics(&running).await;
    assert_eq!(
        sample(
            &m,
            r#"identity_cert_failures_total{reason="unauthenticated"}"#
        ),
        Some(3.0)
    );
    assert_eq!(sample(&m, "identity_cert_issued_total"), Some(0.0));
    running.shutdown().await;
}

#[tokio::test]
async fn csr_for_another_identity_is_refused() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let web = identity("web", "emojivoto");
    let (_key, mut req) = certify_request(&web, TOKEN_KEY);
    let (_key, voting_req) = certify_request(&identity("voting", "emojivoto"), TOKEN_KEY);
    req.certificate_signing_request = voting_req.certificate_signing_request;
    let status = certify(&running, req.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("does not carry exactly the requested identity"),
        "{}",
        status.message()
    );

    req.certificate_signing_request = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    let status = certify(&running, req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let m = metrics(&running).await;
    assert_eq!(
        sample(&m, r#"identity_cert_failures_total{reason="invalid_csr"}"#),
        Some(2.0)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn identity_outside_the_mesh_is_invalid_argument() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    for other in [
        "web.emojivoto.serviceaccount.identity.weft.example.org",
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
        "web.emojivoto.svc.cluster.local",
    ] {
        let req = CertifyRequest {
            identity: other.to_owned(),
            token: weft_controller::identity::mint_token(TOKEN_KEY.as_bytes(), other).into_bytes(),
            certificate_signing_request: certify_request(&identity("web", "emojivoto"), TOKEN_KEY)
                .1
                .certificate_signing_request,
        };
        let status = certify(&running, req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{other}: {status:?}");
    }
    let m = metrics(&running).await;
    assert_eq!(
        sample(
            &m,
            r#"identity_cert_failures_total{reason="invalid_identity"}"#
        ),
        Some(3.0)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_parallel_calls_get_a_thousand_distinct_serials() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    // Four connections, 250 concurrent calls on each.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(client(running.grpc_addr()).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let mut c = clients[i % clients.len()].clone();
        tasks.spawn(async move {
            let id = identity(&format!("sa-{i}"), "load");
            let (_key, req) = certify_request(&id, TOKEN_KEY);
            let rsp = c.certify(req).await.expect("certify").into_inner();
            CertInfo::from_der(&rsp.leaf_certificate)
                .unwrap()
                .serial_hex
        });
    }
    let serials = tokio::time::timeout(Duration::from_secs(120), async {
        let mut serials = HashSet::new();
        while let Some(serial) = tasks.join_next().await {
            serials.insert(serial.unwrap());
        }
        serials
    })
    .await
    .expect("1,000 calls finish within 2 minutes");
    assert_eq!(serials.len(), 1000);
    assert_eq!(running.metrics().issued_total(), 1000);
    running.shutdown().await;
}

/// Certify calls in a loop on several connections until stopped: every response or failure.
#[tokio::test]
async fn admin_port_serves_metrics_that_promtool_accepts_and_readiness() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let web = identity("web", "emojivoto");
    for _ in 0..2 {
        certify(&running, certify_request(&web, TOKEN_KEY).1)
            .await
            .unwrap();
    }
    let (_key, mut bad) = certify_request(&web, TOKEN_KEY);
    bad.token = b"0000".to_vec();
    certify(&running, bad).await.unwrap_err();

    let m = metrics(&running).await;
    let issuer_expiry = CertInfo::from_der(&pki.issuer.cert_der).unwrap().not_after;
    let root_expiry = CertInfo::from_der(&pki.root.cert_der).unwrap().not_after;
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
    assert_eq!(sample(&m, "identity_cert_issued_total"), Some(2.0));
    for (reason, n) in [
        ("invalid_identity", 0.0),
        ("invalid_csr", 0.0),
        ("unauthenticated", 1.0),
        ("no_valid_issuer", 0.0),
        ("internal", 0.0),
    ] {
        assert_eq!(
            sample(
                &m,
                &format!(r#"identity_cert_failures_total{{reason="{reason}"}}"#)
            ),
            Some(n),
            "{reason}"
        );
    }
    assert_eq!(
        sample(&m, "identity_issuer_expiry_timestamp_seconds"),
        Some(secs(issuer_expiry))
    );
    assert_eq!(
        sample(&m, "identity_trust_anchor_expiry_timestamp_seconds"),
        Some(secs(root_expiry))
    );
    let start = sample(&m, "process_start_time_seconds").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= now && start > now - 600.0, "{start}");
    for family in [
        "identity_cert_issued_total counter",
        "identity_cert_failures_total counter",
        "identity_issuer_expiry_timestamp_seconds gauge",
        "identity_trust_anchor_expiry_timestamp_seconds gauge",
        "process_start_time_seconds gauge",
    ] {
        assert!(m.contains(&format!("# TYPE {family}\n")), "{family}");
    }

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool must be installed (.ci/install-deps)");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(m.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(WAIT, promtool.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- metrics ---\n{m}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        http_get(running.admin_addr(), "/ready").await,
        (200, "ready\n".to_owned())
    );
    assert_eq!(
        http_get(running.admin_addr(), "/live").await,
        (200, "live\n".to_owned())
    );
    assert_eq!(http_get(running.admin_addr(), "/nope").await.0, 404);
    running.shutdown().await;
}

#[tokio::test]
async fn certificates_made_with_openssl_work() {
    capture_logs();
    let pki = TestPki::new();
    pki.use_openssl_made_certs();
    let running = pki.start().await;
    let web = identity("web", "emojivoto");
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    verify_against(&pki, &rsp, &web);
    assert_eq!(
        intermediates(&rsp),
        vec![der(
            &weft_pki::parse_pem_certs(&pki.dir.read("issuer.crt")).unwrap()[0]
        )]
    );

    // openssl agrees: the leaf verifies through the returned issuer to the anchor.
    let leaf_pem = weft_pki::certs_to_pem(&[der(&rsp.leaf_certificate)]);
    pki.dir.write("leaf.crt", leaf_pem);
    pki.dir
        .write("chain.crt", weft_pki::certs_to_pem(&intermediates(&rsp)));
    let out = pki.dir.openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        "ca.crt",
        "-untrusted",
        "chain.crt",
        "-purpose",
        "sslclient",
        "leaf.crt",
    ]);
    assert!(out.contains("leaf.crt: OK"), "{out}");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let addr = running.grpc_addr();
    tokio::time::timeout(WAIT, running.shutdown())
        .await
        .expect("shutdown is bounded");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Runs the real binary; returns (exit code, stderr). Bounded: killed after 20 s.
async fn run_binary(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-controller"))
        .args(args)
        .env_remove("WEFT_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the binary exits on a start-up error")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn start_up_errors_exit_non_zero_with_one_line_naming_the_file() {
    let pki = TestPki::new();
    let base = |over: &[(&str, std::path::PathBuf)]| {
        let mut files = vec![
            ("--trust-anchors", pki.anchors_path()),
            ("--issuer-cert", pki.issuer_cert_path()),
            ("--issuer-key", pki.issuer_key_path()),
            ("--token-key-file", pki.token_key_path()),
        ];
        for (flag, path) in over {
            for f in &mut files {
                if f.0 == *flag {
                    f.1 = path.clone();
                }
            }
        }
        let mut args: Vec<std::ffi::OsString> = vec![
            "identity".into(),
            "--listen=127.0.0.1:0".into(),
            "--admin-listen=127.0.0.1:0".into(),
        ];
        for (flag, path) in files {
            args.push(flag.into());
            args.push(path.into_os_string());
        }
        args
    };
    let stranger = new_issuer(&new_root("root.stranger"));
    pki.dir.write("stranger.crt", &stranger.cert_pem);
    pki.dir.write("stranger.key", &stranger.key_pem);
    pki.dir.write("short.key", "tooshort\n");
    let cases = [
        (
            vec![("--issuer-key", pki.dir.path("missing.key"))],
            "missing.key",
            "cannot read",
        ),
        (
            vec![("--trust-anchors", pki.issuer_key_path())],
            "issuer.key",
            "no CERTIFICATE block",
        ),
        (
            vec![
                ("--issuer-cert", pki.dir.path("stranger.crt")),
                ("--issuer-key", pki.dir.path("stranger.key")),
            ],
            "stranger.crt",
            "not issued by any of the trust anchors",
        ),
        (
            vec![("--issuer-key", pki.dir.path("stranger.key"))],
            "stranger.key",
            "does not match",
        ),
        (
            vec![("--token-key-file", pki.dir.path("short.key"))],
            "short.key",
            "at least 32",
        ),
    ];
    for (over, file, reason) in cases {
        let args = base(&over);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = run_binary(&args).await;
        assert_eq!(code, Some(64), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains(reason),
            "{file}/{reason}: {stderr}"
        );
    }
}
