//! `/ws`: a WebSocket echo server running tokio-tungstenite over hyper's HTTP/1.1 upgrade.
//!
//! Text and binary messages are echoed; pings are answered by tungstenite; a close is answered
//! with a close and ends the task.

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::body::{empty, Body};
use crate::routes::text;

/// Whether a comma-separated header contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Validates the upgrade request, answers `101 Switching Protocols` and spawns the echo loop on
/// the upgraded connection.
pub(crate) fn upgrade(mut req: Request<Incoming>) -> Response<Body> {
    if req.version() != Version::HTTP_11 {
        return text(
            StatusCode::BAD_REQUEST,
            "/ws needs an HTTP/1.1 upgrade (WebSocket over HTTP/2 is not supported)\n",
        );
    }
    let headers = req.headers();
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        let mut resp = text(
            StatusCode::UPGRADE_REQUIRED,
            "/ws needs Connection: upgrade and Upgrade: websocket\n",
        );
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return resp;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "/ws needs Sec-WebSocket-Version: 13\n",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "/ws needs Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key\n");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    echo(ws).await;
                }
                Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
            }
        }
        .instrument(tracing::debug_span!("ws")),
    );

    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

/// Echoes data messages until the peer closes or the connection fails.
async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(error) => {
                tracing::debug!(%error, "websocket read failed");
                return;
            }
        };
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Pong(_) | Message::Frame(_) => continue,
            // tungstenite queues the pong and the close reply itself; flushing sends them.
            Message::Ping(_) | Message::Close(_) => {
                let _ = ws.flush().await;
                continue;
            }
        };
        if let Err(error) = ws.send(reply).await {
            tracing::debug!(%error, "websocket write failed");
            return;
        }
    }
}
