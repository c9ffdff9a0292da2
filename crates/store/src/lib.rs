//! Where Weft's resources live and how the control plane watches them change.
//!
//! Every backend implements one read interface, [`Store`]: it publishes immutable
//! [`Snapshot`]s of every object through a `tokio::sync::watch` channel, a new one (with a
//! higher [`Snapshot::revision`]) after each change it applies. Readers keep the latest
//! snapshot, wake on `changed().await`, and compare snapshots to find what changed
//! ([`Snapshot::kind_changed`] answers "did any Service change?" with one pointer comparison;
//! [`Snapshot::changes_since`] lists the objects). A watch channel coalesces: a reader that is
//! busy while several changes land sees only the newest snapshot, which is what a reader that
//! recompiles state wants, and nothing queues without bound.
//!
//! Backends:
//! - [`MemoryStore`]: objects applied and deleted in code (tests, benchmarks, and
//!   `weft-controller destination --store memory --manifests …`).
//! - [`LocalStore`]: a cluster directory's manifests, read at start and then watched (see
//!   [`local`]); `weft apply` writes them with [`write_atomic`].
//! - `kubernetes` (kube-rs watchers) comes with its issue, behind the same trait. Writes are
//!   backend-specific (`weft apply` writes files; Kubernetes users use the API server), so the
//!   trait is read-only.
//!
//! [`manifests`] reads YAML files and directories once into objects, reporting every bad
//! object with its file and field.
//!
//! Snapshots share structure: objects are `Arc`s in one map per kind, and a change copies only
//! the map of the kind it touches, so a reader can tell in O(1) that a kind did not change.

pub mod cluster;
pub mod local;
pub mod manifests;
mod memory;
mod snapshot;

use std::sync::Arc;

use tokio::sync::watch;

pub use local::{write_atomic, LocalOptions, LocalStore};
pub use memory::{Applied, MemoryStore, Writer};
pub use snapshot::{ByName, Change, ObjectKey, Snapshot};

/// The read side of a store: the current objects, and a signal when they change.
///
/// Implementations publish a new [`Snapshot`] after every change (or batch of changes) with a
/// strictly higher revision, and never publish one with `synced == false` after one with
/// `synced == true`.
pub trait Store: Send + Sync + 'static {
    /// The backend's name for logs and metrics (`memory`, `local`, `kubernetes`).
    fn backend(&self) -> &'static str;

    /// A receiver of the store's snapshots. Its current value is the latest snapshot; it
    /// changes after every applied change.
    fn watch(&self) -> watch::Receiver<Arc<Snapshot>>;

    /// The latest snapshot.
    fn snapshot(&self) -> Arc<Snapshot> {
        self.watch().borrow().clone()
    }
}

/// The store stopped publishing (its backend was dropped) before it had a synced snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the store closed before it finished its initial sync")]
pub struct StoreClosed;

/// Waits until the store has read everything it holds once (a Kubernetes backend has listed
/// every kind; a directory backend has read every file) and returns that snapshot. Serving
/// before then would tell proxies that services do not exist when they are simply not read
/// yet.
pub async fn synced(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Result<Arc<Snapshot>, StoreClosed> {
    match rx.wait_for(|s| s.is_synced()).await {
        Ok(s) => Ok(s.clone()),
        Err(_) => Err(StoreClosed),
    }
}
