//! The web front end: a small HTML page and the API the vote-bot drives.
//!
//! - `GET /` → the page (it calls the API below from the browser).
//! - `GET /api/list` → calls emoji `GET /api/list` *and* voting `GET /api/leaderboard`
//!   concurrently and answers emoji's list; 500 with a message naming the service if either
//!   fails. Needing both is deliberate: voting's injected failures make this call fail
//!   sometimes, which is what a mesh's retries then hide.
//! - `POST /api/vote?choice=X` → voting `POST /api/vote?choice=X`, passing its status and body
//!   through (so a sidecar's 502/503/504 reach the caller); 502/504 when the call itself fails.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::client::{Upstream, UpstreamResponse};
use super::{json, method_not_allowed, not_found, respond, text, Handler};
use crate::body::Body;

/// Where the web front end finds its backends.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The emoji service's authority, e.g. `emoji-svc.emojivoto.svc.cluster.local:8080`.
    pub emoji_authority: String,
    /// The voting service's authority, e.g. `voting-svc.emojivoto.svc.cluster.local:8080`.
    pub voting_authority: String,
}

/// The web front end.
#[derive(Debug)]
pub struct WebService {
    cfg: WebConfig,
    upstream: Upstream,
}

impl WebService {
    /// A front end calling its backends through `upstream`.
    pub fn new(cfg: WebConfig, upstream: Upstream) -> Self {
        Self { cfg, upstream }
    }

    async fn list(&self) -> Response<Body> {
        let (emoji, board) = tokio::join!(
            self.upstream
                .call(Method::GET, &self.cfg.emoji_authority, "/api/list"),
            self.upstream
                .call(Method::GET, &self.cfg.voting_authority, "/api/leaderboard"),
        );
        let emoji = match check(&self.cfg.emoji_authority, emoji) {
            Ok(resp) => resp,
            Err(message) => return text(StatusCode::INTERNAL_SERVER_ERROR, message),
        };
        if let Err(message) = check(&self.cfg.voting_authority, board) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
        json(StatusCode::OK, emoji.body)
    }

    async fn vote(&self, query: Option<&str>) -> Response<Body> {
        let path = match query {
            Some(q) => format!("/api/vote?{q}"),
            None => "/api/vote".to_string(),
        };
        match self
            .upstream
            .call(Method::POST, &self.cfg.voting_authority, &path)
            .await
        {
            Ok(resp) => {
                if !resp.status.is_success() {
                    tracing::info!(dst.authority = %self.cfg.voting_authority, status = resp.status.as_u16(), "vote failed");
                }
                text(resp.status, resp.body)
            }
            Err(error) => {
                let message = chain(&error);
                tracing::info!(dst.authority = %self.cfg.voting_authority, error = %message, "vote failed");
                text(error.gateway_status(), format!("web: {message}\n"))
            }
        }
    }
}

/// A successful upstream response, or the one-line reason it was not.
fn check(
    authority: &str,
    result: Result<UpstreamResponse, super::client::UpstreamError>,
) -> Result<UpstreamResponse, String> {
    match result {
        Ok(resp) if resp.status.is_success() => Ok(resp),
        Ok(resp) => {
            tracing::info!(dst.authority = %authority, status = resp.status.as_u16(), "upstream failed");
            Err(format!("web: {authority} answered {}\n", resp.status))
        }
        Err(error) => {
            let message = chain(&error);
            tracing::info!(dst.authority = %authority, error = %message, "upstream failed");
            Err(format!("web: {message}\n"))
        }
    }
}

/// An error and its causes on one line, `a: b: c`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Handler for WebService {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match (req.uri().path(), req.method()) {
            ("/", &Method::GET) => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
            ("/api/list", &Method::GET) => self.list().await,
            ("/api/vote", &Method::POST) => self.vote(req.uri().query()).await,
            ("/" | "/api/list", _) => method_not_allowed("GET"),
            ("/api/vote", _) => method_not_allowed("POST"),
            (path, _) => not_found(path),
        }
    }
}

/// Serves the web front end on `listener` until the process ends.
pub async fn serve(listener: TcpListener, name: &str, cfg: WebConfig, upstream: Upstream) {
    super::serve(listener, name, WebService::new(cfg, upstream)).await;
}

/// The page at `/`: lists the emoji and votes on a click, through this service's API.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>Weft emojivoto</title>
<style>
body { font-family: sans-serif; margin: 2em; }
button { font-size: 2em; margin: .2em; cursor: pointer; }
#status { color: #666; }
</style>
</head>
<body>
<h1>🗳️ Vote for your favourite emoji</h1>
<div id="emoji">loading…</div>
<p id="status"></p>
<script>
async function load() {
  const status = document.getElementById("status");
  const r = await fetch("/api/list");
  if (!r.ok) { status.textContent = "list failed: " + r.status + " (reload to retry)"; return; }
  const div = document.getElementById("emoji");
  div.textContent = "";
  for (const e of await r.json()) {
    const b = document.createElement("button");
    b.textContent = e.unicode;
    b.title = e.shortcode;
    b.onclick = async () => {
      const v = await fetch("/api/vote?choice=" + encodeURIComponent(e.shortcode), { method: "POST" });
      status.textContent = v.ok ? "voted for " + e.shortcode : "vote failed: " + v.status;
    };
    div.appendChild(b);
  }
}
load();
</script>
</body>
</html>
"#;
