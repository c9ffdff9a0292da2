//! The HTTP routes and knobs, driven by curl over HTTP/1.1 and h2c prior knowledge.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::curl;
use sha2::{Digest, Sha256};
use weft_testapp::{pattern_byte, spawn, ServerConfig};

/// curl flags for each protocol, and the version the app should report.
const PROTOCOLS: [(&str, &str); 2] = [
    ("--http1.1", "HTTP/1.1"),
    ("--http2-prior-knowledge", "HTTP/2"),
];

async fn server(name: &str) -> SocketAddr {
    spawn(ServerConfig {
        name: name.to_string(),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

/// A scratch file unique to this process and test.
fn scratch(name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("weft-testapp-{}-{name}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test]
async fn default_knob_response_names_app_and_protocol() {
    let addr = server("alpha").await;
    for (flag, version) in PROTOCOLS {
        for path in ["/", "/some/other/path?x=1"] {
            let r = curl(&[flag, &format!("http://{addr}{path}")]).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "hello from alpha\n");
            assert_eq!(r.header("x-testapp-name"), Some("alpha"));
            assert_eq!(r.header("x-testapp-version"), Some(version), "{flag}");
        }
    }
}

#[tokio::test]
async fn knobs_from_query_headers_and_startup_defaults() {
    let addr = server("k").await;
    for (flag, _) in PROTOCOLS {
        let r = curl(&[flag, &format!("http://{addr}/?status=418")]).await;
        assert_eq!(r.status, 418);
        let r = curl(&[
            flag,
            "-H",
            "x-testapp-status: 503",
            &format!("http://{addr}/"),
        ])
        .await;
        assert_eq!(r.status, 503);
        // The query wins over the header.
        let r = curl(&[
            flag,
            "-H",
            "x-testapp-status: 503",
            &format!("http://{addr}/?status=202"),
        ])
        .await;
        assert_eq!(r.status, 202);
        let r = curl(&[flag, &format!("http://{addr}/?size=1000&latency_ms=1")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, pattern(1000));
        let r = curl(&[flag, "-H", "x-testapp-size: 7", &format!("http://{addr}/")]).await;
        assert_eq!(r.body, pattern(7));
        let r = curl(&[flag, &format!("http://{addr}/?error_rate=1")]).await;
        assert_eq!(r.status, 500);
        assert_eq!(r.header("x-testapp-name"), Some("k"));
        let r = curl(&[
            flag,
            "-H",
            "x-testapp-error-rate: 1",
            &format!("http://{addr}/"),
        ])
        .await;
        assert_eq!(r.status, 500);
    }

    let addr = spawn(ServerConfig {
        name: "defaults".into(),
        status: 201,
        size: Some(5),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let r = curl(&[&format!("http://{addr}/")]).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body, pattern(5));
    let r = curl(&[&format!("http://{addr}/?status=200")]).await;
    assert_eq!(r.status, 200);

    let addr = spawn(ServerConfig {
        error_rate: 1.0,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(curl(&[&format!("http://{addr}/")]).await.status, 500);
    assert_eq!(
        curl(&[&format!("http://{addr}/?error_rate=0")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn error_rate_fails_that_fraction_of_requests() {
    let addr = server("rate").await;
    let url = format!("http://{addr}/?error_rate=0.5");
    let mut args = vec!["-w", "%{http_code}\\n"];
    for _ in 0..10 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let r = curl(&args).await;
    let codes = r.text();
    let failures = codes.lines().filter(|c| *c == "500").count();
    let successes = codes.lines().filter(|c| *c == "200").count();
    assert_eq!((failures, successes), (5, 5), "{codes}");
}

#[tokio::test]
async fn invalid_knobs_answer_400_naming_the_knob() {
    let addr = server("bad").await;
    let cases = [
        ("/?status=abc", None, "status"),
        ("/?status=99", None, "status"),
        ("/?latency_ms=soon", None, "latency_ms"),
        ("/?error_rate=2", None, "error_rate"),
        ("/?size=-5", None, "size"),
        ("/", Some("x-testapp-status: nope"), "x-testapp-status"),
        (
            "/",
            Some("x-testapp-latency-ms: 1.5"),
            "x-testapp-latency-ms",
        ),
        ("/bytes", None, "size"),
        ("/bytes?size=big", None, "size"),
        ("/stream?chunks=x", None, "chunks"),
        ("/stream?interval_ms=999999999", None, "interval_ms"),
    ];
    for (flag, _) in PROTOCOLS {
        for (path, header, knob) in cases {
            let url = format!("http://{addr}{path}");
            let mut args = vec![flag, url.as_str()];
            if let Some(h) = header {
                args.extend(["-H", h]);
            }
            let r = curl(&args).await;
            assert_eq!(r.status, 400, "{path} {header:?}");
            let text = r.text();
            assert!(text.contains(knob), "{path}: {text:?} should name {knob}");
            assert_eq!(text.lines().count(), 1, "{text:?}");
            assert_eq!(r.header("x-testapp-name"), Some("bad"));
        }
    }
}

/// HTTP/1.1 keep-alive. (HTTP/2 reuse is checked with hyper in `streaming.rs`: curl 7.88
/// breaks when reusing prior-knowledge connections, curl/curl#10634, fixed in curl 8.0.)
#[tokio::test]
async fn http1_connections_are_kept_alive() {
    let addr = server("ka").await;
    // Includes a POST with a body the knob handler does not use: it must be drained, not
    // leave the connection unusable.
    let url = format!("http://{addr}/?size=100");
    let mut args = vec!["--http1.1", "-w", "%{num_connects}\\n"];
    for _ in 0..3 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    args.extend([
        "-o",
        "/dev/null",
        "--data-binary",
        "some ignored body",
        url.as_str(),
    ]);
    let r = curl(&args).await;
    assert_eq!(r.text(), "1\n0\n0\n0\n");
}

#[tokio::test]
async fn echo_returns_chunked_uploads_with_content_type() {
    let addr = server("echo").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = scratch("echo", &data);
    let upload = format!("@{}", file.display());
    let url = format!("http://{addr}/echo");
    for (flag, _) in PROTOCOLS {
        let r = curl(&[
            flag,
            "-H",
            "content-type: application/x-weft-test",
            "-H",
            "transfer-encoding: chunked",
            "--data-binary",
            &upload,
            &url,
        ])
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-weft-test"));
        assert!(
            r.body == data,
            "echoed body differs ({} bytes)",
            r.body.len()
        );
    }
    // An empty body echoes as empty.
    let r = curl(&["--data-binary", "", &url]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn sha256_hashes_the_body_and_honours_expect_continue() {
    let addr = server("sha").await;
    let data: Vec<u8> = (0..2_000_003u32).map(|i| (i % 253) as u8).collect();
    let expected = format!(
        "{} {}\n",
        Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        data.len()
    );
    let file = scratch("sha", &data);
    let upload = format!("@{}", file.display());
    let url = format!("http://{addr}/sha256");
    let r = curl(&[
        "--http1.1",
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &upload,
        &url,
    ])
    .await;
    assert_eq!(r.text(), expected);
    assert!(
        r.stderr.contains("HTTP/1.1 100 Continue"),
        "no 100 Continue in {}",
        r.stderr
    );
    let r = curl(&["--http2-prior-knowledge", "--data-binary", &upload, &url]).await;
    assert_eq!(r.text(), expected);
    assert_eq!(r.header("x-testapp-version"), Some("HTTP/2"));
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn bytes_streams_the_pattern() {
    let addr = server("bytes").await;
    let size = 3 * 65536 + 7;
    for (flag, _) in PROTOCOLS {
        let r = curl(&[flag, &format!("http://{addr}/bytes?size={size}")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
        assert!(r.body == pattern(size), "pattern mismatch over {flag}");
        let r = curl(&[flag, &format!("http://{addr}/bytes?size=0")]).await;
        assert!(r.body.is_empty());
    }
}

#[tokio::test]
async fn stream_sends_numbered_chunks() {
    let addr = server("stream").await;
    for (flag, _) in PROTOCOLS {
        let r = curl(&[flag, "-N", &format!("http://{addr}/stream?interval_ms=1")]).await;
        assert_eq!(
            r.text(),
            "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n",
            "default is 5 chunks"
        );
        let r = curl(&[
            flag,
            "-N",
            &format!("http://{addr}/stream?chunks=2&interval_ms=0"),
        ])
        .await;
        assert_eq!(r.text(), "chunk 0\nchunk 1\n");
    }
    let r = curl(&["--http1.1", &format!("http://{addr}/stream?chunks=1")]).await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
}

#[tokio::test]
async fn headers_reports_request_line_and_headers() {
    let addr = server("hdr").await;
    let r = curl(&[
        "--http1.1",
        "-H",
        "x-custom: Some Value",
        &format!("http://{addr}/headers?q=1"),
    ])
    .await;
    let text = r.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("GET /headers?q=1 HTTP/1.1"));
    assert!(text.contains(&format!("\nhost: {addr}\n")), "{text}");
    assert!(text.contains("\nx-custom: Some Value\n"), "{text}");

    let r = curl(&[
        "--http2-prior-knowledge",
        "-X",
        "PUT",
        &format!("http://{addr}/headers"),
    ])
    .await;
    let text = r.text();
    assert!(text.starts_with("PUT "), "{text}");
    assert!(text.lines().next().unwrap().ends_with(" HTTP/2"), "{text}");
    assert!(text.contains(&format!("\nhost: {addr}\n")), "{text}");
}

#[tokio::test]
async fn ws_without_upgrade_is_refused() {
    let addr = server("ws").await;
    let r = curl(&["--http1.1", &format!("http://{addr}/ws")]).await;
    assert_eq!(r.status, 426);
    let r = curl(&["--http2-prior-knowledge", &format!("http://{addr}/ws")]).await;
    assert_eq!(r.status, 400);
}
