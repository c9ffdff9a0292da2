//! Live reload of the identity service's files while it runs and serves: issuer rotation under
//! load, bad new issuers refused, trust anchor rotation through a bundle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_controller::identity::Running;
use weft_controller::test_util::{
    capture_logs, certify_once as certify, certify_request, client, der, identity, intermediates,
    key_id, new_issuer, new_root, sample, scrape_metrics as metrics, signer_of, verify_against,
    wait_until, Logs, TestPki, TOKEN_KEY,
};
use weft_pki::{create_issuer, verify_chain, CertInfo};

const WAIT: Duration = Duration::from_secs(20);

struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    /// (worker, signer) in completion order.
    signers: Arc<Mutex<Vec<(usize, String)>>>,
    calls: Arc<AtomicUsize>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    async fn start(running: &Running, workers: usize) -> Self {
        let mut load = Self {
            stop: Arc::default(),
            failures: Arc::default(),
            signers: Arc::default(),
            calls: Arc::default(),
            tasks: tokio::task::JoinSet::new(),
        };
        for w in 0..workers {
            let mut c = client(running.grpc_addr()).await;
            let id = identity(&format!("worker-{w}"), "load");
            let (_key, req) = certify_request(&id, TOKEN_KEY);
            let (stop, failures, signers, calls) = (
                load.stop.clone(),
                load.failures.clone(),
                load.signers.clone(),
                load.calls.clone(),
            );
            load.tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match c.certify(req.clone()).await {
                        Ok(rsp) => signers.lock().unwrap().push((w, signer_of(rsp.get_ref()))),
                        Err(status) => failures.lock().unwrap().push(format!("{status:?}")),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        load
    }

    fn signed_by(&self, key_id: &str) -> usize {
        self.signers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s == key_id)
            .count()
    }

    async fn stop(mut self) -> (Vec<String>, Vec<(usize, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(WAIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .expect("load stops");
        let failures = self.failures.lock().unwrap().clone();
        let signers = self.signers.lock().unwrap().clone();
        (failures, signers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_rotation_under_load_fails_no_call() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let old_id = key_id(&pki.issuer);
    let load = Load::start(&running, 4).await;
    wait_until("leaves from the first issuer", WAIT, || async {
        load.signed_by(&old_id) >= 20
    })
    .await;

    // Rotate: rewrite issuer.crt, then issuer.key, in place.
    let next = new_issuer(&pki.root);
    let new_id = key_id(&next);
    let mut creds = running.credentials();
    pki.write_issuer(&next);
    tokio::time::timeout(WAIT, creds.changed())
        .await
        .expect("the new issuer is loaded")
        .unwrap();
    assert_eq!(creds.borrow().issuer.intermediates()[0], next.cert_der);
    wait_until("leaves from the new issuer", WAIT, || async {
        load.signed_by(&new_id) >= 20
    })
    .await;
    let (failures, signers) = load.stop().await;

    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Each worker's calls are sequential: once the new issuer has signed one of them, the old
    // issuer never signs a later one.
    for w in 0..4 {
        let mine: Vec<&String> = signers
            .iter()
            .filter(|(o, _)| *o == w)
            .map(|(_, s)| s)
            .collect();
        let first_new = mine
            .iter()
            .position(|s| **s == new_id)
            .unwrap_or(mine.len());
        assert!(
            mine[..first_new].iter().all(|s| **s == old_id),
            "worker {w}"
        );
        assert!(
            mine[first_new..].iter().all(|s| **s == new_id),
            "worker {w}"
        );
    }
    // A fresh leaf chains through the new issuer, and not through the old one.
    let web = identity("web", "emojivoto");
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    assert_eq!(intermediates(&rsp), vec![next.cert_der.clone()]);
    verify_against(&pki, &rsp, &web);
    let only_old = verify_chain(
        &der(&rsp.leaf_certificate),
        std::slice::from_ref(&pki.issuer.cert_der),
        std::slice::from_ref(&pki.root.cert_der),
        SystemTime::now(),
        None,
    );
    assert!(only_old.is_err(), "{only_old:?}");
    let m = metrics(&running).await;
    assert_eq!(
        sample(
            &m,
            r#"identity_credentials_reloads_total{result="accepted"}"#
        ),
        Some(1.0)
    );
    // (No assertion on refusals: the certificate and key are written one after the other, and
    // a machine stalled between the two writes for two polls would see, and rightly refuse, the
    // half-written pair. The debounce makes that rare; either way no call fails.)
    let expiry = CertInfo::from_der(&next.cert_der).unwrap().not_after;
    assert_eq!(
        sample(&m, "identity_issuer_expiry_timestamp_seconds"),
        Some(expiry.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64)
    );
    running.shutdown().await;
}

/// Writes a bad issuer, waits for the refusal, and checks the old issuer still signs.
async fn expect_refused(
    running: &Running,
    pki: &TestPki,
    logs: &Logs,
    write: impl FnOnce(),
    file: &str,
    reason: &str,
) {
    let before = running.metrics().reloads_refused_total();
    write();
    wait_until(&format!("refusal of {file} ({reason})"), WAIT, || async {
        running.metrics().reloads_refused_total() > before
    })
    .await;
    let path = pki.dir.path(file).display().to_string();
    let lines = logs.lines_with(&format!("refused new identity credentials: {path}: "));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(reason) && l.contains("ERROR")),
        "no error line naming {path} and {reason:?}: {lines:#?}"
    );
    let web = identity("web", "emojivoto");
    let rsp = certify(running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    assert_eq!(
        intermediates(&rsp),
        vec![pki.issuer.cert_der.clone()],
        "the old issuer still signs"
    );
}

#[tokio::test]
async fn bad_new_issuers_are_refused_and_the_old_one_kept() {
    let logs = capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let original = (pki.issuer.cert_pem.clone(), pki.issuer.key_pem.clone());
    let restore = || {
        pki.dir.write("issuer.crt", &original.0);
        pki.dir.write("issuer.key", &original.1);
    };

    // An issuer that does not chain to the anchors.
    let stranger = new_issuer(&new_root("root.stranger"));
    expect_refused(
        &running,
        &pki,
        &logs,
        || pki.write_issuer(&stranger),
        "issuer.crt",
        "not issued by any of the trust anchors",
    )
    .await;
    // The right certificate with another key.
    let other = new_issuer(&pki.root);
    expect_refused(
        &running,
        &pki,
        &logs,
        || {
            restore();
            pki.dir.write("issuer.key", &other.key_pem);
        },
        "issuer.key",
        "does not match",
    )
    .await;
    // An expired issuer (signed while both were valid, three hours ago, for one hour).
    let three_hours_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    let old_root = weft_pki::create_root(
        "root.old",
        Duration::from_secs(8760 * 3600),
        three_hours_ago,
    )
    .unwrap();
    let expired = create_issuer(
        "identity.weft.cluster.local",
        old_root.cert_pem.as_bytes(),
        old_root.key_pem.as_bytes(),
        Duration::from_secs(3600),
        three_hours_ago,
    )
    .unwrap();
    expect_refused(
        &running,
        &pki,
        &logs,
        || {
            pki.write_anchors(&[&pki.root, &old_root]);
            pki.write_issuer(&expired);
        },
        "issuer.crt",
        "expired",
    )
    .await;
    pki.write_anchors(&[&pki.root]);
    // An RSA issuer made by openssl and signed by the real root.
    pki.dir.write("ca.key", &pki.root.key_pem);
    pki.dir.write("ext.cnf", "[v3]\nbasicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n");
    pki.dir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-noenc",
        "-keyout",
        "rsa.key",
        "-out",
        "rsa.csr",
        "-subj",
        "/CN=identity.rsa",
    ]);
    pki.dir.openssl(&[
        "x509",
        "-req",
        "-in",
        "rsa.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "v3",
        "-out",
        "rsa.crt",
    ]);
    let (rsa_crt, rsa_key) = (pki.dir.read("rsa.crt"), pki.dir.read("rsa.key"));
    expect_refused(
        &running,
        &pki,
        &logs,
        || {
            pki.dir.write("issuer.crt", &rsa_crt);
            pki.dir.write("issuer.key", &rsa_key);
        },
        "issuer.crt",
        "RSA 2048",
    )
    .await;
    // Not PEM at all.
    expect_refused(
        &running,
        &pki,
        &logs,
        || {
            restore();
            pki.dir.write("issuer.crt", "hello\n");
        },
        "issuer.crt",
        "not PEM",
    )
    .await;
    // A missing file.
    expect_refused(
        &running,
        &pki,
        &logs,
        || {
            restore();
            std::fs::remove_file(pki.dir.path("issuer.key")).unwrap();
        },
        "issuer.key",
        "cannot read",
    )
    .await;

    // Fixed: the original files again are accepted.
    let accepted = running.metrics().reloads_ok_total();
    restore();
    wait_until("the restored issuer", WAIT, || async {
        running.metrics().reloads_ok_total() > accepted
    })
    .await;
    let m = metrics(&running).await;
    // At least the six above (a stall between two writes could add a half-written pair).
    let refused = sample(
        &m,
        r#"identity_credentials_reloads_total{result="refused"}"#,
    )
    .unwrap();
    assert!(refused >= 6.0, "{refused}");
    running.shutdown().await;
}

#[tokio::test]
async fn trust_anchor_rotation_through_a_bundle() {
    capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let web = identity("web", "emojivoto");
    let new_root = new_root("root.weft.cluster.local");
    let mut creds = running.credentials();
    let anchor_expiry = |c: &weft_pki::CertAndKey| {
        CertInfo::from_der(&c.cert_der)
            .unwrap()
            .not_after
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as f64
    };

    // 1. Bundle old + new: the old issuer keeps signing, leaves verify against the bundle.
    pki.write_anchors(&[&pki.root, &new_root]);
    tokio::time::timeout(WAIT, creds.changed())
        .await
        .expect("bundle loaded")
        .unwrap();
    assert_eq!(creds.borrow_and_update().anchors.len(), 2);
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    assert_eq!(verify_against(&pki, &rsp, &web).anchor_index, 0);
    let m = metrics(&running).await;
    assert_eq!(sample(&m, "identity_trust_anchors"), Some(2.0));
    assert_eq!(
        sample(&m, "identity_trust_anchor_expiry_timestamp_seconds"),
        Some(anchor_expiry(&pki.root).min(anchor_expiry(&new_root)))
    );

    // 2. A new issuer from the new root.
    let next = new_issuer(&new_root);
    pki.write_issuer(&next);
    tokio::time::timeout(WAIT, creds.changed())
        .await
        .expect("new issuer loaded")
        .unwrap();
    creds.borrow_and_update();
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    assert_eq!(
        verify_against(&pki, &rsp, &web).anchor_index,
        1,
        "chains to the new root"
    );

    // 3. Drop the old root.
    pki.write_anchors(&[&new_root]);
    tokio::time::timeout(WAIT, creds.changed())
        .await
        .expect("new bundle loaded")
        .unwrap();
    assert_eq!(
        creds.borrow().anchors.certs(),
        std::slice::from_ref(&new_root.cert_der)
    );
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    verify_against(&pki, &rsp, &web);
    let m = metrics(&running).await;
    assert_eq!(sample(&m, "identity_trust_anchors"), Some(1.0));
    assert_eq!(
        sample(&m, "identity_trust_anchor_expiry_timestamp_seconds"),
        Some(anchor_expiry(&new_root))
    );
    assert_eq!(
        sample(
            &m,
            r#"identity_credentials_reloads_total{result="accepted"}"#
        ),
        Some(3.0)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn dropping_the_anchor_of_the_current_issuer_is_refused() {
    let logs = capture_logs();
    let pki = TestPki::new();
    let running = pki.start().await;
    let before = running.metrics().reloads_refused_total();
    pki.write_anchors(&[&new_root("root.weft.cluster.local")]);
    wait_until("the refusal", WAIT, || async {
        running.metrics().reloads_refused_total() > before
    })
    .await;
    let path = pki.issuer_cert_path().display().to_string();
    assert!(!logs
        .lines_with(&format!("refused new identity credentials: {path}: "))
        .is_empty());
    let web = identity("web", "emojivoto");
    let rsp = certify(&running, certify_request(&web, TOKEN_KEY).1)
        .await
        .unwrap();
    // Still signed by the original issuer, and the original anchors are still in use.
    assert_eq!(intermediates(&rsp), vec![pki.issuer.cert_der.clone()]);
    assert_eq!(
        running.credentials().borrow().anchors.certs(),
        std::slice::from_ref(&pki.root.cert_der)
    );
    running.shutdown().await;
}
