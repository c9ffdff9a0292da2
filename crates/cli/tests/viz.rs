//! `weft viz` against a fixed-response viz API: tables, JSON, tap lines, check, and the
//! one-line errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};

use weft_store::cluster::{ClusterConfig, ClusterDir, ControlPlaneState};

/// A viz API that answers each path (by prefix) with a fixed status and body, and records the
/// request lines it got.
struct FakeApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    fn start(routes: Vec<(&'static str, u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(path.clone());
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| path.starts_with(p))
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((404, r#"{"error":"no such endpoint"}"#.to_owned()));
                let _ = write!(
                    stream,
                    "HTTP/1.0 {status} X\r\nContent-Type: application/json\r\n\r\n{body}"
                );
            }
        });
        Self { addr, requests }
    }

    fn last_request(&self) -> String {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// A `$WEFT_HOME` with cluster `west` whose control plane's viz API is `viz`.
fn home(viz: SocketAddr) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let dir = ClusterDir::new(home.path(), "west");
    dir.write_config(&ClusterConfig::new("west", [0, 1]))
        .unwrap();
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    dir.write_control_plane(&ControlPlaneState {
        pid: std::process::id(),
        started_at: 0,
        identity: any,
        destination: any,
        viz,
        admin: any,
    })
    .unwrap();
    home
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn weft(home: &tempfile::TempDir, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_HOME", home.path())
        .env_remove("WEFT_CONTEXT")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const STAT: &str = r#"{"window_seconds":60.0,"rows":[
 {"kind":"deployment","namespace":"emojivoto","name":"emoji","meshed":1,"total":1,"requests":240.0,"successes":240.0,"success_rate":1.0,"rps":4.0,"latency_ms_p50":1.0,"latency_ms_p95":4.75,"latency_ms_p99":9.5,"tcp_connections":2.0},
 {"kind":"deployment","namespace":"emojivoto","name":"vote-bot","meshed":1,"total":1,"requests":0.0,"successes":0.0,"success_rate":null,"rps":0.0,"latency_ms_p50":null,"latency_ms_p95":null,"latency_ms_p99":null,"tcp_connections":null},
 {"kind":"deployment","namespace":"emojivoto","name":"voting","meshed":1,"total":2,"requests":120.0,"successes":108.0,"success_rate":0.9,"rps":2.0,"latency_ms_p50":12.0,"latency_ms_p95":48.0,"latency_ms_p99":96.0,"tcp_connections":1.0}
]}"#;

#[test]
fn stat_prints_linkerds_columns_and_json() {
    let api = FakeApi::start(vec![("/api/stat", 200, STAT.to_owned())]);
    let home = home(api.addr);
    let out = weft(&home, &["viz", "stat", "deploy", "-n", "emojivoto"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "NAME      MESHED  SUCCESS  RPS     LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN\n\
         emoji     1/1     100.00%  4.0rps  1ms          4.8ms        9.5ms        2\n\
         vote-bot  1/1     -        -       -            -            -            -\n\
         voting    1/2     90.00%   2.0rps  12ms         48ms         96ms         1\n"
    );
    assert_eq!(
        api.last_request(),
        "/api/stat?resource=deploy&namespace=emojivoto&window=60000ms"
    );

    // `KIND NAME`, --from and -t reach the API as parameters.
    let out = weft(
        &home,
        &[
            "viz",
            "stat",
            "deploy",
            "web",
            "-n",
            "emojivoto",
            "--from",
            "deploy/vote-bot",
            "-t",
            "30s",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        api.last_request(),
        "/api/stat?resource=deploy/web&namespace=emojivoto&from=deploy/vote-bot&window=30000ms"
    );

    let out = weft(
        &home,
        &["viz", "stat", "deploy", "-n", "emojivoto", "-o", "json"],
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["rows"][2]["success_rate"], 0.9);
}

#[test]
fn edges_and_routes_tables() {
    let edges = r#"{"rows":[
      {"src":"vote-bot","dst":"web","src_namespace":"emojivoto","dst_namespace":"emojivoto","secured":true,"no_tls_reason":null},
      {"src":"web","dst":"voting","src_namespace":"emojivoto","dst_namespace":"emojivoto","secured":false,"no_tls_reason":"not_meshed"}]}"#;
    let routes = r#"{"rows":[
      {"route":"GET /api/list","service":"web-svc","namespace":"emojivoto","requests":60.0,"success_rate":0.95,"rps":1.0,"latency_ms_p50":3.0,"latency_ms_p95":9.0,"latency_ms_p99":10.0,"retries":4.0,"budget_exhausted":1.0},
      {"route":"POST /api/vote","service":"web-svc","namespace":"emojivoto","requests":0.0,"success_rate":null,"rps":null,"retries":0.0,"budget_exhausted":0.0}]}"#;
    let api = FakeApi::start(vec![
        ("/api/edges", 200, edges.to_owned()),
        ("/api/routes", 200, routes.to_owned()),
    ]);
    let home = home(api.addr);
    let out = weft(&home, &["viz", "edges", "deployment", "-n", "emojivoto"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "SRC       DST     SRC_NS     DST_NS     SECURED\n\
         vote-bot  web     emojivoto  emojivoto  √\n\
         web       voting  emojivoto  emojivoto  not_meshed\n"
    );
    let out = weft(&home, &["viz", "routes", "deploy/web", "-n", "emojivoto"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "ROUTE           SERVICE  SUCCESS  RPS     LATENCY_P50  LATENCY_P95  LATENCY_P99  RETRIES  BUDGET_EXHAUSTED\n\
         GET /api/list   web-svc  95.00%   1.0rps  3ms          9ms          10ms         4        1\n\
         POST /api/vote  web-svc  -        -       -            -            -            0        0\n"
    );
}

#[test]
fn tap_prints_linkerd_lines_until_the_stream_ends() {
    let lines = [
        r#"{"kind":"req","namespace":"emojivoto","pod":"web-0","id":"0:1","proxy":"in","src":"127.0.1.4:5000","dst":"127.0.1.3:8080","tls":"true","method":"GET","authority":"web-svc.emojivoto:80","path":"/api/list"}"#,
        "",
        r#"{"kind":"error","namespace":"emojivoto","pod":"web-1","error":"tap emojivoto/web-1 at 127.0.1.5:4190: cannot connect: connection refused"}"#,
        r#"{"kind":"rsp","namespace":"emojivoto","pod":"web-0","id":"0:1","proxy":"in","src":"127.0.1.4:5000","dst":"127.0.1.3:8080","tls":"true","status":200,"latency_us":1234}"#,
        r#"{"kind":"end","namespace":"emojivoto","pod":"web-0","id":"0:1","proxy":"in","src":"127.0.1.4:5000","dst":"127.0.1.3:8080","tls":"true","latency_us":1300,"duration_us":56,"response_bytes":123}"#,
    ];
    let api = FakeApi::start(vec![("/api/tap", 200, lines.join("\n") + "\n")]);
    let home = home(api.addr);
    let out = weft(
        &home,
        &[
            "viz",
            "tap",
            "deploy/web",
            "-n",
            "emojivoto",
            "--path",
            "/api",
            "--max-rps",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "req id=0:1 proxy=in  src=127.0.1.4:5000 dst=127.0.1.3:8080 tls=true :method=GET :authority=web-svc.emojivoto:80 :path=/api/list\n\
         rsp id=0:1 proxy=in  src=127.0.1.4:5000 dst=127.0.1.3:8080 tls=true :status=200 latency=1234µs\n\
         end id=0:1 proxy=in  src=127.0.1.4:5000 dst=127.0.1.3:8080 tls=true duration=56µs response-length=123B\n"
    );
    assert_eq!(
        out.stderr,
        "warning: cannot tap emojivoto/web-1: tap emojivoto/web-1 at 127.0.1.5:4190: cannot connect: connection refused\n"
    );
    assert_eq!(
        api.last_request(),
        "/api/tap?resource=deploy/web&namespace=emojivoto&path=/api&max_rps=5"
    );
    let out = weft(&home, &["viz", "tap", "deploy/web", "-o", "json"]);
    assert_eq!(out.stdout.lines().count(), 3);

    // top, not on a terminal: one table.
    let out = weft(
        &home,
        &[
            "viz",
            "top",
            "deploy/web",
            "-n",
            "emojivoto",
            "--once",
            "1s",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "SOURCE     DESTINATION  METHOD  PATH       COUNT  BEST  WORST  LAST  SUCCESS_RATE\n\
         127.0.1.4  web-0        GET     /api/list  1      1ms   1ms    1ms   100.00%\n"
    );
}

#[test]
fn errors_are_one_line() {
    let api = FakeApi::start(vec![(
        "/api/stat",
        400,
        r#"{"error":"window: invalid duration \"5\": a number has no unit"}"#.to_owned(),
    )]);
    let home = home(api.addr);
    let out = weft(&home, &["viz", "stat", "deploy"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "error: window: invalid duration \"5\": a number has no unit\n"
    );

    // Nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let home = self::home(closed);
    for args in [
        &["viz", "stat", "deploy"][..],
        &["viz", "tap", "deploy/web"][..],
        &["viz", "edges", "deploy"][..],
    ] {
        let out = weft(&home, args);
        assert_eq!(out.code, 1);
        assert_eq!(
            out.stderr,
            format!("error: the viz API at {closed} is not reachable: connection refused (is the control plane running? weft check)\n")
        );
    }

    // No control plane.
    let empty = tempfile::tempdir().unwrap();
    ClusterDir::new(empty.path(), "west")
        .write_config(&ClusterConfig::new("west", [0, 1]))
        .unwrap();
    let out = weft(&empty, &["viz", "stat", "deploy"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: the control plane of cluster \"west\" is not running"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn check_reports_targets() {
    let up = r#"{"scrape_interval_seconds":2.0,"targets":[
      {"namespace":"emojivoto","pod":"web-0","deployment":"web","url":"http://127.0.1.3:4191/metrics","up":true,"last_error":null,"last_success":1.0,"samples":10}]}"#;
    let api = FakeApi::start(vec![("/api/targets", 200, up.to_owned())]);
    let home = home(api.addr);
    let out = weft(&home, &["viz", "check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("√ viz scrapes 1 proxies\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("Status check results are √\n"),
        "{}",
        out.stdout
    );

    let down = r#"{"scrape_interval_seconds":2.0,"targets":[
      {"namespace":"emojivoto","pod":"web-0","url":"http://127.0.1.3:4191/metrics","up":true,"samples":10},
      {"namespace":"emojivoto","pod":"voting-0","url":"http://127.0.1.5:4191/metrics","up":false,"last_error":"connect to 127.0.1.5:4191: Connection refused (os error 111)","samples":0}]}"#;
    let api = FakeApi::start(vec![("/api/targets", 200, down.to_owned())]);
    let home = self::home(api.addr);
    let out = weft(&home, &["viz", "check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("× every proxy's metrics can be read\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("emojivoto/voting-0 (http://127.0.1.5:4191/metrics): connect to"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("Status check results are ×\n"),
        "{}",
        out.stdout
    );

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let home = self::home(closed);
    let out = weft(&home, &["viz", "check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("× viz API is reachable\n"),
        "{}",
        out.stdout
    );
}
