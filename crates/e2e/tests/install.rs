//! `weft install`, `weft upgrade` and `weft uninstall` on a local cluster, through the real
//! binaries: installing with given or generated credentials, refusing credentials that do not
//! chain, rotating the issuer live (the identity service serves the new one without a
//! restart), and stopping and purging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use weft_e2e::{alive, weft};

fn net(n: u32) -> String {
    format!("127.{}.{}.0/24", 100 + std::process::id() % 150, 240 + n)
}

fn control_plane_pid(home: &Path) -> u32 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("west/run/control-plane.json")).unwrap())
            .unwrap();
    v["pid"].as_u64().unwrap() as u32
}

/// Uninstalls even when an assertion fails.
struct Installed<'a>(&'a Path);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = weft(self.0, &["uninstall"]);
    }
}

#[test]
fn install_with_brought_credentials_upgrade_and_uninstall() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let files = tmp.path();
    let f = |n: &str| files.join(n).to_str().unwrap().to_owned();
    // The spec's step commands, made with `weft identity`.
    for args in [
        vec![
            "identity",
            "create-root",
            &f("ca.crt"),
            &f("ca.key"),
            "--not-after",
            "87600h",
        ],
        vec![
            "identity",
            "create-issuer",
            &f("issuer.crt"),
            &f("issuer.key"),
            "--ca",
            &f("ca.crt"),
            "--ca-key",
            &f("ca.key"),
            "--not-after",
            "8760h",
        ],
        vec![
            "identity",
            "create-issuer",
            &f("issuer-new.crt"),
            &f("issuer-new.key"),
            "--ca",
            &f("ca.crt"),
            "--ca-key",
            &f("ca.key"),
            "--not-after",
            "4000h",
        ],
        vec!["identity", "create-root", &f("other.crt"), &f("other.key")],
        vec![
            "identity",
            "create-issuer",
            &f("foreign.crt"),
            &f("foreign.key"),
            "--ca",
            &f("other.crt"),
            "--ca-key",
            &f("other.key"),
        ],
    ] {
        let out = weft(&home, &args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }

    // An issuer from another anchor is refused before anything is written.
    let refused = weft(
        &home,
        &[
            "install",
            "--network",
            &net(1),
            "--identity-trust-anchors-file",
            &f("ca.crt"),
            "--identity-issuer-certificate-file",
            &f("foreign.crt"),
            "--identity-issuer-key-file",
            &f("foreign.key"),
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("foreign.crt"), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("not issued by any of the trust anchors"),
        "{}",
        refused.stderr
    );
    assert!(!home.join("west/pki/issuer.crt").exists());

    let installed = weft(
        &home,
        &[
            "install",
            "--network",
            &net(1),
            "--identity-trust-anchors-file",
            &f("ca.crt"),
            "--identity-issuer-certificate-file",
            &f("issuer.crt"),
            "--identity-issuer-key-file",
            &f("issuer.key"),
        ],
    );
    let _guard = Installed(&home);
    assert_eq!(installed.code, 0, "{}", installed.stderr);
    assert!(
        !installed.stderr.contains("generated"),
        "brought credentials are not generated: {}",
        installed.stderr
    );
    assert_eq!(
        std::fs::read(home.join("west/pki/ca.crt")).unwrap(),
        std::fs::read(files.join("ca.crt")).unwrap()
    );
    let pid = control_plane_pid(&home);
    assert!(alive(pid));
    // Installing again reuses the running control plane.
    let again = weft(&home, &["install"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("already running"), "{}", again.stderr);
    assert_eq!(control_plane_pid(&home), pid);

    // Upgrade: a foreign issuer is refused and the files are untouched; a good one is served
    // live by the same process.
    let before = std::fs::read(home.join("west/pki/issuer.crt")).unwrap();
    let bad = weft(
        &home,
        &[
            "upgrade",
            "--identity-issuer-certificate-file",
            &f("foreign.crt"),
            "--identity-issuer-key-file",
            &f("foreign.key"),
        ],
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("not issued by any of the trust anchors"),
        "{}",
        bad.stderr
    );
    assert_eq!(
        std::fs::read(home.join("west/pki/issuer.crt")).unwrap(),
        before
    );
    let good = weft(
        &home,
        &[
            "upgrade",
            "--identity-issuer-certificate-file",
            &f("issuer-new.crt"),
            "--identity-issuer-key-file",
            &f("issuer-new.key"),
        ],
    );
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert!(
        good.stdout.contains("now signs with the new issuer"),
        "{}",
        good.stdout
    );
    assert_eq!(control_plane_pid(&home), pid, "no restart");

    // Uninstall stops the control plane; --purge removes the directory.
    let un = weft(&home, &["uninstall"]);
    assert_eq!(un.code, 0, "{}", un.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the control plane still runs");
    assert!(
        home.join("west/manifests").exists(),
        "uninstall keeps the cluster"
    );
    let purge = weft(&home, &["uninstall", "--purge"]);
    assert_eq!(purge.code, 0, "{}", purge.stderr);
    assert!(!home.join("west").exists());
}

#[test]
fn install_without_credentials_generates_them_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = weft(
        &home,
        &["--context", "east", "install", "--network", &net(2)],
    );
    let _guard = Uninstall(&home);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("‼ generated a trust anchor and issuer"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("production must bring its own"),
        "{}",
        out.stderr
    );
    for f in ["ca.crt", "issuer.crt", "issuer.key", "token.key"] {
        assert!(home.join("east/pki").join(f).exists(), "{f}");
    }
    // The generated issuer chains to the generated anchor (checked by weft identity verify).
    let verify = weft(
        &home,
        &[
            "identity",
            "verify",
            home.join("east/pki/issuer.crt").to_str().unwrap(),
            "--anchors",
            home.join("east/pki/ca.crt").to_str().unwrap(),
        ],
    );
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    // The default context is another cluster.
    let none = weft(&home, &["get", "svc"]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr.contains("\"west\" does not exist"),
        "{}",
        none.stderr
    );
}

struct Uninstall<'a>(&'a Path);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        let _ = weft(self.0, &["--context", "east", "uninstall"]);
    }
}
