//! `weft inject`: add the Weft proxy to Kubernetes workloads, as `linkerd inject` does.
//!
//! Reads Kubernetes YAML or JSON — files, directories of `.yaml`/`.yml`/`.json` files, or `-` for
//! stdin; multi-document streams, `kind: List` — and writes it back to stdout with every pod
//! template changed:
//!
//! - by default, annotated `linkerd.io/inject: enabled`, so that the injector webhook adds the
//!   proxy when the pods are created (Namespaces are annotated the same way);
//! - with `--manual`, given the sidecar itself ([`sidecar`]): the `weft-proxy` container, the
//!   `weft-init` init container that installs the iptables rules, and their volumes.
//!
//! Everything else passes through with its values and key order (comments are not kept). What was
//! done to each object is reported on stderr, one line per object ([`report`]).
//!
//! All input is read and parsed before anything is written: malformed input exits 1 with one line
//! naming the file, the document and the line, and nothing on stdout — never half a stream.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_yaml_ng::Value;

mod input;
mod report;
mod sidecar;
mod value;
mod workload;

#[cfg(test)]
mod tests;

use report::Report;
use sidecar::SidecarConfig;

/// The proxy image used unless `--proxy-image` says otherwise: the one released with this CLI.
pub const DEFAULT_PROXY_IMAGE: &str =
    concat!("ghcr.io/weft-mesh/weft-proxy:", env!("CARGO_PKG_VERSION"));

/// `weft inject [FLAGS] FILE...`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
                  kubectl get deploy -n emojivoto -o yaml | weft inject - | kubectl apply -f -\n  \
                  weft inject k8s/ > k8s-injected.yaml\n  \
                  weft inject --manual --skip-outbound-ports 5432 app.yaml")]
pub struct InjectArgs {
    /// Files or directories (every .yaml, .yml and .json file in them, recursively, sorted by
    /// name) of Kubernetes objects; `-` reads stdin.
    #[arg(value_name = "FILE", required = true)]
    pub paths: Vec<PathBuf>,

    /// Add the proxy sidecar and its init container to each pod template, instead of annotating
    /// it for the injector webhook.
    #[arg(long)]
    pub manual: bool,

    /// The proxy image (--manual); its entrypoint must be `weft-proxy`, which the init container
    /// runs as `weft-proxy init`.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_PROXY_IMAGE, value_parser = parse_image)]
    pub proxy_image: String,

    /// Namespace of the Weft control plane (--manual): part of the workload identities and of the
    /// identity and destination service addresses.
    #[arg(long, value_name = "NS", default_value = "weft", value_parser = parse_dns_label)]
    pub control_plane_namespace: String,

    /// The mesh's trust domain (--manual): the last part of the workload identities.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local", value_parser = parse_dns_name)]
    pub trust_domain: String,

    /// The cluster's DNS domain (--manual), used in the control-plane service addresses
    /// (`weft-identity.weft.svc.cluster.local:8080`).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local", value_parser = parse_dns_name)]
    pub cluster_domain: String,

    /// Inbound ports the proxy leaves alone (--manual), comma-separated, ranges as LOW-HIGH;
    /// added to the proxy's own tap and admin ports (4190,4191), which are always skipped.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub skip_inbound_ports: Option<String>,

    /// Outbound ports the proxy leaves alone (--manual), comma-separated, ranges as LOW-HIGH (e.g.
    /// a database whose protocol talks first).
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub skip_outbound_ports: Option<String>,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

/// `-o yaml|json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// YAML documents separated by `---`.
    #[default]
    Yaml,
    /// One pretty-printed JSON object per document, one after another (what `kubectl apply -f -`
    /// reads).
    Json,
}

/// What to do with each pod template.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Add the sidecar (`--manual`) rather than the annotation.
    pub manual: bool,
    /// What the sidecar looks like.
    pub sidecar: SidecarConfig,
}

impl Settings {
    fn from_args(args: &InjectArgs) -> Self {
        Self {
            manual: args.manual,
            sidecar: SidecarConfig {
                image: args.proxy_image.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                control_plane_namespace: args.control_plane_namespace.clone(),
                trust_domain: args.trust_domain.clone(),
                cluster_domain: args.cluster_domain.clone(),
                skip_inbound_ports: args.skip_inbound_ports.clone(),
                skip_outbound_ports: args.skip_outbound_ports.clone(),
            },
        }
    }
}

/// Runs `weft inject`.
pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args(&args);
    let mut inputs = input::read_all(&args.paths)?;
    let mut report = Report::default();
    for input in &mut inputs {
        inject_input(input, &settings, &mut report);
    }
    let out = render(&inputs, args.output)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);
    let mut stderr = std::io::stderr().lock();
    // The report is advice; stdout (the manifests) is what matters, so a closed stderr is no error.
    let _ = stderr.write_all(report.render().as_bytes());
    Ok(())
}

/// Injects every document of one input.
pub fn inject_input(input: &mut input::Input, settings: &Settings, report: &mut Report) {
    for (i, doc) in input.docs.iter_mut().enumerate() {
        value::normalize_octal_modes(doc);
        let at = format!("{}: document {}", input.name, i + 1);
        workload::process_value(doc, &at, settings, report, 0);
    }
}

/// Writes every document of every input in the output format. Empty documents are dropped.
pub fn render(inputs: &[input::Input], format: Format) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut first = true;
    for input in inputs {
        for (i, doc) in input.docs.iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let at = || format!("{}: document {}", input.name, i + 1);
            match format {
                Format::Yaml => {
                    if !first {
                        out.push_str("---\n");
                    }
                    let text = serde_yaml_ng::to_string(doc)
                        .with_context(|| format!("{}: cannot be written as YAML", at()))?;
                    out.push_str(&text);
                }
                Format::Json => {
                    let text = to_json(doc)
                        .with_context(|| format!("{}: cannot be written as JSON", at()))?;
                    out.push_str(&text);
                    out.push('\n');
                }
            }
            first = false;
        }
    }
    Ok(out)
}

fn to_json(doc: &Value) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(doc)
}

/// `--proxy-image`: a non-empty image reference without spaces.
fn parse_image(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err("expected an image reference like ghcr.io/weft-mesh/weft-proxy:1.0".into());
    }
    Ok(s.to_owned())
}

/// A DNS label (RFC 1123), as Kubernetes namespaces are.
fn parse_dns_label(s: &str) -> Result<String, String> {
    if is_dns_label(s) {
        Ok(s.to_owned())
    } else {
        Err("expected a DNS label: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// A DNS name: dot-separated DNS labels.
fn parse_dns_name(s: &str) -> Result<String, String> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(s.to_owned())
    } else {
        Err("expected a DNS name like cluster.local".into())
    }
}

fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// `--skip-*-ports`: `25,587,8000-8010` (spaces allowed); returned without spaces, as
/// `weft-proxy init` reads it.
fn parse_ports(s: &str) -> Result<String, String> {
    let port = |p: &str| match p.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{:?} is not a port (1-65535)", p.trim())),
        Ok(n) => Ok(n),
    };
    let mut parts = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                if lo > hi {
                    return Err(format!("range {part} is backwards"));
                }
                parts.push(format!("{lo}-{hi}"));
            }
            None => parts.push(port(part)?.to_string()),
        }
    }
    if parts.is_empty() {
        return Err("expected ports like 25,587,8000-8010".into());
    }
    Ok(parts.join(","))
}
