//! The local mesh end to end, through the CLI binaries as a user runs them: `weft demo
//! --detach` starts a meshed emojivoto; `weft check --proxy` turns green; viz shows every
//! app-to-app edge secured, golden metrics and a live tap with `tls=true`; a malformed manifest
//! dropped into the cluster is reported and the mesh keeps serving; `weft demo stop` leaves no
//! process behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_e2e::{alive, bin, weft, WeftRun as Out};

/// Runs `weft ARGS` until `ok` accepts its output or `timeout` passes; returns the last run.
fn eventually(home: &Path, args: &[&str], timeout: Duration, ok: impl Fn(&Out) -> bool) -> Out {
    let deadline = Instant::now() + timeout;
    loop {
        let out = weft(home, args);
        if ok(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Pids recorded by the cluster: the control plane and every workload's app and proxy.
fn recorded_pids(cluster: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cluster.join("run/control-plane.json")).unwrap())
            .unwrap();
    pids.push(cp["pid"].as_u64().unwrap() as u32);
    for e in std::fs::read_dir(cluster.join("run/workloads")).unwrap() {
        let w: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        for key in ["app_pid", "proxy_pid"] {
            if let Some(p) = w[key].as_u64() {
                pids.push(p as u32);
            }
        }
    }
    pids
}

/// Stops the demo even when an assertion fails, so no test leaves processes behind.
struct Demo<'a>(&'a Path);

impl Drop for Demo<'_> {
    fn drop(&mut self) {
        let _ = weft(self.0, &["demo", "stop"]);
    }
}

#[test]
fn the_demo_is_meshed_observable_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // A network of this test process's own (see weft_e2e::workload_ip for the scheme).
    let net = format!("127.{}.250.0/24", 100 + std::process::id() % 150);
    let started = weft(&home, &["demo", "--detach", "--network", &net]);
    let _guard = Demo(&home);
    assert_eq!(
        started.code, 0,
        "weft demo failed: {}\n{}",
        started.stdout, started.stderr
    );
    assert!(
        started.stdout.contains("weft viz stat"),
        "{}",
        started.stdout
    );
    assert!(
        started.stderr.contains("[5/5]"),
        "progress is shown: {}",
        started.stderr
    );
    let cluster = home.join("west");
    let pids = recorded_pids(&cluster);
    assert_eq!(
        pids.len(),
        1 + 4 * 2,
        "control plane + 4 apps + 4 proxies: {pids:?}"
    );

    // Within 30 s the data plane checks are green.
    let check = eventually(&home, &["check", "--proxy"], Duration::from_secs(30), |o| {
        o.code == 0
    });
    assert_eq!(
        check.code, 0,
        "weft check --proxy:\n{}\n{}",
        check.stdout, check.stderr
    );
    assert!(
        check.stdout.contains("Status check results are √"),
        "{}",
        check.stdout
    );

    // Every app-to-app edge is mTLS.
    let edges = eventually(
        &home,
        &["viz", "edges", "deployment", "-n", "emojivoto"],
        Duration::from_secs(30),
        |o| {
            ["web emoji", "web voting", "vote-bot web"]
                .iter()
                .all(|e| edge_line(&o.stdout, e).is_some())
        },
    );
    for e in ["web emoji", "web voting", "vote-bot web"] {
        let line = edge_line(&edges.stdout, e)
            .unwrap_or_else(|| panic!("no edge {e}:\n{}\n{}", edges.stdout, edges.stderr));
        assert!(line.ends_with('√'), "edge {e} not secured: {line}");
    }

    // Golden metrics: web serves traffic, with a success rate.
    let stat = eventually(
        &home,
        &["viz", "stat", "deploy", "-n", "emojivoto", "-o", "json"],
        Duration::from_secs(30),
        |o| rps_of(&o.stdout, "web").is_some_and(|r| r > 0.0),
    );
    let web_rps = rps_of(&stat.stdout, "web");
    assert!(
        web_rps.is_some_and(|r| r > 0.0),
        "web has no RPS:\n{}\n{}",
        stat.stdout,
        stat.stderr
    );
    let table = weft(&home, &["viz", "stat", "deploy", "-n", "emojivoto"]);
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    let web_row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(
        web_row.contains('%'),
        "web's success rate: {}",
        table.stdout
    );

    // Live tap: a request line with tls=true.
    let mut tap = Command::new(bin("weft"))
        .args(["viz", "tap", "deploy/web", "-n", "emojivoto"])
        .env("WEFT_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tap.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if line.starts_with("req ") && line.contains("tls=true") {
                    break Some(line);
                }
                seen.push(line);
            }
            Err(_) if Instant::now() > deadline => break None,
            Err(_) => {}
        }
    };
    let _ = tap.kill();
    let _ = tap.wait();
    let line = found.unwrap_or_else(|| panic!("no `req … tls=true` line; saw {seen:?}"));
    assert!(line.contains(":method="), "{line}");
    assert!(line.contains(":path="), "{line}");

    // A malformed manifest is reported (file and line) while the rest keeps serving.
    std::fs::write(
        cluster.join("manifests/broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  namespace: emojivoto\nspec:\n  ports: [{port: eighty}]\n",
    )
    .unwrap();
    let check = weft(&home, &["check"]);
    assert_eq!(
        check.code, 1,
        "a malformed manifest fails the check:\n{}",
        check.stdout
    );
    assert!(check.stdout.contains("broken.yaml"), "{}", check.stdout);
    // Traffic after the broken file landed: voting serves within a window that starts after it.
    std::thread::sleep(Duration::from_secs(5));
    let after = eventually(
        &home,
        &[
            "viz",
            "stat",
            "deploy/voting",
            "-n",
            "emojivoto",
            "-t",
            "4s",
            "-o",
            "json",
        ],
        Duration::from_secs(15),
        |o| rps_of(&o.stdout, "voting").is_some_and(|r| r > 0.0),
    );
    assert!(
        rps_of(&after.stdout, "voting").is_some_and(|r| r > 0.0),
        "voting still serves after the broken manifest:\n{}\n{}",
        after.stdout,
        after.stderr
    );
    // GET /api/list fails now and then by design (voting's error rate; the profile's retries
    // through web's proxy hide most of it), so it must succeed within a few tries.
    let mut bodies = Vec::new();
    let served = (0..5).any(|_| {
        let curl = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "-x"])
            .arg(started_web_proxy(&net))
            .arg("http://web-svc.emojivoto.svc.cluster.local/api/list")
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&curl.stdout).into_owned();
        let ok = curl.status.success() && body.contains("\"shortcode\"");
        bodies.push(body);
        ok
    });
    assert!(
        served,
        "GET /api/list through web's proxy never succeeded: {bodies:?}"
    );

    // Stop: nothing is left running.
    let stop = weft(&home, &["demo", "stop"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// `web`'s proxy outbound address on the demo's network (`127.A.B.3:4140`).
fn started_web_proxy(net: &str) -> String {
    let prefix = net.trim_end_matches(".0/24");
    format!("{prefix}.3:4140")
}

/// The line of edge `"SRC DST"` in `weft viz edges` output.
fn edge_line<'a>(table: &'a str, edge: &str) -> Option<&'a str> {
    let (src, dst) = edge.split_once(' ')?;
    table.lines().find(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() >= 5 && cols[0] == src && cols[1] == dst
    })
}

/// The RPS of row `name` in `weft viz stat -o json` output.
fn rps_of(json: &str, name: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let rows = v
        .get("rows")
        .and_then(|r| r.as_array())
        .or_else(|| v.as_array())?;
    rows.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["rps"].as_f64())
}

/// In the foreground, `weft demo` runs until Ctrl-C (SIGINT) and then stops everything it
/// started.
#[test]
fn ctrl_c_stops_a_foreground_demo() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let net = format!("127.{}.249.0/24", 100 + std::process::id() % 150);
    let mut demo = Command::new(bin("weft"))
        .args(["demo", "--network", &net])
        .env("WEFT_HOME", &home)
        .env_remove("WEFT_CONTEXT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Demo(&home);
    let stdout = demo.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let running = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("Ctrl-C stops everything"));
    assert!(running, "the demo did not report that it runs");
    let pids = recorded_pids(&home.join("west"));
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");

    kill(Pid::from_raw(demo.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = demo.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "weft demo did not exit after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "processes left running after Ctrl-C: {left:?}"
    );
    assert!(!home.join("west/run/control-plane.json").exists());
}
