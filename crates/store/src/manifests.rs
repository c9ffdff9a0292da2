//! Reading manifests from files once: a YAML file, or every `.yaml`, `.yml` and `.json` file
//! of a directory (not its subdirectories; hidden files are skipped, as editors and atomic
//! writers leave them behind).
//!
//! Nothing bad is fatal except a path that cannot be read at all: every invalid document or
//! object, unreadable file and duplicate object is a [`Problem`] naming its file, and the
//! valid objects are returned.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use weft_model::{parse_bytes, ErrorClass, ModelError, Object};

use crate::snapshot::ObjectKey;

/// File name endings read from a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Objects read from manifests, and what was wrong with the rest.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The valid objects, in file order (files by name), at most one per kind, namespace and
    /// name (the first one read).
    pub objects: Vec<Object>,
    /// Everything that was skipped, and why.
    pub problems: Vec<Problem>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

/// Something in the manifests that was not used.
#[derive(Debug)]
pub enum Problem {
    /// A document or object that is invalid (or a duplicate), with file, line, object and
    /// field.
    Model(ModelError),
    /// A file in a directory that could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Model(e) => e.fmt(f),
            Problem::Unreadable { path, source } => {
                write!(f, "{}: cannot read: {source}; skipped", path.display())
            }
        }
    }
}

/// The path given cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read manifests: {source}", path.display())]
pub struct ReadError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Reads every manifest at each of `paths` (files or directories), in order.
pub fn read_all<P: AsRef<Path>>(paths: &[P]) -> Result<Loaded, ReadError> {
    let mut loaded = Loaded::default();
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    for path in paths {
        for file in files_at(path.as_ref())? {
            match std::fs::read(&file) {
                Ok(bytes) => {
                    let (objects, errors) = parse_bytes(&file.display().to_string(), &bytes);
                    loaded
                        .problems
                        .extend(errors.into_iter().map(Problem::Model));
                    for object in objects {
                        keep_first(&mut loaded, &mut seen, object);
                    }
                }
                Err(source) => loaded.problems.push(Problem::Unreadable {
                    path: file.clone(),
                    source,
                }),
            }
            loaded.files.push(file);
        }
    }
    Ok(loaded)
}

/// Adds `object` unless an object with its key was read before (then reports it).
fn keep_first(loaded: &mut Loaded, seen: &mut BTreeMap<ObjectKey, String>, object: Object) {
    let key = ObjectKey::of(&object);
    if let Some(first) = seen.get(&key) {
        loaded.problems.push(Problem::Model(ModelError {
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
        }));
        return;
    }
    seen.insert(key, object.source.to_string());
    loaded.objects.push(object);
}

/// The files to read at `path`: itself, or a directory's manifest files sorted by name.
fn files_at(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let err = |source| ReadError {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_manifest = !name.starts_with('.')
            && Path::new(name.as_ref())
                .extension()
                .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
        // Follows symlinks, so a directory of links to manifests works.
        let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_manifest && is_file {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "weft-store-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn service(name: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{port: 80}}]\n")
    }

    #[test]
    fn reads_a_directory_keeping_good_objects_and_reporting_bad_ones() {
        let dir = Dir::new();
        dir.write("a.yaml", &service("web"));
        dir.write(
            "b.yml",
            &format!(
                "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: bad, namespace: shop}}\nspec:\n  ports: [{{port: 99999}}]\n",
                service("api")
            ),
        );
        dir.write("c.yaml", &service("web"));
        dir.write("notes.txt", "not a manifest");
        dir.write(".a.yaml.swp", "garbage: [");
        let loaded = read_all(&[&dir.0]).unwrap();
        let names: Vec<_> = loaded
            .objects
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        assert_eq!(names, vec!["web", "api"]);
        assert_eq!(loaded.files.len(), 3);
        let problems: Vec<_> = loaded.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].contains("b.yml:")
                && problems[0].contains("Service shop/bad")
                && problems[0].contains("spec.ports[0].port"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains(
                "c.yaml:1: Service shop/web: Service shop/web is defined twice (first at "
            ),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn reads_a_single_file_and_fails_on_a_missing_path() {
        let dir = Dir::new();
        let file = dir.write("one.yaml", &service("web"));
        let loaded = read_all(&[&file]).unwrap();
        assert_eq!(loaded.objects.len(), 1);
        let missing = dir.0.join("missing");
        let err = read_all(&[&missing]).unwrap_err().to_string();
        assert!(err.contains("missing: cannot read manifests"), "{err}");
    }
}
