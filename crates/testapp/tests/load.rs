//! The load generator against a real testapp, a raw HTTP/1.1 "proxy" that records request
//! lines, and a raw listener that records the HTTP/2 preface.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weft_testapp::load::{run, LoadConfig};
use weft_testapp::{spawn, ServerConfig};

fn config(target: &str) -> LoadConfig {
    LoadConfig {
        target: target.parse().unwrap(),
        rps: 0.0,
        concurrency: 2,
        duration: Duration::from_millis(300),
        proxy: None,
        http2: false,
    }
}

#[tokio::test]
async fn counts_statuses_and_latencies() {
    let addr = spawn(ServerConfig::default()).await.unwrap();
    for http2 in [false, true] {
        let report = run(LoadConfig {
            http2,
            ..config(&format!("http://{addr}/?error_rate=0.5"))
        })
        .await
        .unwrap();
        let (ok, failed) = (report.count(200), report.count(500));
        assert!(ok > 0 && failed > 0, "{report}");
        // The server's error accumulator fails exactly every other request.
        assert!(ok.abs_diff(failed) <= 1, "{report}");
        assert_eq!(report.requests, ok + failed);
        assert_eq!(report.errors, 0, "{report}");
        assert!(report.p50 <= report.p95 && report.p95 <= report.p99 && report.p99 <= report.max);
        assert!(report.max > Duration::ZERO);
    }
}

#[tokio::test]
async fn paced_run_issues_at_most_rate_times_duration() {
    let addr = spawn(ServerConfig::default()).await.unwrap();
    let report = run(LoadConfig {
        rps: 20.0,
        duration: Duration::from_millis(250),
        ..config(&format!("http://{addr}/"))
    })
    .await
    .unwrap();
    // Tickets are due at 0, 50, 100, 150 and 200 ms: never more than 5 requests.
    assert!(report.requests >= 1 && report.requests <= 5, "{report}");
    assert_eq!(report.count(200), report.requests);
}

/// A minimal HTTP/1.1 server that records each request line and answers 200, closing the
/// connection after each response so the client must reconnect.
async fn recording_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                seen.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap().to_string());
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, lines)
}

#[tokio::test]
async fn proxy_mode_sends_absolute_form() {
    let (proxy, lines) = recording_proxy().await;
    let report = run(LoadConfig {
        proxy: Some(proxy),
        rps: 40.0,
        ..config("http://voting.weft.invalid:8080/vote?x=1")
    })
    .await
    .unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(
            line,
            "GET http://voting.weft.invalid:8080/vote?x=1 HTTP/1.1"
        );
    }
    assert_eq!(report.count(200), lines.len() as u64, "{report}");
    assert_eq!(report.errors, 0, "{report}");

    // Through the testapp itself, which accepts absolute-form requests.
    let app = spawn(ServerConfig::default()).await.unwrap();
    let report = run(LoadConfig {
        proxy: Some(app),
        ..config("http://voting.weft.invalid:8080/")
    })
    .await
    .unwrap();
    assert!(report.count(200) > 0 && report.errors == 0, "{report}");
}

#[tokio::test]
async fn http2_mode_speaks_prior_knowledge() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let preface = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 24];
        sock.read_exact(&mut buf).await.unwrap();
        buf
    });
    let report = run(LoadConfig {
        http2: true,
        concurrency: 1,
        duration: Duration::from_millis(100),
        ..config(&format!("http://{addr}/"))
    })
    .await
    .unwrap();
    assert_eq!(&preface.await.unwrap(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(report.requests, 0);
    assert!(report.errors > 0, "{report}");
}

#[tokio::test]
async fn connect_failures_are_counted_not_fatal() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let report = run(LoadConfig {
        duration: Duration::from_millis(100),
        ..config(&format!("http://{addr}/"))
    })
    .await
    .unwrap();
    assert_eq!(report.requests, 0);
    assert!(
        report.errors_by_kind.get("connect").copied().unwrap_or(0) > 0,
        "{report}"
    );
    assert!(report.to_json().contains("\"connect\":"));
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    let err = run(LoadConfig {
        concurrency: 0,
        ..config("http://127.0.0.1:1/")
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("concurrency"), "{err}");
    let err = run(config("https://127.0.0.1:1/")).await.unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}
