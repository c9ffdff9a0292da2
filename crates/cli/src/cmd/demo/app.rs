//! The demo application: emojivoto's names (namespace `emojivoto`; deployments `web`,
//! `emoji`, `voting`, `vote-bot`; services `web-svc`, `emoji-svc`, `voting-svc`), so the spec's
//! manifests apply to it as written.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use weft_store::cluster::{ClusterConfig, PROXY_OUTBOUND_PORT};

use crate::local::workload::WorkloadSpec;

/// The demo's namespace.
pub const NAMESPACE: &str = "emojivoto";

/// The app port of every server role.
const APP_PORT: u16 = 8080;

/// Host numbers in the cluster's network.
const EMOJI: u8 = 1;
const VOTING: u8 = 2;
const WEB: u8 = 3;
const VOTE_BOT: u8 = 4;

/// web's proxy outbound address (for the `curl -x` hint).
pub fn web_ip(config: &ClusterConfig) -> String {
    format!("{}:{PROXY_OUTBOUND_PORT}", config.ip(WEB))
}

fn authority(service: &str, port: u16) -> String {
    format!("{service}.{NAMESPACE}.svc.cluster.local:{port}")
}

fn outbound(ip: Ipv4Addr) -> String {
    format!("{ip}:{PROXY_OUTBOUND_PORT}")
}

/// The four workloads.
pub fn workloads(config: &ClusterConfig, voting_error_rate: f64, rps: f64) -> Vec<WorkloadSpec> {
    let spec = |deployment: &str, host: u8, app: Vec<String>, app_port: Option<u16>| WorkloadSpec {
        namespace: NAMESPACE.to_owned(),
        name: format!("{deployment}-0"),
        deployment: deployment.to_owned(),
        service_account: deployment.to_owned(),
        ip: config.ip(host),
        app,
        app_port,
        meshed: true,
    };
    let listen = |host: u8| format!("{}:{APP_PORT}", config.ip(host));
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    vec![
        spec(
            "emoji",
            EMOJI,
            s(&["weft-testapp", "demo", "emoji", "--listen", &listen(EMOJI)]),
            Some(APP_PORT),
        ),
        spec(
            "voting",
            VOTING,
            s(&[
                "weft-testapp",
                "demo",
                "voting",
                "--listen",
                &listen(VOTING),
                "--error-rate",
                &voting_error_rate.to_string(),
            ]),
            Some(APP_PORT),
        ),
        spec(
            "web",
            WEB,
            s(&[
                "weft-testapp",
                "demo",
                "web",
                "--listen",
                &listen(WEB),
                "--proxy",
                &outbound(config.ip(WEB)),
                "--emoji-authority",
                &authority("emoji-svc", APP_PORT),
                "--voting-authority",
                &authority("voting-svc", APP_PORT),
            ]),
            Some(APP_PORT),
        ),
        spec(
            "vote-bot",
            VOTE_BOT,
            s(&[
                "weft-testapp",
                "demo",
                "vote-bot",
                "--proxy",
                &outbound(config.ip(VOTE_BOT)),
                "--web-authority",
                &authority("web-svc", 80),
                "--rps",
                &rps.to_string(),
            ]),
            None,
        ),
    ]
}

/// The application's resources: a Service per server role, an ExternalWorkload per workload,
/// and the spec's ServiceProfile for `web-svc`.
pub fn manifests(config: &ClusterConfig, workloads: &[WorkloadSpec]) -> String {
    let mut y = String::new();
    for (svc, app, port) in [
        ("web-svc", "web", 80),
        ("emoji-svc", "emoji", APP_PORT),
        ("voting-svc", "voting", APP_PORT),
    ] {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: {NAMESPACE}\nspec:\n  selector:\n    app: {app}\n  ports:\n    - name: http\n      port: {port}\n      targetPort: {APP_PORT}\n"
        );
    }
    for w in workloads {
        let identity = config.workload_identity(&w.service_account, &w.namespace);
        let _ = write!(
            y,
            "---\napiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {app}\n    weft.io/deployment: {app}\nspec:\n  meshTLS:\n    identity: {identity}\n    serverName: {identity}\n  ports:\n    - name: http\n      port: {APP_PORT}\n  workloadIPs:\n    - ip: \"{ip}\"\n",
            name = w.name,
            ns = w.namespace,
            app = w.deployment,
            ip = w.ip,
        );
    }
    y.push_str(
        "---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web-svc.emojivoto.svc.cluster.local
  namespace: emojivoto
spec:
  routes:
    - name: GET /api/list
      condition:
        method: GET
        pathRegex: /api/list
      isRetryable: true
      timeout: 600ms
    - name: POST /api/vote
      condition:
        method: POST
        pathRegex: /api/vote
      isRetryable: false
  retryBudget:
    retryRatio: 0.1
    minRetriesPerSecond: 5
    ttl: 10s
",
    );
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_valid_and_complete() {
        let config = ClusterConfig::new("west", [0, 9]);
        let ws = workloads(&config, 0.1, 5.0);
        let (objects, errors) = weft_model::parse_documents("demo", &manifests(&config, &ws));
        assert!(errors.is_empty(), "{errors:?}");
        // 3 Services, 4 ExternalWorkloads, 1 ServiceProfile.
        assert_eq!(objects.len(), 8);
        let ips: std::collections::BTreeSet<_> = ws.iter().map(|w| w.ip).collect();
        assert_eq!(ips.len(), 4, "every workload has its own address");
    }
}
