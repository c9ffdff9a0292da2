//! An immutable view of every object in a store at one revision.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use weft_model::{Kind, Object};

/// The objects of one kind, by namespace and name.
pub type ByName = BTreeMap<(String, String), Arc<Object>>;

/// What identifies an object in a store: its kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace (`default` when the manifest names none).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object.
    pub fn of(object: &Object) -> Self {
        Self::new(object.kind(), object.namespace(), object.name())
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind namespace/name`, as the model names objects in messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One difference between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The object was created or changed; this is its new state.
    Applied(Arc<Object>),
    /// The object was deleted.
    Deleted(ObjectKey),
}

impl Change {
    /// The key of the object that changed.
    pub fn key(&self) -> ObjectKey {
        match self {
            Change::Applied(o) => ObjectKey::of(o),
            Change::Deleted(k) => k.clone(),
        }
    }
}

/// Every object of a store at one revision. Cheap to clone (one `Arc` per kind).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    revision: u64,
    synced: bool,
    /// One map per kind, in the order of [`Kind::ALL`].
    kinds: [Arc<ByName>; Kind::ALL.len()],
}

/// The position of `kind` in [`Snapshot::kinds`].
fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Service => 0,
        Kind::ExternalWorkload => 1,
        Kind::ServiceProfile => 2,
        Kind::HttpRoute => 3,
        Kind::TrafficSplit => 4,
        Kind::Link => 5,
    }
}

impl Snapshot {
    /// An empty snapshot at revision 0.
    pub fn empty(synced: bool) -> Self {
        Self {
            synced,
            ..Self::default()
        }
    }

    /// The revision: 0 for the empty store, then higher after every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether the backend has read everything it holds at least once. Until then, a missing
    /// object may just not be read yet.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The objects of `kind`, by namespace and name.
    pub fn objects(&self, kind: Kind) -> &Arc<ByName> {
        // `slot` covers every kind and the array has one entry per kind.
        &self.kinds[slot(kind)]
    }

    /// One object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Arc<Object>> {
        self.objects(kind)
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Every object, kind by kind (in the order of [`Kind::ALL`]), then by namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Object>> {
        self.kinds.iter().flat_map(|m| m.values())
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(|m| m.len()).sum()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(|m| m.is_empty())
    }

    /// Whether any object of `kind` differs between `self` and `other`. O(1) between two
    /// snapshots of one store (a change copies only the maps of the kinds it touches); between
    /// unrelated snapshots it may say "changed" when the contents are equal.
    pub fn kind_changed(&self, other: &Snapshot, kind: Kind) -> bool {
        !Arc::ptr_eq(self.objects(kind), other.objects(kind))
    }

    /// What changed from `older` to `self`: objects created or changed (`Applied`), then
    /// objects deleted, kind by kind, each in key order. Unchanged kinds cost one pointer
    /// comparison; a changed kind one ordered walk of both maps (no lookups), in which
    /// unchanged objects cost a pointer comparison.
    pub fn changes_since(&self, older: &Snapshot) -> Vec<Change> {
        use std::cmp::Ordering;
        let mut out = Vec::new();
        for kind in Kind::ALL {
            if !self.kind_changed(older, kind) {
                continue;
            }
            let mut deleted = Vec::new();
            let mut new = self.objects(kind).iter().peekable();
            let mut old = older.objects(kind).iter().peekable();
            loop {
                let order = match (new.peek(), old.peek()) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    // The same `Arc` is the same object under the same key: skip the key
                    // comparison, the common case by far.
                    (Some((_, n)), Some((_, o))) if Arc::ptr_eq(n, o) => Ordering::Equal,
                    (Some((nk, _)), Some((ok, _))) => nk.cmp(ok),
                };
                match order {
                    Ordering::Less => {
                        if let Some((_, o)) = new.next() {
                            out.push(Change::Applied(o.clone()));
                        }
                    }
                    Ordering::Greater => {
                        if let Some(((ns, name), _)) = old.next() {
                            deleted.push(Change::Deleted(ObjectKey::new(kind, ns, name)));
                        }
                    }
                    Ordering::Equal => {
                        if let (Some((_, n)), Some((_, o))) = (new.next(), old.next()) {
                            if !Arc::ptr_eq(n, o) && n != o {
                                out.push(Change::Applied(n.clone()));
                            }
                        }
                    }
                }
            }
            out.extend(deleted);
        }
        out
    }

    /// Write access for backends: the next revision's snapshot is built from a clone.
    pub(crate) fn kind_mut(&mut self, kind: Kind) -> &mut ByName {
        Arc::make_mut(&mut self.kinds[slot(kind)])
    }

    pub(crate) fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }

    pub(crate) fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_slot() {
        let mut seen: Vec<usize> = Kind::ALL.iter().map(|k| slot(*k)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..Kind::ALL.len()).collect::<Vec<_>>());
    }

    #[test]
    fn keys_display_like_model_messages() {
        let key = ObjectKey::new(Kind::TrafficSplit, "emojivoto", "web-split");
        assert_eq!(key.to_string(), "TrafficSplit emojivoto/web-split");
    }
}
