//! Interoperability with the openssl CLI: certificates and keys made the way operators make them
//! are accepted unchanged, and what Weft makes passes `openssl verify -x509_strict`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use crate::cert::{parse_pem_certs, parse_private_key, CertInfo, KeyType};
use crate::error::{PkiError, VerifyError};
use crate::issue::{create_issuer, create_root, generate_key_and_csr, Issuer};
use crate::test_support::*;
use crate::verify::verify_chain;
use crate::{key_matches_cert, TrustAnchors};

const SKEW: Duration = Duration::from_secs(10);

/// The extension profiles of step's root-ca and intermediate-ca, as openssl config.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[root_ca]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

const ROOT_CN: &str = "/CN=root.linkerd.cluster.local";
const ISSUER_CN: &str = "/CN=identity.linkerd.cluster.local";

fn tmp() -> TempDir {
    let dir = TempDir::new();
    dir.write("openssl.cnf", OPENSSL_CNF);
    dir
}

/// An openssl root: `req -x509 -newkey <key_alg>` with the root-ca profile → ca.crt, ca.key.
fn openssl_root(dir: &TempDir, newkey: &[&str]) {
    let mut args = vec![
        "req",
        "-x509",
        "-config",
        "openssl.cnf",
        "-extensions",
        "root_ca",
    ];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-noenc", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", ROOT_CN,
    ]);
    dir.openssl(&args);
}

/// An openssl issuer signed by ca.crt/ca.key → issuer.crt, issuer.key.
fn openssl_issuer(dir: &TempDir, newkey: &[&str]) {
    let mut args = vec!["req", "-new", "-config", "openssl.cnf"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-noenc",
        "-keyout",
        "issuer.key",
        "-out",
        "issuer.csr",
        "-subj",
        ISSUER_CN,
    ]);
    dir.openssl(&args);
    dir.openssl(&[
        "x509",
        "-req",
        "-in",
        "issuer.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "intermediate_ca",
        "-out",
        "issuer.crt",
    ]);
}

const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn load_from(dir: &TempDir, now: SystemTime) -> Result<Issuer, PkiError> {
    Issuer::load(
        &dir.read("issuer.crt"),
        &dir.read("issuer.key"),
        &dir.read("ca.crt"),
        now,
    )
}

/// Issues a leaf for `web()` and writes leaf.crt and chain.crt.
fn issue_leaf(dir: &TempDir, issuer: &Issuer) {
    let (_key, csr) = generate_key_and_csr(&web()).unwrap();
    let leaf = issuer
        .certify(&csr, &web(), DAY, SKEW, SystemTime::now())
        .unwrap();
    dir.write("leaf.crt", &leaf.cert_pem);
    dir.write("chain.crt", &leaf.chain_pem);
}

fn assert_openssl_accepts_leaf(dir: &TempDir) {
    for purpose in ["sslserver", "sslclient"] {
        let out = dir.openssl(&[
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "issuer.crt",
            "-verify_hostname",
            web().as_str(),
            "leaf.crt",
        ]);
        assert_eq!(out.trim(), "leaf.crt: OK", "{purpose}");
    }
    let out = dir.openssl(&[
        "verify",
        "-CAfile",
        "ca.crt",
        "-untrusted",
        "chain.crt",
        "leaf.crt",
    ]);
    assert_eq!(out.trim(), "leaf.crt: OK");
}

#[test]
fn openssl_root_and_issuer_are_accepted_and_their_leaves_verify_in_openssl() {
    let dir = tmp();
    openssl_root(&dir, EC);
    openssl_issuer(&dir, EC);
    let issuer = load_from(&dir, SystemTime::now()).unwrap();
    assert_eq!(issuer.info().subject, "CN=identity.linkerd.cluster.local");
    issue_leaf(&dir, &issuer);
    assert_openssl_accepts_leaf(&dir);
}

#[test]
fn weft_root_and_issuer_pass_openssl_strict_verification() {
    let dir = tmp();
    let now = SystemTime::now();
    let root = create_root("root.linkerd.cluster.local", 10 * YEAR, now).unwrap();
    let issuer = create_issuer(
        "identity.linkerd.cluster.local",
        root.cert_pem.as_bytes(),
        root.key_pem.as_bytes(),
        YEAR,
        now,
    )
    .unwrap();
    dir.write("ca.crt", &root.cert_pem);
    dir.write("ca.key", &root.key_pem);
    dir.write("issuer.crt", &issuer.cert_pem);
    dir.write("issuer.key", &issuer.key_pem);
    let out = dir.openssl(&["verify", "-x509_strict", "-CAfile", "ca.crt", "issuer.crt"]);
    assert_eq!(out.trim(), "issuer.crt: OK");
    dir.openssl(&["pkey", "-in", "ca.key", "-noout"]);
    dir.openssl(&["pkey", "-in", "issuer.key", "-noout"]);

    let text = dir.openssl(&["x509", "-in", "ca.crt", "-noout", "-text"]);
    for want in [
        "Subject: CN = root.linkerd.cluster.local",
        "Issuer: CN = root.linkerd.cluster.local",
        "X509v3 Basic Constraints: critical",
        "CA:TRUE, pathlen:1",
        "X509v3 Key Usage: critical",
        "Certificate Sign, CRL Sign",
        "ASN1 OID: prime256v1",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(text.contains(want), "root lacks {want:?}:\n{text}");
    }
    let text = dir.openssl(&["x509", "-in", "issuer.crt", "-noout", "-text"]);
    for want in [
        "Issuer: CN = root.linkerd.cluster.local",
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(want), "issuer lacks {want:?}:\n{text}");
    }

    let loaded = load_from(&dir, now).unwrap();
    issue_leaf(&dir, &loaded);
    assert_openssl_accepts_leaf(&dir);
    let text = dir.openssl(&["x509", "-in", "leaf.crt", "-noout", "-text"]);
    for want in [
        "CA:FALSE",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        &format!("DNS:{}", web()),
        &format!("URI:{}", web().spiffe_uri()),
    ] {
        assert!(text.contains(want), "leaf lacks {want:?}:\n{text}");
    }
}

#[test]
fn fingerprint_and_serial_match_openssl() {
    let dir = tmp();
    let root = create_root("root", YEAR, SystemTime::now()).unwrap();
    dir.write("ca.crt", &root.cert_pem);
    let info = CertInfo::from_der(root.cert_der.as_ref()).unwrap();
    let out = dir.openssl(&[
        "x509",
        "-in",
        "ca.crt",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-serial",
    ]);
    assert!(
        out.contains(&format!("sha256 Fingerprint={}", info.sha256_fingerprint)),
        "{out}"
    );
    assert!(
        out.contains(&format!("serial={}", info.serial_hex)),
        "{out}"
    );
}

#[test]
fn rsa_anchor_from_openssl_is_accepted() {
    let dir = tmp();
    openssl_root(&dir, &["-newkey", "rsa:4096"]);
    openssl_issuer(&dir, EC);
    let anchors = TrustAnchors::from_pem(&dir.read("ca.crt")).unwrap();
    assert_eq!(anchors.infos()[0].key_type, KeyType::Rsa(4096));
    let issuer = load_from(&dir, SystemTime::now()).unwrap();
    issue_leaf(&dir, &issuer);
    assert_openssl_accepts_leaf(&dir);
    // Weft can also make the issuer from the operator's RSA root.
    let made = create_issuer(
        "identity.linkerd.cluster.local",
        &dir.read("ca.crt"),
        &dir.read("ca.key"),
        YEAR,
        SystemTime::now(),
    )
    .unwrap();
    dir.write("weft-issuer.crt", &made.cert_pem);
    let out = dir.openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        "ca.crt",
        "weft-issuer.crt",
    ]);
    assert_eq!(out.trim(), "weft-issuer.crt: OK");
}

#[test]
fn weak_rsa_anchor_is_refused() {
    let dir = tmp();
    dir.openssl(&["genrsa", "-out", "weak.key", "1024"]);
    dir.openssl(&[
        "req",
        "-x509",
        "-config",
        "openssl.cnf",
        "-extensions",
        "root_ca",
        "-key",
        "weak.key",
        "-out",
        "weak.crt",
        "-days",
        "1",
        "-subj",
        "/CN=weak",
    ]);
    let err = TrustAnchors::from_pem(&dir.read("weak.crt")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trust anchor key is RSA 1024; anchors must use ECDSA P-256/P-384, RSA 2048–8192 or Ed25519"
    );
}

#[test]
fn rsa_issuer_from_openssl_is_refused() {
    let dir = tmp();
    openssl_root(&dir, EC);
    openssl_issuer(&dir, &["-newkey", "rsa:2048"]);
    let err = load_from(&dir, SystemTime::now()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "issuer key is RSA 2048; issuers must use ECDSA P-256"
    );
}

#[test]
fn openssl_key_formats_are_read() {
    let dir = tmp();
    // SEC1 with an EC PARAMETERS block in front, as `openssl ecparam -genkey` writes it.
    dir.openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        "sec1.key",
    ]);
    let sec1 = dir.read("sec1.key");
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PARAMETERS"));
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
    // PKCS#1 RSA.
    dir.openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    assert!(String::from_utf8_lossy(&dir.read("rsa.key")).contains("BEGIN RSA PRIVATE KEY"));
    // PKCS#8 P-384.
    dir.openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        "p384.key",
    ]);

    for (file, want) in [
        ("sec1.key", KeyType::EcdsaP256),
        ("rsa.key", KeyType::Rsa(2048)),
        ("p384.key", KeyType::EcdsaP384),
    ] {
        let key = parse_private_key(&dir.read(file)).unwrap();
        assert_eq!(*key.key_type(), want, "{file}");
        // A self-signed certificate for the key, made by openssl, matches it; others do not.
        let crt = format!("{file}.crt");
        dir.openssl(&[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-key",
            file,
            "-out",
            &crt,
            "-days",
            "1",
            "-subj",
            "/CN=k",
        ]);
        let cert = parse_pem_certs(&dir.read(&crt)).unwrap().remove(0);
        assert!(key_matches_cert(&key, cert.as_ref()), "{file}");
        let other = create_root("other", DAY, SystemTime::now()).unwrap();
        assert!(!key_matches_cert(&key, other.cert_der.as_ref()), "{file}");
        // Re-encoding keeps the format.
        let again = parse_private_key(key.to_pem().as_bytes()).unwrap();
        assert_eq!(again.public_key_spki_der(), key.public_key_spki_der());
    }
}

#[test]
fn openssl_encrypted_key_is_refused_with_a_hint() {
    let dir = tmp();
    dir.openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes256",
        "-pass",
        "pass:secret",
        "-out",
        "enc.key",
    ]);
    let err = parse_private_key(&dir.read("enc.key")).unwrap_err();
    assert!(matches!(err, PkiError::EncryptedKey), "{err:?}");
}

#[test]
fn openssl_csr_is_accepted_for_its_identity_only() {
    let dir = tmp();
    let pki = Pki::new(SystemTime::now());
    let issuer = pki.load(SystemTime::now());
    let id = web();
    let san = format!("subjectAltName=DNS:{id}");
    let subj = format!("/CN={id}");
    dir.openssl(&[
        "req",
        "-new",
        "-config",
        "openssl.cnf",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-keyout",
        "w.key",
        "-subj",
        &subj,
        "-addext",
        &san,
        "-outform",
        "DER",
        "-out",
        "w.csr",
    ]);
    let csr = dir.read("w.csr");
    let leaf = issuer
        .certify(&csr, &id, DAY, SKEW, SystemTime::now())
        .unwrap();
    let key = parse_private_key(&dir.read("w.key")).unwrap();
    assert!(key_matches_cert(&key, leaf.cert_der.as_ref()));
    let err = issuer
        .certify(&csr, &voting(), DAY, SKEW, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, PkiError::CsrIdentityMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn sha1_signed_certificates_are_refused() {
    let dir = tmp();
    openssl_root(&dir, &["-newkey", "rsa:2048"]);
    dir.openssl(&[
        "req",
        "-new",
        "-config",
        "openssl.cnf",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-keyout",
        "issuer.key",
        "-out",
        "issuer.csr",
        "-subj",
        ISSUER_CN,
    ]);
    let (ok, out) = dir.try_openssl(&[
        "x509",
        "-req",
        "-sha1",
        "-in",
        "issuer.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "intermediate_ca",
        "-out",
        "issuer.crt",
    ]);
    assert!(
        ok,
        "this openssl cannot make SHA-1 signatures any more: {out}"
    );
    let issuer = parse_pem_certs(&dir.read("issuer.crt")).unwrap().remove(0);
    let anchors = parse_pem_certs(&dir.read("ca.crt")).unwrap();
    let err = verify_chain(&issuer, &[], &anchors, SystemTime::now(), None).unwrap_err();
    assert!(
        matches!(err, VerifyError::UnsupportedSignature { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SHA-1"), "{err}");
}
