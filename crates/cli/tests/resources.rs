//! `weft apply`, `get` and `delete` on a local cluster directory (no control plane needed:
//! `weft install --crds` prepares the cluster): every YAML block of the spec applies unchanged;
//! a broken variant of each is refused with a message naming the field, and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/spec");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn weft(home: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_HOME", home)
        .env_remove("WEFT_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cluster() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // A network no real cluster uses, so the test never probes the machine's loopback.
    let out = weft(
        &home,
        &["install", "--crds", "--network", "127.0.251.0/24"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    (tmp, home)
}

fn manifests(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join("west/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

#[test]
fn every_spec_block_applies_and_reads_back() {
    let (_tmp, home) = cluster();
    for name in [
        "web-default-httproute.yaml",
        "web-svc-profile.yaml",
        "web-split.yaml",
        "podinfo-failover-split.yaml",
        "auth-failover-split.yaml",
    ] {
        let path = Path::new(FIXTURES).join(name);
        let out = weft(&home, &["apply", "-f", path.to_str().unwrap()], None);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stdout.contains(" created"), "{name}: {}", out.stdout);
        // Applying again changes nothing.
        let again = weft(&home, &["apply", "-f", path.to_str().unwrap()], None);
        assert!(
            again.stdout.contains(" unchanged"),
            "{name}: {}",
            again.stdout
        );
    }
    assert_eq!(
        manifests(&home),
        [
            "emojivoto.httproute.web-default.yaml",
            "emojivoto.serviceprofile.web-svc.emojivoto.svc.cluster.local.yaml",
            "emojivoto.trafficsplit.web-split.yaml",
            "payments.trafficsplit.auth.yaml",
            "test.trafficsplit.podinfo.yaml",
        ]
    );
    let table = weft(&home, &["get", "trafficsplit", "-A"], None);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE"), "{}", table.stdout);
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    let backends = weft(
        &home,
        &[
            "get",
            "ts",
            "podinfo",
            "-n",
            "test",
            "-o",
            "jsonpath={.spec.backends}",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&backends.stdout).unwrap();
    assert_eq!(v[1]["service"], "podinfo-east");
    assert_eq!(v[1]["weight"], 0);
    let yaml = weft(&home, &["get", "sp", "-n", "emojivoto", "-o", "yaml"], None);
    assert!(yaml.stdout.contains("isRetryable: true"), "{}", yaml.stdout);

    let del = weft(
        &home,
        &["delete", "ts", "web-split", "-n", "emojivoto"],
        None,
    );
    assert_eq!(del.code, 0, "{}", del.stderr);
    assert!(!manifests(&home).contains(&"emojivoto.trafficsplit.web-split.yaml".to_owned()));
    let missing = weft(
        &home,
        &["delete", "ts", "web-split", "-n", "emojivoto"],
        None,
    );
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
}

#[test]
fn broken_variants_are_refused_naming_the_field() {
    let cases = [
        (
            "web-default-httproute.yaml",
            "retry.linkerd.io/limit: \"2\"",
            "retry.linkerd.io/limit: \"two\"",
            "retry.linkerd.io/limit",
        ),
        (
            "web-default-httproute.yaml",
            "timeout.linkerd.io/request: 2s",
            "timeout.linkerd.io/request: 2 parsecs",
            "timeout.linkerd.io/request",
        ),
        (
            "web-svc-profile.yaml",
            "retryRatio: 0.1",
            "retryRatio: lots",
            "spec.retryBudget.retryRatio",
        ),
        (
            "web-svc-profile.yaml",
            "timeout: 600ms",
            "timeout: soon",
            "spec.routes[0].timeout",
        ),
        (
            "web-split.yaml",
            "weight: 90",
            "weight: ninety",
            "spec.backends[0].weight",
        ),
        (
            "podinfo-failover-split.yaml",
            "service: podinfo           # local primary",
            "servic: podinfo",
            "spec.backends[0]",
        ),
        (
            "auth-failover-split.yaml",
            "weight: 0",
            "weight: -3",
            "spec.backends[1].weight",
        ),
    ];
    for (name, from, to, field) in cases {
        let (_tmp, home) = cluster();
        let text = fixture(name);
        assert!(text.contains(from), "{name} has no {from:?}");
        let broken = text.replacen(from, to, 1);
        let out = weft(&home, &["apply", "-f", "-"], Some(&broken));
        assert_eq!(
            out.code, 1,
            "{name} with {to:?} was accepted: {}",
            out.stdout
        );
        assert!(
            out.stderr.contains(field),
            "{name} with {to:?}: the error must name {field}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("-:"),
            "the error names the input: {}",
            out.stderr
        );
        assert!(out.stderr.contains("nothing was applied"), "{}", out.stderr);
        assert!(manifests(&home).is_empty(), "{name}: something was written");
    }
}

#[test]
fn a_stream_is_all_or_nothing() {
    let (_tmp, home) = cluster();
    let good = fixture("web-split.yaml");
    let bad = fixture("web-svc-profile.yaml").replacen("ttl: 10s", "ttl: ten", 1);
    let out = weft(
        &home,
        &["apply", "-f", "-"],
        Some(&format!("{good}---\n{bad}")),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("spec.retryBudget.ttl"),
        "{}",
        out.stderr
    );
    assert!(manifests(&home).is_empty());
}

#[test]
fn apply_needs_a_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let out = weft(
        &tmp.path().join("home"),
        &["apply", "-f", "-"],
        Some(&fixture("web-split.yaml")),
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(out.stderr.contains("weft install"), "{}", out.stderr);
}
