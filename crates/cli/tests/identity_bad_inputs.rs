//! Every bad input fails with exit status 1 and one line naming the file and the problem, and
//! `create-*` then writes nothing.
#![allow(clippy::unwrap_used)]

mod support;

use support::{Dir, Openssl};

/// A directory with a weft root + issuer (ca.*, issuer.*), an unrelated root (other-ca.*), an
/// openssl leaf signed by the issuer (web.*), a file that is not PEM and a truncated PEM.
fn fixture() -> Dir {
    let dir = Dir::new();
    dir.weft_root_and_issuer();
    dir.weft(&["identity", "create-root", "other-ca.crt", "other-ca.key"])
        .ok();
    Openssl(&dir).leaf("web", "issuer.crt", "issuer.key");
    dir.write(
        "notes.txt",
        "these are not the certificates you are looking for\n",
    );
    let ca = dir.read("ca.crt");
    dir.write("truncated.crt", &ca[..ca.len() / 2]);
    dir
}

fn create_issuer(dir: &Dir, ca: &str, ca_key: &str) -> support::Run {
    dir.weft(&[
        "identity",
        "create-issuer",
        "new.crt",
        "new.key",
        "--ca",
        ca,
        "--ca-key",
        ca_key,
    ])
}

fn verify(dir: &Dir, anchors: &str, cert: &str) -> support::Run {
    dir.weft(&["identity", "verify", "--anchors", anchors, cert])
}

/// Nothing new was written by a failed create-issuer.
#[track_caller]
fn nothing_written(dir: &Dir) {
    assert!(!dir.exists("new.crt") && !dir.exists("new.key"));
    assert!(
        !dir.names().iter().any(|n| n.contains("weft-tmp")),
        "{:?}",
        dir.names()
    );
}

#[test]
fn a_leaf_where_a_ca_is_needed() {
    let dir = fixture();
    create_issuer(&dir, "web.crt", "web.key").fails_naming("web.crt", "is not a CA (CA:FALSE)");
    nothing_written(&dir);
    verify(&dir, "web.crt", "issuer.crt").fails_naming("web.crt", "a trust anchor must be a CA");
    // A leaf that tries to act as a CA in a chain.
    Openssl(&dir).leaf("fake", "web.crt", "web.key");
    dir.write(
        "web-chain.pem",
        format!("{}{}", dir.read("web.crt"), dir.read("issuer.crt")),
    );
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "fake.crt",
        "--intermediates",
        "web-chain.pem",
    ])
    .fails_naming("fake.crt", "signs other certificates but is not a CA");
    // Same for an issuer check with a leaf.
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "web.crt",
        "--intermediates",
        "issuer.crt",
        "--issuer-key",
        "web.key",
    ])
    .fails_naming("web.crt", "not usable as an issuer");
}

#[test]
fn an_issuer_not_signed_by_the_anchor() {
    let dir = fixture();
    verify(&dir, "other-ca.crt", "issuer.crt")
        .fails_naming("issuer.crt", "was not issued by any of the trust anchors");
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "other-ca.crt",
        "issuer.crt",
        "--issuer-key",
        "issuer.key",
    ])
    .fails_naming("issuer.crt", "was not issued by any of the trust anchors");
    // A tampered certificate: its signature no longer verifies.
    let der = dir.join("issuer.der");
    dir.openssl(&[
        "x509",
        "-in",
        "issuer.crt",
        "-outform",
        "DER",
        "-out",
        "issuer.der",
    ]);
    let mut bytes = std::fs::read(&der).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&der, bytes).unwrap();
    verify(&dir, "ca.crt", "issuer.der").fails_naming("issuer.der", "does not verify");
}

#[test]
fn expired_and_not_yet_valid_certificates() {
    let dir = fixture();
    let ossl = Openssl(&dir);
    // An expired leaf under a valid issuer.
    ossl.ec_key("old.key");
    ossl.csr("old.csr", "old.key", &format!("/CN={}", support::WEB_ID));
    ossl.sign_dated(
        "old.crt",
        "old.csr",
        (Some("issuer.crt"), "issuer.key"),
        "v3_leaf",
        ("20200101000000Z", "20200102000000Z"),
    );
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "old.crt",
        "--intermediates",
        "issuer.crt",
    ])
    .fails_naming("old.crt", "expired at 2020-01-02T00:00:00Z");
    let out = dir
        .weft(&["identity", "inspect", "old.crt"])
        .ok()
        .to_owned();
    assert!(out.contains("2020-01-02T00:00:00Z (EXPIRED "), "{out}");
    let json: serde_json::Value = serde_json::from_str(
        dir.weft(&["identity", "inspect", "old.crt", "-o", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(json["certificates"][0]["status"], "expired");
    assert!(
        json["certificates"][0]["expires_in_seconds"]
            .as_i64()
            .unwrap()
            < 0
    );

    // An expired root (self-signed with openssl ca): as anchor and as --ca.
    ossl.ec_key("old-ca.key");
    ossl.csr("old-ca.csr", "old-ca.key", "/CN=root.linkerd.cluster.local");
    ossl.sign_dated(
        "old-ca.crt",
        "old-ca.csr",
        (None, "old-ca.key"),
        "v3_root",
        ("20200101000000Z", "20210101000000Z"),
    );
    create_issuer(&dir, "old-ca.crt", "old-ca.key").fails_naming("old-ca.crt", "expired at");
    nothing_written(&dir);
    verify(&dir, "old-ca.crt", "old-ca.crt").fails_naming("old-ca.crt", "expired at");

    // An expired issuer, alone and under a leaf that is still valid.
    ossl.ec_key("old-issuer.key");
    ossl.csr(
        "old-issuer.csr",
        "old-issuer.key",
        "/CN=identity.linkerd.cluster.local",
    );
    ossl.sign_dated(
        "old-issuer.crt",
        "old-issuer.csr",
        (Some("ca.crt"), "ca.key"),
        "v3_intermediate",
        ("20200101000000Z", "20200601000000Z"),
    );
    verify(&dir, "ca.crt", "old-issuer.crt").fails_naming("old-issuer.crt", "expired at");

    // Not valid yet.
    ossl.ec_key("future.key");
    ossl.csr(
        "future.csr",
        "future.key",
        &format!("/CN={}", support::WEB_ID),
    );
    ossl.sign_dated(
        "future.crt",
        "future.csr",
        (Some("issuer.crt"), "issuer.key"),
        "v3_leaf",
        ("20990101000000Z", "20990102000000Z"),
    );
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "future.crt",
        "--intermediates",
        "issuer.crt",
    ])
    .fails_naming("future.crt", "is not valid until 2099-01-01T00:00:00Z");
}

#[test]
fn a_key_that_does_not_match_the_cert() {
    let dir = fixture();
    create_issuer(&dir, "ca.crt", "other-ca.key")
        .fails_naming("other-ca.key", "is not the private key of ca.crt");
    nothing_written(&dir);
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "issuer.crt",
        "--issuer-key",
        "ca.key",
    ])
    .fails_naming("ca.key", "is not the private key of issuer.crt");
}

#[test]
fn files_that_are_not_pem() {
    let dir = fixture();
    let not_pem = "not PEM: expected a \"-----BEGIN";
    dir.weft(&["identity", "inspect", "notes.txt"])
        .fails_naming("notes.txt", not_pem);
    verify(&dir, "notes.txt", "issuer.crt").fails_naming("notes.txt", not_pem);
    verify(&dir, "ca.crt", "notes.txt").fails_naming("notes.txt", not_pem);
    create_issuer(&dir, "notes.txt", "ca.key").fails_naming("notes.txt", not_pem);
    create_issuer(&dir, "ca.crt", "notes.txt").fails_naming("notes.txt", not_pem);
    // A truncated file, a key where a certificate belongs and the other way round.
    dir.weft(&["identity", "inspect", "truncated.crt"])
        .fails_naming("truncated.crt", "malformed PEM");
    dir.weft(&["identity", "inspect", "ca.key"])
        .fails_naming("ca.key", "no CERTIFICATE block in PEM (found: PRIVATE KEY)");
    create_issuer(&dir, "ca.crt", "ca.crt")
        .fails_naming("ca.crt", "no private key in PEM (found: CERTIFICATE)");
    // An empty file and a binary one.
    dir.write("empty.crt", "");
    dir.weft(&["identity", "inspect", "empty.crt"])
        .fails_naming("empty.crt", not_pem);
    dir.write("random.bin", [0x30u8, 0x82, 0x01, 0x00, 0xff, 0x00, 0x13]);
    dir.weft(&["identity", "inspect", "random.bin"])
        .fails_naming("random.bin", "not PEM");
    nothing_written(&dir);
}

#[test]
fn an_encrypted_key() {
    let dir = fixture();
    dir.openssl(&[
        "pkey",
        "-in",
        "ca.key",
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        "ca-locked.key",
    ]);
    create_issuer(&dir, "ca.crt", "ca-locked.key")
        .fails_naming("ca-locked.key", "private key is encrypted");
    nothing_written(&dir);
}

#[test]
fn missing_files_are_named() {
    let dir = fixture();
    dir.weft(&["identity", "inspect", "missing.crt"])
        .fails_naming("missing.crt", "no such file");
    verify(&dir, "missing.crt", "issuer.crt").fails_naming("missing.crt", "no such file");
    verify(&dir, "ca.crt", "missing.crt").fails_naming("missing.crt", "no such file");
    dir.weft(&[
        "identity",
        "verify",
        "--anchors",
        "ca.crt",
        "web.crt",
        "--intermediates",
        "missing.crt",
    ])
    .fails_naming("missing.crt", "no such file");
    create_issuer(&dir, "missing.crt", "ca.key").fails_naming("missing.crt", "no such file");
    create_issuer(&dir, "ca.crt", "missing.key").fails_naming("missing.key", "no such file");
    nothing_written(&dir);
    // A directory, and an output in a directory that does not exist.
    std::fs::create_dir(dir.join("certs")).unwrap();
    dir.weft(&["identity", "inspect", "certs"])
        .fails_naming("certs", "is a directory");
    dir.weft(&[
        "identity",
        "create-root",
        "nowhere/ca.crt",
        "nowhere/ca.key",
    ])
    .fails_naming("nowhere/ca.key", "cannot write: no directory nowhere");
    assert!(!dir.exists("nowhere"));
}

/// A CA whose key type the identity service refuses for a trust anchor (P-521): create-issuer
/// makes nothing from it.
#[test]
fn a_ca_the_identity_service_would_refuse() {
    let dir = fixture();
    dir.openssl(&[
        "ecparam",
        "-name",
        "secp521r1",
        "-genkey",
        "-noout",
        "-out",
        "p521.key",
    ]);
    Openssl(&dir).root("p521.crt", "p521.key", "/CN=root.linkerd.cluster.local");
    create_issuer(&dir, "p521.crt", "p521.key")
        .fails_naming("p521.crt", "would not accept this CA as a trust anchor");
    nothing_written(&dir);
    // verify says the same about it as an anchor.
    verify(&dir, "p521.crt", "issuer.crt").fails_naming("p521.crt", "anchors must use");
}
