//! `weft identity inspect FILE`: what each certificate in a file says, as a block of text per
//! certificate or as JSON.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;
use weft_pki::{fmt_time, CertInfo};

use super::expiry::{expires_in_seconds, phrase, Window};
use super::inputs::{named, read_certs};
use crate::output::{write_json, Format, OutputArgs};

/// Arguments of `weft identity inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A certificate, chain or bundle (PEM), or one DER certificate.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `weft identity inspect`.
pub fn run(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let certs = read_certs(&args.file)?;
    let mut infos = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let info = CertInfo::from_der(der.as_ref())
            .map_err(|e| named(&args.file, format!("certificate {}: {e}", i + 1)))?;
        infos.push(info);
    }
    let now = SystemTime::now();
    let file = args.file.display().to_string();
    match args.output.output {
        Format::Table => write_table(out, &file, &infos, now),
        Format::Json => write_json(out, &Report::new(file, &infos, now)),
    }
}

/// One block per certificate.
fn write_table(
    out: &mut dyn Write,
    file: &str,
    infos: &[CertInfo],
    now: SystemTime,
) -> anyhow::Result<()> {
    for (i, info) in infos.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{file}: certificate {} of {}", i + 1, infos.len())?;
        for (label, value) in rows(info, now) {
            writeln!(out, "  {label:<14} {value}")?;
        }
    }
    Ok(())
}

/// The labelled lines of one certificate.
fn rows(info: &CertInfo, now: SystemTime) -> Vec<(&'static str, String)> {
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            items.join(", ")
        }
    };
    let issuer = if info.self_issued {
        format!("{} (self-signed)", info.issuer)
    } else {
        info.issuer.clone()
    };
    let ca = match (info.is_ca, info.path_len) {
        (false, _) => "no".to_owned(),
        (true, Some(n)) => format!("yes, pathlen:{n}"),
        (true, None) => "yes, no path length limit".to_owned(),
    };
    let mut rows = vec![
        ("Subject:", info.subject.clone()),
        ("Issuer:", issuer),
        ("DNS names:", list(&info.dns_sans)),
        ("URIs:", list(&info.uri_sans)),
    ];
    if !info.ip_sans.is_empty() {
        let ips: Vec<String> = info.ip_sans.iter().map(ToString::to_string).collect();
        rows.push(("IP addresses:", ips.join(", ")));
    }
    let before = match Window::of(info, now) {
        Window::NotYetValid(_) => format!("{} ({})", fmt_time(info.not_before), phrase(info, now)),
        _ => fmt_time(info.not_before),
    };
    let after = match Window::of(info, now) {
        Window::NotYetValid(_) => fmt_time(info.not_after),
        _ => format!("{} ({})", fmt_time(info.not_after), phrase(info, now)),
    };
    rows.extend([
        ("Not before:", before),
        ("Not after:", after),
        ("Key:", info.key_type.to_string()),
        ("CA:", ca),
    ]);
    if let Some(ku) = &info.key_usage {
        rows.push(("Key usage:", ku.join(", ")));
    }
    if !info.ext_key_usage.is_empty() {
        rows.push(("Ext key usage:", info.ext_key_usage.join(", ")));
    }
    rows.extend([
        ("Signature:", info.signature_algorithm.clone()),
        ("Serial:", info.serial_hex.clone()),
        ("SHA-256:", info.sha256_fingerprint.clone()),
    ]);
    rows
}

/// `inspect -o json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    file: String,
    certificates: Vec<CertJson<'a>>,
}

/// One certificate in `inspect -o json`. Times are RFC 3339 UTC.
#[derive(Debug, Serialize)]
struct CertJson<'a> {
    /// Position in the file, from 1.
    index: usize,
    subject: &'a str,
    issuer: &'a str,
    common_name: Option<&'a str>,
    self_signed: bool,
    dns_names: &'a [String],
    uris: &'a [String],
    ip_addresses: Vec<String>,
    not_before: String,
    not_after: String,
    /// `valid`, `expired` or `not_yet_valid`.
    status: &'static str,
    /// Negative once expired.
    expires_in_seconds: i64,
    key_type: String,
    is_ca: bool,
    path_len: Option<u32>,
    /// `null` when the certificate has no key usage extension.
    key_usage: Option<&'a [&'static str]>,
    extended_key_usage: &'a [String],
    signature_algorithm: &'a str,
    /// Uppercase hex, as `openssl x509 -serial` prints it.
    serial: &'a str,
    /// `AB:CD:...`, as `openssl x509 -fingerprint -sha256` prints it.
    sha256_fingerprint: &'a str,
    subject_key_id: Option<&'a str>,
    authority_key_id: Option<&'a str>,
}

impl<'a> Report<'a> {
    fn new(file: String, infos: &'a [CertInfo], now: SystemTime) -> Self {
        let certificates = infos
            .iter()
            .enumerate()
            .map(|(i, info)| CertJson {
                index: i + 1,
                subject: &info.subject,
                issuer: &info.issuer,
                common_name: info.common_name.as_deref(),
                self_signed: info.self_issued,
                dns_names: &info.dns_sans,
                uris: &info.uri_sans,
                ip_addresses: info.ip_sans.iter().map(ToString::to_string).collect(),
                not_before: fmt_time(info.not_before),
                not_after: fmt_time(info.not_after),
                status: Window::of(info, now).status(),
                expires_in_seconds: expires_in_seconds(info, now),
                key_type: info.key_type.to_string(),
                is_ca: info.is_ca,
                path_len: info.path_len,
                key_usage: info.key_usage.as_deref(),
                extended_key_usage: &info.ext_key_usage,
                signature_algorithm: &info.signature_algorithm,
                serial: &info.serial_hex,
                sha256_fingerprint: &info.sha256_fingerprint,
                subject_key_id: info.subject_key_id.as_deref(),
                authority_key_id: info.authority_key_id.as_deref(),
            })
            .collect();
        Self { file, certificates }
    }
}
