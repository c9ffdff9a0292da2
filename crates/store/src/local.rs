//! The local backend: a cluster directory whose manifests are watched.
//!
//! A cluster directory (e.g. `~/.weft/west`) holds its manifests in `<cluster>/manifests/`
//! ([`manifests_dir`]): every `.yaml`, `.yml` and `.json` file directly in it (flat, not its
//! subdirectories, like [`crate::manifests`]). Hidden files (names starting with `.`) and names
//! ending in `.tmp` are never read: atomic writers ([`write_atomic`]) and editors leave them
//! behind, and reading one half-written would report a problem that is not there.
//!
//! [`LocalStore::open`] reads every file before it returns (its snapshot is synced), then a
//! thread polls the directory (every 200 ms by default; portable, no OS watch API) and
//! publishes a new snapshot when a file is added, changed or removed. A file is read again
//! when its size, modification time or inode changed, or while its modification time is
//! within [`RACY_WINDOW`] of now (a file rewritten twice within the file system's timestamp
//! granularity keeps its metadata); its content hash decides whether it changed at all.
//!
//! Bad files: every problem is logged (`tracing::warn!`, with file, line, object and field)
//! and kept in [`LocalStore::problems`] until the file is fixed or removed. A file whose new
//! content is *malformed* — it fails to parse as YAML, or an object in it is invalid
//! ([`ErrorClass::Syntax`], [`ErrorClass::Invalid`]), or it cannot be read — **keeps serving
//! the objects of its last good version**: a typo saved in an editor must not delete the
//! routes or services the file held, which is the safer behaviour in production. A file that
//! was never good (malformed when first read) serves its valid objects. Problems that do not
//! reject what the author wrote (an unsupported kind, a bad annotation) do not hold the file
//! back: its new content is served, and the problem reported.
//!
//! An object defined in two files is served from the first file by name; the other is
//! reported, as [`crate::manifests::read_all`] does.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use weft_model::{parse_bytes, ErrorClass, ModelError, Object};

use crate::manifests::{Problem, ReadError};
use crate::memory::MemoryStore;
use crate::snapshot::{ObjectKey, Snapshot};
use crate::Store;

/// File name endings read from the manifests directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// The default time between two scans of the directory.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A file modified this recently is read again on every scan even if its metadata did not
/// change, since a second write within the file system's timestamp granularity can leave size
/// and modification time as they were.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The manifests directory of a cluster directory: `<cluster_dir>/manifests`.
pub fn manifests_dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("manifests")
}

/// Whether a file name in the manifests directory is read: a manifest ending, not hidden, not
/// a temporary file.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.ends_with(".tmp")
        && Path::new(name)
            .extension()
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Writes `bytes` to `path` atomically: to a hidden temporary file in the same directory,
/// flushed to disk, then renamed over `path` (and the directory synced on Unix). A reader sees
/// the old content or the new, never part of it; the temporary file (`.NAME.PID.N.tmp`) is
/// ignored by [`LocalStore`] and removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable. Best effort: some file systems refuse to sync a
    // directory, and the data is already in place.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Options of a [`LocalStore`].
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Time between two scans of the directory.
    pub poll_interval: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// A store over a cluster directory's manifests, watched for changes (see the module
/// documentation). Dropping it stops the watching thread.
#[derive(Debug)]
pub struct LocalStore {
    store: Arc<MemoryStore>,
    problems: watch::Receiver<Arc<Vec<Problem>>>,
    dir: PathBuf,
    /// Dropped with the store: wakes and ends the polling thread.
    _stop: mpsc::Sender<()>,
}

impl LocalStore {
    /// Opens the cluster directory `cluster_dir`, reads its manifests, and starts watching
    /// them every [`DEFAULT_POLL_INTERVAL`].
    pub fn open(cluster_dir: &Path) -> Result<Self, ReadError> {
        Self::open_with(cluster_dir, LocalOptions::default())
    }

    /// Like [`LocalStore::open`], with options.
    ///
    /// Fails if `cluster_dir` is not a readable directory. Its `manifests` directory may be
    /// missing (no objects): it is read once it appears.
    pub fn open_with(cluster_dir: &Path, options: LocalOptions) -> Result<Self, ReadError> {
        let err = |source| ReadError {
            path: cluster_dir.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(cluster_dir).map_err(err)?;
        if !meta.is_dir() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        let dir = manifests_dir(cluster_dir);
        let store = Arc::new(MemoryStore::unsynced());
        let (problems_tx, problems) = watch::channel(Arc::new(Vec::new()));
        let mut watcher = Watcher {
            dir: dir.clone(),
            files: BTreeMap::new(),
            store: store.clone(),
            problems: problems_tx,
            reported: BTreeSet::new(),
        };
        watcher.scan(true);
        store.mark_synced();
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = options.poll_interval;
        std::thread::Builder::new()
            .name("weft-store-local".to_string())
            .spawn(move || {
                // Sleeps between scans until the store (the sender) is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    watcher.scan(false);
                }
            })
            .map_err(|source| ReadError {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            store,
            problems,
            dir,
            _stop: stop,
        })
    }

    /// The directory watched: `<cluster_dir>/manifests`.
    pub fn manifests_dir(&self) -> &Path {
        &self.dir
    }

    /// The current problems: every bad document, object, unreadable file and duplicate in the
    /// files as they are now (a file held at its last good version reports why).
    pub fn problems(&self) -> Arc<Vec<Problem>> {
        self.problems.borrow().clone()
    }

    /// A receiver of the current problems, updated after every scan that changed them.
    pub fn watch_problems(&self) -> watch::Receiver<Arc<Vec<Problem>>> {
        self.problems.clone()
    }
}

impl Store for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.store.watch()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot()
    }
}

/// What identifies a file's version without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }

    /// Whether the file may change again without its stamp changing.
    fn is_racy(&self, now: SystemTime) -> bool {
        match self.modified {
            Some(m) => now.duration_since(m).map_or(true, |age| age < RACY_WINDOW),
            None => true,
        }
    }
}

/// What the watcher knows of one file.
#[derive(Debug)]
struct FileState {
    stamp: Option<Stamp>,
    hash: Option<u64>,
    /// The objects served for this file: those of its last good version.
    served: Vec<Object>,
    /// The problems of its current version.
    problems: Vec<Problem>,
}

/// The polling side: the state of every file, and the store it publishes to.
struct Watcher {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    store: Arc<MemoryStore>,
    problems: watch::Sender<Arc<Vec<Problem>>>,
    /// The problems already logged, by text, so a problem is logged once, not every scan.
    reported: BTreeSet<String>,
}

impl Watcher {
    /// Scans the directory once; publishes a snapshot and the problems if anything changed.
    fn scan(&mut self, first: bool) {
        let now = SystemTime::now();
        let present = self.list();
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|path, _| present.contains_key(path));
        if self.files.len() != before {
            changed = true;
        }
        for (path, stamp) in present {
            let state = self.files.entry(path.clone()).or_insert(FileState {
                stamp: None,
                hash: None,
                served: Vec::new(),
                problems: Vec::new(),
            });
            let fresh = state.stamp.as_ref() == Some(&stamp) && !stamp.is_racy(now);
            if fresh {
                continue;
            }
            state.stamp = Some(stamp);
            changed |= read_file(&path, state);
        }
        if changed || first {
            self.publish();
        }
    }

    /// The manifest files in the directory now, with their stamps. A missing directory has
    /// none; an unreadable one is logged and keeps the files known (nothing is deleted
    /// because a listing failed).
    fn list(&self) -> BTreeMap<PathBuf, Stamp> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot list manifests: {e}; keeping the files read before");
                return self
                    .files
                    .iter()
                    .filter_map(|(p, s)| Some((p.clone(), s.stamp.clone()?)))
                    .collect();
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !is_manifest_name(&name.to_string_lossy()) {
                continue;
            }
            let path = entry.path();
            // Follows symlinks, so a directory of links to manifests works.
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.is_file() {
                    out.insert(path, Stamp::of(&meta));
                }
            }
        }
        out
    }

    /// Collects every file's served objects (first definition wins) and current problems,
    /// publishes them, and logs new problems.
    fn publish(&mut self) {
        let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
        let mut objects = Vec::new();
        let mut problems = Vec::new();
        for state in self.files.values() {
            for p in &state.problems {
                problems.push(copy_problem(p));
            }
            for object in &state.served {
                let key = ObjectKey::of(object);
                if let Some(first) = seen.get(&key) {
                    problems.push(Problem::Model(duplicate(object, first)));
                    continue;
                }
                seen.insert(key, object.source.to_string());
                objects.push(object.clone());
            }
        }
        let texts: BTreeSet<String> = problems.iter().map(ToString::to_string).collect();
        for text in texts.difference(&self.reported) {
            tracing::warn!("manifest problem: {text}");
        }
        for text in self.reported.difference(&texts) {
            tracing::info!("manifest problem resolved: {text}");
        }
        self.reported = texts;
        let changed = self.store.replace_all(objects);
        if changed > 0 {
            tracing::debug!(dir = %self.dir.display(), changed, "manifests changed");
        }
        self.problems.send_if_modified(|current| {
            let same = current.len() == problems.len()
                && current
                    .iter()
                    .zip(&problems)
                    .all(|(a, b)| a.to_string() == b.to_string());
            if !same {
                *current = Arc::new(problems);
            }
            !same
        });
    }
}

/// Reads `path` into `state` if its content changed; whether anything served or reported
/// changed.
fn read_file(path: &Path, state: &mut FileState) -> bool {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // Removed between listing and reading: the next scan drops it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(source) => {
            state.hash = None;
            state.stamp = None;
            state.problems = vec![Problem::Unreadable {
                path: path.to_path_buf(),
                source,
            }];
            return true;
        }
    };
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let hash = hasher.finish();
    if state.hash == Some(hash) {
        return false;
    }
    let never_read = state.hash.is_none() && state.served.is_empty();
    state.hash = Some(hash);
    let (objects, errors) = parse_bytes(&path.display().to_string(), &bytes);
    let malformed = errors
        .iter()
        .any(|e| matches!(e.class, ErrorClass::Syntax | ErrorClass::Invalid));
    if !malformed || never_read {
        state.served = objects;
    } else {
        tracing::warn!(
            file = %path.display(),
            "manifest is malformed; serving the objects of its last good version until it is fixed"
        );
    }
    state.problems = errors.into_iter().map(Problem::Model).collect();
    true
}

/// A copy of a problem (an I/O error is copied as its kind and message).
fn copy_problem(p: &Problem) -> Problem {
    match p {
        Problem::Model(e) => Problem::Model(e.clone()),
        Problem::Unreadable { path, source } => Problem::Unreadable {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
    }
}

/// The problem of an object defined a second time.
fn duplicate(object: &Object, first: &str) -> ModelError {
    ModelError {
        class: ErrorClass::Reference,
        file: object.source.file.clone(),
        document: object.source.document,
        line: object.source.line,
        kind: Some(object.kind().name().to_string()),
        namespace: Some(object.namespace().to_string()),
        name: Some(object.name().to_string()),
        field: None,
        message: format!(
            "{} is defined twice (first at {first}); this one is ignored",
            object.describe()
        ),
    }
}
