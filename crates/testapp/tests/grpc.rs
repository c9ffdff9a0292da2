//! The gRPC service through a real grpcio client (`tests/grpc_client.py`), which other crates'
//! tests also use to call the testapp through proxies.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Output;

use common::grpc_client;
use weft_testapp::{spawn, ServerConfig};

async fn server() -> SocketAddr {
    spawn(ServerConfig {
        name: "grpc-app".into(),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the client and requires exit status 0 (outcome as expected).
async fn expect_ok(args: &[&str]) -> String {
    let out = grpc_client(args).await;
    assert!(
        out.status.success(),
        "grpc_client.py {args:?} failed: {}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[tokio::test]
async fn unary_echoes_the_message() {
    let addr = server().await.to_string();
    let out = expect_ok(&[&addr, "Unary", "hello weft"]).await;
    assert_eq!(out.matches("message: hello weft\n").count(), 1, "{out}");
    assert!(out.contains("status: OK (0)"), "{out}");
    assert!(out.contains("trailer: x-testapp-name: grpc-app"), "{out}");
}

#[tokio::test]
async fn server_stream_echoes_count_times() {
    let addr = server().await.to_string();
    let out = expect_ok(&[&addr, "ServerStream", "again"]).await;
    assert_eq!(out.matches("message: again\n").count(), 3, "{out}");
    let out = expect_ok(&[&addr, "ServerStream", "again", "--count", "5"]).await;
    assert_eq!(out.matches("message: again\n").count(), 5, "{out}");
}

#[tokio::test]
async fn bidi_stream_echoes_every_message() {
    let addr = server().await.to_string();
    let out = expect_ok(&[&addr, "BidiStream", "ping", "--count", "4"]).await;
    assert_eq!(out.matches("message: ping\n").count(), 4, "{out}");
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let addr = server().await.to_string();
    let out = expect_ok(&[
        &addr,
        "/weft.testapp.Echo/Missing",
        "x",
        "--expect-status",
        "UNIMPLEMENTED",
    ])
    .await;
    assert!(out.contains("status: UNIMPLEMENTED (12)"), "{out}");
    let out = expect_ok(&[&addr, "/other.Service/Unary", "x", "--expect-status", "12"]).await;
    assert!(out.contains("status: UNIMPLEMENTED (12)"), "{out}");
}

#[tokio::test]
async fn metadata_forces_the_final_status_after_the_echo() {
    let addr = server().await.to_string();
    let out = expect_ok(&[
        &addr,
        "ServerStream",
        "x",
        "--count",
        "2",
        "--metadata",
        "x-testapp-grpc-status=5",
        "--metadata",
        "x-testapp-grpc-message=no such vote 100%",
        "--expect-status",
        "NOT_FOUND",
    ])
    .await;
    assert!(out.contains("status: NOT_FOUND (5)"), "{out}");
    assert!(out.contains("details: no such vote 100%"), "{out}");
    assert_eq!(out.matches("message: x\n").count(), 2, "{out}");
}

#[tokio::test]
async fn authority_option_reaches_the_server() {
    let addr = server().await.to_string();
    let out = expect_ok(&[&addr, "Unary", "x", "--authority", "voting.weft.test:8080"]).await;
    assert!(
        out.contains("trailer: x-testapp-authority: voting.weft.test:8080"),
        "{out}"
    );
}

#[tokio::test]
async fn client_exits_nonzero_when_the_outcome_differs() {
    let addr = server().await.to_string();
    // Expected NOT_FOUND, got OK.
    let out = grpc_client(&[&addr, "Unary", "x", "--expect-status", "NOT_FOUND"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISMATCH"));
    // Expected OK, got UNIMPLEMENTED.
    let out = grpc_client(&[&addr, "/weft.testapp.Echo/Nope", "x"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // Nothing listening: UNAVAILABLE, not OK.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = grpc_client(&[&dead, "Unary", "x", "--timeout", "5"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("UNAVAILABLE"), "{}", stdout(&out));
}
