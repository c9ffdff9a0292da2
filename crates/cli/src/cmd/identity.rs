//! `weft identity`: make and check the certificates of the mesh's identity system.
//!
//! The trust model (DESIGN.md, "Identity"): a long-lived trust anchor (root CA, kept offline)
//! signs an issuer (intermediate CA, rotated routinely), which the identity service uses to sign
//! short-lived workload certificates. `create-root` and `create-issuer` make the first two like
//! `step certificate create --profile root-ca / intermediate-ca --no-password --insecure`;
//! `inspect` and `verify` read what step, openssl and Weft make. The certificate logic is
//! `weft-pki`'s; this module reads and writes the files and names them in every error.

use clap::{Args, Subcommand};

mod create;
pub(crate) mod expiry;
mod inputs;
mod inspect;
mod verify;

pub use create::{CreateIssuerArgs, CreateRootArgs};
pub use inspect::InspectArgs;
pub use verify::VerifyArgs;

/// `weft identity ...`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example (the trust anchor and issuer of a new mesh, as with step):\n  \
                  weft identity create-root ca.crt ca.key --not-after 87600h\n  \
                  weft identity create-issuer issuer.crt issuer.key --ca ca.crt --ca-key ca.key --not-after 8760h\n  \
                  weft identity verify --anchors ca.crt issuer.crt"
)]
pub struct IdentityArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IdentityCommand,
}

/// The `weft identity` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create a trust anchor: a self-signed root CA certificate and its private key.
    ///
    /// What `step certificate create root.linkerd.cluster.local ca.crt ca.key --profile root-ca
    /// --no-password --insecure --not-after=87600h` makes: an ECDSA P-256 key (unencrypted
    /// PKCS#8 PEM, file mode 0600), subject CN=<name>, CA:TRUE with pathlen:1, key usage
    /// keyCertSign + cRLSign (both critical), a random serial. Keep the key offline.
    CreateRoot(CreateRootArgs),

    /// Create an issuer: an intermediate CA signed by a trust anchor, and its private key.
    ///
    /// What `step certificate create identity.linkerd.cluster.local issuer.crt issuer.key
    /// --profile intermediate-ca --ca ca.crt --ca-key ca.key --no-password --insecure
    /// --not-after=8760h` makes: an ECDSA P-256 key, CA:TRUE with pathlen:0, key usage
    /// keyCertSign + cRLSign, valid for the requested time but never past the CA's own expiry.
    /// The CA may be any root or intermediate made by step, openssl or Weft (ECDSA or RSA).
    /// Nothing is written unless the identity service would accept the new issuer with the
    /// certificates of --ca as its trust anchors.
    CreateIssuer(CreateIssuerArgs),

    /// Print what the certificates in a file say: subject, issuer, names, validity, key, CA.
    ///
    /// Reads every certificate of a PEM file (a bundle or a chain has several) or one DER
    /// certificate.
    Inspect(InspectArgs),

    /// Check that a certificate chains to a trust anchor and is valid now.
    ///
    /// CERT may hold the certificate followed by the intermediates that lead to an anchor (what
    /// a proxy serves); --intermediates adds more. Every certificate on the path must be valid
    /// now, CAs must be CAs allowed to sign, path lengths are enforced and SHA-1 is refused.
    /// Exit status 0 with one line when it verifies, 1 with one line naming CERT and the reason
    /// when it does not.
    Verify(VerifyArgs),
}

/// Runs a `weft identity` subcommand.
pub fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.command {
        IdentityCommand::CreateRoot(a) => create::create_root(&a, &mut stdout),
        IdentityCommand::CreateIssuer(a) => create::create_issuer(&a, &mut stdout),
        IdentityCommand::Inspect(a) => inspect::run(&a, &mut stdout),
        IdentityCommand::Verify(a) => verify::run(&a, &mut stdout),
    }
}
