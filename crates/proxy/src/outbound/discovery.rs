//! The destination service's client: one `Get` (endpoints) and one `GetPolicy` (policy) watch
//! per authority, each a task that feeds a balancer or a `watch` channel.
//!
//! When a stream breaks (control plane restarted or gone), the last state stays in use and the
//! task reconnects with jittered exponential backoff. The first message of every new stream is
//! the whole current state, so it replaces what the proxy had (endpoints removed while the proxy
//! was disconnected go away then).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use weft_api::destination as pb;
use weft_api::destination::destination_client::DestinationClient;

use super::backoff::Backoff;
use super::balance::{now, Balancer, EndpointSpec, EndpointUpdate, MeshedProxy};
use super::budget::RetryBudget;
use super::policy::Policy;
use crate::metrics::Counter;
use crate::telemetry::DstLabels;

/// Bound on connecting to the destination service and on its first answer to a watch.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff: from 100 ms, doubling, up to 3 s (a restarted control plane is picked up
/// within seconds).
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(3);

/// The latest policy of an authority.
#[derive(Clone, Debug)]
pub enum PolicyState {
    /// No answer yet.
    Pending,
    /// The authority names no service: requests are forwarded as they are.
    NotFound,
    Found(Arc<Policy>),
}

/// A handle on the destination service (cheap to clone; one HTTP/2 connection).
#[derive(Clone, Debug)]
pub struct Destination {
    client: DestinationClient<Channel>,
    caller_identity: String,
    /// Stream restarts (`destination_reconnect_total`).
    pub reconnects: Arc<Counter>,
}

impl Destination {
    /// Connects lazily to `addr` (`host:port`); must be called on a Tokio runtime.
    pub fn new(
        addr: &str,
        caller_identity: String,
        reconnects: Arc<Counter>,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(CALL_TIMEOUT)
            // A control plane that vanished without closing the connection is noticed by
            // HTTP/2 pings, and the watches reconnect.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Destination {
            client: DestinationClient::new(endpoint.connect_lazy()),
            caller_identity,
            reconnects,
        })
    }

    fn request(&self, authority: &str) -> pb::GetDestination {
        pb::GetDestination {
            authority: authority.to_string(),
            caller_identity: self.caller_identity.clone(),
        }
    }

    /// Keeps `balancer` current with the endpoints of `authority`, forever.
    pub async fn watch_endpoints(self, authority: String, balancer: Arc<Balancer>) {
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        loop {
            let mut client = self.client.clone();
            let call = client.get(self.request(&authority));
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(rsp)) => {
                    let mut stream = rsp.into_inner();
                    let mut first = true;
                    loop {
                        match stream.message().await {
                            Ok(Some(update)) => {
                                if let Some(u) = endpoint_update(update, first, &authority) {
                                    balancer.apply(u, now());
                                }
                                first = false;
                                backoff.reset();
                            }
                            Ok(None) => {
                                tracing::info!(dst.authority = %authority, "endpoint watch ended; reconnecting");
                                break;
                            }
                            Err(s) => {
                                tracing::info!(dst.authority = %authority, code = ?s.code(), message = s.message(), "endpoint watch failed; keeping the last endpoints and reconnecting");
                                break;
                            }
                        }
                    }
                }
                Ok(Err(s)) => {
                    tracing::info!(dst.authority = %authority, code = ?s.code(), message = s.message(), "destination service refused the endpoint watch");
                }
                Err(_) => {
                    tracing::info!(dst.authority = %authority, timeout = ?CALL_TIMEOUT, "destination service did not answer the endpoint watch");
                }
            }
            self.reconnects.inc();
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Keeps `tx` current with the policy of `authority`, forever.
    /// Watches `authority`'s policy into `tx`, applying each policy's budget parameters to
    /// `budget` before publishing it (once per update, not per request).
    pub async fn watch_policy(
        self,
        authority: String,
        tx: watch::Sender<PolicyState>,
        budget: Arc<RetryBudget>,
    ) {
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        loop {
            let mut client = self.client.clone();
            let call = client.get_policy(self.request(&authority));
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(rsp)) => {
                    let mut stream = rsp.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(update)) => {
                                match update.update {
                                    Some(pb::policy_update::Update::Policy(p)) => {
                                        let policy = Policy::compile(&authority, &p);
                                        budget.set_params(policy.budget, now());
                                        tracing::debug!(dst.authority = %authority, routes = policy.routes.len(), "policy update");
                                        tx.send_replace(PolicyState::Found(Arc::new(policy)));
                                    }
                                    Some(pb::policy_update::Update::NotFound(nf)) => {
                                        tracing::debug!(dst.authority = %authority, reason = %nf.reason, "no service policy");
                                        tx.send_replace(PolicyState::NotFound);
                                    }
                                    None => {}
                                }
                                backoff.reset();
                            }
                            Ok(None) => {
                                tracing::info!(dst.authority = %authority, "policy watch ended; reconnecting");
                                break;
                            }
                            Err(s) => {
                                tracing::info!(dst.authority = %authority, code = ?s.code(), message = s.message(), "policy watch failed; keeping the last policy and reconnecting");
                                break;
                            }
                        }
                    }
                }
                Ok(Err(s)) => {
                    tracing::info!(dst.authority = %authority, code = ?s.code(), message = s.message(), "destination service refused the policy watch");
                }
                Err(_) => {
                    tracing::info!(dst.authority = %authority, timeout = ?CALL_TIMEOUT, "destination service did not answer the policy watch");
                }
            }
            self.reconnects.inc();
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// Converts one `Update`; the first of a stream replaces the whole set.
pub fn endpoint_update(u: pb::Update, first: bool, authority: &str) -> Option<EndpointUpdate> {
    match u.update? {
        pb::update::Update::Add(set) => {
            let specs: Vec<EndpointSpec> = set
                .endpoints
                .into_iter()
                .filter_map(|e| endpoint_spec(e, &set.metric_labels, authority))
                .collect();
            Some(if first {
                EndpointUpdate::Reset(specs)
            } else {
                EndpointUpdate::Add(specs)
            })
        }
        pb::update::Update::Remove(set) => Some(EndpointUpdate::Remove(
            set.addrs
                .iter()
                .filter_map(|a| a.trim().parse::<SocketAddr>().ok())
                .collect(),
        )),
        pb::update::Update::NoEndpoints(n) => {
            Some(EndpointUpdate::NoEndpoints { exists: n.exists })
        }
    }
}

fn endpoint_spec(
    e: pb::Endpoint,
    set_labels: &std::collections::HashMap<String, String>,
    authority: &str,
) -> Option<EndpointSpec> {
    let Ok(addr) = e.addr.trim().parse::<SocketAddr>() else {
        tracing::warn!(dst.authority = %authority, addr = %e.addr, "ignoring endpoint with an invalid address");
        return None;
    };
    let meshed = match e.proxy {
        None => None,
        Some(p) => {
            let Ok(inbound) = p.inbound_addr.trim().parse::<SocketAddr>() else {
                // Never fall back to plain text to a workload that has a proxy.
                tracing::warn!(dst.authority = %authority, %addr, inbound = %p.inbound_addr, "ignoring meshed endpoint with an invalid inbound address");
                return None;
            };
            let identity = Some(p.identity.trim().to_ascii_lowercase()).filter(|i| !i.is_empty());
            Some(MeshedProxy { inbound, identity })
        }
    };
    let mut labels: BTreeMap<String, String> = set_labels.clone().into_iter().collect();
    labels.extend(e.metric_labels);
    Some(EndpointSpec {
        addr,
        weight: e.weight,
        meshed,
        dst: DstLabels::from_metric_labels(&labels),
        labels,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn add(addrs: &[&str]) -> pb::Update {
        pb::Update {
            update: Some(pb::update::Update::Add(pb::AddSet {
                endpoints: addrs
                    .iter()
                    .map(|a| pb::Endpoint {
                        addr: a.to_string(),
                        weight: 10_000,
                        proxy: Some(pb::MeshedProxy {
                            inbound_addr: "127.0.1.2:4143".into(),
                            identity: "Web.NS.serviceaccount.identity.weft.cluster.local".into(),
                            authority_override: String::new(),
                        }),
                        metric_labels: [("pod".to_string(), "web-1".to_string())].into(),
                        ..Default::default()
                    })
                    .collect(),
                metric_labels: [("namespace".to_string(), "ns".to_string())].into(),
            })),
        }
    }

    #[test]
    fn first_add_resets_later_adds_add_and_bad_addresses_are_skipped() {
        let Some(EndpointUpdate::Reset(specs)) =
            endpoint_update(add(&["127.0.0.1:80", "nope"]), true, "a")
        else {
            panic!("expected a reset")
        };
        assert_eq!(specs.len(), 1);
        let m = specs[0].meshed.as_ref().unwrap();
        assert_eq!(m.inbound.port(), 4143);
        assert_eq!(
            m.identity.as_deref(),
            Some("web.ns.serviceaccount.identity.weft.cluster.local")
        );
        assert_eq!(specs[0].labels["namespace"], "ns");
        assert_eq!(
            specs[0].dst.iter().collect::<Vec<_>>(),
            vec![("dst_namespace", "ns"), ("dst_pod", "web-1")],
            "set and endpoint labels, exported under Linkerd's names"
        );
        assert!(matches!(
            endpoint_update(add(&["127.0.0.1:80"]), false, "a"),
            Some(EndpointUpdate::Add(_))
        ));
        let none = pb::Update {
            update: Some(pb::update::Update::NoEndpoints(pb::NoEndpoints {
                exists: false,
            })),
        };
        assert_eq!(
            endpoint_update(none, true, "a"),
            Some(EndpointUpdate::NoEndpoints { exists: false })
        );
        assert_eq!(
            endpoint_update(pb::Update { update: None }, true, "a"),
            None
        );
    }
}
