//! The `weft-testapp` binary: `serve` prints its address and serves, `load` reports, and bad
//! arguments fail with a message naming the argument (never a panic).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Output, Stdio};

use common::{curl, run, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use weft_testapp::{spawn, ServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_weft-testapp");

/// Starts `weft-testapp serve` with `args` and returns the child and its announced address.
async fn serve(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    within(
        "the listening line",
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_string();
    (child, addr)
}

async fn bin(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args), "weft-testapp").await
}

/// Asserts the command failed cleanly with a message mentioning `needle`.
fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "stderr should mention {needle:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn serve_announces_its_address_and_applies_flags() {
    let (mut child, addr) = serve(&["--name", "cli-app", "--status", "203"], &[]).await;
    let r = curl(&[&format!("http://{addr}/")]).await;
    assert_eq!(r.status, 203);
    assert_eq!(r.text(), "hello from cli-app\n");
    let r = curl(&["--http2-prior-knowledge", &format!("http://{addr}/?size=3")]).await;
    assert_eq!(r.body, [0, 1, 2]);
    assert_eq!(r.header("x-testapp-version"), Some("HTTP/2"));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_reads_environment_variables() {
    let (mut child, addr) = serve(
        &[],
        &[
            ("WEFT_TESTAPP_NAME", "from-env"),
            ("WEFT_TESTAPP_SIZE", "4"),
        ],
    )
    .await;
    let r = curl(&[&format!("http://{addr}/")]).await;
    assert_eq!(r.header("x-testapp-name"), Some("from-env"));
    assert_eq!(r.body, [0, 1, 2, 3]);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn invalid_arguments_fail_with_clear_messages() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--error-rate", "2"], "error-rate"),
        (&["serve", "--status", "99"], "status"),
        (&["serve", "--latency-ms", "soon"], "latency-ms"),
        (&["serve", "--listen", "nowhere"], "listen"),
        (&["serve", "--name", ""], "name"),
        (&["load"], "--target"),
        (
            &[
                "load",
                "--target",
                "http://127.0.0.1:1/",
                "--duration",
                "10x",
            ],
            "duration",
        ),
        (
            &[
                "load",
                "--target",
                "https://127.0.0.1:1/",
                "--duration",
                "1s",
            ],
            "https",
        ),
        (
            &[
                "load",
                "--target",
                "http://127.0.0.1:1/",
                "--concurrency",
                "0",
            ],
            "concurrency",
        ),
        (
            &["load", "--target", "http://127.0.0.1:1/", "-o", "yaml"],
            "yaml",
        ),
        (&["bogus"], "bogus"),
    ];
    for (args, needle) in cases {
        let out = bin(args).await;
        assert_clean_failure(&out, needle);
    }
}

#[tokio::test]
async fn load_prints_a_json_summary() {
    let addr = spawn(ServerConfig::default()).await.unwrap();
    let out = bin(&[
        "load",
        "--target",
        &format!("http://{addr}/"),
        "--duration",
        "200ms",
        "--concurrency",
        "2",
        "--http2",
        "-o",
        "json",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim().starts_with('{') && stdout.trim().ends_with('}'),
        "{stdout}"
    );
    assert!(stdout.contains("\"by_status\":{\"200\":"), "{stdout}");
    assert!(stdout.contains("\"errors\":0,"), "{stdout}");

    let out = bin(&[
        "load",
        "--target",
        &format!("http://{addr}/?status=404"),
        "--duration",
        "100ms",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("status 404: "), "{stdout}");
    assert!(stdout.contains("latency: p50"), "{stdout}");
}
