//! `weft identity create-root` / `create-issuer` make what step's root-ca and intermediate-ca
//! profiles make, as openssl sees it, and write files safely.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;

use support::Dir;

/// The spec's §2, with weft in place of `step certificate create`.
#[test]
fn the_spec_commands_make_a_root_and_issuer_that_openssl_verifies() {
    let dir = Dir::new();
    let run = dir.weft(&[
        "identity",
        "create-root",
        "ca.crt",
        "ca.key",
        "--name",
        "root.linkerd.cluster.local",
        "--not-after",
        "87600h",
    ]);
    let out = run.ok();
    assert!(
        out.contains("Created trust anchor \"CN=root.linkerd.cluster.local\""),
        "{out}"
    );
    assert!(out.contains("(3650 days)"), "{out}");
    let run = dir.weft(&[
        "identity",
        "create-issuer",
        "issuer.crt",
        "issuer.key",
        "--name",
        "identity.linkerd.cluster.local",
        "--not-after",
        "8760h",
        "--ca",
        "ca.crt",
        "--ca-key",
        "ca.key",
    ]);
    let out = run.ok();
    assert!(out.contains("(365 days)"), "{out}");
    assert_eq!(
        run.stderr, "",
        "no warning for a 1-year issuer under a 10-year root"
    );

    let verified = dir.openssl(&["verify", "-x509_strict", "-CAfile", "ca.crt", "issuer.crt"]);
    assert_eq!(verified.trim(), "issuer.crt: OK");
    // And weft agrees.
    let out = dir
        .weft(&["identity", "verify", "--anchors", "ca.crt", "issuer.crt"])
        .ok()
        .to_owned();
    assert!(
        out.starts_with("issuer.crt: valid, chains to \"CN=root.linkerd.cluster.local\", expires "),
        "{out}"
    );
    assert!(out.contains("(in 365 days)"), "{out}");
    assert_eq!(out.lines().count(), 1);
    // Only the four files: no temporary files left behind.
    assert_eq!(
        dir.names(),
        ["ca.crt", "ca.key", "issuer.crt", "issuer.key"]
    );
}

/// The extensions of step's profiles, as `openssl x509 -text` prints them.
#[test]
fn extensions_match_steps_profiles() {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    let root = dir.openssl(&["x509", "-in", "ca.crt", "-noout", "-text"]);
    let issuer = dir.openssl(&["x509", "-in", "issuer.crt", "-noout", "-text"]);
    for (text, pathlen, subject, issuer_name) in [
        (
            &root,
            "CA:TRUE, pathlen:1",
            "Subject: CN = root.linkerd.cluster.local",
            "Issuer: CN = root.linkerd.cluster.local",
        ),
        (
            &issuer,
            "CA:TRUE, pathlen:0",
            "Subject: CN = identity.linkerd.cluster.local",
            "Issuer: CN = root.linkerd.cluster.local",
        ),
    ] {
        for want in [
            "Version: 3 (0x2)",
            "X509v3 Basic Constraints: critical",
            pathlen,
            "X509v3 Key Usage: critical",
            "Certificate Sign, CRL Sign",
            "X509v3 Subject Key Identifier",
            "Signature Algorithm: ecdsa-with-SHA256",
            "ASN1 OID: prime256v1",
            subject,
            issuer_name,
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // Neither is for TLS endpoints.
        assert!(!text.contains("Extended Key Usage"), "{text}");
        assert!(!text.contains("Digital Signature"), "{text}");
    }
    assert!(
        issuer.contains("X509v3 Authority Key Identifier"),
        "{issuer}"
    );
    // 16 random bytes of serial (openssl prints 16 or 17 colon-separated octets).
    let serial = dir.openssl(&["x509", "-in", "issuer.crt", "-noout", "-serial"]);
    let hex = serial.trim().trim_start_matches("serial=");
    assert!((30..=34).contains(&hex.len()), "{serial}");
    // 10 years and 1 year, to the second.
    let dates = |f: &str| dir.openssl(&["x509", "-in", f, "-noout", "-startdate", "-enddate"]);
    let (r, i) = (dates("ca.crt"), dates("issuer.crt"));
    assert_eq!(
        year_of(&r, "notAfter") - year_of(&r, "notBefore"),
        10,
        "{r}"
    );
    assert_eq!(year_of(&i, "notAfter") - year_of(&i, "notBefore"), 1, "{i}");
}

/// `notAfter=Nov 24 20:14:09 2036 GMT` → 2036.
fn year_of(dates: &str, field: &str) -> i32 {
    let line = dates
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {dates}"));
    line.split_whitespace()
        .rev()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Unencrypted PKCS#8 EC P-256 keys, mode 0600, that belong to their certificates.
#[test]
fn keys_are_unencrypted_pkcs8_p256_with_mode_0600() {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    for (key, cert) in [("ca.key", "ca.crt"), ("issuer.key", "issuer.crt")] {
        let pem = dir.read(key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(!pem.contains("ENCRYPTED"));
        // Unix line endings, as step and openssl write them.
        assert!(!pem.contains('\r'), "{key} has CRLF line endings");
        assert!(
            !dir.read(cert).contains('\r'),
            "{cert} has CRLF line endings"
        );
        let text = dir.openssl(&["pkey", "-in", key, "-noout", "-text"]);
        assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
        let cert_mode = std::fs::metadata(dir.join(cert))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            cert_mode & 0o077,
            cert_mode & 0o044,
            "{cert} is not writable by others"
        );
        // The key's public half is the certificate's.
        let from_key = dir.openssl(&["pkey", "-in", key, "-pubout"]);
        let from_cert = dir.openssl(&["x509", "-in", cert, "-noout", "-pubkey"]);
        assert_eq!(from_key, from_cert, "{key} belongs to {cert}");
    }
}

#[test]
fn existing_files_are_kept_unless_force() {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    let (ca, ca_key, issuer) = (
        dir.read("ca.crt"),
        dir.read("ca.key"),
        dir.read("issuer.crt"),
    );

    let run = dir.weft(&["identity", "create-root", "ca.crt", "ca.key"]);
    run.fails_naming("ca.crt", "already exists; pass --force");
    // Only the key exists: still refused, naming the key.
    dir.weft(&["identity", "create-root", "new.crt", "ca.key"])
        .fails_naming("ca.key", "already exists");
    assert!(!dir.exists("new.crt"));
    dir.weft(&[
        "identity",
        "create-issuer",
        "issuer.crt",
        "other.key",
        "--ca",
        "ca.crt",
        "--ca-key",
        "ca.key",
    ])
    .fails_naming("issuer.crt", "already exists");
    assert!(!dir.exists("other.key"));
    assert_eq!(dir.read("ca.crt"), ca);
    assert_eq!(dir.read("ca.key"), ca_key);
    assert_eq!(dir.read("issuer.crt"), issuer);

    // --force replaces both files of the pair, and the key stays 0600.
    dir.weft(&[
        "identity",
        "create-issuer",
        "issuer.crt",
        "issuer.key",
        "--ca",
        "ca.crt",
        "--ca-key",
        "ca.key",
        "--force",
    ])
    .ok();
    assert_ne!(dir.read("issuer.crt"), issuer);
    let mode = std::fs::metadata(dir.join("issuer.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    dir.openssl(&["verify", "-CAfile", "ca.crt", "issuer.crt"]);
}

#[test]
fn the_ca_files_are_never_overwritten_by_the_issuer() {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    let ca = dir.read("ca.crt");
    for (cert, key, named) in [("ca.crt", "x.key", "ca.crt"), ("x.crt", "ca.key", "ca.key")] {
        let run = dir.weft(&[
            "identity",
            "create-issuer",
            cert,
            key,
            "--ca",
            "ca.crt",
            "--ca-key",
            "ca.key",
            "--force",
        ]);
        run.fails_naming(named, "is an input");
    }
    assert_eq!(dir.read("ca.crt"), ca);
    // Nor is one file used for both outputs.
    dir.weft(&["identity", "create-root", "same.pem", "same.pem"])
        .fails_naming("same.pem", "two outputs");
    assert!(!dir.exists("same.pem"));
}

/// `--not-after` takes Go-style durations and RFC 3339 times.
#[test]
fn durations_and_times() {
    let dir = Dir::new();
    dir.weft(&[
        "identity",
        "create-root",
        "a.crt",
        "a.key",
        "--not-after",
        "1m30s",
    ])
    .ok();
    let json = inspect_json(&dir, "a.crt");
    let left = json["certificates"][0]["expires_in_seconds"]
        .as_i64()
        .unwrap();
    assert!((80..=90).contains(&left), "{left}");

    dir.weft(&[
        "identity",
        "create-root",
        "b.crt",
        "b.key",
        "--not-after",
        "24h",
    ])
    .ok();
    let left = inspect_json(&dir, "b.crt")["certificates"][0]["expires_in_seconds"]
        .as_i64()
        .unwrap();
    assert!((86_390..=86_400).contains(&left), "{left}");

    dir.weft(&[
        "identity",
        "create-root",
        "c.crt",
        "c.key",
        "--not-after",
        "2040-01-01T00:00:00Z",
    ])
    .ok();
    let json = inspect_json(&dir, "c.crt");
    assert_eq!(json["certificates"][0]["not_after"], "2040-01-01T00:00:00Z");

    // 300ms parses, but a certificate needs at least a second: one line, naming the flag.
    let run = dir.weft(&[
        "identity",
        "create-root",
        "d.crt",
        "d.key",
        "--not-after",
        "300ms",
    ]);
    run.fails_naming("--not-after", "at least one second");
    let run = dir.weft(&[
        "identity",
        "create-root",
        "d.crt",
        "d.key",
        "--not-after",
        "2001-01-01T00:00:00Z",
    ]);
    run.fails_naming("--not-after", "in the past");
    assert!(!dir.exists("d.crt") && !dir.exists("d.key"));
}

/// An issuer cannot outlive its CA: it is cut to the CA's expiry, with a warning on stderr.
#[test]
fn an_issuer_is_cut_to_its_cas_expiry_with_a_warning() {
    let dir = Dir::new();
    dir.weft(&[
        "identity",
        "create-root",
        "ca.crt",
        "ca.key",
        "--not-after",
        "48h",
    ])
    .ok();
    let run = dir.weft(&[
        "identity",
        "create-issuer",
        "issuer.crt",
        "issuer.key",
        "--ca",
        "ca.crt",
        "--ca-key",
        "ca.key",
    ]);
    run.ok();
    assert!(
        run.stderr
            .starts_with("warning: issuer.crt: valid only until"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("when the CA in ca.crt expires"),
        "{run:#?}"
    );
    let root = inspect_json(&dir, "ca.crt");
    let issuer = inspect_json(&dir, "issuer.crt");
    assert_eq!(
        issuer["certificates"][0]["not_after"],
        root["certificates"][0]["not_after"]
    );
}

#[test]
fn names_are_checked() {
    let dir = Dir::new();
    let long = "x".repeat(65);
    dir.weft(&["identity", "create-root", "a.crt", "a.key", "--name", &long])
        .fails_naming("--name", "at most 64 characters");
    dir.weft(&["identity", "create-root", "a.crt", "a.key", "--name", " "])
        .fails_naming("--name", "empty");
    assert!(dir.names().is_empty(), "{:?}", dir.names());
    dir.weft(&[
        "identity",
        "create-root",
        "a.crt",
        "a.key",
        "--name",
        "my-root.example.org",
    ])
    .ok();
    let json = inspect_json(&dir, "a.crt");
    assert_eq!(json["certificates"][0]["subject"], "CN=my-root.example.org");
}

fn inspect_json(dir: &Dir, file: &str) -> serde_json::Value {
    let run = dir.weft(&["identity", "inspect", file, "-o", "json"]);
    serde_json::from_str(run.ok()).unwrap()
}
