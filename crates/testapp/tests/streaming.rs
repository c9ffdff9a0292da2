//! Streaming behaviour that curl cannot observe, checked with raw hyper clients: `/echo` is
//! full-duplex, `/bytes` is exact and large, `/stream` sends separate chunks, and the gRPC
//! service's framing and status handling.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use common::{h1, h2, within, ReqBody};
use futures_util::stream;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use weft_testapp::grpc::{encode_message, FrameDecoder};
use weft_testapp::{pattern_byte, spawn, ServerConfig};

async fn server() -> SocketAddr {
    spawn(ServerConfig::default()).await.unwrap()
}

fn empty() -> ReqBody {
    Empty::new().boxed_unsync()
}

/// A request body fed by the returned sender.
fn channel_body() -> (mpsc::Sender<Bytes>, ReqBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    (tx, StreamBody::new(frames).boxed_unsync())
}

async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        match within("response frame", body.frame()).await {
            None => return None,
            Some(frame) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    if !data.is_empty() {
                        return Some(data);
                    }
                }
            }
        }
    }
}

/// Reads exactly `len` bytes of response body.
async fn read_exact(body: &mut Incoming, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        let data = next_data(body).await.expect("body ended early");
        got.extend_from_slice(&data);
    }
    got
}

/// Sends a piece, then reads it back before sending the next: this deadlocks (and times out)
/// if the server waited for the whole request body.
async fn assert_full_duplex(resp: Response<Incoming>, tx: mpsc::Sender<Bytes>) {
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    for i in 0..5 {
        let piece = Bytes::from(format!("piece {i} ").repeat(100));
        tx.send(piece.clone()).await.unwrap();
        let echoed = within("echo of a piece", read_exact(&mut body, piece.len())).await;
        assert_eq!(echoed, piece, "piece {i}");
    }
    drop(tx);
    assert_eq!(next_data(&mut body).await, None);
}

#[tokio::test]
async fn echo_is_full_duplex_over_http1() {
    let addr = server().await;
    let mut client = h1(addr).await;
    let (tx, body) = channel_body();
    let req = Request::post("/echo")
        .header("host", addr.to_string())
        .body(body)
        .unwrap();
    let resp = within("echo response head", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-testapp-version"], "HTTP/1.1");
    assert_full_duplex(resp, tx).await;
}

#[tokio::test]
async fn echo_is_full_duplex_over_http2() {
    let addr = server().await;
    let mut client = h2(addr).await;
    let (tx, body) = channel_body();
    let req = Request::post(format!("http://{addr}/echo"))
        .header("content-type", "text/x-pieces")
        .body(body)
        .unwrap();
    let resp = within("echo response head", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-testapp-version"], "HTTP/2");
    assert_eq!(resp.headers()["content-type"], "text/x-pieces");
    assert_full_duplex(resp, tx).await;
}

#[tokio::test]
async fn http2_multiplexes_requests_on_one_connection() {
    let addr = server().await;
    let client = h2(addr).await;
    let requests = (0..5).map(|i| {
        let mut client = client.clone();
        async move {
            let req = Request::get(format!(
                "http://{addr}/stream?chunks=2&interval_ms=20&i={i}"
            ))
            .body(empty())
            .unwrap();
            let resp = client.send_request(req).await.unwrap();
            assert_eq!(resp.headers()["x-testapp-version"], "HTTP/2");
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    });
    let bodies = within(
        "multiplexed responses",
        futures_util::future::join_all(requests),
    )
    .await;
    for body in bodies {
        assert_eq!(body, "chunk 0\nchunk 1\n");
    }
}

#[tokio::test]
async fn bytes_is_exact_for_a_large_size() {
    let addr = server().await;
    let size: u64 = 16 * 1024 * 1024 + 3;
    let mut client = h2(addr).await;
    let req = Request::get(format!("http://{addr}/bytes?size={size}"))
        .body(empty())
        .unwrap();
    let resp = within("bytes response", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    let mut body = resp.into_body();
    let mut pos: u64 = 0;
    while let Some(data) = next_data(&mut body).await {
        for b in data.iter() {
            assert_eq!(*b, pattern_byte(pos), "byte {pos}");
            pos += 1;
        }
    }
    assert_eq!(pos, size);
}

#[tokio::test]
async fn stream_chunks_arrive_as_separate_frames() {
    let addr = server().await;
    let mut client = h2(addr).await;
    let req = Request::get(format!("http://{addr}/stream?chunks=3&interval_ms=20"))
        .body(empty())
        .unwrap();
    let resp = within("stream response", client.send_request(req))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(data) = next_data(&mut body).await {
        frames.push(String::from_utf8(data.to_vec()).unwrap());
    }
    assert_eq!(frames, ["chunk 0\n", "chunk 1\n", "chunk 2\n"]);
}

/// A gRPC call's outcome as seen on the wire.
struct GrpcOutcome {
    messages: Vec<Bytes>,
    trailers: HeaderMap,
}

impl GrpcOutcome {
    fn status(&self) -> &str {
        self.trailers["grpc-status"].to_str().unwrap()
    }
}

async fn read_grpc(resp: Response<Incoming>) -> GrpcOutcome {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut body = resp.into_body();
    let mut decoder = FrameDecoder::new();
    let mut messages = Vec::new();
    let mut trailers = None;
    while let Some(frame) = within("grpc frame", body.frame()).await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(data) => {
                decoder.push(&data);
                while let Some(m) = decoder.next_message().unwrap() {
                    messages.push(m);
                }
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    decoder.finish().unwrap();
    GrpcOutcome {
        messages,
        trailers: trailers.expect("no trailers"),
    }
}

async fn grpc_call(
    addr: SocketAddr,
    path: &str,
    metadata: &[(&str, &str)],
    body: Bytes,
) -> GrpcOutcome {
    let mut client = h2(addr).await;
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body).boxed_unsync()).unwrap();
    let resp = within("grpc response", client.send_request(req))
        .await
        .unwrap();
    read_grpc(resp).await
}

#[tokio::test]
async fn grpc_unary_and_server_stream_echo() {
    let addr = server().await;
    let out = grpc_call(addr, "/weft.testapp.Echo/Unary", &[], encode_message(b"hi")).await;
    assert_eq!(out.status(), "0");
    assert_eq!(out.messages, [Bytes::from_static(b"hi")]);
    assert_eq!(out.trailers["x-testapp-name"], "testapp");

    let out = grpc_call(
        addr,
        "/weft.testapp.Echo/ServerStream",
        &[],
        encode_message(b"s"),
    )
    .await;
    assert_eq!(out.status(), "0");
    assert_eq!(out.messages.len(), 3);

    let out = grpc_call(
        addr,
        "/weft.testapp.Echo/ServerStream",
        &[("x-stream-count", "7")],
        encode_message(b"s"),
    )
    .await;
    assert_eq!(out.messages.len(), 7);

    let out = grpc_call(
        addr,
        "/weft.testapp.Echo/ServerStream",
        &[("x-stream-count", "lots")],
        encode_message(b"s"),
    )
    .await;
    assert_eq!(out.status(), "3");
    assert!(out.messages.is_empty());
}

#[tokio::test]
async fn grpc_errors_map_to_status_codes() {
    let addr = server().await;
    let unary = "/weft.testapp.Echo/Unary";

    let out = grpc_call(addr, "/weft.testapp.Echo/Nope", &[], encode_message(b"x")).await;
    assert_eq!(out.status(), "12");

    let compressed = Bytes::from_static(&[1, 0, 0, 0, 1, b'x']);
    let out = grpc_call(addr, unary, &[], compressed).await;
    assert_eq!(out.status(), "12");

    let mut huge = BytesMut::new();
    huge.put_u8(0);
    huge.put_u32(4 * 1024 * 1024 + 1);
    let out = grpc_call(addr, unary, &[], huge.freeze()).await;
    assert_eq!(out.status(), "8");

    let msg = encode_message(b"truncated");
    let out = grpc_call(addr, unary, &[], msg.slice(..msg.len() - 2)).await;
    assert_eq!(out.status(), "13");

    let out = grpc_call(addr, unary, &[], Bytes::new()).await;
    assert_eq!(out.status(), "13");

    let out = grpc_call(
        addr,
        unary,
        &[
            ("x-testapp-grpc-status", "9"),
            ("x-testapp-grpc-message", "precondition 100% failed"),
        ],
        encode_message(b"still echoed"),
    )
    .await;
    assert_eq!(out.status(), "9");
    assert_eq!(out.trailers["grpc-message"], "precondition 100%25 failed");
    assert_eq!(out.messages, [Bytes::from_static(b"still echoed")]);
}

#[tokio::test]
async fn grpc_bidi_echoes_each_message_as_it_arrives() {
    let addr = server().await;
    let mut client = h2(addr).await;
    let (tx, body) = channel_body();
    let req = Request::post(format!("http://{addr}/weft.testapp.Echo/BidiStream"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let resp = within("bidi response head", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut decoder = FrameDecoder::new();
    for i in 0..4 {
        let msg = format!("message {i}");
        let wire = encode_message(msg.as_bytes());
        // Split each message across two chunks to exercise reassembly on the server.
        tx.send(wire.slice(..3)).await.unwrap();
        tx.send(wire.slice(3..)).await.unwrap();
        let echoed = loop {
            if let Some(m) = decoder.next_message().unwrap() {
                break m;
            }
            let data = next_data(&mut body).await.expect("bidi ended early");
            decoder.push(&data);
        };
        assert_eq!(echoed, msg.as_bytes());
    }
    drop(tx);
    let mut trailers = None;
    while let Some(frame) = within("bidi end", body.frame()).await {
        if let Ok(t) = frame.unwrap().into_trailers() {
            trailers = Some(t);
        }
    }
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
}
