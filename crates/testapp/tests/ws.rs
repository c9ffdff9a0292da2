//! `/ws` through a real WebSocket client (Python `websockets`).
#![allow(clippy::unwrap_used)]

mod common;

use common::python_script;
use weft_testapp::{spawn, ServerConfig};

const CLIENT: &str = r#"
import sys
from websockets.sync.client import connect

with connect(sys.argv[1], open_timeout=10, close_timeout=10) as ws:
    ws.send("hello over ws")
    assert ws.recv(timeout=10) == "hello over ws"
    payload = bytes(range(256)) * 300
    ws.send(payload)
    got = ws.recv(timeout=10)
    assert got == payload, (type(got), len(got))
    for i in range(20):
        ws.send(f"m{i}")
    assert [ws.recv(timeout=10) for _ in range(20)] == [f"m{i}" for i in range(20)]
    assert ws.ping(b"p").wait(10), "no pong"
    ws.close(code=1000, reason="done")
    assert ws.close_code == 1000, ws.close_code
print("ws ok")
"#;

#[tokio::test]
async fn websocket_echoes_text_binary_ping_and_close() {
    let addr = spawn(ServerConfig::default()).await.unwrap();
    let url = format!("ws://{addr}/ws");
    let out = python_script(CLIENT, &[&url]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ws ok"),
        "websocket client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
