//! Certificates made with the openssl CLI the way operators make them — SEC1 and PKCS#8 keys, v3
//! extension sections, ECDSA and RSA — are read unchanged by `inspect` and `verify` and work as
//! `--ca` for `create-issuer`; `inspect` agrees with openssl on serials and fingerprints.
#![allow(clippy::unwrap_used)]

mod support;

use support::{Dir, Openssl, WEB_ID};

fn inspect_json(dir: &Dir, file: &str) -> serde_json::Value {
    let run = dir.weft(&["identity", "inspect", file, "-o", "json"]);
    serde_json::from_str(run.ok()).unwrap()
}

#[test]
fn openssl_root_and_intermediate_are_accepted_unchanged() {
    let dir = Dir::new();
    let ossl = Openssl(&dir);
    ossl.root_and_intermediate("");
    ossl.leaf("web", "issuer.crt", "issuer.key");
    let before: Vec<String> = ["ca.crt", "issuer.crt", "web.crt"]
        .iter()
        .map(|f| dir.read(f))
        .collect();

    // inspect reads each one.
    let out = dir
        .weft(&["identity", "inspect", "issuer.crt"])
        .ok()
        .to_owned();
    assert!(
        out.contains("Subject:       CN=identity.linkerd.cluster.local"),
        "{out}"
    );
    assert!(out.contains("CA:            yes, pathlen:0"), "{out}");
    let out = dir.weft(&["identity", "inspect", "ca.crt"]).ok().to_owned();
    assert!(
        out.contains("CA:            yes, no path length limit"),
        "{out}"
    );
    assert!(out.contains("(self-signed)"), "{out}");

    // verify: the intermediate, the leaf with --intermediates, and the leaf as a served chain.
    let out = dir
        .weft(&["identity", "verify", "--anchors", "ca.crt", "issuer.crt"])
        .ok()
        .to_owned();
    assert!(out.starts_with("issuer.crt: valid, chains to \"CN=root.linkerd.cluster.local\""));
    let out = dir
        .weft(&[
            "identity",
            "verify",
            "--anchors",
            "ca.crt",
            "web.crt",
            "--intermediates",
            "issuer.crt",
        ])
        .ok()
        .to_owned();
    assert!(out.starts_with("web.crt: valid, chains to \"CN=root.linkerd.cluster.local\""));
    dir.write(
        "chain.pem",
        format!("{}{}", dir.read("web.crt"), dir.read("issuer.crt")),
    );
    dir.weft(&["identity", "verify", "--anchors", "ca.crt", "chain.pem"])
        .ok();
    // Without the intermediate, the leaf does not chain: exit 1, naming it.
    dir.weft(&["identity", "verify", "--anchors", "ca.crt", "web.crt"])
        .fails_naming("web.crt", "was not issued by any of the trust anchors");

    // The openssl root (SEC1 key) as --ca: the new issuer verifies with openssl.
    dir.weft(&[
        "identity",
        "create-issuer",
        "weft-issuer.crt",
        "weft-issuer.key",
        "--ca",
        "ca.crt",
        "--ca-key",
        "ca.key",
    ])
    .ok();
    let ok = dir.openssl(&["verify", "-CAfile", "ca.crt", "weft-issuer.crt"]);
    assert_eq!(ok.trim(), "weft-issuer.crt: OK");
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "weft-issuer.crt",
        "--issuer-key",
        "weft-issuer.key",
    ])
    .ok();
    // And the openssl intermediate passes the identity service's issuer check too.
    let out = dir
        .weft(&[
            "identity",
            "verify",
            "--anchors",
            "ca.crt",
            "issuer.crt",
            "--issuer-key",
            "issuer.key",
        ])
        .ok()
        .to_owned();
    assert!(
        out.starts_with("issuer.crt: valid issuer, chains to"),
        "{out}"
    );

    // Nothing was changed.
    let after: Vec<String> = ["ca.crt", "issuer.crt", "web.crt"]
        .iter()
        .map(|f| dir.read(f))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn inspect_agrees_with_openssl_and_shows_sans() {
    let dir = Dir::new();
    let ossl = Openssl(&dir);
    ossl.root_and_intermediate("");
    ossl.leaf("web", "issuer.crt", "issuer.key");
    let json = inspect_json(&dir, "web.crt");
    assert_eq!(json["file"], "web.crt");
    let cert = &json["certificates"][0];
    assert_eq!(cert["index"], 1);
    assert_eq!(cert["subject"], format!("CN={WEB_ID}"));
    assert_eq!(cert["issuer"], "CN=identity.linkerd.cluster.local");
    assert_eq!(cert["common_name"], WEB_ID);
    assert_eq!(cert["dns_names"], serde_json::json!([WEB_ID]));
    assert_eq!(
        cert["uris"],
        serde_json::json!(["spiffe://cluster.local/ns/emojivoto/sa/web"])
    );
    assert_eq!(cert["is_ca"], false);
    assert_eq!(cert["path_len"], serde_json::Value::Null);
    assert_eq!(cert["self_signed"], false);
    assert_eq!(cert["status"], "valid");
    assert_eq!(cert["key_type"], "ECDSA P-256");
    assert_eq!(
        cert["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert_eq!(
        cert["key_usage"],
        serde_json::json!(["digitalSignature", "keyEncipherment"])
    );
    let left = cert["expires_in_seconds"].as_i64().unwrap();
    assert!((364 * 86_400..=365 * 86_400).contains(&left), "{left}");

    let serial = dir.openssl(&["x509", "-in", "web.crt", "-noout", "-serial"]);
    assert_eq!(
        format!("serial={}", cert["serial"].as_str().unwrap()),
        serial.trim()
    );
    let fp = dir.openssl(&[
        "x509",
        "-in",
        "web.crt",
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert_eq!(
        format!(
            "sha256 Fingerprint={}",
            cert["sha256_fingerprint"].as_str().unwrap()
        ),
        fp.trim()
    );

    let table = dir
        .weft(&["identity", "inspect", "web.crt"])
        .ok()
        .to_owned();
    for want in [
        format!("DNS names:     {WEB_ID}"),
        "URIs:          spiffe://cluster.local/ns/emojivoto/sa/web".to_owned(),
        "Ext key usage: serverAuth, clientAuth".to_owned(),
        "CA:            no".to_owned(),
        "(expires in 365 days)".to_owned(),
    ] {
        assert!(table.contains(&want), "missing {want:?}:\n{table}");
    }
}

/// A bundle (old + new anchors during rotation) and a chain file: every certificate is shown,
/// and a chain verifies against a bundle through either anchor.
#[test]
fn bundles_hold_several_certificates() {
    let dir = Dir::new();
    Openssl(&dir).root_and_intermediate("old-");
    dir.weft_root_and_issuer();
    dir.write(
        "bundle.crt",
        format!("{}{}", dir.read("old-ca.crt"), dir.read("ca.crt")),
    );

    let json = inspect_json(&dir, "bundle.crt");
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1]["index"], 2);
    assert_eq!(certs[0]["path_len"], serde_json::Value::Null);
    assert_eq!(certs[1]["path_len"], 1);
    assert_ne!(
        certs[0]["sha256_fingerprint"],
        certs[1]["sha256_fingerprint"]
    );
    let table = dir
        .weft(&["identity", "inspect", "bundle.crt"])
        .ok()
        .to_owned();
    assert!(table.contains("bundle.crt: certificate 1 of 2"), "{table}");
    assert!(table.contains("bundle.crt: certificate 2 of 2"), "{table}");

    // Both issuers chain to the bundle, each to its own root (same subject name).
    for (issuer, which) in [("old-issuer.crt", 1), ("issuer.crt", 2)] {
        let run = dir.weft(&["identity", "verify", "--anchors", "bundle.crt", issuer]);
        let want = format!("[anchor {which} of 2 in bundle.crt]");
        assert!(run.ok().trim_end().ends_with(&want), "{run:#?}");
    }
    // An anchor verifies as itself.
    let out = dir
        .weft(&["identity", "verify", "--anchors", "bundle.crt", "ca.crt"])
        .ok()
        .to_owned();
    assert!(
        out.contains("is trust anchor \"CN=root.linkerd.cluster.local\" itself"),
        "{out}"
    );
    // But the old issuer does not chain to the new root alone.
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "old-issuer.crt",
    ])
    .fails_naming(
        "old-issuer.crt",
        "was not issued by any of the trust anchors",
    );
}

/// RSA roots are accepted as trust anchors and as the CA of a new (ECDSA) issuer; RSA chains
/// inspect and verify; an RSA *issuer* is refused by the identity service's check.
#[test]
fn rsa_anchors_work_and_rsa_issuers_are_refused() {
    let dir = Dir::new();
    let ossl = Openssl(&dir);
    ossl.rsa_key("rsa-ca.key", 2048);
    ossl.root(
        "rsa-ca.crt",
        "rsa-ca.key",
        "/O=Example Corp/CN=rsa-root.example.org",
    );
    ossl.rsa_key("rsa-issuer.key", 2048);
    ossl.csr(
        "rsa-issuer.csr",
        "rsa-issuer.key",
        "/CN=identity.linkerd.cluster.local",
    );
    ossl.sign(
        "rsa-issuer.crt",
        "rsa-issuer.csr",
        "rsa-ca.crt",
        "rsa-ca.key",
        "v3_intermediate",
    );

    let out = dir
        .weft(&["identity", "inspect", "rsa-ca.crt"])
        .ok()
        .to_owned();
    assert!(out.contains("Key:           RSA 2048"), "{out}");
    assert!(
        out.contains("Signature:     sha256WithRSAEncryption"),
        "{out}"
    );
    assert!(
        out.contains("Subject:       O=Example Corp, CN=rsa-root.example.org"),
        "{out}"
    );
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "rsa-ca.crt",
        "rsa-issuer.crt",
    ])
    .ok();

    // An RSA issuer is not one the identity service takes.
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "rsa-ca.crt",
        "rsa-issuer.crt",
        "--issuer-key",
        "rsa-issuer.key",
    ])
    .fails_naming(
        "rsa-issuer.crt",
        "issuer key is RSA 2048; issuers must use ECDSA P-256",
    );
    // Nor will create-issuer sign under it: an RSA issuer has pathlen:0, like any issuer.
    dir.weft(&[
        "identity",
        "create-issuer",
        "x.crt",
        "x.key",
        "--ca",
        "rsa-issuer.crt",
        "--ca-key",
        "rsa-issuer.key",
    ])
    .fails_naming("rsa-issuer.crt", "pathlen:0");
    assert!(!dir.exists("x.crt") && !dir.exists("x.key"));

    // The RSA root signs a new ECDSA issuer, which openssl and the issuer check accept.
    dir.weft(&[
        "identity",
        "create-issuer",
        "issuer.crt",
        "issuer.key",
        "--ca",
        "rsa-ca.crt",
        "--ca-key",
        "rsa-ca.key",
    ])
    .ok();
    dir.openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        "rsa-ca.crt",
        "issuer.crt",
    ]);
    let text = dir.openssl(&["x509", "-in", "issuer.crt", "-noout", "-text"]);
    assert!(
        text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{text}"
    );
    assert!(
        text.contains("Issuer: O = Example Corp, CN = rsa-root.example.org"),
        "{text}"
    );
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "rsa-ca.crt",
        "issuer.crt",
        "--issuer-key",
        "issuer.key",
    ])
    .ok();
}

/// A DER certificate is read too (inspect, and --ca with its PEM key).
#[test]
fn der_certificates_are_read() {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    dir.openssl(&["x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der"]);
    let json = inspect_json(&dir, "ca.der");
    assert_eq!(
        json["certificates"][0]["subject"],
        "CN=root.linkerd.cluster.local"
    );
    dir.weft(&[
        "identity",
        "create-issuer",
        "i2.crt",
        "i2.key",
        "--ca",
        "ca.der",
        "--ca-key",
        "ca.key",
    ])
    .ok();
    dir.weft(&["identity", "verify", "--anchors", "ca.der", "i2.crt"])
        .ok();
}
