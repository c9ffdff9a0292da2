//! Problems found in manifests, each naming where it is (file, document, line), which object
//! (kind, namespace/name) and which field, so an operator can go straight to the line to fix.
//!
//! One type, [`ModelError`], serves parsing ([`crate::parse_documents`]) and compilation
//! ([`crate::compile`]); its [`ErrorClass`] is a closed set that callers can map to exit codes,
//! `weft check` categories or metric labels without looking at the text.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an object came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// The file name (or any label) the caller gave [`crate::parse_documents`].
    pub file: String,
    /// The document's position in the YAML stream, counting from 1.
    pub document: usize,
    /// The line the document's content starts on, counting from 1.
    pub line: Option<usize>,
}

impl Source {
    /// A source for objects built in code or read from somewhere without documents.
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            document: 1,
            line: None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.document > 1 {
            write!(f, " (document {})", self.document)?;
        }
        Ok(())
    }
}

/// The class of a [`ModelError`]: a closed set, stable for tools and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The text is not YAML, or a document is not an object. Nothing in that document is used.
    Syntax,
    /// A kind or apiVersion Weft does not read. The document is skipped; others are unaffected.
    UnsupportedKind,
    /// A field has a wrong type or value. The object is rejected; others are unaffected.
    Invalid,
    /// An annotation's value could not be parsed. The object is kept; only that setting is
    /// ignored (see the message for what happens instead).
    Annotation,
    /// Objects that conflict or refer to something that does not exist. Reported by
    /// [`crate::compile`]; the message says which object wins or what is ignored.
    Reference,
    /// A valid setting Weft does not act on (yet), such as HTTPRoute filters. Reported by
    /// [`crate::compile`]; the rest of the object is used.
    Unsupported,
}

/// One problem in the manifests, with everything needed to find it.
///
/// Displayed as `file:line (document N): Kind namespace/name: field.path: message`, e.g.
/// `web-split.yaml:1: TrafficSplit emojivoto/web-split: spec.backends[1].weight: "ten" is not a
/// weight: expected a whole number like 90 or a quantity like 500m`. Parts that are unknown are
/// left out (`(document N)` is shown only after the first document).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelError {
    /// What kind of problem this is.
    pub class: ErrorClass,
    /// The file (or label) the object came from.
    pub file: String,
    /// The document's position in the stream, counting from 1.
    pub document: usize,
    /// The line of the problem if known, else the line the document starts on.
    pub line: Option<usize>,
    /// The object's kind (`TrafficSplit`), when it could be read.
    pub kind: Option<String>,
    /// The object's namespace (`default` when the manifest names none).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// The path of the offending field, e.g. `spec.backends[1].weight` or
    /// `metadata.annotations[retry.linkerd.io/http]`.
    pub field: Option<String>,
    /// What is wrong, and for problems that do not reject the object, what happens instead.
    pub message: String,
}

impl ModelError {
    /// A problem in the document at `source`, not yet tied to an object or field.
    pub(crate) fn new(class: ErrorClass, source: &Source, message: impl Into<String>) -> Self {
        Self {
            class,
            file: source.file.clone(),
            document: source.document,
            line: source.line,
            kind: None,
            namespace: None,
            name: None,
            field: None,
            message: message.into(),
        }
    }

    /// Names the object the problem is in.
    pub(crate) fn object(mut self, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        if !kind.is_empty() {
            self.kind = Some(kind.to_string());
        }
        self.namespace = namespace.map(str::to_string);
        if !name.is_empty() {
            self.name = Some(name.to_string());
        }
        self
    }

    /// Names the field the problem is in.
    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() && field != "." {
            self.field = Some(field);
        }
        self
    }

    /// Sets the line, when a more precise one than the document's start is known.
    pub(crate) fn at_line(mut self, line: Option<usize>) -> Self {
        if line.is_some() {
            self.line = line;
        }
        self
    }

    /// Where the problem is, as `file:line (document N)`.
    pub fn location(&self) -> Source {
        Source {
            file: self.file.clone(),
            document: self.document,
            line: self.line,
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location())?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => match &self.namespace {
                Some(ns) => write!(f, "{kind} {ns}/{name}: ")?,
                None => write!(f, "{kind} {name}: ")?,
            },
            (Some(kind), None) => write!(f, "{kind}: ")?,
            (None, Some(name)) => match &self.namespace {
                Some(ns) => write!(f, "{ns}/{name}: ")?,
                None => write!(f, "{name}: ")?,
            },
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ModelError {}

/// Problems found while validating one object: field paths and messages, turned into
/// [`ModelError`]s by the parser once the object's source and name are known.
#[derive(Debug, Default)]
pub(crate) struct Issues {
    items: Vec<(String, String)>,
}

impl Issues {
    /// Records a problem at `field`.
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.items.push((field.into(), message.into()));
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The recorded problems, in the order found.
    pub(crate) fn into_items(self) -> Vec<(String, String)> {
        self.items
    }
}
