//! The proxy's identity client.
//!
//! At start the proxy generates an ECDSA P-256 key in memory (it is never written anywhere),
//! sends a CSR for its identity with its bootstrap token to the identity service, checks the
//! returned chain against the trust anchors, and installs it for mTLS. It renews at ~70% of the
//! certificate's remaining lifetime; on failure it retries with jittered exponential backoff and
//! keeps serving with the certificate it has. It also re-reads the trust-anchor bundle when the
//! file changes, so an anchor rotation needs no restart.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use weft_api::identity::{identity_client::IdentityClient, CertifyRequest};
use weft_pki::Identity;

use crate::config::IdentityConfig;
use crate::metrics::{Counter, Gauge};
use crate::tls::Tls;

/// Renew when this fraction of the remaining lifetime has passed.
const RENEW_FRACTION: f64 = 0.7;
/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bound on one call to the identity service (connect + Certify).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the trust-anchor file is checked for changes.
const ANCHOR_POLL: Duration = Duration::from_secs(1);

/// Identity metrics.
#[derive(Default)]
pub struct IdentityMetrics {
    pub cert_expiry_seconds: Gauge,
    pub refresh_total: Counter,
    pub refresh_failure_total: Counter,
    pub anchors_reload_total: Counter,
    pub anchors_reload_failure_total: Counter,
}

impl IdentityMetrics {
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut one = |name: &str, kind: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one("identity_cert_expiration_timestamp_seconds", "gauge", "Expiry of the current workload certificate, in seconds since the Unix epoch (0 before the first one).", self.cert_expiry_seconds.get());
        one(
            "identity_cert_refresh_total",
            "counter",
            "Certificates obtained from the identity service.",
            self.refresh_total.get() as i64,
        );
        one(
            "identity_cert_refresh_failure_total",
            "counter",
            "Failed attempts to obtain a certificate.",
            self.refresh_failure_total.get() as i64,
        );
        one(
            "identity_trust_anchors_reload_total",
            "counter",
            "Trust-anchor bundles loaded after a change of the file.",
            self.anchors_reload_total.get() as i64,
        );
        one(
            "identity_trust_anchors_reload_failure_total",
            "counter",
            "Changed trust-anchor files that were refused (the previous anchors stay).",
            self.anchors_reload_failure_total.get() as i64,
        );
    }
}

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the identity service at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the identity service refused: {0}")]
    Refused(String),
    #[error("the identity service's answer is invalid: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Local(String),
}

/// Obtains one certificate (a trait so the renewal schedule is tested without a service).
pub trait Certifier: Send + Sync + 'static {
    /// Installs a fresh certificate and returns its expiry.
    fn certify(&self)
        -> impl std::future::Future<Output = Result<SystemTime, CertifyError>> + Send;
}

/// The real certifier: CSR + token to the identity service over gRPC.
pub struct ServiceCertifier {
    pub config: IdentityConfig,
    pub tls: Arc<Tls>,
    /// The anchors the returned chain must verify against (kept current by the anchor watcher).
    pub anchors: Arc<RwLock<Vec<CertificateDer<'static>>>>,
}

impl Certifier for ServiceCertifier {
    async fn certify(&self) -> Result<SystemTime, CertifyError> {
        let cfg = &self.config;
        let token =
            tokio::fs::read(&cfg.token_path)
                .await
                .map_err(|source| CertifyError::Token {
                    path: cfg.token_path.clone(),
                    source,
                })?;
        let token = trim_ascii(&token).to_vec();
        let identity =
            Identity::parse(&cfg.name).map_err(|e| CertifyError::Local(e.to_string()))?;
        let (key, csr) = weft_pki::generate_key_and_csr(&identity)
            .map_err(|e| CertifyError::Local(e.to_string()))?;
        let unreachable = |reason: String| CertifyError::Unreachable {
            addr: cfg.svc_addr.clone(),
            reason,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", cfg.svc_addr))
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let rsp = IdentityClient::new(channel)
            .certify(CertifyRequest {
                identity: cfg.name.clone(),
                token,
                certificate_signing_request: csr.as_ref().to_vec(),
            })
            .await
            .map_err(|s| CertifyError::Refused(format!("{:?}: {}", s.code(), s.message())))?
            .into_inner();
        let leaf = CertificateDer::from(rsp.leaf_certificate);
        let intermediates: Vec<CertificateDer<'static>> = rsp
            .intermediate_certificates
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let anchors = self
            .anchors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let chain = weft_pki::verify_chain(
            &leaf,
            &intermediates,
            &anchors,
            SystemTime::now(),
            Some(&cfg.name),
        )
        .map_err(|e| CertifyError::BadResponse(e.to_string()))?;
        let target = chain
            .target()
            .ok_or_else(|| CertifyError::BadResponse("empty chain".into()))?;
        let not_after = target.not_after;
        let serial = target.serial_hex.clone();
        let mut certs = vec![leaf];
        certs.extend(intermediates);
        self.tls
            .set_certificate(certs, key.private_key_der())
            .map_err(|e| CertifyError::BadResponse(e.to_string()))?;
        tracing::info!(identity = %cfg.name, %serial, not_after = %weft_pki::fmt_time(not_after), "workload certificate installed");
        Ok(not_after)
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// When to renew a certificate that expires at `not_after`, seen at `now`.
pub fn renew_delay(now: SystemTime, not_after: SystemTime) -> Duration {
    let remaining = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    remaining.mul_f64(RENEW_FRACTION)
}

/// The delay before retry number `attempt` (0-based) after a failure: exponential from
/// [`MIN_BACKOFF`] to [`MAX_BACKOFF`], with ±25% jitter from `jitter` (0..1), and never past the
/// point where the current certificate (if any) would expire without another try.
pub fn retry_delay(
    attempt: u32,
    jitter: f64,
    now: SystemTime,
    not_after: Option<SystemTime>,
) -> Duration {
    let base = MIN_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let delay = base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0));
    match not_after.and_then(|t| t.duration_since(now).ok()) {
        // Keep several tries inside the remaining lifetime.
        Some(remaining) => delay.min(remaining / 4).max(Duration::from_millis(100)),
        None => delay,
    }
}

fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// Keeps a certificate installed forever: obtain, wait, renew; on failure retry with backoff
/// while the current certificate keeps serving. Sets `ready` once the first one is installed.
pub async fn run<C: Certifier>(
    certifier: C,
    metrics: Arc<IdentityMetrics>,
    ready: Arc<AtomicBool>,
) {
    let mut current: Option<SystemTime> = None;
    let mut attempt = 0u32;
    loop {
        match certifier.certify().await {
            Ok(not_after) => {
                metrics.refresh_total.inc();
                metrics
                    .cert_expiry_seconds
                    .set(crate::telemetry::unix_seconds(not_after) as i64);
                current = Some(not_after);
                attempt = 0;
                ready.store(true, Ordering::Release);
                let delay = renew_delay(SystemTime::now(), not_after);
                tracing::debug!(?delay, "next certificate renewal");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                metrics.refresh_failure_total.inc();
                let delay = retry_delay(attempt, jitter(), SystemTime::now(), current);
                attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?delay, "cannot obtain a workload certificate; {}",
                    if current.is_some() { "serving with the current one" } else { "not ready until one is obtained" });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Re-reads the trust-anchor bundle when the file changes and installs it. A file that does not
/// parse is refused (logged and counted) and the current anchors stay.
pub async fn watch_anchors(
    path: PathBuf,
    tls: Arc<Tls>,
    anchors: Arc<RwLock<Vec<CertificateDer<'static>>>>,
    metrics: Arc<IdentityMetrics>,
) {
    let mut last = tokio::fs::read(&path).await.ok();
    loop {
        tokio::time::sleep(ANCHOR_POLL).await;
        let Ok(now) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        last = Some(now.clone());
        let parsed = weft_pki::parse_pem_certs(&now).map_err(|e| e.to_string());
        let result = parsed.and_then(|certs| {
            tls.set_anchors(&certs).map_err(|e| e.to_string())?;
            Ok(certs)
        });
        match result {
            Ok(certs) => {
                tracing::info!(path = %path.display(), anchors = certs.len(), "trust anchors reloaded");
                *anchors.write().unwrap_or_else(PoisonError::into_inner) = certs;
                metrics.anchors_reload_total.inc();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "changed trust-anchor file refused; keeping the current anchors");
                metrics.anchors_reload_failure_total.inc();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn renews_at_seventy_percent() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let d = renew_delay(now, now + Duration::from_secs(24 * 3600));
        assert!(d.as_secs().abs_diff(60_480) <= 1, "{d:?}");
        assert_eq!(
            renew_delay(now, now - Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_grows_jitters_and_stays_inside_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let d0 = retry_delay(0, 0.5, now, None);
        let d3 = retry_delay(3, 0.5, now, None);
        assert_eq!(d0, MIN_BACKOFF);
        assert_eq!(d3, MIN_BACKOFF * 8);
        assert_eq!(retry_delay(30, 0.5, now, None), MAX_BACKOFF);
        assert!(retry_delay(0, 0.0, now, None) < retry_delay(0, 1.0, now, None));
        // With 40 s of certificate left, a retry comes within 10 s.
        let capped = retry_delay(10, 0.5, now, Some(now + Duration::from_secs(40)));
        assert_eq!(capped, Duration::from_secs(10));
    }

    /// Fails `fail` times, then succeeds with a certificate valid for `lifetime`.
    struct Flaky {
        calls: Arc<AtomicU32>,
        fail_from: u32,
        fail_count: u32,
        lifetime: Duration,
    }

    impl Certifier for Flaky {
        async fn certify(&self) -> Result<SystemTime, CertifyError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_from && n < self.fail_from + self.fail_count {
                return Err(CertifyError::Unreachable {
                    addr: "x".into(),
                    reason: "down".into(),
                });
            }
            Ok(SystemTime::now() + self.lifetime)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_schedule_and_failures() {
        let calls = Arc::new(AtomicU32::new(0));
        let metrics = Arc::new(IdentityMetrics::default());
        let ready = Arc::new(AtomicBool::new(false));
        let certifier = Flaky {
            calls: calls.clone(),
            fail_from: 1,
            fail_count: 3,
            lifetime: Duration::from_secs(100),
        };
        let task = tokio::spawn(run(certifier, metrics.clone(), ready.clone()));
        tokio::task::yield_now().await;
        assert!(
            ready.load(Ordering::Acquire),
            "ready after the first certificate"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Paused time advances only when the task sleeps; the renewal comes at ~70 s.
        tokio::time::sleep(Duration::from_secs(69)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "renewal attempted at 70% of the lifetime"
        );
        // That attempt and two more fail; retried with backoff, then success, ready throughout.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert!(ready.load(Ordering::Acquire));
        assert_eq!(metrics.refresh_failure_total.get(), 3);
        assert_eq!(metrics.refresh_total.get(), 2);
        task.abort();
    }

    #[test]
    fn token_whitespace_is_trimmed() {
        assert_eq!(trim_ascii(b"  abc\n"), b"abc");
        assert_eq!(trim_ascii(b"\n"), b"");
    }
}
