//! The identity service's metrics. Failure reasons are a closed set ([`FailureReason`]); error
//! text never becomes a label.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::prom::{unix_seconds, Encoder, Kind};

use super::credentials::Credentials;

/// Why a Certify call failed, as the `reason` label of `identity_cert_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The identity is malformed or outside this mesh's trust domain / control-plane namespace.
    InvalidIdentity,
    /// The CSR is malformed, badly signed, uses an unaccepted key, or names something else.
    InvalidCsr,
    /// The token does not prove the identity.
    Unauthenticated,
    /// There is no issuer valid now.
    NoValidIssuer,
    /// Anything else.
    Internal,
}

impl FailureReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 5] = [
        Self::InvalidIdentity,
        Self::InvalidCsr,
        Self::Unauthenticated,
        Self::NoValidIssuer,
        Self::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidIdentity => "invalid_identity",
            Self::InvalidCsr => "invalid_csr",
            Self::Unauthenticated => "unauthenticated",
            Self::NoValidIssuer => "no_valid_issuer",
            Self::Internal => "internal",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::InvalidIdentity => 0,
            Self::InvalidCsr => 1,
            Self::Unauthenticated => 2,
            Self::NoValidIssuer => 3,
            Self::Internal => 4,
        }
    }
}

/// Counters of the identity service. Expiry gauges are read from the current credentials when
/// encoding, so they can never disagree with what is loaded.
#[derive(Debug, Default)]
pub struct IdentityMetrics {
    issued: AtomicU64,
    failures: [AtomicU64; FailureReason::ALL.len()],
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
}

impl IdentityMetrics {
    /// Counts an issued certificate.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed Certify call.
    pub fn failed(&self, reason: FailureReason) {
        if let Some(c) = self.failures.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a reload of changed credential files: accepted or refused.
    pub fn reloaded(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Certificates issued so far.
    pub fn issued_total(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Failures so far for `reason`.
    pub fn failures_total(&self, reason: FailureReason) -> u64 {
        self.failures
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Reloads refused so far.
    pub fn reloads_refused_total(&self) -> u64 {
        self.reloads_refused.load(Ordering::Relaxed)
    }

    /// Reloads accepted so far.
    pub fn reloads_ok_total(&self) -> u64 {
        self.reloads_ok.load(Ordering::Relaxed)
    }

    /// Appends the identity families.
    pub fn encode(&self, enc: &mut Encoder, creds: &Credentials) {
        enc.single(
            "identity_cert_issued_total",
            Kind::Counter,
            "Workload certificates issued.",
            self.issued_total() as f64,
        );
        enc.family(
            "identity_cert_failures_total",
            Kind::Counter,
            "Certify calls that failed, by reason.",
        );
        for reason in FailureReason::ALL {
            enc.sample(
                "identity_cert_failures_total",
                &[("reason", reason.as_str())],
                self.failures_total(reason) as f64,
            );
        }
        enc.single(
            "identity_issuer_expiry_timestamp_seconds",
            Kind::Gauge,
            "When the current issuer certificate expires, in seconds since the Unix epoch.",
            unix_seconds(creds.issuer.not_after()),
        );
        if let Some(t) = creds.anchors_expiry() {
            enc.single(
                "identity_trust_anchor_expiry_timestamp_seconds",
                Kind::Gauge,
                "When the first trust anchor of the bundle expires, in seconds since the Unix epoch.",
                unix_seconds(t),
            );
        }
        enc.single(
            "identity_trust_anchors",
            Kind::Gauge,
            "Trust anchors in the current bundle.",
            creds.anchors.len() as f64,
        );
        enc.family(
            "identity_credentials_reloads_total",
            Kind::Counter,
            "Changes to the trust anchor or issuer files, by whether they were accepted or refused (the previous credentials are kept).",
        );
        enc.sample(
            "identity_credentials_reloads_total",
            &[("result", "accepted")],
            self.reloads_ok_total() as f64,
        );
        enc.sample(
            "identity_credentials_reloads_total",
            &[("result", "refused")],
            self.reloads_refused_total() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_indices_and_labels() {
        let mut seen = Vec::new();
        for (i, r) in FailureReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!seen.contains(&r.as_str()));
            seen.push(r.as_str());
        }
    }

    #[test]
    fn counters_count() {
        let m = IdentityMetrics::default();
        m.issued();
        m.issued();
        m.failed(FailureReason::Unauthenticated);
        m.reloaded(false);
        assert_eq!(m.issued_total(), 2);
        assert_eq!(m.failures_total(FailureReason::Unauthenticated), 1);
        assert_eq!(m.failures_total(FailureReason::Internal), 0);
        assert_eq!(m.reloads_refused_total(), 1);
        assert_eq!(m.reloads_ok_total(), 0);
    }
}
