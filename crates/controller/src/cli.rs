//! The command line: `weft-controller <component> [flags]`. Every flag can also be set through the
//! environment variable named in its help (`WEFT_…`), which is how Kubernetes manifests and the
//! local mesh configure the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

/// Weft's control plane.
#[derive(Debug, Parser)]
#[command(name = "weft-controller", version, about, long_about = None)]
pub struct Cli {
    /// Log filter: a level (`info`, `debug`) or per-target directives
    /// (`info,weft_controller=debug`).
    #[arg(long, env = "WEFT_LOG", default_value = "info", global = true)]
    pub log: String,

    /// The component to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The control-plane components, one per subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The identity service: signs workload certificates from CSRs for proxies that prove their
    /// identity with a token.
    Identity(IdentityArgs),
    /// The destination service: streams each service's endpoints and compiled policy (routes,
    /// retries, timeouts, traffic splits) to the proxies that ask for them.
    Destination(DestinationArgs),
    /// Every component of a local-mesh cluster in one process (identity, destination, viz),
    /// with one admin port: what `weft install` and `weft demo` start.
    All(crate::all::AllArgs),
}

/// Names shared by every component of one mesh.
#[derive(Clone, Debug, Args)]
pub struct MeshArgs {
    /// The mesh's trust domain: the last labels of every workload identity
    /// (`<sa>.<ns>.serviceaccount.identity.<control-plane namespace>.<trust domain>`) and the
    /// authority of SPIFFE IDs.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// The control plane's namespace, as it appears in workload identities. Weft's default is
    /// `weft`; set `linkerd` to issue names identical to a Linkerd control plane's
    /// (`web.emojivoto.serviceaccount.identity.linkerd.cluster.local`). Proxies and the control
    /// plane must agree on it.
    #[arg(long, env = "WEFT_CONTROL_PLANE_NAMESPACE", default_value = "weft")]
    pub control_plane_namespace: String,
}

/// `weft-controller identity`.
#[derive(Clone, Debug, Args)]
pub struct IdentityArgs {
    /// Address of the gRPC identity service.
    #[arg(long, env = "WEFT_IDENTITY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the admin server (`/metrics`, `/ready`, `/live`).
    #[arg(
        long,
        env = "WEFT_IDENTITY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9990"
    )]
    pub admin_listen: SocketAddr,

    /// PEM bundle of trust anchors (root CAs); several during trust anchor rotation. Reloaded
    /// when it changes.
    #[arg(long, env = "WEFT_IDENTITY_TRUST_ANCHORS", value_name = "FILE")]
    pub trust_anchors: PathBuf,

    /// PEM certificate of the issuer (intermediate CA) that signs workload certificates,
    /// optionally followed by further intermediates. Reloaded when it changes.
    #[arg(long, env = "WEFT_IDENTITY_ISSUER_CERT", value_name = "FILE")]
    pub issuer_cert: PathBuf,

    /// PEM private key of the issuer (ECDSA P-256, unencrypted). Reloaded when it changes.
    #[arg(long, env = "WEFT_IDENTITY_ISSUER_KEY", value_name = "FILE")]
    pub issuer_key: PathBuf,

    /// Lifetime of workload certificates (`24h`, `1h30m`, `300s`); never beyond the issuer's
    /// own expiry.
    #[arg(long, env = "WEFT_IDENTITY_LEAF_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub leaf_lifetime: Duration,

    /// How far before "now" workload certificates start to be valid, for peers whose clocks
    /// run behind.
    #[arg(long, env = "WEFT_IDENTITY_CLOCK_SKEW", default_value = "20s", value_parser = parse_duration)]
    pub clock_skew: Duration,

    /// The local mesh's token key: workload tokens are HMAC-SHA256(key, identity), hex. The
    /// file holds at least 32 bytes (surrounding whitespace is ignored).
    #[arg(long, env = "WEFT_IDENTITY_TOKEN_KEY_FILE", value_name = "FILE")]
    pub token_key_file: PathBuf,

    /// How often the trust anchor and issuer files are checked for changes.
    #[arg(long, env = "WEFT_IDENTITY_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// How long in-flight requests may run after a shutdown signal before they are cut.
    #[arg(long, env = "WEFT_IDENTITY_SHUTDOWN_GRACE_PERIOD", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,

    /// Trust domain and control-plane namespace.
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// Where the control plane reads resources from: `memory` or `local:DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// In memory, loaded once at start from `--manifests` (no later changes are read).
    Memory,
    /// A local cluster directory: the manifests in `DIR/manifests`, read at start and watched
    /// for changes.
    Local(PathBuf),
}

impl std::str::FromStr for StoreBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            return Ok(Self::Memory);
        }
        match s.strip_prefix("local:") {
            Some(dir) if !dir.is_empty() => Ok(Self::Local(PathBuf::from(dir))),
            _ => Err(format!(
                "{s:?}: expected `memory` or `local:DIR` (a cluster directory)"
            )),
        }
    }
}

/// `weft-controller destination`.
#[derive(Clone, Debug, Args)]
pub struct DestinationArgs {
    /// Address of the gRPC destination service.
    #[arg(
        long,
        env = "WEFT_DESTINATION_LISTEN",
        default_value = "127.0.0.1:8086"
    )]
    pub listen: SocketAddr,

    /// Address of the admin server (`/metrics`, `/ready`, `/live`).
    #[arg(
        long,
        env = "WEFT_DESTINATION_ADMIN_LISTEN",
        default_value = "127.0.0.1:9996"
    )]
    pub admin_listen: SocketAddr,

    /// Where resources are read from: `memory` (the objects of `--manifests`, read once at
    /// start) or `local:DIR` (a cluster directory: the manifests in `DIR/manifests`, watched
    /// for changes; `--manifests` is not read). The Kubernetes store comes later.
    #[arg(
        long,
        env = "WEFT_DESTINATION_STORE",
        value_name = "memory|local:DIR",
        default_value = "memory"
    )]
    pub store: StoreBackend,

    /// YAML manifests to load into the store at start: a file, or a directory whose `.yaml`,
    /// `.yml` and `.json` files are read (not its subdirectories). Repeat the flag (or separate
    /// paths with commas in the variable) for several. Invalid objects are reported on stderr
    /// with their file and field, and the others are served.
    #[arg(
        long,
        env = "WEFT_DESTINATION_MANIFESTS",
        value_name = "DIR|FILE",
        value_delimiter = ','
    )]
    pub manifests: Vec<PathBuf>,

    /// The cluster's DNS domain: services are `<name>.<namespace>.svc.<domain>`.
    #[arg(long, env = "WEFT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// How long streams and in-flight calls may run after a shutdown signal before they are
    /// cut (streams are told to end at once; proxies keep their last state and reconnect).
    #[arg(long, env = "WEFT_DESTINATION_SHUTDOWN_GRACE_PERIOD", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn identity_defaults() {
        let cli = Cli::try_parse_from([
            "weft-controller",
            "identity",
            "--trust-anchors",
            "ca.crt",
            "--issuer-cert",
            "issuer.crt",
            "--issuer-key",
            "issuer.key",
            "--token-key-file",
            "token.key",
        ])
        .unwrap();
        let Command::Identity(args) = cli.command else {
            panic!("not identity")
        };
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.admin_listen, "127.0.0.1:9990".parse().unwrap());
        assert_eq!(args.leaf_lifetime, Duration::from_secs(24 * 3600));
        assert_eq!(args.clock_skew, Duration::from_secs(20));
        assert_eq!(args.reload_interval, Duration::from_secs(1));
        assert_eq!(args.mesh.trust_domain, "cluster.local");
        assert_eq!(args.mesh.control_plane_namespace, "weft");
        assert_eq!(cli.log, "info");
    }

    #[test]
    fn durations_accept_go_syntax() {
        let cli = Cli::try_parse_from([
            "weft-controller",
            "identity",
            "--trust-anchors=a",
            "--issuer-cert=b",
            "--issuer-key=c",
            "--token-key-file=d",
            "--leaf-lifetime=1m30s",
            "--clock-skew=300ms",
        ])
        .unwrap();
        let Command::Identity(args) = cli.command else {
            panic!("not identity")
        };
        assert_eq!(args.leaf_lifetime, Duration::from_secs(90));
        assert_eq!(args.clock_skew, Duration::from_millis(300));
    }

    #[test]
    fn bad_duration_names_the_flag() {
        let err = Cli::try_parse_from([
            "weft-controller",
            "identity",
            "--trust-anchors=a",
            "--issuer-cert=b",
            "--issuer-key=c",
            "--token-key-file=d",
            "--leaf-lifetime=24",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--leaf-lifetime"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn destination_defaults_and_environment() {
        let cli = Cli::try_parse_from(["weft-controller", "destination"]).unwrap();
        let Command::Destination(args) = cli.command else {
            panic!("not destination")
        };
        assert_eq!(args.listen, "127.0.0.1:8086".parse().unwrap());
        assert_eq!(args.admin_listen, "127.0.0.1:9996".parse().unwrap());
        assert_eq!(args.store, StoreBackend::Memory);
        assert!(args.manifests.is_empty());
        assert_eq!(args.cluster_domain, "cluster.local");
        assert_eq!(args.shutdown_grace_period, Duration::from_secs(10));

        let cli = Cli::try_parse_from([
            "weft-controller",
            "destination",
            "--store=memory",
            "--manifests=a.yaml",
            "--manifests",
            "dir",
            "--cluster-domain=example.org",
        ])
        .unwrap();
        let Command::Destination(args) = cli.command else {
            panic!("not destination")
        };
        assert_eq!(
            args.manifests,
            vec![PathBuf::from("a.yaml"), PathBuf::from("dir")]
        );
        assert_eq!(args.cluster_domain, "example.org");
        let err = Cli::try_parse_from(["weft-controller", "destination", "--store=etcd"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--store"), "{err}");
        let cli =
            Cli::try_parse_from(["weft-controller", "destination", "--store=local:/tmp/west"])
                .unwrap();
        let Command::Destination(args) = cli.command else {
            panic!("not destination")
        };
        assert_eq!(args.store, StoreBackend::Local(PathBuf::from("/tmp/west")));
        assert!(Cli::try_parse_from(["weft-controller", "destination", "--store=local:"]).is_err());
    }
}
