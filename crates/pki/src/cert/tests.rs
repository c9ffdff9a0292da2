#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rcgen::{RsaKeySize, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256};

use super::*;
use crate::test_support::*;

#[test]
fn parse_pem_certs_reads_every_certificate_in_order() {
    let pki = Pki::new(t0());
    let bundle = format!("{}{}", pki.issuer.cert_pem, pki.root.cert_pem);
    let certs = parse_pem_certs(bundle.as_bytes()).unwrap();
    assert_eq!(certs, vec![pki.issuer_der(), pki.root_der()]);
}

#[test]
fn parse_pem_certs_skips_keys_and_text_around_blocks() {
    let pki = Pki::new(t0());
    let mixed = format!(
        "Certificate:\n  some openssl -text output\n{}{}trailing words\n",
        pki.root.key_pem, pki.root.cert_pem
    );
    assert_eq!(
        parse_pem_certs(mixed.as_bytes()).unwrap(),
        vec![pki.root_der()]
    );
}

#[test]
fn non_pem_input_is_refused_clearly() {
    for input in [
        &b""[..],
        b"hello world\n",
        b"\x30\x82\x01\x00garbage",
        b"{\"json\": true}",
    ] {
        let err = parse_pem_certs(input).unwrap_err();
        assert!(
            matches!(
                err,
                PkiError::NotPem {
                    expected: "CERTIFICATE"
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "not PEM: expected a \"-----BEGIN CERTIFICATE-----\" block"
        );
    }
    let err = parse_private_key(b"not a key").unwrap_err();
    assert_eq!(
        err.to_string(),
        "not PEM: expected a \"-----BEGIN PRIVATE KEY-----\" block"
    );
}

#[test]
fn pem_without_certificates_lists_what_it_found() {
    let pki = Pki::new(t0());
    let err = parse_pem_certs(pki.root.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(&err, PkiError::NoCertificates { found } if found == &["PRIVATE KEY"]));
    assert_eq!(
        err.to_string(),
        "no CERTIFICATE block in PEM (found: PRIVATE KEY)"
    );
}

#[test]
fn truncated_pem_is_an_error_not_a_shorter_bundle() {
    let pki = Pki::new(t0());
    let cut = &pki.issuer.cert_pem[..pki.issuer.cert_pem.len() / 2];
    let bundle = format!("{}{cut}", pki.root.cert_pem);
    let err = parse_pem_certs(bundle.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::BadPem { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn bad_base64_is_malformed_pem() {
    let pem = "-----BEGIN CERTIFICATE-----\n!!!notbase64***\n-----END CERTIFICATE-----\n";
    let err = parse_pem_certs(pem.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::BadPem { .. }), "{err:?}");
}

#[test]
fn certificate_block_with_garbage_der_names_its_position() {
    let pki = Pki::new(t0());
    let junk = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x03, 1, 2, 3]));
    let bundle = format!("{}{junk}", pki.root.cert_pem);
    let err = parse_pem_certs(bundle.as_bytes()).unwrap_err();
    assert!(
        matches!(err, PkiError::BadCertificate { index: 2, .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("certificate 2 is not a valid X.509 certificate"));
}

#[test]
fn der_with_trailing_bytes_is_refused() {
    let pki = Pki::new(t0());
    let mut der = pki.root_der().as_ref().to_vec();
    der.push(0);
    let err = CertInfo::from_der(&der).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}

#[test]
fn parse_certs_accepts_pem_or_der() {
    let pki = Pki::new(t0());
    assert_eq!(
        parse_certs(pki.root.cert_pem.as_bytes()).unwrap(),
        vec![pki.root_der()]
    );
    assert_eq!(
        parse_certs(pki.root_der().as_ref()).unwrap(),
        vec![pki.root_der()]
    );
    assert!(matches!(
        parse_certs(b"\x30\x01\x00"),
        Err(PkiError::NotPem { .. })
    ));
}

#[test]
fn certs_to_pem_round_trips() {
    let pki = Pki::new(t0());
    let certs = vec![pki.issuer_der(), pki.root_der()];
    assert_eq!(
        parse_pem_certs(certs_to_pem(&certs).as_bytes()).unwrap(),
        certs
    );
}

#[test]
fn inspect_root() {
    let root = crate::issue::create_root("root.linkerd.cluster.local", 10 * YEAR, t0()).unwrap();
    let info = CertInfo::from_der(root.cert_der.as_ref()).unwrap();
    assert_eq!(info.subject, "CN=root.linkerd.cluster.local");
    assert_eq!(info.issuer, info.subject);
    assert_eq!(
        info.common_name.as_deref(),
        Some("root.linkerd.cluster.local")
    );
    assert!(info.is_ca);
    assert_eq!(info.path_len, Some(1));
    assert_eq!(info.key_usage, Some(vec!["keyCertSign", "cRLSign"]));
    assert!(info.ext_key_usage.is_empty());
    assert_eq!(info.key_type, KeyType::EcdsaP256);
    assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
    assert_eq!(info.not_before, t0());
    assert_eq!(info.not_after, t0() + 10 * YEAR);
    assert!(info.self_issued);
    assert!(info.can_sign_certs());
    assert!(info.subject_key_id.is_some());
    assert!(info.dns_sans.is_empty() && info.uri_sans.is_empty() && info.ip_sans.is_empty());
    // 32 bytes of SHA-256 as colon-separated uppercase hex.
    assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
    assert_eq!(
        info.sha256_fingerprint,
        hex(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, root.cert_der.as_ref()).as_ref(),
            Some(':'),
            true
        )
    );
    assert!(info
        .serial_hex
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
}

#[test]
fn inspect_leaf() {
    let pki = Pki::new(t0());
    let issuer = pki.load(t0());
    let (_key, csr) = crate::issue::generate_key_and_csr(&web()).unwrap();
    let leaf = issuer
        .certify(&csr, &web(), DAY, Duration::from_secs(10), t0())
        .unwrap();
    let info = CertInfo::from_der(leaf.cert_der.as_ref()).unwrap();
    let issuer_info = CertInfo::from_der(pki.issuer.cert_der.as_ref()).unwrap();
    assert_eq!(info.subject, format!("CN={}", web()));
    assert_eq!(info.issuer, "CN=identity.linkerd.cluster.local");
    assert_eq!(info.dns_sans, vec![web().to_string()]);
    assert_eq!(
        info.uri_sans,
        vec!["spiffe://cluster.local/ns/emojivoto/sa/web".to_owned()]
    );
    assert_eq!(info.ext_key_usage, vec!["serverAuth", "clientAuth"]);
    assert_eq!(info.key_usage, Some(vec!["digitalSignature"]));
    assert!(!info.is_ca);
    assert!(!info.can_sign_certs());
    assert_eq!(info.path_len, None);
    assert!(!info.self_issued);
    assert_eq!(info.authority_key_id, issuer_info.subject_key_id);
    assert_eq!(info.serial_hex, leaf.serial_hex);
}

#[test]
fn validity_at_covers_both_ends_inclusively() {
    let root = crate::issue::create_root("r", HOUR, t0()).unwrap();
    let info = CertInfo::from_der(root.cert_der.as_ref()).unwrap();
    let s = Duration::from_secs(1);
    assert_eq!(info.validity_at(t0() - s), Validity::NotYetValid);
    assert_eq!(info.validity_at(t0()), Validity::Valid);
    assert_eq!(info.validity_at(t0() + HOUR), Validity::Valid);
    assert_eq!(info.validity_at(t0() + HOUR + s), Validity::Expired);
    assert!(info.is_valid_at(t0() + s));
    assert_eq!(
        info.validity_text(),
        "2030-01-01T00:00:00Z .. 2030-01-01T01:00:00Z"
    );
}

#[test]
fn key_types_are_recognised() {
    let cases = [
        (
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
            KeyType::EcdsaP384,
        ),
        (
            KeyPair::generate_for(&PKCS_ED25519).unwrap(),
            KeyType::Ed25519,
        ),
        (
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap(),
            KeyType::Rsa(2048),
        ),
    ];
    for (key, want) in cases {
        let cert = params("k", ca(1), t0(), t0() + DAY)
            .self_signed(&key)
            .unwrap();
        let info = CertInfo::from_der(cert.der().as_ref()).unwrap();
        assert_eq!(info.key_type, want);
        let parsed = parse_private_key(key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(*parsed.key_type(), want);
        assert!(key_matches_cert(&parsed, cert.der().as_ref()));
    }
}

#[test]
fn key_type_display() {
    assert_eq!(KeyType::EcdsaP256.to_string(), "ECDSA P-256");
    assert_eq!(KeyType::EcdsaP384.to_string(), "ECDSA P-384");
    assert_eq!(KeyType::Rsa(4096).to_string(), "RSA 4096");
    assert_eq!(KeyType::Ed25519.to_string(), "Ed25519");
}

#[test]
fn bit_len_counts_significant_bits() {
    assert_eq!(bit_len(&[]), 0);
    assert_eq!(bit_len(&[0, 0]), 0);
    assert_eq!(bit_len(&[1]), 1);
    assert_eq!(bit_len(&[0, 0x80, 0]), 16);
    assert_eq!(bit_len(&[0x7f, 0xff]), 15);
    let mut modulus = vec![0u8];
    modulus.extend([0xc5; 256]);
    assert_eq!(bit_len(&modulus), 2048);
}

#[test]
fn private_key_round_trips_and_matches_only_its_certificate() {
    let pki = Pki::new(t0());
    let key = parse_private_key(pki.issuer.key_pem.as_bytes()).unwrap();
    assert_eq!(*key.key_type(), KeyType::EcdsaP256);
    assert!(key_matches_cert(&key, pki.issuer.cert_der.as_ref()));
    assert!(!key_matches_cert(&key, pki.root.cert_der.as_ref()));
    assert!(!key_matches_cert(&key, b"junk"));
    let again = parse_private_key(key.to_pem().as_bytes()).unwrap();
    assert_eq!(again.public_key_spki_der(), key.public_key_spki_der());
    assert!(matches!(key.private_key_der(), PrivateKeyDer::Pkcs8(_)));
}

#[test]
fn private_key_debug_does_not_print_the_secret() {
    let key = PrivateKey::generate_ecdsa_p256().unwrap();
    let dbg = format!("{key:?}");
    assert_eq!(dbg, "PrivateKey { key_type: EcdsaP256, .. }");
}

#[test]
fn private_key_errors() {
    let pki = Pki::new(t0());
    let err = parse_private_key(pki.root.cert_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, PkiError::NoPrivateKey { found } if found == &["CERTIFICATE"]),
        "{err:?}"
    );

    let two = format!("{}{}", pki.root.key_pem, pki.issuer.key_pem);
    let err = parse_private_key(two.as_bytes()).unwrap_err();
    assert!(
        matches!(err, PkiError::SeveralPrivateKeys { count: 2 }),
        "{err:?}"
    );

    let enc = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", vec![0x30, 0]));
    let err = parse_private_key(enc.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::EncryptedKey), "{err:?}");
    assert!(
        err.to_string().contains("--no-password --insecure"),
        "{err}"
    );

    let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
    let err = parse_private_key(legacy.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::EncryptedKey), "{err:?}");

    let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0x30, 0x03, 2, 1, 0]));
    let err = parse_private_key(junk.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::BadKey { .. }), "{err:?}");
}

#[test]
fn pem_output_uses_lf_line_endings() {
    let key = PrivateKey::generate_ecdsa_p256().unwrap();
    assert!(!key.to_pem().contains('\r'));
    let root = crate::create_root(
        "root.test",
        std::time::Duration::from_secs(3600),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert!(!root.cert_pem.contains('\r') && !root.key_pem.contains('\r'));
    assert!(!certs_to_pem(&[root.cert_der]).contains('\r'));
}
