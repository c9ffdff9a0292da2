//! Reading multi-document YAML streams into [`Object`]s, reporting every problem with its file,
//! document, line, object and field, and never letting one bad document take down the others.
//!
//! The stream is first cut into documents at `---` / `...` markers (recording the line each
//! starts on), then each document is read on its own: first loosely, to learn its `kind` and
//! name, then into the typed spec through `serde_path_to_error`, which gives the field path of
//! a bad value while the YAML deserializer gives its line.

use crate::error::{ErrorClass, Issues, ModelError, Source};
use crate::httproute::HttpRouteSpec;
use crate::link::LinkSpec;
use crate::meta::ObjectMeta;
use crate::object::{Kind, Object, Resource};
use crate::profile::ServiceProfileSpec;
use crate::service::{is_dns_label, ExternalWorkloadSpec, ServiceSpec};
use crate::split::TrafficSplitSpec;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng as yaml;

/// Reads every document of a YAML stream (a `kind: List` counts as its items).
///
/// Returns the valid objects and the problems found, each naming `file_name`, the document
/// (counting from 1), the line, the object and the field. A document that cannot be read, an
/// unsupported kind or an invalid object is reported and skipped; the others are returned.
///
/// ```
/// let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n";
/// let (objects, errors) = weft_model::parse_documents("web.yaml", text);
/// assert_eq!(objects.len(), 1);
/// assert!(errors.is_empty());
/// ```
pub fn parse_documents(file_name: &str, text: &str) -> (Vec<Object>, Vec<ModelError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, chunk) in split_documents(text).iter().enumerate() {
        let source = Source {
            file: file_name.to_string(),
            document: index + 1,
            line: Some(chunk.content_line),
        };
        parse_chunk(chunk, &source, &mut objects, &mut errors);
    }
    (objects, errors)
}

/// Like [`parse_documents`], for bytes that should be UTF-8 (a file's content).
pub fn parse_bytes(file_name: &str, bytes: &[u8]) -> (Vec<Object>, Vec<ModelError>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_documents(file_name, text),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            let source = Source {
                file: file_name.to_string(),
                document: 1,
                line: Some(line),
            };
            let message = format!("the file is not UTF-8 text ({e})");
            (
                Vec::new(),
                vec![ModelError::new(ErrorClass::Syntax, &source, message)],
            )
        }
    }
}

/// One document of the stream.
#[derive(Debug)]
struct Chunk<'a> {
    /// The document's text, with its `---` marker and any leading comments.
    text: &'a str,
    /// The stream line of the chunk's first line (1-based).
    first_line: usize,
    /// The first line with content (what people think of as where the document starts).
    content_line: usize,
}

/// Cuts a stream into documents at `---` and `...` markers (a `---` at the start of a line is
/// always a marker in YAML, even inside a block scalar). Comments and directives before the
/// first marker belong to the first document.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut content_line = None;
    let mut marker = false;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_start {
            if content_line.is_some() || marker {
                chunks.push(Chunk {
                    text: &text[start..offset],
                    first_line,
                    content_line: content_line.unwrap_or(first_line),
                });
                start = offset;
                first_line = number;
                content_line = None;
            }
            marker = true;
            let rest = bare[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                content_line.get_or_insert(number);
            }
        } else if is_end {
            offset += line.len();
            if content_line.is_some() || marker {
                chunks.push(Chunk {
                    text: &text[start..offset],
                    first_line,
                    content_line: content_line.unwrap_or(first_line),
                });
            }
            start = offset;
            first_line = number + 1;
            content_line = None;
            marker = false;
            continue;
        } else {
            let trimmed = bare.trim_start();
            let directive = bare.starts_with('%') && content_line.is_none() && !marker;
            if !trimmed.is_empty() && !trimmed.starts_with('#') && !directive {
                content_line.get_or_insert(number);
            }
        }
        offset += line.len();
    }
    if content_line.is_some() || marker {
        chunks.push(Chunk {
            text: &text[start..],
            first_line,
            content_line: content_line.unwrap_or(first_line),
        });
    }
    chunks
}

/// What is known of a document before it is read into a typed spec.
#[derive(Default)]
struct Header {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl Header {
    fn read(value: &yaml::Value) -> Self {
        let text = |v: Option<&yaml::Value>| match v {
            Some(yaml::Value::String(s)) => Some(s.clone()),
            Some(yaml::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let metadata = value.get("metadata");
        Header {
            api_version: text(value.get("apiVersion")).unwrap_or_default(),
            kind: text(value.get("kind")).unwrap_or_default(),
            name: text(metadata.and_then(|m| m.get("name"))).unwrap_or_default(),
            namespace: text(metadata.and_then(|m| m.get("namespace"))),
        }
    }

    fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => crate::meta::DEFAULT_NAMESPACE,
        }
    }
}

fn parse_chunk(
    chunk: &Chunk<'_>,
    source: &Source,
    objects: &mut Vec<Object>,
    errors: &mut Vec<ModelError>,
) {
    let value: yaml::Value = match yaml::from_str(chunk.text) {
        Ok(v) => v,
        Err(e) => {
            let failure = Failure::from_yaml(&e, "", Some(chunk));
            errors.push(
                ModelError::new(ErrorClass::Syntax, source, failure.message).at_line(failure.line),
            );
            return;
        }
    };
    match &value {
        yaml::Value::Null => return,
        yaml::Value::Mapping(_) => {}
        _ => {
            errors.push(ModelError::new(
                ErrorClass::Syntax,
                source,
                "this document is not an object: expected a mapping with apiVersion, kind and metadata",
            ));
            return;
        }
    }
    let header = Header::read(&value);
    if header.kind == "List" {
        let items = match value.get("items") {
            Some(yaml::Value::Sequence(items)) => items.clone(),
            None | Some(yaml::Value::Null) => Vec::new(),
            Some(_) => {
                errors.push(
                    ModelError::new(ErrorClass::Invalid, source, "items must be a list")
                        .object("List", None, "")
                        .field("items"),
                );
                return;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let header = Header::read(&item);
            let input = Input::Value(item, format!("items[{i}]"));
            parse_object(&input, &header, source, objects, errors);
        }
        return;
    }
    parse_object(&Input::Text(chunk), &header, source, objects, errors);
}

/// Where a typed object is read from: a whole document (with lines) or a List item.
enum Input<'a> {
    Text(&'a Chunk<'a>),
    Value(yaml::Value, String),
}

impl Input<'_> {
    /// The field path prefix of this input (`items[3].` for List items).
    fn prefix(&self, path: &str) -> String {
        match self {
            Input::Text(_) => path.to_string(),
            Input::Value(_, prefix) if path.is_empty() || path == "." => prefix.clone(),
            Input::Value(_, prefix) => format!("{prefix}.{path}"),
        }
    }
}

/// A problem found while reading one object.
struct Failure {
    field: String,
    message: String,
    line: Option<usize>,
}

impl Failure {
    /// Turns a YAML error into a message without the deserializer's own path prefix and
    /// `at line L column C` suffix (the line is kept separately, in stream coordinates).
    fn from_yaml(error: &yaml::Error, path: &str, chunk: Option<&Chunk<'_>>) -> Failure {
        let mut message = error.to_string();
        let mut line = None;
        if let Some(location) = error.location() {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
            line = chunk.map(|c| c.first_line + location.line().saturating_sub(1));
        }
        // The deserializer prefixes its own path, which can stop short of ours when a value
        // is checked by its parent (`spec.workloadIPs[0]: ...` for `spec.workloadIPs[0].ip`).
        if !path.is_empty() && path != "." {
            if let Some((head, rest)) = message.split_once(": ") {
                let within = path == head
                    || path
                        .strip_prefix(head)
                        .is_some_and(|tail| tail.starts_with('.') || tail.starts_with('['));
                if within {
                    message = rest.to_string();
                }
            }
        }
        if let Some(chunk) = chunk {
            message = shift_lines(&message, chunk.first_line - 1);
        }
        Failure {
            field: path.to_string(),
            message,
            line,
        }
    }
}

/// Adds `offset` to every `line N` in a message, so positions inside a document read as
/// positions in the file.
fn shift_lines(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The typed shape of a document: metadata and spec (other fields, like `status`, are ignored).
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Document<T> {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    spec: T,
}

fn decode<T: DeserializeOwned>(input: &Input<'_>) -> Result<(ObjectMeta, T), Failure> {
    let result: Result<Document<T>, serde_path_to_error::Error<yaml::Error>> = match input {
        Input::Text(chunk) => {
            serde_path_to_error::deserialize(yaml::Deserializer::from_str(chunk.text))
        }
        Input::Value(value, _) => serde_path_to_error::deserialize(value.clone()),
    };
    match result {
        Ok(doc) => Ok((doc.metadata.unwrap_or_default(), doc.spec)),
        Err(e) => {
            let path = e.path().to_string();
            let chunk = match input {
                Input::Text(chunk) => Some(*chunk),
                Input::Value(..) => None,
            };
            let mut failure = Failure::from_yaml(e.inner(), &path, chunk);
            failure.field = input.prefix(if path == "." { "" } else { &path });
            Err(failure)
        }
    }
}

fn build<T: DeserializeOwned>(
    input: &Input<'_>,
    wrap: fn(T) -> Resource,
    validate: fn(&T, &mut Issues),
) -> Result<(ObjectMeta, Resource), Vec<Failure>> {
    let (meta, spec) = decode::<T>(input).map_err(|f| vec![f])?;
    let mut issues = Issues::default();
    validate(&spec, &mut issues);
    if issues.is_empty() {
        Ok((meta, wrap(spec)))
    } else {
        Err(issues
            .into_items()
            .into_iter()
            .map(|(field, message)| Failure {
                field: input.prefix(&field),
                message,
                line: None,
            })
            .collect())
    }
}

fn parse_object(
    input: &Input<'_>,
    header: &Header,
    source: &Source,
    objects: &mut Vec<Object>,
    errors: &mut Vec<ModelError>,
) {
    let namespace = header.namespace();
    let object_error = |class: ErrorClass, kind: &str, message: String| {
        ModelError::new(class, source, message).object(kind, Some(namespace), &header.name)
    };
    if header.kind.is_empty() || header.api_version.is_empty() {
        let missing = if header.kind.is_empty() {
            "kind"
        } else {
            "apiVersion"
        };
        errors.push(
            object_error(
                ErrorClass::Invalid,
                &header.kind,
                "missing: every object needs an apiVersion and a kind".to_string(),
            )
            .field(input.prefix(missing)),
        );
        return;
    }
    let kind = match Kind::resolve(&header.api_version, &header.kind) {
        Ok(kind) => kind,
        Err(message) => {
            errors.push(object_error(
                ErrorClass::UnsupportedKind,
                &header.kind,
                message,
            ));
            return;
        }
    };
    let built = match kind {
        Kind::Service => build(input, Resource::Service, ServiceSpec::validate),
        Kind::ExternalWorkload => build(
            input,
            Resource::ExternalWorkload,
            ExternalWorkloadSpec::validate,
        ),
        Kind::ServiceProfile => build(
            input,
            Resource::ServiceProfile,
            ServiceProfileSpec::validate,
        ),
        Kind::HttpRoute => build(input, Resource::HttpRoute, HttpRouteSpec::validate),
        Kind::TrafficSplit => build(input, Resource::TrafficSplit, TrafficSplitSpec::validate),
        Kind::Link => build(
            input,
            |spec| Resource::Link(Box::new(spec)),
            LinkSpec::validate,
        ),
    };
    let report = |failures: Vec<Failure>, errors: &mut Vec<ModelError>| {
        for f in failures {
            errors.push(
                object_error(ErrorClass::Invalid, kind.name(), f.message)
                    .field(f.field)
                    .at_line(f.line),
            );
        }
    };
    match built {
        Ok((metadata, resource)) => {
            let failures = check_metadata(kind, &metadata, input);
            if !failures.is_empty() {
                report(failures, errors);
                return;
            }
            objects.push(Object {
                source: source.clone(),
                api_version: header.api_version.clone(),
                metadata,
                resource,
            });
        }
        Err(failures) => report(failures, errors),
    }
}

fn check_metadata(kind: Kind, meta: &ObjectMeta, input: &Input<'_>) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |field: &str, message: String| {
        failures.push(Failure {
            field: input.prefix(field),
            message,
            line: None,
        })
    };
    let name = &meta.name;
    if name.is_empty() {
        fail("metadata.name", "every object needs a name".to_string());
    } else if kind == Kind::Service && !is_dns_label(name) {
        fail(
            "metadata.name",
            format!(
                "{name:?} is not a Service name: lowercase letters, digits and '-', at most 63"
            ),
        );
    } else if !is_dns_subdomain(name) {
        fail(
            "metadata.name",
            format!("{name:?} is not a name: lowercase letters, digits, '-' and '.', at most 253"),
        );
    }
    if let Some(ns) = &meta.namespace_field {
        if !ns.is_empty() && !is_dns_label(ns) {
            fail(
                "metadata.namespace",
                format!("{ns:?} is not a namespace: lowercase letters, digits and '-', at most 63"),
            );
        }
    }
    failures
}

/// Whether `name` is a DNS subdomain (RFC 1123), as most object names must be.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_cut_at_markers_with_their_lines() {
        let text = "# leading comment\n---\na: 1\n---\n\n# c\nb: 2\n...\n---\n---\nc: 3\n";
        let chunks = split_documents(text);
        let summary: Vec<_> = chunks
            .iter()
            .map(|c| (c.first_line, c.content_line, c.text))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, 3, "# leading comment\n---\na: 1\n"),
                (4, 7, "---\n\n# c\nb: 2\n...\n"),
                (9, 9, "---\n"),
                (10, 11, "---\nc: 3\n"),
            ]
        );
    }

    #[test]
    fn a_stream_without_markers_is_one_document() {
        let chunks = split_documents("a: 1\nb: 2");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].content_line, 1);
        assert!(split_documents("").is_empty());
        assert!(split_documents("# only a comment\n").is_empty());
    }

    #[test]
    fn markers_with_content_and_block_scalars() {
        let chunks = split_documents("--- {a: 1}\n--- |\n  text\n---not-a-marker: 1\n");
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].content_line, 1);
        assert_eq!(chunks[1].text, "--- |\n  text\n---not-a-marker: 1\n");
    }

    #[test]
    fn line_numbers_in_messages_are_shifted() {
        assert_eq!(
            shift_lines(
                "did not find key at line 2 column 3, while parsing at line 1 column 1",
                10
            ),
            "did not find key at line 12 column 3, while parsing at line 11 column 1"
        );
        assert_eq!(shift_lines("no lines here", 4), "no lines here");
        assert_eq!(shift_lines("line x", 4), "line x");
    }
}
