//! `weft-data-plane` (`weft check --proxy`): every meshed workload has a running proxy that is
//! ready and holds a valid certificate for its identity, issued under the *current* trust
//! anchors; no deployment is half meshed.
//!
//! Workloads are the union of the running ones (`run/workloads/*.json`) and the
//! ExternalWorkloads in the manifests. A workload is meshed unless its ExternalWorkload says
//! `linkerd.io/inject: disabled` (or, without an ExternalWorkload, its record names neither a
//! proxy nor an identity). Its proxy is probed on the workload's address: admin `:4191/ready`
//! and a TLS handshake with the inbound port `:4143` (SNI = the workload's identity), which
//! shows the certificate the proxy serves to its peers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use weft_model::meta::InjectMode;
use weft_model::{Object, Resource};
use weft_pki::{fmt_time, verify_chain, CertInfo, CertificateDer, VerifyError};
use weft_store::cluster::{ClusterDir, PROXY_ADMIN_PORT, PROXY_INBOUND_PORT};

use super::pki::{expiry, Expiry};
use super::probe;
use super::report::{Category, Check};
use crate::cmd::identity::expiry::span;

/// Category name.
pub const CATEGORY: &str = "weft-data-plane";

/// The label naming a workload's deployment.
pub const DEPLOYMENT_LABEL: &str = "weft.io/deployment";

/// A proxy renews its certificate at 70% of its lifetime; one with less than this share left
/// has missed its renewal.
const LEAF_WARNING_SHARE: f64 = 0.2;

/// Check ids.
pub mod ids {
    /// Every `run/workloads/*.json` is readable.
    pub const RECORDS_READABLE: &str = "weft-data-plane/workload-records-readable";
    /// Every meshed workload has a running proxy listening on its inbound port.
    pub const NO_WORKLOAD_WITHOUT_PROXY: &str = "weft-data-plane/no-workload-without-proxy";
    /// Every proxy's admin `/ready` answers 200.
    pub const PROXIES_READY: &str = "weft-data-plane/proxies-ready";
    /// Every proxy serves a certificate that is valid now.
    pub const CERTS_VALID: &str = "weft-data-plane/proxy-certificates-valid";
    /// Every proxy's certificate names the workload's identity.
    pub const IDENTITIES_MATCH: &str = "weft-data-plane/proxy-identities-match";
    /// Every proxy's certificate chains to the current trust anchors.
    pub const CERTS_TRUSTED: &str = "weft-data-plane/proxy-certificates-trusted";
    /// No proxy's certificate is past its renewal point.
    pub const CERTS_NOT_EXPIRING: &str = "weft-data-plane/proxy-certificates-not-expiring-soon";
    /// Every deployment is meshed entirely or not at all.
    pub const NO_HALF_MESHED: &str = "weft-data-plane/no-half-meshed-deployments";
}

const DESCRIPTIONS: &[(&str, &str)] = &[
    (ids::RECORDS_READABLE, "workload records are readable"),
    (
        ids::NO_WORKLOAD_WITHOUT_PROXY,
        "every meshed workload has a running proxy",
    ),
    (ids::PROXIES_READY, "data plane proxies are ready"),
    (
        ids::CERTS_VALID,
        "data plane proxies have certificates valid now",
    ),
    (
        ids::IDENTITIES_MATCH,
        "data plane proxies have the expected identities",
    ),
    (
        ids::CERTS_TRUSTED,
        "data plane proxy certificates are issued under the current trust anchors",
    ),
    (
        ids::CERTS_NOT_EXPIRING,
        "data plane proxy certificates are not past their renewal time",
    ),
    (ids::NO_HALF_MESHED, "no deployment is partially meshed"),
];

fn desc(id: &str) -> &'static str {
    DESCRIPTIONS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("", |(_, d)| d)
}

/// One workload, from its record, its ExternalWorkload, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its deployment, if it names one.
    pub deployment: Option<String>,
    /// Its address.
    pub ip: Option<IpAddr>,
    /// The identity its proxy must present.
    pub identity: Option<String>,
    /// The TLS server name its proxy answers to (the identity, unless the ExternalWorkload
    /// names another).
    pub server_name: Option<String>,
    /// Whether it should have a proxy.
    pub meshed: bool,
    /// Its record in `run/workloads/`, if it is running: the proxy's pid.
    pub record: Option<Option<u32>>,
}

impl Workload {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Merges the running workloads' records and the ExternalWorkloads.
pub fn workloads(
    records: &[weft_store::cluster::WorkloadState],
    objects: &[Object],
) -> Vec<Workload> {
    let mut all: BTreeMap<(String, String), Workload> = BTreeMap::new();
    for o in objects {
        let Resource::ExternalWorkload(spec) = &o.resource else {
            continue;
        };
        let disabled = matches!(o.metadata.inject(), Ok(Some(InjectMode::Disabled)));
        let identity = Some(spec.mesh_tls.identity.trim().to_owned()).filter(|s| !s.is_empty());
        let server_name =
            Some(spec.mesh_tls.server_name.trim().to_owned()).filter(|s| !s.is_empty());
        all.insert(
            (o.namespace().to_owned(), o.name().to_owned()),
            Workload {
                namespace: o.namespace().to_owned(),
                name: o.name().to_owned(),
                deployment: o.metadata.label(DEPLOYMENT_LABEL).map(str::to_owned),
                ip: spec.workload_ips.first().map(|w| w.ip),
                identity,
                server_name,
                meshed: !disabled,
                record: None,
            },
        );
    }
    for r in records {
        let w = all
            .entry((r.namespace.clone(), r.name.clone()))
            .or_insert_with(|| Workload {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                meshed: r.identity.is_some() || r.proxy_pid.is_some(),
                ..Workload::default()
            });
        w.ip = Some(IpAddr::V4(r.ip));
        if !r.deployment.is_empty() {
            w.deployment = Some(r.deployment.clone());
        }
        if let Some(id) = &r.identity {
            w.identity = Some(id.clone());
        }
        w.record = Some(r.proxy_pid);
    }
    for w in all.values_mut() {
        if w.server_name.is_none()
            || w.server_name
                .as_deref()
                .is_some_and(|s| s.starts_with("spiffe://"))
        {
            w.server_name = w.identity.clone().filter(|i| !i.starts_with("spiffe://"));
        }
    }
    all.into_values().collect()
}

/// What probing one proxy found.
struct Probed {
    key: String,
    inbound: SocketAddr,
    ready: Result<(u16, String), String>,
    chain: Result<Vec<CertificateDer<'static>>, String>,
}

/// Runs the `weft-data-plane` checks.
pub fn check(
    cluster: Option<&ClusterDir>,
    objects: Option<&[Object]>,
    anchors: Option<&[CertificateDer<'static>]>,
    now: SystemTime,
) -> Category {
    let mut cat = Category::new(CATEGORY);
    let Some(dir) = cluster else {
        for (id, d) in DESCRIPTIONS {
            cat.push(Check::skipped(
                id,
                *d,
                super::existence::ids::CLUSTER_EXISTS,
            ));
        }
        return cat;
    };
    let (records, unreadable) = match dir.read_workloads() {
        Ok(all) => {
            let mut ok = Vec::new();
            let mut bad = Vec::new();
            for r in all {
                match r {
                    Ok(r) => ok.push(r),
                    Err(e) => bad.push(e),
                }
            }
            (ok, bad)
        }
        Err(e) => (
            Vec::new(),
            vec![format!("{}: {e}", dir.workloads_dir().display())],
        ),
    };
    if unreadable.is_empty() {
        cat.push(Check::success(
            ids::RECORDS_READABLE,
            desc(ids::RECORDS_READABLE),
        ));
    } else {
        cat.push(
            Check::error(ids::RECORDS_READABLE, desc(ids::RECORDS_READABLE), unreadable.join("\n"))
                .hint("these workloads are not checked; restart them (`weft demo`) to rewrite their records"),
        );
    }
    let all = workloads(&records, objects.unwrap_or_default());
    let meshed: Vec<&Workload> = all.iter().filter(|w| w.meshed).collect();

    // Without a proxy: no proxy process, or nothing listening where the proxy should be.
    let mut missing = Vec::new();
    let mut candidates = Vec::new();
    for w in &meshed {
        let Some(ip) = w.ip else {
            missing.push(format!("{}: has no address to find its proxy at", w.key()));
            continue;
        };
        match w.record {
            Some(None) => missing.push(format!(
                "{}: runs without a proxy, but is meshed{}",
                w.key(),
                if objects.is_some_and(|o| has_workload(o, w)) {
                    " (its ExternalWorkload does not say linkerd.io/inject: disabled)"
                } else {
                    ""
                }
            )),
            Some(Some(pid))
                if !crate::local::process::is_running(pid, crate::local::workload::PROXY) =>
            {
                missing.push(format!("{}: its proxy (pid {pid}) is not running", w.key()))
            }
            _ => candidates.push((*w, ip)),
        }
    }
    let probed: Vec<Result<Probed, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = candidates
            .iter()
            .map(|(w, ip)| s.spawn(move || probe_proxy(w, *ip)))
            .collect();
        handles.into_iter().map(probe::join).collect()
    });
    let mut reachable = Vec::new();
    for p in probed {
        match p {
            Ok(p) => reachable.push(p),
            Err(e) => missing.push(e),
        }
    }
    if missing.is_empty() {
        cat.push(Check::success(
            ids::NO_WORKLOAD_WITHOUT_PROXY,
            desc(ids::NO_WORKLOAD_WITHOUT_PROXY),
        ));
    } else {
        cat.push(
            Check::error(
                ids::NO_WORKLOAD_WITHOUT_PROXY,
                desc(ids::NO_WORKLOAD_WITHOUT_PROXY),
                missing.join("\n"),
            )
            .hint(
                "traffic to these workloads is not mTLS: restart them with their proxy, or mark \
                 their ExternalWorkload `linkerd.io/inject: disabled` if that is intended",
            ),
        );
    }

    let nothing_probed = reachable.is_empty() && !candidates.is_empty();
    let skip_or =
        |cat: &mut Category, id: &'static str, problems: Vec<String>, hint: &str, warn: bool| {
            if nothing_probed {
                cat.push(Check::skipped(id, desc(id), ids::NO_WORKLOAD_WITHOUT_PROXY));
            } else if problems.is_empty() {
                cat.push(Check::success(id, desc(id)));
            } else if warn {
                cat.push(Check::warning(id, desc(id), problems.join("\n")).hint(hint));
            } else {
                cat.push(Check::error(id, desc(id), problems.join("\n")).hint(hint));
            }
        };

    let not_ready: Vec<String> = reachable
        .iter()
        .filter_map(|p| match &p.ready {
            Ok((200, _)) => None,
            Ok((status, body)) => Some(format!(
                "{}: /ready answered {status}: {}",
                p.key,
                body.split_whitespace().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Some(format!("{}: {e}", p.key)),
        })
        .collect();
    skip_or(
        &mut cat,
        ids::PROXIES_READY,
        not_ready,
        "a proxy is ready once it holds a certificate: check the identity service \
         (weft-existence) and the proxy's log",
        false,
    );

    // The certificates: fetched, then judged against the clock, the identity and the anchors.
    let mut invalid = Vec::new();
    let mut wrong_identity = Vec::new();
    let mut untrusted = Vec::new();
    let mut expiring = Vec::new();
    for p in &reachable {
        let chain = match &p.chain {
            Ok(c) => c,
            Err(e) => {
                invalid.push(format!("{}: {e}", p.key));
                continue;
            }
        };
        let Some(leaf) = chain.first() else {
            invalid.push(format!("{}: {} presented no certificate", p.key, p.inbound));
            continue;
        };
        let info = match CertInfo::from_der(leaf.as_ref()) {
            Ok(i) => i,
            Err(e) => {
                invalid.push(format!("{}: its certificate cannot be read: {e}", p.key));
                continue;
            }
        };
        let lifetime = info
            .not_after
            .duration_since(info.not_before)
            .unwrap_or(Duration::ZERO);
        match expiry(
            info.not_before,
            info.not_after,
            now,
            lifetime.mul_f64(LEAF_WARNING_SHARE),
        ) {
            Expiry::Expired(ago) => invalid.push(format!(
                "{}: its certificate expired at {} ({} ago)",
                p.key,
                fmt_time(info.not_after),
                span(ago)
            )),
            Expiry::NotYetValid(_) => invalid.push(format!(
                "{}: its certificate is not valid until {} (check the clock)",
                p.key,
                fmt_time(info.not_before)
            )),
            Expiry::ExpiresSoon(left) => expiring.push(format!(
                "{}: its certificate expires in {} ({}) and should have been renewed",
                p.key,
                span(left),
                fmt_time(info.not_after)
            )),
            Expiry::Fine(_) => {}
        }
        if let Some(expected) = all
            .iter()
            .find(|w| w.key() == p.key)
            .and_then(|w| w.identity.as_deref())
        {
            let names = if expected.starts_with("spiffe://") {
                &info.uri_sans
            } else {
                &info.dns_sans
            };
            if !names.iter().any(|n| n.eq_ignore_ascii_case(expected)) {
                wrong_identity.push(format!(
                    "{}: its certificate is for [{}], not {expected}",
                    p.key,
                    info.dns_sans.join(", ")
                ));
            }
        }
        if let Some(anchors) = anchors {
            let intermediates = chain.get(1..).unwrap_or_default();
            match verify_chain(leaf, intermediates, anchors, now, None) {
                Ok(_) | Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => {}
                Err(e) => untrusted.push(format!(
                    "{}: its certificate (issued by {:?}) does not chain to pki/ca.crt: {e}",
                    p.key, info.issuer
                )),
            }
        }
    }
    skip_or(
        &mut cat,
        ids::CERTS_VALID,
        invalid,
        "a proxy renews its certificate at 70% of its lifetime: check the identity service \
         and the proxy's log",
        false,
    );
    skip_or(
        &mut cat,
        ids::IDENTITIES_MATCH,
        wrong_identity,
        "peers refuse a proxy with another identity: restart the workload with the identity \
         of its ExternalWorkload (spec.meshTLS.identity)",
        false,
    );
    if anchors.is_none() {
        cat.push(Check::skipped(
            ids::CERTS_TRUSTED,
            desc(ids::CERTS_TRUSTED),
            super::pki::ids::ANCHORS_PARSE,
        ));
    } else {
        skip_or(
            &mut cat,
            ids::CERTS_TRUSTED,
            untrusted,
            "after a trust anchor change, peers refuse these certificates: keep the old anchor \
             in pki/ca.crt until every proxy has renewed, or restart the proxies",
            false,
        );
    }
    skip_or(
        &mut cat,
        ids::CERTS_NOT_EXPIRING,
        expiring,
        "the proxy cannot renew: check that the identity service is ready and the proxy's log",
        true,
    );

    // Half meshed: a deployment with meshed and unmeshed workloads.
    let mut deployments: BTreeMap<(String, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for w in &all {
        let Some(d) = &w.deployment else { continue };
        let entry = deployments
            .entry((w.namespace.clone(), d.clone()))
            .or_default();
        if w.meshed {
            entry.0.push(w.name.clone());
        } else {
            entry.1.push(w.name.clone());
        }
    }
    let half: Vec<String> = deployments
        .iter()
        .filter(|(_, (m, u))| !m.is_empty() && !u.is_empty())
        .map(|((ns, d), (m, u))| {
            format!(
                "deployment {ns}/{d}: meshed [{}], not meshed [{}]",
                m.join(", "),
                u.join(", ")
            )
        })
        .collect();
    if half.is_empty() {
        cat.push(Check::success(
            ids::NO_HALF_MESHED,
            desc(ids::NO_HALF_MESHED),
        ));
    } else {
        cat.push(
            Check::error(
                ids::NO_HALF_MESHED,
                desc(ids::NO_HALF_MESHED),
                half.join("\n"),
            )
            .hint(
                "requests to the unmeshed workloads are plain text and miss policy: give every \
                 workload of a deployment the same linkerd.io/inject setting",
            ),
        );
    }
    cat
}

fn has_workload(objects: &[Object], w: &Workload) -> bool {
    objects.iter().any(|o| {
        matches!(o.resource, Resource::ExternalWorkload(_))
            && o.namespace() == w.namespace
            && o.name() == w.name
    })
}

/// Probes one workload's proxy: its inbound port must accept connections (else the workload
/// has no proxy: `Err`), then `/ready` and the certificate.
fn probe_proxy(w: &Workload, ip: IpAddr) -> Result<Probed, String> {
    let inbound = SocketAddr::new(ip, PROXY_INBOUND_PORT);
    let admin = SocketAddr::new(ip, PROXY_ADMIN_PORT);
    let key = w.key();
    probe::connect(inbound).map_err(|e| format!("{key}: no proxy is listening: {e}"))?;
    let ready = probe::http_get(admin, "/ready");
    let chain = match &w.server_name {
        Some(name) => probe::server_chain(inbound, name),
        None => Err(format!(
            "{key}: has no identity to ask its proxy for (no record and no spec.meshTLS.identity)"
        )),
    };
    Ok(Probed {
        key,
        inbound,
        ready,
        chain,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weft_store::cluster::WorkloadState;

    fn record(name: &str, deployment: &str, proxy: bool) -> WorkloadState {
        // Through JSON, as the files are read (fields added later default).
        serde_json::from_value(serde_json::json!({
            "namespace": "emojivoto",
            "name": name,
            "deployment": deployment,
            "ip": "127.0.1.1",
            "identity": proxy.then(|| format!("{deployment}.emojivoto.serviceaccount.identity.weft.cluster.local")),
            "app_pid": 1,
            "proxy_pid": proxy.then_some(2),
        }))
        .unwrap()
    }

    fn external_workload(name: &str, deployment: &str, disabled: bool) -> Object {
        let annotations = if disabled {
            "\n  annotations: {linkerd.io/inject: disabled}"
        } else {
            ""
        };
        let yaml = format!(
            "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata:\n  name: {name}\n  namespace: emojivoto\n  labels: {{weft.io/deployment: {deployment}}}{annotations}\nspec:\n  meshTLS:\n    identity: spiffe://cluster.local/ns/emojivoto/sa/{deployment}\n    serverName: {deployment}.emojivoto.serviceaccount.identity.weft.cluster.local\n  workloadIPs: [{{ip: 127.0.1.9}}]\n"
        );
        let (objects, errors) = weft_model::parse_bytes("ew.yaml", yaml.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
        objects.into_iter().next().unwrap()
    }

    #[test]
    fn records_and_external_workloads_merge() {
        let objects = vec![
            external_workload("web-0", "web", false),
            external_workload("db-0", "db", true),
        ];
        let records = vec![record("web-0", "web", true), record("bot-0", "bot", false)];
        let all = workloads(&records, &objects);
        let keys: Vec<_> = all.iter().map(|w| (w.key(), w.meshed)).collect();
        assert_eq!(
            keys,
            vec![
                ("emojivoto/bot-0".to_owned(), false),
                ("emojivoto/db-0".to_owned(), false),
                ("emojivoto/web-0".to_owned(), true),
            ]
        );
        let web = all.iter().find(|w| w.name == "web-0").unwrap();
        // The record's address and identity win; the server name comes from the object.
        assert_eq!(web.ip, Some(IpAddr::from([127, 0, 1, 1])));
        assert_eq!(
            web.identity.as_deref(),
            Some("web.emojivoto.serviceaccount.identity.weft.cluster.local")
        );
        assert_eq!(web.record, Some(Some(2)));
        let db = all.iter().find(|w| w.name == "db-0").unwrap();
        assert_eq!(db.record, None);
        assert_eq!(db.deployment.as_deref(), Some("db"));
    }

    #[test]
    fn a_spiffe_identity_is_not_used_as_server_name() {
        let mut ew = external_workload("web-0", "web", false);
        if let Resource::ExternalWorkload(spec) = &mut ew.resource {
            spec.mesh_tls.server_name = "spiffe://cluster.local/ns/emojivoto/sa/web".into();
        }
        let all = workloads(&[], &[ew]);
        assert_eq!(all[0].server_name, None);
    }
}
