//! The files named on the command line: reading inputs (every error names the file) and writing
//! outputs atomically — a temporary file in the same directory, synced, then moved into place —
//! so that a crash or a full disk never leaves a half-written certificate or key behind. A private
//! key is created with mode 0600 from the start, never widened later. Existing files are kept
//! unless the caller passes `force`, and that check is itself atomic (a hard link, which fails if
//! the name exists), so two commands racing for one name cannot both win.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};

/// Largest input read. Certificates, bundles and keys are a few KiB; a bigger file is a mistake
/// (a log, a disk image, `/dev/zero`), and reading it whole would only waste time and memory.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Mode of a new private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of a new certificate file (certificates are public).
pub const CERT_MODE: u32 = 0o644;

/// Reads a whole input file; errors read `<path>: <problem>`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let named = |e: io::Error| anyhow!("{}: {}", path.display(), describe(&e));
    let file = File::open(path).map_err(named)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(named)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{}: larger than {} KiB, so not a certificate, bundle or key",
            path.display(),
            MAX_INPUT_BYTES / 1024
        );
    }
    Ok(bytes)
}

/// An I/O error in a few words, without the `(os error N)` noise for the common cases.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory, not a file".to_owned(),
        _ => e.to_string(),
    }
}

/// A file to create.
#[derive(Debug)]
pub struct NewFile<'a> {
    /// Where it goes.
    pub path: &'a Path,
    /// What it holds.
    pub contents: &'a [u8],
    /// Its permission bits (before the umask).
    pub mode: u32,
}

/// Refuses, before any work is done, to create files that exist (unless `force`), and refuses
/// the same path twice.
pub fn check_new(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    for (i, path) in paths.iter().enumerate() {
        if paths.iter().take(i).any(|p| same_path(p, path)) {
            bail!(
                "{}: given for two outputs; the certificate and the key need different files",
                path.display()
            );
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => bail!("{}: is a directory", path.display()),
            Ok(_) if !force => bail!(
                "{}: already exists; pass --force to replace it",
                path.display()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Whether two paths name the same file (after resolving what exists of them).
pub fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes every file atomically, or none: if one fails, the ones already put in place by this
/// call are removed again (files replaced under `force` cannot be brought back, and are named in
/// the error).
pub fn write_new(files: &[NewFile<'_>], force: bool) -> anyhow::Result<()> {
    let mut staged: Vec<(PathBuf, &NewFile<'_>)> = Vec::new();
    for file in files {
        match stage(file) {
            Ok(tmp) => staged.push((tmp, file)),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    let mut placed: Vec<&Path> = Vec::new();
    let mut result = Ok(());
    let mut pending = staged.iter();
    for (tmp, file) in pending.by_ref() {
        match commit(tmp, file.path, force) {
            Ok(()) => placed.push(file.path),
            Err(e) => {
                let _ = fs::remove_file(tmp);
                result = Err(e);
                break;
            }
        }
    }
    if let Err(e) = result {
        for (tmp, _) in pending {
            let _ = fs::remove_file(tmp);
        }
        if force && !placed.is_empty() {
            let names: Vec<String> = placed.iter().map(|p| p.display().to_string()).collect();
            return Err(e.context(format!("already replaced: {}", names.join(", "))));
        }
        for path in placed {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    for dir in files.iter().map(|f| parent_dir(f.path)) {
        // Make the renames durable; a failure here loses nothing already written.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The directory a path is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes the contents to a fresh temporary file beside the destination and syncs it.
fn stage(file: &NewFile<'_>) -> anyhow::Result<PathBuf> {
    let named = |e: io::Error| anyhow!("{}: cannot write: {}", file.path.display(), describe(&e));
    let dir = parent_dir(file.path);
    let base = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: not a file name", file.path.display()))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for attempt in 0..100u32 {
        let tmp = dir.join(format!(
            ".{base}.weft-tmp.{}.{stamp}.{attempt}",
            std::process::id()
        ));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&tmp);
        let mut out = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => bail!(
                "{}: cannot write: no directory {}",
                file.path.display(),
                dir.display()
            ),
            Err(e) => return Err(named(e)),
        };
        let written = out.write_all(file.contents).and_then(|()| out.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(named(e));
        }
        return Ok(tmp);
    }
    bail!(
        "{}: cannot write: no free temporary file name in {}",
        file.path.display(),
        dir.display()
    )
}

/// Moves a staged file into place: replacing whatever is there under `force`, otherwise only if
/// the name is still free.
fn commit(tmp: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    let named = |e: io::Error| anyhow!("{}: cannot write: {}", dest.display(), describe(&e));
    if force {
        return fs::rename(tmp, dest).map_err(named);
    }
    match fs::hard_link(tmp, dest) {
        Ok(()) => {
            let _ = fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(tmp);
            bail!(
                "{}: already exists (created meanwhile?); pass --force to replace it",
                dest.display()
            )
        }
        // A file system without hard links: fall back to a checked rename (a tiny race, as
        // with any tool that does not link).
        Err(_) if fs::symlink_metadata(dest).is_err() => fs::rename(tmp, dest).map_err(named),
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(named(e))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("weft-tmp"))
            .collect()
    }

    #[test]
    fn writes_with_modes_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        let files = [
            NewFile {
                path: &crt,
                contents: b"cert",
                mode: CERT_MODE,
            },
            NewFile {
                path: &key,
                contents: b"key",
                mode: KEY_MODE,
            },
        ];
        check_new(&[&crt, &key], false).unwrap();
        write_new(&files, false).unwrap();
        assert_eq!(fs::read(&crt).unwrap(), b"cert");
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(leftovers(dir.path()).is_empty());

        // Without force, nothing is replaced, and the refusal names the file.
        let err = check_new(&[&crt, &key], false).unwrap_err().to_string();
        assert!(err.contains("ca.crt: already exists"), "{err}");
        let err = write_new(&files[1..], false).unwrap_err().to_string();
        assert!(err.contains("ca.key: already exists"), "{err}");
        assert!(leftovers(dir.path()).is_empty());

        // With force, both are replaced.
        let again = [NewFile {
            path: &key,
            contents: b"new key",
            mode: KEY_MODE,
        }];
        write_new(&again, true).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"new key");
    }

    #[test]
    fn all_or_nothing_when_one_output_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("ca.crt");
        let key = dir.path().join("missing-dir/ca.key");
        let files = [
            NewFile {
                path: &crt,
                contents: b"cert",
                mode: CERT_MODE,
            },
            NewFile {
                path: &key,
                contents: b"key",
                mode: KEY_MODE,
            },
        ];
        let err = write_new(&files, false).unwrap_err().to_string();
        assert!(
            err.contains("missing-dir/ca.key: cannot write: no directory"),
            "{err}"
        );
        assert!(!crt.exists());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn the_same_path_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("x.pem");
        let b = dir.path().join("./x.pem");
        let err = check_new(&[&a, &b], true).unwrap_err().to_string();
        assert!(err.contains("two outputs"), "{err}");
    }

    #[test]
    fn inputs_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.crt");
        let err = read_input(&missing).unwrap_err().to_string();
        assert!(err.ends_with("nope.crt: no such file"), "{err}");
        let err = read_input(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let big = dir.path().join("big");
        fs::write(&big, vec![b'a'; (MAX_INPUT_BYTES + 1) as usize]).unwrap();
        let err = read_input(&big).unwrap_err().to_string();
        assert!(err.contains("big: larger than 1024 KiB"), "{err}");
    }
}
