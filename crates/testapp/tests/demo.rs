//! The emojivoto-like demo roles (`weft-testapp demo <role>`), run as real processes on
//! 127.0.0.1 port 0: emoji and voting answer their APIs, web composes them, the vote-bot drives
//! web, `--proxy` sends every upstream call through an HTTP proxy naming the service in `Host`,
//! and every role exits 0 on SIGTERM/SIGINT.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{curl, run, within, CurlResponse};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_weft-testapp");

const EMOJI_SVC: &str = "emoji-svc.emojivoto.svc.cluster.local:8080";
const VOTING_SVC: &str = "voting-svc.emojivoto.svc.cluster.local:8080";
const WEB_SVC: &str = "web-svc.emojivoto.svc.cluster.local:80";

/// A running role; killed when dropped.
struct Role {
    child: Child,
    /// The announced address (server roles).
    addr: String,
    /// stderr lines, as they are written.
    stderr: mpsc::UnboundedReceiver<String>,
}

/// Starts `weft-testapp demo ARGS...`; for server roles (`listen`), waits for
/// `listening on ADDR`.
async fn start(args: &[&str], listen: bool) -> Role {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo").args(args);
    if listen {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Drain stderr continuously so a chatty role never blocks on a full pipe.
    let (tx, stderr) = mpsc::unbounded_channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    let mut addr = String::new();
    if listen {
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        within(
            "the listening line",
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .unwrap();
        addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?} of {args:?}"))
            .trim()
            .to_string();
    }
    Role {
        child,
        addr,
        stderr,
    }
}

async fn emoji() -> Role {
    start(&["emoji"], true).await
}

async fn voting(error_rate: &str) -> Role {
    start(&["voting", "--error-rate", error_rate], true).await
}

async fn web(emoji: &str, voting: &str, proxy: Option<&str>) -> Role {
    let mut args = vec![
        "web",
        "--emoji-authority",
        emoji,
        "--voting-authority",
        voting,
    ];
    if let Some(p) = proxy {
        args.extend(["--proxy", p]);
    }
    start(&args, true).await
}

async fn get(addr: &str, path: &str) -> CurlResponse {
    curl(&[&format!("http://{addr}{path}")]).await
}

async fn post(addr: &str, path: &str) -> CurlResponse {
    curl(&["-X", "POST", &format!("http://{addr}{path}")]).await
}

/// The sum of `"votes":N` in a leaderboard.
fn total_votes(board: &str) -> u64 {
    board
        .split("\"votes\":")
        .skip(1)
        .map(|s| {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap()
        })
        .sum()
}

/// Polls voting's leaderboard until it holds at least `n` votes.
async fn wait_for_votes(voting: &str, n: u64) -> String {
    within("votes in the leaderboard", async {
        loop {
            let r = get(voting, "/api/leaderboard").await;
            if r.status == 200 && total_votes(&r.text()) >= n {
                return r.text();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// Sends `signal` (`TERM`, `INT`) to the role and returns how it exited.
async fn signal(role: &mut Role, signal: &str) -> ExitStatus {
    let pid = role.child.id().unwrap().to_string();
    let out = run(Command::new("kill").args(["-s", signal, &pid]), "kill").await;
    assert!(out.status.success(), "kill -s {signal} {pid} failed");
    tokio::time::timeout(Duration::from_secs(5), role.child.wait())
        .await
        .unwrap_or_else(|_| panic!("role did not exit within 5s of SIG{signal}"))
        .unwrap()
}

#[tokio::test]
async fn emoji_lists_and_finds() {
    let e = emoji().await;
    let r = get(&e.addr, "/api/list").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-testapp-name"), Some("emoji"));
    let list = r.text();
    assert!(list.starts_with('[') && list.ends_with(']'), "{list}");
    assert!(
        list.contains(r#"{"shortcode":":joy:","unicode":"😂"}"#),
        "{list}"
    );
    assert!(list.matches("\"shortcode\"").count() >= 20, "{list}");

    let r = get(&e.addr, "/api/find?shortcode=:joy:").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"shortcode":":joy:","unicode":"😂"}"#);
    let r = get(&e.addr, "/api/find?shortcode=%3Afire%3A").await;
    assert_eq!(r.text(), r#"{"shortcode":":fire:","unicode":"🔥"}"#);
    assert_eq!(get(&e.addr, "/api/find?shortcode=:nope:").await.status, 404);
    assert_eq!(get(&e.addr, "/api/find").await.status, 400);
    assert_eq!(post(&e.addr, "/api/list").await.status, 405);
    assert_eq!(get(&e.addr, "/nothing").await.status, 404);

    let named = start(&["emoji", "--name", "emoji-v2"], true).await;
    let r = get(&named.addr, "/api/list").await;
    assert_eq!(r.header("x-testapp-name"), Some("emoji-v2"));
}

#[tokio::test]
async fn voting_counts_votes_into_a_sorted_leaderboard() {
    let v = voting("0").await;
    assert_eq!(get(&v.addr, "/api/leaderboard").await.text(), "[]");
    for choice in [":fire:", ":joy:", "%3Afire%3A", ":100:", ":joy:", ":fire:"] {
        let r = post(&v.addr, &format!("/api/vote?choice={choice}")).await;
        assert_eq!(r.status, 200, "{choice}: {}", r.text());
    }
    assert_eq!(post(&v.addr, "/api/vote?choice=:nope:").await.status, 400);
    assert_eq!(post(&v.addr, "/api/vote").await.status, 400);
    assert_eq!(get(&v.addr, "/api/vote?choice=:joy:").await.status, 405);
    let r = get(&v.addr, "/api/leaderboard").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-testapp-name"), Some("voting"));
    assert_eq!(
        r.text(),
        r#"[{"shortcode":":fire:","votes":3},{"shortcode":":joy:","votes":2},{"shortcode":":100:","votes":1}]"#
    );
}

#[tokio::test]
async fn voting_error_rate_fails_that_share_of_all_requests() {
    let always = voting("1").await;
    for _ in 0..10 {
        assert_eq!(get(&always.addr, "/api/leaderboard").await.status, 500);
        assert_eq!(
            post(&always.addr, "/api/vote?choice=:joy:").await.status,
            500
        );
        assert_eq!(get(&always.addr, "/anything").await.status, 500);
    }
    let never = voting("0").await;
    for _ in 0..20 {
        assert_eq!(
            post(&never.addr, "/api/vote?choice=:joy:").await.status,
            200
        );
        assert_eq!(get(&never.addr, "/api/leaderboard").await.status, 200);
    }
    assert_eq!(
        get(&never.addr, "/api/leaderboard").await.text(),
        r#"[{"shortcode":":joy:","votes":20}]"#
    );
}

#[tokio::test]
async fn web_composes_emoji_and_voting() {
    let e = emoji().await;
    let v = voting("0").await;
    let w = web(&e.addr, &v.addr, None).await;

    let r = get(&w.addr, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("/api/list"), "{}", r.text());

    let r = get(&w.addr, "/api/list").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-testapp-name"), Some("web"));
    assert_eq!(r.text(), get(&e.addr, "/api/list").await.text());

    for _ in 0..3 {
        let r = post(&w.addr, "/api/vote?choice=:tada:").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(post(&w.addr, "/api/vote?choice=:nope:").await.status, 400);
    assert_eq!(
        get(&v.addr, "/api/leaderboard").await.text(),
        r#"[{"shortcode":":tada:","votes":3}]"#
    );
}

#[tokio::test]
async fn web_fails_when_voting_fails() {
    let e = emoji().await;
    let failing = voting("1").await;
    let w = web(&e.addr, &failing.addr, None).await;
    let r = get(&w.addr, "/api/list").await;
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains(&failing.addr) && r.text().contains("500"),
        "{}",
        r.text()
    );
    assert_eq!(post(&w.addr, "/api/vote?choice=:joy:").await.status, 500);

    // Nothing listening: the list fails with 500 naming the service, the vote with 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let w = web(&e.addr, &dead_addr, None).await;
    let r = get(&w.addr, "/api/list").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains(&dead_addr), "{}", r.text());
    assert_eq!(post(&w.addr, "/api/vote?choice=:joy:").await.status, 502);
}

#[tokio::test]
async fn vote_bot_drives_web_and_logs_summaries() {
    let e = emoji().await;
    let v = voting("0").await;
    let w = web(&e.addr, &v.addr, None).await;
    let mut bot = start(
        &[
            "vote-bot",
            "--web-authority",
            &w.addr,
            "--rps",
            "20",
            "--summary-interval",
            "300ms",
        ],
        false,
    )
    .await;
    let board = wait_for_votes(&v.addr, 5).await;
    assert!(board.contains("\"shortcode\":\":"), "{board}");
    let summary = within("a summary line", async {
        loop {
            let line = bot.stderr.recv().await.unwrap();
            if line.contains("total") && !line.contains("total 0 ok") {
                return line;
            }
        }
    })
    .await;
    assert!(summary.contains(" ok, 0 failed"), "{summary}");
    assert!(
        !summary.contains('\u{1b}'),
        "logs must be plain text: {summary:?}"
    );
    assert!(signal(&mut bot, "TERM").await.success());
}

#[tokio::test]
async fn vote_bot_survives_a_missing_web() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut bot = start(
        &[
            "vote-bot",
            "--web-authority",
            &dead_addr,
            "--summary-interval",
            "300ms",
        ],
        false,
    )
    .await;
    // The line the loop waits for is the assertion: nothing succeeded, and failures are counted.
    within("a summary line with failures", async {
        loop {
            let line = bot.stderr.recv().await.unwrap();
            if line.contains("total 0 ok,") && !line.contains("total 0 ok, 0 failed") {
                return line;
            }
        }
    })
    .await;
    assert!(bot.child.try_wait().unwrap().is_none(), "the bot exited");
    assert!(signal(&mut bot, "INT").await.success());
}

/// A tiny HTTP proxy that records each request's method, URI and `Host`, and forwards it to
/// the address registered for its `Host` (502 for an unknown one).
#[derive(Clone, Default)]
struct TestProxy {
    routes: Arc<Mutex<HashMap<String, SocketAddr>>>,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl TestProxy {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let proxy = proxy.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let proxy = proxy.clone();
                        let client = client.clone();
                        async move { Ok::<_, Infallible>(proxy.forward(req, &client).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn route(&self, authority: &str, addr: &str) {
        self.routes
            .lock()
            .unwrap()
            .insert(authority.to_string(), addr.parse().unwrap());
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        client: &Client<HttpConnector, Incoming>,
    ) -> Response<Full<Bytes>> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.seen.lock().unwrap().push((
            req.method().to_string(),
            req.uri().to_string(),
            host.clone(),
        ));
        let target = self.routes.lock().unwrap().get(&host).copied();
        let Some(target) = target else {
            let mut resp = Response::new(Full::from(format!("no route for {host}\n")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return resp;
        };
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        *req.uri_mut() = format!("http://{target}{pq}").parse().unwrap();
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, Full::new(body.collect().await.unwrap().to_bytes()))
    }

    /// `(method, path, host)` of every request seen so far.
    fn seen(&self) -> Vec<(String, String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn proxy_mode_sends_every_call_through_the_proxy_with_the_service_authority() {
    let e = emoji().await;
    let v = voting("0").await;
    let proxy = TestProxy::default();
    let proxy_addr = proxy.start().await.to_string();
    proxy.route(EMOJI_SVC, &e.addr);
    proxy.route(VOTING_SVC, &v.addr);
    let w = web(EMOJI_SVC, VOTING_SVC, Some(&proxy_addr)).await;
    proxy.route(WEB_SVC, &w.addr);

    // web → proxy → emoji and voting.
    let r = get(&w.addr, "/api/list").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), get(&e.addr, "/api/list").await.text());
    let r = post(&w.addr, "/api/vote?choice=:rocket:").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = proxy.seen();
    for expected in [
        ("GET", "/api/list", EMOJI_SVC),
        ("GET", "/api/leaderboard", VOTING_SVC),
        ("POST", "/api/vote?choice=:rocket:", VOTING_SVC),
    ] {
        assert!(
            seen.iter()
                .any(|(m, u, h)| (m.as_str(), u.as_str(), h.as_str()) == expected),
            "{expected:?} not in {seen:?}"
        );
    }
    // A failure the proxy synthesizes reaches web's caller: an unknown voting service.
    let w2 = web(EMOJI_SVC, "voting-svc.elsewhere:8080", Some(&proxy_addr)).await;
    assert_eq!(post(&w2.addr, "/api/vote?choice=:joy:").await.status, 502);
    assert_eq!(get(&w2.addr, "/api/list").await.status, 500);

    // vote-bot → proxy → web → proxy → emoji and voting.
    let mut bot = start(
        &[
            "vote-bot",
            "--proxy",
            &proxy_addr,
            "--web-authority",
            WEB_SVC,
            "--rps",
            "20",
        ],
        false,
    )
    .await;
    wait_for_votes(&v.addr, 6).await;
    let seen = proxy.seen();
    let web_calls: Vec<_> = seen.iter().filter(|(_, _, h)| h == WEB_SVC).collect();
    assert!(
        web_calls
            .iter()
            .any(|(m, u, _)| m == "GET" && u == "/api/list"),
        "{seen:?}"
    );
    assert!(
        web_calls
            .iter()
            .any(|(m, u, _)| m == "POST" && u.starts_with("/api/vote?choice=:")),
        "{seen:?}"
    );
    // Nothing reached a service without naming it.
    assert!(
        seen.iter().all(
            |(_, _, h)| [EMOJI_SVC, VOTING_SVC, WEB_SVC, "voting-svc.elsewhere:8080"]
                .contains(&h.as_str())
        ),
        "{seen:?}"
    );
    assert!(signal(&mut bot, "TERM").await.success());
}

#[tokio::test]
async fn server_roles_exit_zero_on_sigterm_and_sigint() {
    for sig in ["TERM", "INT"] {
        let mut e = emoji().await;
        let mut v = voting("0.1").await;
        let mut w = web(&e.addr, &v.addr, None).await;
        // With a connection open, so shutdown does not wait for idle clients.
        assert_eq!(get(&w.addr, "/").await.status, 200);
        for role in [&mut w, &mut v, &mut e] {
            let status = signal(role, sig).await;
            assert!(status.success(), "SIG{sig}: {status:?}");
        }
    }
}

#[tokio::test]
async fn invalid_arguments_fail_with_clear_messages() {
    let cases: &[(&[&str], &str)] = &[
        (&["demo", "emoji"], "--listen"),
        (
            &[
                "demo",
                "voting",
                "--listen",
                "127.0.0.1:0",
                "--error-rate",
                "2",
            ],
            "error-rate",
        ),
        (
            &[
                "demo",
                "web",
                "--listen",
                "127.0.0.1:0",
                "--emoji-authority",
                "nope",
            ],
            "emoji-authority",
        ),
        (
            &["demo", "web", "--listen", "127.0.0.1:0", "--proxy", "x"],
            "proxy",
        ),
        (&["demo", "vote-bot", "--rps", "0"], "rps"),
        (
            &["demo", "vote-bot", "--summary-interval", "0s"],
            "summary-interval",
        ),
        (
            &["demo", "emoji", "--listen", "127.0.0.1:0", "--name", ""],
            "name",
        ),
        (&["demo", "dance"], "dance"),
    ];
    for (args, needle) in cases {
        let out = run(Command::new(BIN).args(*args), "weft-testapp").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} should fail; stderr: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr should mention {needle:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
