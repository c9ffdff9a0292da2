//! The index every watch reads: endpoints and compiled policies of every Service port, built
//! once per store change by a single writer and shared through a `watch` of `Arc<Index>`.
//!
//! Building is incremental where it is cheap to be: policies are recompiled only when a kind
//! that policies depend on changed (Service, ServiceProfile, HTTPRoute, TrafficSplit), and
//! endpoints are rebuilt only for the Services a change affects ([`endpoints::update`]);
//! otherwise the previous maps are shared as they are. Within a rebuild, entries equal to the previous ones keep the
//! previous `Arc`, so each watch finds "unchanged" with one pointer comparison, and the
//! protobuf of an unchanged policy is never rebuilt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;
use weft_api::destination as pb;
use weft_model::{compile_with, CompileOptions, Kind, Object, Resource, ServicePolicy};
use weft_store::Snapshot;

use super::authority::Target;
use super::convert;
use super::endpoints::{self, Endpoints};
use super::metrics::DestinationMetrics;

/// Kinds [`weft_model::compile`] reads. ExternalWorkloads and Links do not affect policies.
const POLICY_KINDS: [Kind; 4] = [
    Kind::Service,
    Kind::ServiceProfile,
    Kind::HttpRoute,
    Kind::TrafficSplit,
];

/// Kinds endpoints are derived from.
const ENDPOINT_KINDS: [Kind; 2] = [Kind::Service, Kind::ExternalWorkload];

/// A compiled policy and its protobuf, converted once and shared by every watch.
#[derive(Debug, PartialEq)]
pub struct CompiledPolicy {
    /// As the model compiled it.
    pub model: ServicePolicy,
    /// As proxies receive it.
    pub proto: pb::ServicePolicy,
}

/// Policies by canonical authority.
pub type PolicyIndex = HashMap<String, Arc<CompiledPolicy>>;

/// What the destination service knows at one store revision.
#[derive(Clone, Debug)]
pub struct Index {
    /// The store snapshot this index was built from.
    pub store: Arc<Snapshot>,
    /// Endpoint sets by canonical authority (`endpoints.sets`); a Service port that exists has
    /// an entry.
    pub endpoints: Arc<Endpoints>,
    /// Compiled policies by canonical authority.
    pub policies: Arc<PolicyIndex>,
    /// Compilation errors (settings not applied), as the model words them.
    pub policy_errors: Arc<Vec<String>>,
    /// Compilation warnings.
    pub policy_warnings: Arc<Vec<String>>,
    /// Problems found deriving endpoints (bad annotations).
    pub endpoint_problems: Arc<Vec<String>>,
}

impl Index {
    /// The index of an empty, unsynced store: watches wait until a synced one is published.
    pub fn empty() -> Self {
        Self {
            store: Arc::new(Snapshot::empty(false)),
            endpoints: Arc::default(),
            policies: Arc::default(),
            policy_errors: Arc::default(),
            policy_warnings: Arc::default(),
            endpoint_problems: Arc::default(),
        }
    }

    /// The store revision it was built from.
    pub fn revision(&self) -> u64 {
        self.store.revision()
    }

    /// Whether the store had read everything once: before that, "does not exist" may be wrong.
    pub fn is_synced(&self) -> bool {
        self.store.is_synced()
    }

    /// How many endpoints there are, over every Service port.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.count()
    }

    /// Builds the index of `snapshot`, reusing what `prev` has where nothing it depends on
    /// changed.
    pub fn build(prev: &Index, snapshot: Arc<Snapshot>, options: &CompileOptions) -> Index {
        let first = prev.revision() == 0 && snapshot.revision() != 0;
        let changed =
            |kinds: &[Kind]| first || kinds.iter().any(|k| snapshot.kind_changed(&prev.store, *k));
        let (policies, policy_errors, policy_warnings) = if changed(&POLICY_KINDS) {
            let (p, e, w) = compile_policies(&snapshot, options, &prev.policies);
            (Arc::new(p), Arc::new(e), Arc::new(w))
        } else {
            (
                prev.policies.clone(),
                prev.policy_errors.clone(),
                prev.policy_warnings.clone(),
            )
        };
        let (endpoints, endpoint_problems) = if changed(&ENDPOINT_KINDS) {
            let domain = &options.cluster_domain;
            let e = if first {
                endpoints::build(&snapshot, domain, Some(&prev.endpoints.sets))
            } else {
                endpoints::update(&prev.endpoints, &prev.store, &snapshot, domain)
            };
            let problems = e.problems();
            (Arc::new(e), Arc::new(problems))
        } else {
            (prev.endpoints.clone(), prev.endpoint_problems.clone())
        };
        Index {
            store: snapshot,
            endpoints,
            policies,
            policy_errors,
            policy_warnings,
            endpoint_problems,
        }
    }

    /// Why `target` has no policy, in words for the proxy's log.
    pub fn not_found_reason(&self, target: &Target, cluster_domain: &str) -> String {
        match target {
            Target::External(a) => format!(
                "{a} is not a Service of this cluster (expected <name>.<namespace>[.svc.{cluster_domain}][:port])"
            ),
            Target::Service(s) => {
                match self.store.get(Kind::Service, &s.namespace, &s.name) {
                    Some(svc) => {
                        let ports: Vec<String> = match &svc.resource {
                            Resource::Service(spec) => {
                                spec.ports.iter().map(|p| p.port.to_string()).collect()
                            }
                            _ => Vec::new(),
                        };
                        format!(
                            "Service {}/{} has no port {} (its ports: {})",
                            s.namespace,
                            s.name,
                            s.port,
                            if ports.is_empty() { "none".to_string() } else { ports.join(", ") }
                        )
                    }
                    None => format!("Service {}/{} does not exist", s.namespace, s.name),
                }
            }
        }
    }
}

type Compiled = (PolicyIndex, Vec<String>, Vec<String>);

fn compile_policies(snapshot: &Snapshot, options: &CompileOptions, prev: &PolicyIndex) -> Compiled {
    // The model compiles a slice of owned objects; only the kinds it reads are cloned (not the
    // workloads, usually most of the store).
    let objects: Vec<Object> = POLICY_KINDS
        .iter()
        .flat_map(|k| snapshot.objects(*k).values())
        .map(|o| Object::clone(o))
        .collect();
    let compiled = compile_with(&objects, options);
    let policies = compiled
        .services
        .into_iter()
        .map(|(authority, model)| {
            let entry = match prev.get(&authority) {
                Some(p) if p.model == model => p.clone(),
                _ => Arc::new(CompiledPolicy {
                    proto: convert::service_policy(&model),
                    model,
                }),
            };
            (authority, entry)
        })
        .collect();
    let errors = compiled.errors.iter().map(ToString::to_string).collect();
    let warnings = compiled.warnings.iter().map(ToString::to_string).collect();
    (policies, errors, warnings)
}

/// Logs the problems of `next` that `prev` did not have, so a problem is logged once when it
/// appears, not after every unrelated change.
fn log_new_problems(prev: &Index, next: &Index) {
    fn fresh<'a>(old: &'a [String], new: &'a [String]) -> impl Iterator<Item = &'a String> {
        let old: HashSet<&String> = old.iter().collect();
        new.iter().filter(move |p| !old.contains(p))
    }
    if !Arc::ptr_eq(&prev.policy_errors, &next.policy_errors) {
        for e in fresh(&prev.policy_errors, &next.policy_errors) {
            tracing::warn!("policy error: {e}");
        }
    }
    if !Arc::ptr_eq(&prev.policy_warnings, &next.policy_warnings) {
        for w in fresh(&prev.policy_warnings, &next.policy_warnings) {
            tracing::info!("policy warning: {w}");
        }
    }
    if !Arc::ptr_eq(&prev.endpoint_problems, &next.endpoint_problems) {
        for p in fresh(&prev.endpoint_problems, &next.endpoint_problems) {
            tracing::warn!("endpoint problem: {p}");
        }
    }
}

/// The single writer of the index: rebuilds it after every store change (coalescing changes
/// that land while it builds) until `drain` turns true. Returns the index receiver.
pub fn spawn_indexer(
    mut store: watch::Receiver<Arc<Snapshot>>,
    options: CompileOptions,
    metrics: Arc<DestinationMetrics>,
    mut drain: watch::Receiver<bool>,
) -> watch::Receiver<Arc<Index>> {
    let (tx, rx) = watch::channel(Arc::new(Index::empty()));
    let options = Arc::new(options);
    let task = async move {
        loop {
            let snapshot = store.borrow_and_update().clone();
            let prev = tx.borrow().clone();
            if snapshot.revision() != prev.revision() || (snapshot.is_synced() && !prev.is_synced())
            {
                let started = Instant::now();
                let opts = options.clone();
                let prev_for_build = prev.clone();
                // Compiling is CPU work that grows with the store: keep it off the runtime's
                // worker threads so streams keep flowing meanwhile.
                let built = tokio::task::spawn_blocking(move || {
                    Index::build(&prev_for_build, snapshot, &opts)
                })
                .await;
                match built {
                    Ok(next) => publish(&tx, &prev, next, started.elapsed(), &metrics),
                    Err(e) => tracing::error!(
                        error = %e,
                        "building the index failed; serving the previous one until the next change"
                    ),
                }
            }
            let closed = tokio::select! {
                changed = store.changed() => changed.is_err(),
                () = drained(&mut drain) => return,
            };
            if closed {
                tracing::warn!("the store stopped publishing changes; serving the last state");
                drained(&mut drain).await;
                return;
            }
        }
    };
    tokio::spawn(task.instrument(tracing::info_span!("indexer")));
    rx
}

/// Resolves once `drain` turns true (or its sender is gone).
pub(crate) async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Logs what is new in `next`, counts it, and hands it to the watches.
fn publish(
    tx: &watch::Sender<Arc<Index>>,
    prev: &Index,
    next: Index,
    took: Duration,
    metrics: &DestinationMetrics,
) {
    log_new_problems(prev, &next);
    metrics.indexed(&next, took);
    tracing::debug!(
        revision = next.revision(),
        service_ports = next.endpoints.sets.len(),
        endpoints = next.endpoint_count(),
        took_ms = took.as_secs_f64() * 1e3,
        "index built"
    );
    if next.is_synced() && !prev.is_synced() {
        tracing::info!(
            revision = next.revision(),
            service_ports = next.policies.len(),
            endpoints = next.endpoint_count(),
            policy_errors = next.policy_errors.len(),
            "store synced; serving"
        );
    }
    tx.send_replace(Arc::new(next));
}

/// Waits up to `limit` for an index at least at `revision` (for tests and benchmarks).
pub async fn wait_for_revision(
    rx: &mut watch::Receiver<Arc<Index>>,
    revision: u64,
    limit: Duration,
) -> Option<Arc<Index>> {
    tokio::time::timeout(
        limit,
        rx.wait_for(|i| i.revision() >= revision && i.is_synced()),
    )
    .await
    .ok()?
    .ok()
    .map(|i| i.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
