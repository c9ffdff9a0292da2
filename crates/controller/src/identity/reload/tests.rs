#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use weft_pki::CertAndKey;

use super::*;
use crate::identity::credentials::Problem;
use crate::test_util::{new_issuer, new_root};

fn paths() -> CredentialPaths {
    CredentialPaths {
        trust_anchors: PathBuf::from("/etc/weft/ca.crt"),
        issuer_cert: PathBuf::from("/etc/weft/issuer.crt"),
        issuer_key: PathBuf::from("/etc/weft/issuer.key"),
    }
}

fn contents(roots: &[&CertAndKey], issuer: &CertAndKey) -> Contents {
    Contents {
        trust_anchors: roots
            .iter()
            .map(|r| r.cert_pem.as_str())
            .collect::<String>()
            .into_bytes(),
        issuer_cert: issuer.cert_pem.clone().into_bytes(),
        issuer_key: issuer.key_pem.clone().into_bytes(),
    }
}

struct Setup {
    reloader: Reloader,
    rx: watch::Receiver<Arc<Credentials>>,
    metrics: Arc<IdentityMetrics>,
    root: CertAndKey,
    issuer: CertAndKey,
}

fn setup() -> Setup {
    let root = new_root("root.weft.cluster.local");
    let issuer = new_issuer(&root);
    let initial =
        Credentials::build(&paths(), &contents(&[&root], &issuer), SystemTime::now()).unwrap();
    let metrics = Arc::new(IdentityMetrics::default());
    let (reloader, rx) = Reloader::new(paths(), initial, metrics.clone());
    Setup {
        reloader,
        rx,
        metrics,
        root,
        issuer,
    }
}

fn issuer_der(rx: &watch::Receiver<Arc<Credentials>>) -> Vec<u8> {
    rx.borrow().issuer.intermediates()[0].to_vec()
}

#[test]
fn unchanged_files_do_nothing() {
    let mut s = setup();
    let same = contents(&[&s.root], &s.issuer);
    for _ in 0..3 {
        assert!(matches!(
            s.reloader.poll(Ok(same.clone()), SystemTime::now()),
            Outcome::Unchanged
        ));
    }
    assert!(!s.rx.has_changed().unwrap());
}

#[test]
fn a_new_issuer_is_loaded_once_it_has_settled() {
    let mut s = setup();
    let next = new_issuer(&s.root);
    let now = SystemTime::now();
    let new = contents(&[&s.root], &next);
    assert!(matches!(
        s.reloader.poll(Ok(new.clone()), now),
        Outcome::Settling
    ));
    assert!(!s.rx.has_changed().unwrap());
    assert!(matches!(
        s.reloader.poll(Ok(new.clone()), now),
        Outcome::Reloaded
    ));
    assert!(s.rx.has_changed().unwrap());
    assert_eq!(issuer_der(&s.rx), next.cert_der.to_vec());
    assert!(matches!(s.reloader.poll(Ok(new), now), Outcome::Unchanged));
    assert_eq!(s.metrics.reloads_ok_total(), 1);
}

#[test]
fn a_half_written_rotation_is_never_tried() {
    let mut s = setup();
    let next = new_issuer(&s.root);
    let now = SystemTime::now();
    // The certificate is written first: new certificate, old key...
    let mut half = contents(&[&s.root], &s.issuer);
    half.issuer_cert = next.cert_pem.clone().into_bytes();
    assert!(matches!(s.reloader.poll(Ok(half), now), Outcome::Settling));
    // ...then the key, before the next poll.
    let full = contents(&[&s.root], &next);
    assert!(matches!(
        s.reloader.poll(Ok(full.clone()), now),
        Outcome::Settling
    ));
    assert!(matches!(s.reloader.poll(Ok(full), now), Outcome::Reloaded));
    assert_eq!(s.metrics.reloads_refused_total(), 0);
}

#[test]
fn a_bad_issuer_is_refused_once_and_the_old_one_kept() {
    let mut s = setup();
    let now = SystemTime::now();
    let old = issuer_der(&s.rx);

    // An issuer from an unknown root.
    let stranger = new_issuer(&new_root("root.other"));
    let bad = contents(&[&s.root], &stranger);
    assert!(matches!(
        s.reloader.poll(Ok(bad.clone()), now),
        Outcome::Settling
    ));
    let Outcome::Refused(err) = s.reloader.poll(Ok(bad.clone()), now) else {
        panic!("expected a refusal")
    };
    assert_eq!(err.path, paths().issuer_cert);
    let msg = err.to_string();
    assert!(msg.starts_with("/etc/weft/issuer.crt: "), "{msg}");
    assert!(
        msg.contains("not issued by any of the trust anchors"),
        "{msg}"
    );
    // Reported once: the same contents are not tried again.
    assert!(matches!(s.reloader.poll(Ok(bad), now), Outcome::Unchanged));
    assert!(!s.rx.has_changed().unwrap());
    assert_eq!(issuer_der(&s.rx), old);
    assert_eq!(s.metrics.reloads_refused_total(), 1);

    // A good issuer afterwards is loaded.
    let good = new_issuer(&s.root);
    let new = contents(&[&s.root], &good);
    assert!(matches!(
        s.reloader.poll(Ok(new.clone()), now),
        Outcome::Settling
    ));
    assert!(matches!(s.reloader.poll(Ok(new), now), Outcome::Reloaded));
    assert_eq!(issuer_der(&s.rx), good.cert_der.to_vec());
}

/// A workload certificate signed by `issuer`, PEM.
fn leaf_pem(issuer: &CertAndKey) -> Vec<u8> {
    // The issuer as its own anchor: enough to sign a leaf with it.
    let issuer = weft_pki::Issuer::load(
        issuer.cert_pem.as_bytes(),
        issuer.key_pem.as_bytes(),
        issuer.cert_pem.as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    let id = weft_pki::Identity::parse(&crate::test_util::identity("web", "ns")).unwrap();
    let (_key, csr) = weft_pki::generate_key_and_csr(&id).unwrap();
    let leaf = issuer
        .certify(
            &csr,
            &id,
            Duration::from_secs(3600),
            Duration::ZERO,
            SystemTime::now(),
        )
        .unwrap();
    leaf.cert_pem.into_bytes()
}

#[test]
fn refusals_name_the_file_and_reason() {
    let s = setup();
    let now = SystemTime::now();
    let other = new_issuer(&s.root);
    let cases: Vec<(Contents, PathBuf, &str)> = vec![
        // The key of another issuer.
        (
            Contents {
                issuer_key: other.key_pem.clone().into_bytes(),
                ..contents(&[&s.root], &s.issuer)
            },
            paths().issuer_key,
            "does not match",
        ),
        // Not PEM.
        (
            Contents {
                issuer_cert: b"hello".to_vec(),
                ..contents(&[&s.root], &s.issuer)
            },
            paths().issuer_cert,
            "not PEM",
        ),
        // An empty bundle.
        (
            Contents {
                trust_anchors: Vec::new(),
                ..contents(&[&s.root], &s.issuer)
            },
            paths().trust_anchors,
            "not PEM",
        ),
        // A leaf in the bundle.
        (
            Contents {
                trust_anchors: leaf_pem(&s.issuer),
                ..contents(&[&s.root], &s.issuer)
            },
            paths().trust_anchors,
            "not a CA",
        ),
        // An anchors file that dropped the issuer's root.
        (
            contents(&[&new_root("root.new")], &s.issuer),
            paths().issuer_cert,
            "not issued by any of the trust anchors",
        ),
    ];
    for (c, path, needle) in cases {
        let err = Credentials::build(&paths(), &c, now).unwrap_err();
        assert_eq!(err.path, path, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
    // An expired issuer: checked at a time after it expires.
    let later = now + Duration::from_secs(2 * 8760 * 3600);
    let err = Credentials::build(&paths(), &contents(&[&s.root], &s.issuer), later).unwrap_err();
    assert_eq!(err.path, paths().issuer_cert);
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn unreadable_files_are_refused_and_the_old_issuer_kept() {
    let mut s = setup();
    let now = SystemTime::now();
    let missing = || LoadError {
        path: paths().issuer_key,
        problem: Problem::Read(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    assert!(matches!(
        s.reloader.poll(Err(missing()), now),
        Outcome::Settling
    ));
    assert!(matches!(
        s.reloader.poll(Err(missing()), now),
        Outcome::Refused(_)
    ));
    assert!(matches!(
        s.reloader.poll(Err(missing()), now),
        Outcome::Unchanged
    ));
    assert!(!s.rx.has_changed().unwrap());
    // The file comes back unchanged: reloaded (the same credentials).
    let same = contents(&[&s.root], &s.issuer);
    assert!(matches!(
        s.reloader.poll(Ok(same.clone()), now),
        Outcome::Settling
    ));
    assert!(matches!(s.reloader.poll(Ok(same), now), Outcome::Reloaded));
}

#[test]
fn anchor_rotation_in_four_steps() {
    let mut s = setup();
    let now = SystemTime::now();
    let new_root = new_root("root.weft.cluster.local");
    let mut step = |c: Contents| {
        assert!(matches!(
            s.reloader.poll(Ok(c.clone()), now),
            Outcome::Settling
        ));
        s.reloader.poll(Ok(c), now)
    };
    // 1. Bundle old + new.
    assert!(matches!(
        step(contents(&[&s.root, &new_root], &s.issuer)),
        Outcome::Reloaded
    ));
    // Dropping the old root now would strand the issuer: refused.
    assert!(matches!(
        step(contents(&[&new_root], &s.issuer)),
        Outcome::Refused(_)
    ));
    // 2. A new issuer from the new root, bundle still old + new.
    let next = new_issuer(&new_root);
    assert!(matches!(
        step(contents(&[&s.root, &new_root], &next)),
        Outcome::Reloaded
    ));
    // 3. Drop the old root.
    assert!(matches!(
        step(contents(&[&new_root], &next)),
        Outcome::Reloaded
    ));
    let creds = s.rx.borrow().clone();
    assert_eq!(creds.anchors.len(), 1);
    assert_eq!(creds.anchors.certs()[0], new_root.cert_der);
    assert_eq!(s.metrics.reloads_ok_total(), 3);
    assert_eq!(s.metrics.reloads_refused_total(), 1);
}

/// The task itself: a short interval under paused time, files on disk.
#[tokio::test(start_paused = true)]
async fn the_task_polls_and_stops_on_drain() {
    let pki = crate::test_util::TestPki::new();
    let args = pki.args();
    let paths = CredentialPaths {
        trust_anchors: args.trust_anchors.clone(),
        issuer_cert: args.issuer_cert.clone(),
        issuer_key: args.issuer_key.clone(),
    };
    let initial = Credentials::load(&paths, SystemTime::now()).unwrap();
    let metrics = Arc::new(IdentityMetrics::default());
    let (reloader, mut rx) = Reloader::new(paths, initial, metrics);
    let (drain_tx, drain_rx) = watch::channel(false);
    let task = tokio::spawn(reloader.run(Duration::from_secs(1), drain_rx));

    let next = new_issuer(&pki.root);
    pki.write_issuer(&next);
    // Two polls to settle; paused time advances as soon as the task waits. Reads run on the
    // blocking pool, so give the (virtual) clock a bounded number of seconds.
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("reloaded within 30 (virtual) seconds")
        .unwrap();
    assert_eq!(issuer_der(&rx), next.cert_der.to_vec());

    drain_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task stops on drain")
        .unwrap();
}
