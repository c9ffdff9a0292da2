//! `weft apply`, `weft get` and `weft delete`: the local cluster's resources, as kubectl
//! handles a Kubernetes cluster's.
//!
//! Everything applied is first validated by the model — the same parser and errors the control
//! plane uses — and nothing is written unless every object is valid. Each object is stored as
//! its own file, `manifests/<namespace>.<kind>.<name>.yaml`, written atomically; the control
//! plane watches the directory.

use std::collections::BTreeMap;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde_yaml_ng::Value;
use weft_model::Kind;
use weft_store::cluster::ClusterDir;

use crate::context::Global;

/// `weft apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of `.yaml`/`.yml`/`.json` files, or `-` for standard input.
    /// Repeat for several.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,

    /// Only validate; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `weft get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind: service (svc), externalworkload (ew), serviceprofile (sp), httproute,
    /// trafficsplit (ts), link; plural forms too.
    pub kind: String,
    /// One object's name (default: all of the namespace).
    pub name: Option<String>,
    /// The namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output: table, yaml, json, name, or jsonpath=TEMPLATE (`{.spec.backends}`).
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = parse_get_output)]
    pub output: GetOutput,
}

/// `weft delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind (as for `weft get`).
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

/// `weft get -o`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutput {
    /// Columns.
    Table,
    /// The stored YAML.
    Yaml,
    /// JSON.
    Json,
    /// `kind/name` lines.
    Name,
    /// A JSONPath-like template: `{.spec.backends}`, `{.metadata.name}`.
    JsonPath(String),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlainOutput {
    Table,
    Yaml,
    Json,
    Name,
}

fn parse_get_output(s: &str) -> Result<GetOutput, String> {
    if let Some(t) = s.strip_prefix("jsonpath=") {
        return Ok(GetOutput::JsonPath(t.trim_matches('\'').to_owned()));
    }
    match PlainOutput::from_str(s, true) {
        Ok(PlainOutput::Table) => Ok(GetOutput::Table),
        Ok(PlainOutput::Yaml) => Ok(GetOutput::Yaml),
        Ok(PlainOutput::Json) => Ok(GetOutput::Json),
        Ok(PlainOutput::Name) => Ok(GetOutput::Name),
        Err(_) => Err(format!(
            "{s:?}: expected table, yaml, json, name or jsonpath=TEMPLATE"
        )),
    }
}

/// A kind name as users type it (`svc`, `serviceprofiles`, `TrafficSplit`).
pub fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    let k = s.to_ascii_lowercase();
    let k = k.split('.').next().unwrap_or_default();
    let kind = match k {
        "svc" | "service" | "services" => Kind::Service,
        "ew" | "externalworkload" | "externalworkloads" => Kind::ExternalWorkload,
        "sp" | "serviceprofile" | "serviceprofiles" => Kind::ServiceProfile,
        "httproute" | "httproutes" => Kind::HttpRoute,
        "ts" | "trafficsplit" | "trafficsplits" => Kind::TrafficSplit,
        "link" | "links" => Kind::Link,
        _ => bail!(
            "unknown kind {s:?}: expected one of service (svc), externalworkload (ew), serviceprofile (sp), httproute, trafficsplit (ts), link"
        ),
    };
    Ok(kind)
}

/// The resource name kubectl prints (`trafficsplit.split.smi-spec.io`).
fn qualified(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "service",
        Kind::ExternalWorkload => "externalworkload.workload.linkerd.io",
        Kind::ServiceProfile => "serviceprofile.linkerd.io",
        Kind::HttpRoute => "httproute.gateway.networking.k8s.io",
        Kind::TrafficSplit => "trafficsplit.split.smi-spec.io",
        Kind::Link => "link.multicluster.linkerd.io",
    }
}

/// One object as stored: its key and its YAML value.
struct Doc {
    kind: Kind,
    namespace: String,
    name: String,
    value: Value,
}

fn file_name(kind: Kind, namespace: &str, name: &str) -> String {
    format!(
        "{namespace}.{}.{name}.yaml",
        kind.name().to_ascii_lowercase()
    )
}

/// Reads `paths` (files, directories, `-`) as (display name, bytes).
fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("-: cannot read standard input")?;
            inputs.push(("-".to_owned(), buf));
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            files.sort();
            for f in files {
                let bytes = std::fs::read(&f).with_context(|| format!("{}", f.display()))?;
                inputs.push((f.display().to_string(), bytes));
            }
        } else {
            let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            inputs.push((path.display().to_string(), bytes));
        }
    }
    Ok(inputs)
}

/// Splits a validated input into its objects' YAML values (Lists flattened).
fn documents(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Doc>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{name}: not UTF-8"))?;
    let mut values = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(de)
            .with_context(|| format!("{name}: not YAML"))?;
        flatten(v, &mut values);
    }
    values
        .into_iter()
        .map(|value| {
            let get = |path: &[&str]| {
                let mut v = &value;
                for p in path {
                    v = v.get(*p)?;
                }
                v.as_str().map(str::to_owned)
            };
            let kind_name = get(&["kind"]).unwrap_or_default();
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == kind_name)
                .with_context(|| format!("{name}: unsupported kind {kind_name:?}"))?;
            let namespace = get(&["metadata", "namespace"]).unwrap_or_else(|| "default".into());
            let obj_name = get(&["metadata", "name"])
                .with_context(|| format!("{name}: an object has no metadata.name"))?;
            Ok(Doc {
                kind,
                namespace,
                name: obj_name,
                value,
            })
        })
        .collect()
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    if v.is_null() {
        return;
    }
    let is_list = v
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"));
    if is_list {
        if let Some(Value::Sequence(items)) = v.get("items") {
            for item in items.clone() {
                flatten(item, out);
            }
            return;
        }
    }
    out.push(v);
}

/// An object's key: kind, namespace, name.
type Key = (Kind, String, String);

/// What the cluster stores, read once per command: the valid objects, where each lives, and how
/// many objects each file holds.
struct Stored {
    objects: Vec<weft_model::Object>,
    files: BTreeMap<Key, PathBuf>,
    per_file: BTreeMap<PathBuf, usize>,
}

impl Stored {
    fn read(manifests: &Path) -> anyhow::Result<Self> {
        let objects = if manifests.exists() {
            weft_store::manifests::read_all(&[manifests])?.objects
        } else {
            Vec::new()
        };
        let mut files = BTreeMap::new();
        let mut per_file = BTreeMap::new();
        for o in &objects {
            let path = PathBuf::from(&o.source.file);
            *per_file.entry(path.clone()).or_insert(0) += 1;
            let key = (
                o.kind(),
                o.metadata.namespace().to_owned(),
                o.name().to_owned(),
            );
            files.insert(key, path);
        }
        Ok(Self {
            objects,
            files,
            per_file,
        })
    }

    /// Whether `path` holds other objects besides one (a hand-written multi-object file).
    fn is_shared(&self, path: &Path) -> bool {
        self.per_file.get(path).is_some_and(|n| *n > 1)
    }
}

/// Runs `weft apply`.
pub fn apply(args: &ApplyArgs, global: &Global) -> anyhow::Result<()> {
    let cluster = global.cluster()?;
    let inputs = read_inputs(&args.files)?;
    apply_inputs(
        &cluster.dir,
        &inputs,
        args.dry_run,
        &mut std::io::stdout().lock(),
    )
}

/// Applies `text` (a YAML stream named `name` in messages) to the cluster, as `weft apply`.
pub fn apply_text(
    dir: &ClusterDir,
    name: &str,
    text: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    apply_inputs(
        dir,
        &[(name.to_owned(), text.as_bytes().to_vec())],
        false,
        out,
    )
}

/// Validates every input with the model; if all are valid, writes each object to its file.
fn apply_inputs(
    dir: &ClusterDir,
    inputs: &[(String, Vec<u8>)],
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let manifests = dir.manifests_dir();
    let stored = Stored::read(&manifests)?;
    let mut problems = Vec::new();
    let mut docs = Vec::new();
    // The inputs' objects first: on a duplicate key the compiler keeps the first, and the
    // applied object is the one that will be stored.
    let mut all: Vec<weft_model::Object> = Vec::new();
    for (name, bytes) in inputs {
        let (objects, errors) = weft_model::parse_bytes(name, bytes);
        problems.extend(errors.iter().map(ToString::to_string));
        if errors.is_empty() {
            let parsed = documents(name, bytes)?;
            if parsed.len() != objects.len() {
                bail!(
                    "{name}: found {} objects but {} documents; split the file",
                    objects.len(),
                    parsed.len()
                );
            }
            docs.extend(parsed);
            all.extend(objects);
        }
    }
    if problems.is_empty() {
        // Settings only the compiler judges (annotation values, references): compile what is
        // stored together with what is applied, and report what concerns the inputs.
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        all.extend(stored.objects.iter().cloned());
        let compiled = weft_model::compile(&all);
        let ours = |e: &&weft_model::ModelError| names.contains(&e.location().file.as_str());
        problems.extend(compiled.errors.iter().filter(ours).map(ToString::to_string));
        let mut err = std::io::stderr().lock();
        for w in compiled.warnings.iter().filter(ours) {
            writeln!(err, "‼ {w}")?;
        }
    }
    if !problems.is_empty() {
        let mut err = std::io::stderr().lock();
        for p in &problems {
            writeln!(err, "error: {p}")?;
        }
        bail!("{} problem(s) found; nothing was applied", problems.len());
    }
    for doc in &docs {
        let key = (doc.kind, doc.namespace.clone(), doc.name.clone());
        let target = match stored.files.get(&key) {
            Some(path) => path.clone(),
            None => manifests.join(file_name(doc.kind, &doc.namespace, &doc.name)),
        };
        if stored.is_shared(&target) {
            bail!(
                "{}: holds {} {}/{} among other objects; edit that file, or move the object to its own file",
                target.display(),
                doc.kind.name(),
                doc.namespace,
                doc.name
            );
        }
        let text = serde_yaml_ng::to_string(&doc.value)?;
        let verb = match std::fs::read(&target) {
            Ok(old) if old == text.as_bytes() => "unchanged",
            Ok(_) => "configured",
            Err(_) => "created",
        };
        if !dry_run {
            std::fs::create_dir_all(&manifests)
                .with_context(|| format!("{}", manifests.display()))?;
            weft_store::write_atomic(&target, text.as_bytes())
                .with_context(|| format!("{}: cannot write", target.display()))?;
        }
        let suffix = if dry_run { " (dry run)" } else { "" };
        writeln!(out, "{}/{} {verb}{suffix}", qualified(doc.kind), doc.name)?;
    }
    Ok(())
}

/// The stored documents of `kind` (optionally one namespace / name).
fn find(
    manifests: &Path,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<Vec<(Doc, PathBuf)>> {
    let mut found = Vec::new();
    for ((k, ns, n), path) in Stored::read(manifests)?.files {
        if k != kind || namespace.is_some_and(|x| x != ns) || name.is_some_and(|x| x != n) {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let docs = documents(&path.display().to_string(), &bytes)?;
        if let Some(doc) = docs
            .into_iter()
            .find(|d| d.kind == k && d.namespace == ns && d.name == n)
        {
            found.push((doc, path));
        }
    }
    Ok(found)
}

/// Runs `weft get`.
pub fn get(args: &GetArgs, global: &Global) -> anyhow::Result<()> {
    let cluster = global.cluster()?;
    let kind = parse_kind(&args.kind)?;
    let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
    let found = find(&cluster.dir.manifests_dir(), kind, ns, args.name.as_deref())?;
    if let Some(name) = &args.name {
        if found.is_empty() {
            bail!(
                "{} {name:?} not found in namespace {:?}",
                qualified(kind),
                args.namespace
            );
        }
    }
    let mut out = std::io::stdout().lock();
    match &args.output {
        GetOutput::Yaml => {
            for (i, (doc, _)) in found.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", serde_yaml_ng::to_string(&doc.value)?)?;
            }
        }
        GetOutput::Json => {
            let values: Vec<serde_json::Value> = found
                .iter()
                .map(|(d, _)| serde_json::to_value(&d.value))
                .collect::<Result<_, _>>()?;
            let v = if args.name.is_some() && values.len() == 1 {
                values.into_iter().next().unwrap_or_default()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values})
            };
            crate::output::write_json(&mut out, &v)?;
        }
        GetOutput::Name => {
            for (d, _) in &found {
                writeln!(out, "{}/{}", qualified(kind), d.name)?;
            }
        }
        GetOutput::JsonPath(t) => {
            let mut parts = Vec::new();
            for (d, _) in &found {
                let v = serde_json::to_value(&d.value)?;
                parts.push(jsonpath(&v, t)?);
            }
            write!(out, "{}", parts.join(" "))?;
        }
        GetOutput::Table => table(&mut out, kind, &found, args.all_namespaces)?,
    }
    if found.is_empty() && args.output == GetOutput::Table {
        let where_ = if args.all_namespaces {
            "any namespace".to_owned()
        } else {
            format!("namespace {:?}", args.namespace)
        };
        eprintln!("No resources found in {where_}.");
    }
    Ok(())
}

fn table(
    out: &mut dyn Write,
    kind: Kind,
    found: &[(Doc, PathBuf)],
    all: bool,
) -> anyhow::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<&str> = Vec::new();
    if all {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    if kind == Kind::Service {
        header.extend(["TYPE", "CLUSTER-IP", "PORT(S)"]);
    }
    header.push("AGE");
    rows.push(header.iter().map(|s| (*s).to_owned()).collect());
    for (d, path) in found {
        let mut row = Vec::new();
        if all {
            row.push(d.namespace.clone());
        }
        row.push(d.name.clone());
        if kind == Kind::Service {
            let spec = d.value.get("spec");
            let ty = spec
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ip = spec
                .and_then(|s| s.get("clusterIP"))
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let ports = spec
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_sequence)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p.get("port").map(scalar).unwrap_or_default();
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            format!("{port}/{proto}")
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            row.extend([ty.to_owned(), ip.to_owned(), ports]);
        }
        row.push(age(path));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn age(path: &Path) -> String {
    let Some(elapsed) = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
    else {
        return "<unknown>".to_owned();
    };
    let s = elapsed.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Evaluates a simple JSONPath template: `{.a.b[0].c}` pieces (with literal text around them).
fn jsonpath(v: &serde_json::Value, template: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            bail!("jsonpath {template:?}: unclosed '{{'");
        };
        let expr = &rest[start + 1..start + end];
        let mut cur = Some(v);
        for seg in expr
            .trim_start_matches('.')
            .split('.')
            .filter(|s| !s.is_empty())
        {
            let (field, index) = match seg.split_once('[') {
                Some((f, i)) => (f, Some(i.trim_end_matches(']'))),
                None => (seg, None),
            };
            if !field.is_empty() {
                cur = cur.and_then(|c| c.get(field));
            }
            if let Some(i) = index {
                let i: usize = i
                    .parse()
                    .with_context(|| format!("jsonpath {template:?}: bad index [{i}]"))?;
                cur = cur.and_then(|c| c.get(i));
            }
        }
        match cur {
            Some(serde_json::Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Runs `weft delete`.
pub fn delete(args: &DeleteArgs, global: &Global) -> anyhow::Result<()> {
    let cluster = global.cluster()?;
    let kind = parse_kind(&args.kind)?;
    let stored = Stored::read(&cluster.dir.manifests_dir())?;
    let key = (kind, args.namespace.clone(), args.name.clone());
    let Some(path) = stored.files.get(&key) else {
        bail!(
            "{} {:?} not found in namespace {:?}",
            qualified(kind),
            args.name,
            args.namespace
        );
    };
    if stored.is_shared(path) {
        bail!(
            "{}: holds other objects too; edit that file to delete {} {}/{}",
            path.display(),
            kind.name(),
            args.namespace,
            args.name
        );
    }
    std::fs::remove_file(path).with_context(|| format!("{}: cannot remove", path.display()))?;
    println!("{} {:?} deleted", qualified(kind), args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_picks_fields() {
        let v = serde_json::json!({"spec": {"backends": [{"service": "a", "weight": 1}]}, "metadata": {"name": "x"}});
        assert_eq!(
            jsonpath(&v, "{.spec.backends}").ok().as_deref(),
            Some(r#"[{"service":"a","weight":1}]"#)
        );
        assert_eq!(
            jsonpath(&v, "{.spec.backends[0].service}").ok().as_deref(),
            Some("a")
        );
        assert_eq!(
            jsonpath(&v, "name={.metadata.name}").ok().as_deref(),
            Some("name=x")
        );
        assert!(jsonpath(&v, "{.spec").is_err());
        assert!(jsonpath(&v, "{.spec.backends[x]}").is_err());
    }

    #[test]
    fn kinds_have_aliases() {
        assert_eq!(parse_kind("svc").ok(), Some(Kind::Service));
        assert_eq!(parse_kind("TrafficSplit").ok(), Some(Kind::TrafficSplit));
        assert_eq!(
            parse_kind("serviceprofiles.linkerd.io").ok(),
            Some(Kind::ServiceProfile)
        );
        assert!(parse_kind("deployment").is_err());
    }
}
