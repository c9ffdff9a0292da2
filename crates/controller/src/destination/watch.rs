//! What one watch has sent, and what it must send next: the per-stream half of the service,
//! synchronous so it is tested without a runtime.
//!
//! A watch keeps the `Arc` of the last endpoint set (or policy) it sent. When the index
//! changes it compares pointers first (the index shares unchanged entries), and only when they
//! differ computes a diff. Messages are never queued: a watch whose client reads slowly is
//! diffed against the newest index when it is next polled, so it skips intermediate states.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_api::destination as pb;

use super::authority::Target;
use super::endpoints::EndpointSet;
use super::index::{CompiledPolicy, Index};
use super::metrics::UpdateKind;

/// Most endpoints in one `AddSet` message, so a very large service never needs one huge
/// message (gRPC clients refuse messages over 4 MiB by default).
pub const MAX_ENDPOINTS_PER_MESSAGE: usize = 1_000;

/// What a `Get` watch has told its client.
#[derive(Debug)]
pub struct EndpointWatch {
    /// The canonical authority; `None` for an authority that can be no Service here.
    key: Option<String>,
    last: LastEndpoints,
}

#[derive(Debug)]
enum LastEndpoints {
    /// Nothing sent yet.
    Nothing,
    /// `NoEndpoints { exists: false }`.
    Missing,
    /// This set (`NoEndpoints { exists: true }` when it is empty).
    Set(Arc<EndpointSet>),
}

impl EndpointWatch {
    /// A watch of `key` (see [`super::authority::ServiceAuthority::canonical`]).
    pub fn new(key: Option<String>) -> Self {
        Self {
            key,
            last: LastEndpoints::Nothing,
        }
    }

    /// The messages that bring the client from what it was sent to `index`; empty when
    /// nothing it watches changed. Additions come before removals, so a client replacing
    /// endpoints never passes through an empty set.
    pub fn update(&mut self, index: &Index) -> Vec<(UpdateKind, pb::Update)> {
        use pb::update::Update as U;
        let current = self.key.as_ref().and_then(|k| index.endpoints.sets.get(k));
        let Some(set) = current else {
            if matches!(self.last, LastEndpoints::Missing) {
                return Vec::new();
            }
            self.last = LastEndpoints::Missing;
            return vec![no_endpoints(false)];
        };
        let before = match &self.last {
            LastEndpoints::Set(prev) if Arc::ptr_eq(prev, set) => return Vec::new(),
            LastEndpoints::Set(prev) => Some(&prev.endpoints),
            LastEndpoints::Nothing | LastEndpoints::Missing => None,
        };
        let mut out = Vec::new();
        if set.endpoints.is_empty() {
            // Say so unless the client already knows the service exists and is empty.
            if before.is_none_or(|b| !b.is_empty()) {
                out.push(no_endpoints(true));
            }
        } else {
            let empty = BTreeMap::new();
            let before = before.unwrap_or(&empty);
            let added: Vec<&pb::Endpoint> = set
                .endpoints
                .values()
                .filter(|e| before.get(&e.addr) != Some(*e))
                .collect();
            for chunk in added.chunks(MAX_ENDPOINTS_PER_MESSAGE) {
                let add = pb::AddSet {
                    endpoints: chunk.iter().map(|e| (*e).clone()).collect(),
                    metric_labels: set.labels.clone(),
                };
                out.push((
                    UpdateKind::Add,
                    pb::Update {
                        update: Some(U::Add(add)),
                    },
                ));
            }
            let removed: Vec<String> = before
                .keys()
                .filter(|a| !set.endpoints.contains_key(*a))
                .cloned()
                .collect();
            if !removed.is_empty() {
                let remove = pb::RemoveSet { addrs: removed };
                out.push((
                    UpdateKind::Remove,
                    pb::Update {
                        update: Some(U::Remove(remove)),
                    },
                ));
            }
        }
        self.last = LastEndpoints::Set(set.clone());
        out
    }
}

fn no_endpoints(exists: bool) -> (UpdateKind, pb::Update) {
    (
        UpdateKind::NoEndpoints,
        pb::Update {
            update: Some(pb::update::Update::NoEndpoints(pb::NoEndpoints { exists })),
        },
    )
}

/// What a `GetPolicy` watch has told its client.
#[derive(Debug)]
pub struct PolicyWatch {
    target: Target,
    key: Option<String>,
    last: LastPolicy,
}

#[derive(Debug)]
enum LastPolicy {
    Nothing,
    NotFound,
    Policy(Arc<CompiledPolicy>),
}

impl PolicyWatch {
    /// A watch of `target`, whose canonical authority is `key`.
    pub fn new(target: Target, key: Option<String>) -> Self {
        Self {
            target,
            key,
            last: LastPolicy::Nothing,
        }
    }

    /// The message to send for `index`, if the policy changed since the last one sent.
    pub fn update(
        &mut self,
        index: &Index,
        cluster_domain: &str,
    ) -> Option<(UpdateKind, pb::PolicyUpdate)> {
        use pb::policy_update::Update as U;
        match self.key.as_ref().and_then(|k| index.policies.get(k)) {
            Some(policy) => {
                if let LastPolicy::Policy(prev) = &self.last {
                    if Arc::ptr_eq(prev, policy) || prev.model == policy.model {
                        return None;
                    }
                }
                self.last = LastPolicy::Policy(policy.clone());
                Some((
                    UpdateKind::Policy,
                    pb::PolicyUpdate {
                        update: Some(U::Policy(policy.proto.clone())),
                    },
                ))
            }
            None => {
                if matches!(self.last, LastPolicy::NotFound) {
                    return None;
                }
                self.last = LastPolicy::NotFound;
                let reason = index.not_found_reason(&self.target, cluster_domain);
                Some((
                    UpdateKind::NotFound,
                    pb::PolicyUpdate {
                        update: Some(U::NotFound(pb::NotFound { reason })),
                    },
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
