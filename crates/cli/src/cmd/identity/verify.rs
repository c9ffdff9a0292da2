//! `weft identity verify --anchors BUNDLE CERT`: does CERT chain to one of the anchors, and is
//! every certificate on the way valid now? With `--issuer-key`, also: would the identity service
//! load CERT as its issuer?

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use weft_pki::{fmt_time, verify_chain, ChainInfo, Issuer, PkiError};

use super::expiry::phrase;
use super::inputs::{named, read_anchors, read_certs, read_key};

/// Arguments of `weft identity verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trust anchor bundle (PEM): one or more root certificates, e.g. ca.crt (during anchor
    /// rotation, the old and the new root).
    #[arg(long, value_name = "BUNDLE")]
    pub anchors: PathBuf,

    /// The certificate to check (PEM or DER), optionally followed by intermediates.
    #[arg(value_name = "CERT")]
    pub cert: PathBuf,

    /// More intermediate certificates (PEM) to build the chain with, in any order.
    #[arg(long, value_name = "FILE")]
    pub intermediates: Option<PathBuf>,

    /// Also check CERT as the identity service's issuer, with this private key: it must be a CA
    /// allowed to sign, with an ECDSA P-256 key, and the key must be CERT's. This is the check the
    /// identity service makes when it loads an issuer.
    #[arg(long, value_name = "KEY_FILE")]
    pub issuer_key: Option<PathBuf>,
}

/// `weft identity verify`.
pub fn run(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let anchors = read_anchors(&args.anchors)?;
    let mut certs = read_certs(&args.cert)?;
    if let Some(path) = &args.intermediates {
        certs.extend(read_certs(path)?);
    }
    let now = SystemTime::now();
    let (target, rest) = match certs.split_first() {
        Some(split) => split,
        None => return Err(named(&args.cert, "holds no certificate")),
    };

    let anchor_count = anchors.len();
    let chain = match &args.issuer_key {
        None => verify_chain(target, rest, anchors.certs(), now, None)
            .map_err(|e| named(&args.cert, e))?,
        Some(key_path) => {
            let (key, _) = read_key(key_path)?;
            let issuer =
                Issuer::from_parts(certs.clone(), key, anchors, now).map_err(|e| match e {
                    PkiError::KeyMismatch { subject } => named(
                        key_path,
                        format!(
                            "is not the private key of {} ({subject:?}): their public keys differ",
                            args.cert.display()
                        ),
                    ),
                    other => named(&args.cert, format!("not usable as an issuer: {other}")),
                })?;
            issuer.chain().clone()
        }
    };
    let what = if args.issuer_key.is_some() {
        "valid issuer"
    } else {
        "valid"
    };
    let mut line = format!("{}: {what}, {}", args.cert.display(), describe(&chain, now));
    if anchor_count > 1 {
        // Anchors in a rotation bundle often share a name: say which one it was.
        line.push_str(&format!(
            " [anchor {} of {anchor_count} in {}]",
            chain.anchor_index + 1,
            args.anchors.display()
        ));
    }
    writeln!(out, "{line}")?;
    Ok(())
}

/// `chains to "CN=root", expires 2027-01-01T00:00:00Z (in 365 days)`, plus the earlier
/// end of the chain when an intermediate or the anchor expires first.
fn describe(chain: &ChainInfo, now: SystemTime) -> String {
    let (Some(target), Some(anchor)) = (chain.target(), chain.anchor()) else {
        return "chains to a trust anchor".to_owned();
    };
    let to = if chain.chain.len() == 1 {
        format!("is trust anchor {:?} itself", anchor.subject)
    } else {
        format!("chains to {:?}", anchor.subject)
    };
    // Only a certificate that is valid now verifies, so the phrase is always "expires in ...".
    let left = phrase(target, now);
    let left = left.strip_prefix("expires ").unwrap_or(&left);
    let mut line = format!("{to}, expires {} ({left})", fmt_time(target.not_after));
    if chain.not_after < target.not_after {
        if let Some(first) = chain.chain.iter().min_by_key(|c| c.not_after) {
            line.push_str(&format!(
                "; the chain stops verifying at {}, when {:?} expires",
                fmt_time(first.not_after),
                first.subject
            ));
        }
    }
    line
}
