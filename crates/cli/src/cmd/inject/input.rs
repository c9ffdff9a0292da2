//! Reading the inputs of `weft inject`: files, directories and stdin, parsed into documents.
//!
//! Errors are one line naming the input (`-` for stdin), the document (1-based, counting every
//! `---`-separated document) and the line and column in the input:
//! `app.yaml: document 2, line 14, column 3: did not find expected key`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Largest input read (manifests with big CRDs or ConfigMaps reach a few MiB; anything this size
/// is a mistake such as `/dev/zero`).
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// How deep directories are followed.
const MAX_DIR_DEPTH: usize = 16;

/// One input: its name as shown in messages and its documents, in order (an empty document is
/// kept as `null` so that document numbers stay right, and dropped on output).
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub docs: Vec<Value>,
}

/// Reads and parses every path; `-` is stdin. Directories are expanded to their `.yaml`, `.yml`
/// and `.json` files, recursively, sorted by path.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let bytes = read_limited(io::stdin().lock()).map_err(|e| anyhow!("-: {e}"))?;
            inputs.push(parse("-", &bytes)?);
            continue;
        }
        let meta =
            fs::metadata(path).map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            collect(path, 0, &mut files)?;
            if files.is_empty() {
                bail!(
                    "{}: no .yaml, .yml or .json files in this directory",
                    path.display()
                );
            }
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let name = file.display().to_string();
            let bytes = fs::File::open(&file)
                .and_then(read_limited)
                .map_err(|e| anyhow!("{name}: {}", describe(&e)))?;
            inputs.push(parse(&name, &bytes)?);
        }
    }
    Ok(inputs)
}

/// The manifest files under `dir`, sorted.
fn collect(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > MAX_DIR_DEPTH {
        bail!(
            "{}: directories nested more than {MAX_DIR_DEPTH} deep",
            dir.display()
        );
    }
    let named = |e: io::Error| anyhow!("{}: {}", dir.display(), describe(&e));
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(named)?
        .collect::<Result<_, _>>()
        .map_err(named)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // Symbolic links to directories are not followed (no loops); links to files are.
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            collect(&path, depth + 1, files)?;
        } else if is_manifest(&path) && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read_limited(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_INPUT_BYTES >> 20),
        ));
    }
    Ok(bytes)
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Parses one input: a YAML stream, or a stream of JSON objects (what `kubectl get -o json`
/// prints). Input that starts with `{` or `[` is tried as JSON first; if that fails it is read
/// as YAML, and the JSON error is reported if YAML fails too.
pub fn parse(name: &str, bytes: &[u8]) -> anyhow::Result<Input> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        anyhow!("{name}: line {line}, column {column}: not UTF-8 text (a binary file?)")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // libyaml reports these with a byte offset and no line; say where they are.
    if let Some((offset, c)) = text.char_indices().find(|&(_, c)| !allowed_in_yaml(c)) {
        let (line, column) = line_column(text.as_bytes(), offset);
        bail!(
            "{name}: line {line}, column {column}: control character U+{:04X} is not allowed in YAML (a binary file?)",
            u32::from(c)
        );
    }
    let looks_like_json = text.trim_start().starts_with(['{', '[']);
    let json_error = if looks_like_json {
        match parse_json(name, text) {
            Ok(docs) => {
                return Ok(Input {
                    name: name.to_owned(),
                    docs,
                })
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    match parse_yaml(name, text) {
        Ok(docs) => Ok(Input {
            name: name.to_owned(),
            docs,
        }),
        Err(yaml_error) => Err(json_error.unwrap_or(yaml_error)),
    }
}

fn parse_yaml(name: &str, text: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(document).map_err(|e| {
            let message = e.to_string();
            match e.location() {
                Some(at) => located(name, i + 1, at.line(), at.column(), &message),
                None => anyhow!("{name}: document {}: {message}", i + 1),
            }
        })?;
        docs.push(doc);
    }
    Ok(docs)
}

fn parse_json(name: &str, text: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match doc {
            Ok(doc) => docs.push(doc),
            Err(e) => {
                return Err(located(
                    name,
                    docs.len() + 1,
                    e.line(),
                    e.column(),
                    &e.to_string(),
                ))
            }
        }
    }
    Ok(docs)
}

/// `name: document N, line L, column C: message`, without the parser's own ` at line L column C`.
fn located(name: &str, doc: usize, line: usize, column: usize, message: &str) -> anyhow::Error {
    let message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    anyhow!("{name}: document {doc}, line {line}, column {column}: {message}")
}

/// The characters YAML allows (YAML 1.2, 5.1 "Character Set").
fn allowed_in_yaml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || u32::from(c) >= 0x10000
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, column)
}
