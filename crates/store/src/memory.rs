//! The in-memory backend: objects applied and deleted in code.

use std::sync::Arc;

use tokio::sync::watch;
use weft_model::{Kind, Object};

use crate::snapshot::{ObjectKey, Snapshot};
use crate::Store;

/// A store held in memory, fed by [`MemoryStore::apply`], [`MemoryStore::delete`] and
/// [`MemoryStore::update`] (a batch published as one revision). Readers see a new snapshot
/// after every call that changed something; a call that changes nothing (applying an object
/// equal to the stored one, deleting a missing one) publishes nothing.
#[derive(Debug)]
pub struct MemoryStore {
    tx: watch::Sender<Arc<Snapshot>>,
}

/// What [`MemoryStore::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// No object had this kind, namespace and name.
    Created,
    /// The object replaced a different one.
    Updated,
    /// An equal object was already stored; nothing was published.
    Unchanged,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store, synced (memory has nothing more to read).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(Snapshot::empty(true)));
        Self { tx }
    }

    /// An empty store that is not synced until [`MemoryStore::mark_synced`], for testing
    /// readers that must wait for a backend's initial read.
    pub fn unsynced() -> Self {
        let (tx, _) = watch::channel(Arc::new(Snapshot::empty(false)));
        Self { tx }
    }

    /// A synced store holding `objects` (a later object with the kind, namespace and name of an
    /// earlier one replaces it).
    pub fn with_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let store = Self::new();
        store.update(|w| {
            for o in objects {
                w.apply(o);
            }
        });
        store
    }

    /// Marks the store synced (publishing a new revision if it was not).
    pub fn mark_synced(&self) {
        self.tx.send_if_modified(|snapshot| {
            if snapshot.is_synced() {
                return false;
            }
            let next = Arc::make_mut(snapshot);
            next.set_synced(true);
            next.set_revision(next.revision() + 1);
            true
        });
    }

    /// Creates or replaces an object.
    pub fn apply(&self, object: Object) -> Applied {
        let mut applied = Applied::Unchanged;
        self.update(|w| applied = w.apply(object));
        applied
    }

    /// Deletes an object; whether it existed.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let mut deleted = false;
        self.update(|w| deleted = w.delete(&ObjectKey::new(kind, namespace, name)));
        deleted
    }

    /// Applies several changes as one revision: `f` gets a [`Writer`]; if it changed anything,
    /// one new snapshot is published when it returns. Returns how many objects changed.
    pub fn update(&self, f: impl FnOnce(&mut Writer<'_>)) -> usize {
        let mut changed = 0;
        self.tx.send_if_modified(|snapshot| {
            // Work on a copy: readers holding the current snapshot keep it unchanged. Only the
            // maps of kinds actually written are copied (see `Snapshot::kind_mut`).
            let mut next = (**snapshot).clone();
            let mut writer = Writer {
                snapshot: &mut next,
                changed: 0,
            };
            f(&mut writer);
            changed = writer.changed;
            if changed == 0 {
                return false;
            }
            next.set_revision(snapshot.revision() + 1);
            *snapshot = Arc::new(next);
            true
        });
        changed
    }

    /// Replaces every object with `objects` (as a backend does after relisting), as one
    /// revision; objects equal to stored ones are kept as they are, so readers see only the
    /// real differences. Returns how many objects changed.
    pub fn replace_all(&self, objects: impl IntoIterator<Item = Object>) -> usize {
        let current = self.snapshot();
        self.update(|w| {
            let mut keep = std::collections::BTreeSet::new();
            for o in objects {
                keep.insert(ObjectKey::of(&o));
                w.apply(o);
            }
            for o in current.iter() {
                let key = ObjectKey::of(o);
                if !keep.contains(&key) {
                    w.delete(&key);
                }
            }
        })
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }
}

/// Changes to a [`MemoryStore`] that will be published together (see [`MemoryStore::update`]).
#[derive(Debug)]
pub struct Writer<'a> {
    snapshot: &'a mut Snapshot,
    changed: usize,
}

impl Writer<'_> {
    /// Creates or replaces an object.
    pub fn apply(&mut self, object: Object) -> Applied {
        let kind = object.kind();
        let key = (object.namespace().to_string(), object.name().to_string());
        if let Some(existing) = self.snapshot.objects(kind).get(&key) {
            if **existing == object {
                return Applied::Unchanged;
            }
        }
        self.changed += 1;
        match self.snapshot.kind_mut(kind).insert(key, Arc::new(object)) {
            Some(_) => Applied::Updated,
            None => Applied::Created,
        }
    }

    /// Deletes an object; whether it existed.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        let map_key = (key.namespace.clone(), key.name.clone());
        if !self.snapshot.objects(key.kind).contains_key(&map_key) {
            return false;
        }
        self.changed += 1;
        self.snapshot.kind_mut(key.kind).remove(&map_key).is_some()
    }

    /// The state so far, including this batch's changes.
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }
}
