//! The proxy's configuration: `WEFT_PROXY_*` environment variables, read in one place.
//!
//! Every variable has a named constant, a typed default and a line of help (the same table feeds
//! `weft-proxy --help` and `docs/proxy.md`). Everything is validated before any port is bound; an
//! invalid value is reported with the variable's name and the bad value, and the binary exits 64.
//! The environment is read through [`Env`] so tests pass a map instead of mutating the process.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where configuration values come from.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
    /// Every `WEFT_PROXY_*` key that is set (used to warn about unknown ones).
    fn keys(&self) -> Vec<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
    fn keys(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("WEFT_PROXY_"))
            .collect()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        HashMap::keys(self).cloned().collect()
    }
}

pub const OUTBOUND_LISTEN_ADDR: &str = "WEFT_PROXY_OUTBOUND_LISTEN_ADDR";
pub const INBOUND_LISTEN_ADDR: &str = "WEFT_PROXY_INBOUND_LISTEN_ADDR";
pub const ADMIN_LISTEN_ADDR: &str = "WEFT_PROXY_ADMIN_LISTEN_ADDR";
pub const TAP_LISTEN_ADDR: &str = "WEFT_PROXY_TAP_LISTEN_ADDR";
pub const TAP_SVC_NAME: &str = "WEFT_PROXY_TAP_SVC_NAME";
pub const INBOUND_APP_ADDR: &str = "WEFT_PROXY_INBOUND_APP_ADDR";
pub const OUTBOUND_BIND_IP: &str = "WEFT_PROXY_OUTBOUND_BIND_IP";
pub const DETECT_TIMEOUT: &str = "WEFT_PROXY_DETECT_TIMEOUT";
pub const OPAQUE_PORTS: &str = "WEFT_PROXY_OPAQUE_PORTS";
pub const CONNECT_TIMEOUT: &str = "WEFT_PROXY_CONNECT_TIMEOUT";
pub const RESPONSE_TIMEOUT: &str = "WEFT_PROXY_RESPONSE_TIMEOUT";
pub const POOL_IDLE_TIMEOUT: &str = "WEFT_PROXY_POOL_IDLE_TIMEOUT";
pub const MAX_IN_FLIGHT_REQUESTS: &str = "WEFT_PROXY_MAX_IN_FLIGHT_REQUESTS";
pub const MAX_CONNECTIONS: &str = "WEFT_PROXY_MAX_CONNECTIONS";
pub const SHUTDOWN_GRACE_PERIOD: &str = "WEFT_PROXY_SHUTDOWN_GRACE_PERIOD";
pub const IDENTITY_DISABLED: &str = "WEFT_PROXY_IDENTITY_DISABLED";
pub const MESHED_PEERS: &str = "WEFT_PROXY_MESHED_PEERS";
pub const WORKER_THREADS: &str = "WEFT_PROXY_WORKER_THREADS";
pub const IDENTITY_NAME: &str = "WEFT_PROXY_IDENTITY_NAME";
pub const IDENTITY_TRUST_ANCHORS: &str = "WEFT_PROXY_IDENTITY_TRUST_ANCHORS";
pub const IDENTITY_SVC_ADDR: &str = "WEFT_PROXY_IDENTITY_SVC_ADDR";
pub const IDENTITY_TOKEN_FILE: &str = "WEFT_PROXY_IDENTITY_TOKEN_FILE";
pub const LOG: &str = "WEFT_PROXY_LOG";
pub const DESTINATION_SVC_ADDR: &str = "WEFT_PROXY_DESTINATION_SVC_ADDR";
pub const DESTINATION_IDLE_TIMEOUT: &str = "WEFT_PROXY_DESTINATION_IDLE_TIMEOUT";

/// One documented variable: name, default (as text) and help.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every variable the proxy reads, in the order `--help` shows them.
pub const VARS: &[VarDoc] = &[
    VarDoc { name: OUTBOUND_LISTEN_ADDR, default: "127.0.0.1:4140", help: "Address of the outbound listener (the app's traffic to other services: transparent redirect, HTTP proxy requests or CONNECT)." },
    VarDoc { name: INBOUND_LISTEN_ADDR, default: "0.0.0.0:4143", help: "Address of the inbound listener (traffic to this workload from other proxies or redirected by iptables)." },
    VarDoc { name: ADMIN_LISTEN_ADDR, default: "127.0.0.1:4191", help: "Address of the admin server: /metrics, /ready, /live, /shutdown, /proxy-log-level." },
    VarDoc { name: TAP_LISTEN_ADDR, default: "0.0.0.0:4190", help: "Address of the tap server (live request events for the viz component; mTLS, only WEFT_PROXY_TAP_SVC_NAME may connect). Not bound unless tap is enabled." },
    VarDoc { name: TAP_SVC_NAME, default: "(none)", help: "The viz component's identity, the only client allowed to tap, e.g. viz.weft.serviceaccount.identity.weft.cluster.local (what the local mesh uses). Unset (or identity disabled): tap is off." },
    VarDoc { name: INBOUND_APP_ADDR, default: "(none)", help: "Where inbound traffic goes when it was not redirected by iptables (explicit mode): the app's IP:port. Meshed traffic may name another port of the same IP." },
    VarDoc { name: OUTBOUND_BIND_IP, default: "(none)", help: "Source IP for outgoing connections (the workload's own loopback address in the local mesh)." },
    VarDoc { name: DETECT_TIMEOUT, default: "10s", help: "How long to wait for a client's first bytes before treating the connection as opaque TCP (server-speaks-first protocols)." },
    VarDoc { name: OPAQUE_PORTS, default: "25,587,3306,4444,5432,6379,9300,11211", help: "Destination ports proxied as opaque TCP without protocol detection (comma list of ports or ranges like 8000-8010)." },
    VarDoc { name: CONNECT_TIMEOUT, default: "1s", help: "Timeout for establishing a connection to an upstream; failure answers 502." },
    VarDoc { name: RESPONSE_TIMEOUT, default: "0s", help: "Default time to wait for an upstream's response headers; 0s disables. A timeout answers 504." },
    VarDoc { name: POOL_IDLE_TIMEOUT, default: "3s", help: "How long an idle pooled HTTP/1.1 upstream connection is kept (shorter than typical app keep-alives)." },
    VarDoc { name: MAX_IN_FLIGHT_REQUESTS, default: "10000", help: "Requests in flight above this are shed with 503 (l5d-proxy-error: load shed)." },
    VarDoc { name: MAX_CONNECTIONS, default: "20000", help: "Accepted connections per listener above this wait in the kernel's backlog." },
    VarDoc { name: SHUTDOWN_GRACE_PERIOD, default: "30s", help: "On SIGTERM or POST /shutdown: how long in-flight work may take to finish before the proxy exits." },
        VarDoc { name: IDENTITY_DISABLED, default: "false", help: "Run without mTLS (traffic is labelled tls=\"no_identity\"); a warning is logged. Otherwise the four WEFT_PROXY_IDENTITY_* variables below are required." },
    VarDoc { name: IDENTITY_NAME, default: "(none)", help: "This workload's identity, e.g. web.emojivoto.serviceaccount.identity.weft.cluster.local." },
    VarDoc { name: IDENTITY_TRUST_ANCHORS, default: "(none)", help: "Path of the PEM bundle of trust anchors (one or more roots). Re-read when it changes, so anchor rotation needs no restart." },
    VarDoc { name: IDENTITY_SVC_ADDR, default: "(none)", help: "The identity service's address (host:port), asked for a certificate at start and before each expiry." },
    VarDoc { name: IDENTITY_TOKEN_FILE, default: "(none)", help: "Path of the bootstrap token that proves this workload's identity to the identity service." },
    VarDoc { name: MESHED_PEERS, default: "(none)", help: "Static discovery until the destination service is used: comma list of TARGET=PEER[/PORT][@IDENTITY]: traffic for TARGET (host:port) goes meshed to the inbound proxy at PEER (ip:port), which forwards it to PORT (default: the target's port) on its app's IP; with identity, the peer must prove IDENTITY (required unless identity is disabled)." },
    VarDoc { name: DESTINATION_SVC_ADDR, default: "(none)", help: "The destination service's address (host:port). When set, outbound HTTP requests resolve their authority there (endpoints and policy: routes, retries, timeouts, splits); unknown services are forwarded as they are." },
    VarDoc { name: DESTINATION_IDLE_TIMEOUT, default: "60s", help: "How long the destination watches of an authority are kept without requests before they are closed." },
    VarDoc { name: WORKER_THREADS, default: "1", help: "Runtime worker threads (1 = a single-threaded runtime, the usual sidecar set-up)." },
    VarDoc { name: LOG, default: "info", help: "Log filter: a level or target=level list (e.g. warn,weft_proxy=debug). Changeable at runtime via /proxy-log-level." },
];

/// An invalid configuration value.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// A set of TCP ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSet(BTreeSet<u16>);

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        self.0.contains(&port)
    }

    /// Parses `25,587,8000-8010`; spaces are allowed, empty means no ports.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let lo = parse_port(lo.trim())?;
                    let hi = parse_port(hi.trim())?;
                    if lo > hi {
                        return Err(format!("range {part} is backwards"));
                    }
                    set.extend(lo..=hi);
                }
                None => {
                    set.insert(parse_port(part)?);
                }
            }
        }
        Ok(PortSet(set))
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// A statically configured meshed destination (until discovery provides them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedPeer {
    /// The destination as the app names it: `host:port` (lower-cased host).
    pub target: String,
    /// The peer proxy's inbound address.
    pub peer: SocketAddr,
    /// The port behind the peer proxy (defaults to the target's port).
    pub port: u16,
    /// The identity the peer proxy must present.
    pub identity: Option<String>,
}

/// Identity settings (absent when identity is disabled).
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub name: String,
    pub trust_anchors_path: std::path::PathBuf,
    /// The anchors as read at start-up (validated before any port is bound).
    pub trust_anchors: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub svc_addr: String,
    pub token_path: std::path::PathBuf,
}

/// The proxy's validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub outbound_listen: SocketAddr,
    pub inbound_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The tap server's address (bound only when [`Config::tap_enabled`]).
    pub tap_listen: SocketAddr,
    /// The only identity allowed to tap; `None`: tap is off.
    pub tap_svc_name: Option<String>,
    pub inbound_app_addr: Option<SocketAddr>,
    pub outbound_bind_ip: Option<IpAddr>,
    pub detect_timeout: Duration,
    pub opaque_ports: PortSet,
    pub connect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    pub pool_idle_timeout: Duration,
    pub max_in_flight_requests: usize,
    pub max_connections: usize,
    pub shutdown_grace_period: Duration,
    pub identity_disabled: bool,
    /// Present unless identity is disabled.
    pub identity: Option<IdentityConfig>,
    pub meshed_peers: Vec<MeshedPeer>,
    /// The destination service (`host:port`); `None`: static discovery only.
    pub destination_svc_addr: Option<String>,
    /// Idle time after which an authority's destination watches are closed.
    pub destination_idle_timeout: Duration,
    pub worker_threads: usize,
    pub log: String,
}

impl Config {
    /// Reads and validates every variable. Returns the first invalid one.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let r = Reader { env };
        let mut config = Config {
            outbound_listen: r.parse(OUTBOUND_LISTEN_ADDR, parse_socket_addr)?,
            inbound_listen: r.parse(INBOUND_LISTEN_ADDR, parse_socket_addr)?,
            admin_listen: r.parse(ADMIN_LISTEN_ADDR, parse_socket_addr)?,
            tap_listen: r.parse(TAP_LISTEN_ADDR, parse_socket_addr)?,
            tap_svc_name: r.parse_opt(TAP_SVC_NAME, |s| {
                let name = s.to_ascii_lowercase();
                weft_pki::Identity::parse(&name).map_err(|e| e.to_string())?;
                Ok(name)
            })?,
            inbound_app_addr: r.parse_opt(INBOUND_APP_ADDR, parse_socket_addr)?,
            outbound_bind_ip: r.parse_opt(OUTBOUND_BIND_IP, |s| {
                s.parse::<IpAddr>()
                    .map_err(|_| "not an IP address".to_string())
            })?,
            detect_timeout: r.parse(DETECT_TIMEOUT, parse_nonzero_duration)?,
            opaque_ports: r.parse(OPAQUE_PORTS, PortSet::parse)?,
            connect_timeout: r.parse(CONNECT_TIMEOUT, parse_nonzero_duration)?,
            response_timeout: r.parse(RESPONSE_TIMEOUT, |s| {
                parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
            })?,
            pool_idle_timeout: r.parse(POOL_IDLE_TIMEOUT, parse_duration)?,
            max_in_flight_requests: r.parse(MAX_IN_FLIGHT_REQUESTS, parse_positive)?,
            max_connections: r.parse(MAX_CONNECTIONS, parse_positive)?,
            shutdown_grace_period: r.parse(SHUTDOWN_GRACE_PERIOD, parse_duration)?,
            identity_disabled: r.parse(IDENTITY_DISABLED, parse_bool)?,
            identity: None,
            meshed_peers: r.parse(MESHED_PEERS, parse_meshed_peers)?,
            destination_svc_addr: r.parse_opt(DESTINATION_SVC_ADDR, parse_host_port)?,
            destination_idle_timeout: r.parse(DESTINATION_IDLE_TIMEOUT, parse_nonzero_duration)?,
            worker_threads: r.parse(WORKER_THREADS, |s| {
                let n = parse_positive(s)?;
                if n > 64 {
                    return Err("at most 64 worker threads".into());
                }
                Ok(n)
            })?,
            log: r.parse(LOG, |s| Ok(s.to_string()))?,
        };
        if !config.identity_disabled {
            config.identity = Some(read_identity(&r)?);
            if let Some(p) = config.meshed_peers.iter().find(|p| p.identity.is_none()) {
                return Err(ConfigError {
                    var: MESHED_PEERS,
                    value: env.get(MESHED_PEERS).unwrap_or_default(),
                    reason: format!(
                        "peer of {:?} names no identity (TARGET=PEER@IDENTITY); meshed traffic is always mTLS",
                        p.target
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The identity allowed to tap, when tap is on: it needs identity (the tap port is mTLS
    /// with the proxy's own certificate) and `WEFT_PROXY_TAP_SVC_NAME`.
    pub fn tap_enabled(&self) -> Option<&str> {
        self.identity.as_ref()?;
        self.tap_svc_name.as_deref()
    }

    /// `WEFT_PROXY_*` variables that are set but not known (likely typos).
    pub fn unknown_vars(env: &dyn Env) -> Vec<String> {
        let mut unknown: Vec<String> = env
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("WEFT_PROXY_") && !k.starts_with("WEFT_PROXY_INIT_"))
            .filter(|k| !VARS.iter().any(|v| v.name == k))
            .collect();
        unknown.sort();
        unknown
    }
}

fn read_identity(r: &Reader<'_>) -> Result<IdentityConfig, ConfigError> {
    let required = |var: &'static str| -> Result<String, ConfigError> {
        match r.env.get(var) {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(ConfigError {
                var,
                value: String::new(),
                reason: format!(
                    "required when identity is enabled (or set {IDENTITY_DISABLED}=true to run without mTLS)"
                ),
            }),
        }
    };
    let name = required(IDENTITY_NAME)?;
    weft_pki::Identity::parse(&name).map_err(|e| ConfigError {
        var: IDENTITY_NAME,
        value: name.clone(),
        reason: e.to_string(),
    })?;
    let anchors_path = required(IDENTITY_TRUST_ANCHORS)?;
    let trust_anchors = std::fs::read(&anchors_path)
        .map_err(|e| e.to_string())
        .and_then(|pem| weft_pki::parse_pem_certs(&pem).map_err(|e| e.to_string()))
        .map_err(|reason| ConfigError {
            var: IDENTITY_TRUST_ANCHORS,
            value: anchors_path.clone(),
            reason,
        })?;
    let svc_addr = required(IDENTITY_SVC_ADDR)?;
    if svc_addr
        .rsplit_once(':')
        .and_then(|(_, p)| parse_port(p).ok())
        .is_none()
    {
        return Err(ConfigError {
            var: IDENTITY_SVC_ADDR,
            value: svc_addr,
            reason: "expected host:port".into(),
        });
    }
    let token_path = required(IDENTITY_TOKEN_FILE)?;
    if let Err(e) = std::fs::metadata(&token_path) {
        return Err(ConfigError {
            var: IDENTITY_TOKEN_FILE,
            value: token_path,
            reason: e.to_string(),
        });
    }
    Ok(IdentityConfig {
        name,
        trust_anchors_path: anchors_path.into(),
        trust_anchors,
        svc_addr,
        token_path: token_path.into(),
    })
}

struct Reader<'a> {
    env: &'a dyn Env,
}

impl Reader<'_> {
    fn default_of(var: &'static str) -> &'static str {
        VARS.iter()
            .find(|v| v.name == var)
            .map(|v| v.default)
            .filter(|d| *d != "(none)")
            .unwrap_or("")
    }

    fn parse<T>(
        &self,
        var: &'static str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (value, from_env) = match self.env.get(var) {
            Some(v) => (v, true),
            None => (Self::default_of(var).to_string(), false),
        };
        f(value.trim()).map_err(|reason| ConfigError {
            var,
            value: if from_env {
                value
            } else {
                format!("(default) {value}")
            },
            reason,
        })
    }

    fn parse_opt<T>(
        &self,
        var: &'static str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.env.get(var) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(value) => {
                f(value.trim())
                    .map(Some)
                    .map_err(|reason| ConfigError { var, value, reason })
            }
        }
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:4140 or [::1]:4140".to_string())
}

/// `host:port` with a non-empty host (no scheme, no path).
fn parse_host_port(s: &str) -> Result<String, String> {
    let err =
        || "expected host:port, e.g. 127.0.0.1:8086 or weft-destination.weft:8086".to_string();
    let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
    if host.is_empty() || host.contains(['/', ' ', '@']) || parse_port(port).is_err() {
        return Err(err());
    }
    Ok(s.to_string())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err("expected a positive integer".into()),
        Ok(n) => Ok(n),
    }
}

fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Parses durations like `300ms`, `2s`, `1.5s`, `1m30s`, `1h`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration (e.g. 300ms, 2s, 1.5s, 1m30s)");
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

fn parse_meshed_peers(s: &str) -> Result<Vec<MeshedPeer>, String> {
    let mut peers = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (target, peer) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {entry:?} is not TARGET=PEER"))?;
        let target = target.trim().to_ascii_lowercase();
        let port_ok = target
            .rsplit_once(':')
            .map(|(h, p)| !h.is_empty() && parse_port(p).is_ok())
            .unwrap_or(false);
        if !port_ok {
            return Err(format!("target {target:?} is not host:port"));
        }
        let (peer, identity) = match peer.trim().split_once('@') {
            Some((peer, id)) => {
                let id = id.trim().to_ascii_lowercase();
                weft_pki::Identity::parse(&id)
                    .map_err(|e| format!("identity of {target:?}: {e}"))?;
                (peer, Some(id))
            }
            None => (peer.trim(), None),
        };
        let (peer, port) = match peer.trim().split_once('/') {
            Some((peer, port)) => (peer, Some(parse_port(port.trim())?)),
            None => (peer.trim(), None),
        };
        let peer = parse_socket_addr(peer).map_err(|e| format!("peer of {target:?}: {e}"))?;
        let port = match port {
            Some(p) => p,
            None => target
                .rsplit_once(':')
                .and_then(|(_, p)| parse_port(p).ok())
                .ok_or_else(|| format!("target {target:?} is not host:port"))?,
        };
        peers.push(MeshedPeer {
            target,
            peer,
            port,
            identity,
        });
    }
    Ok(peers)
}

/// The `--help` text: usage plus every variable with its default.
pub fn help_text() -> String {
    let mut out = String::from(
        "weft-proxy: Weft's sidecar proxy.\n\n\
         USAGE:\n    weft-proxy            run the proxy (configured by environment variables)\n    \
         weft-proxy init       install iptables redirect rules (see `weft-proxy init --help`)\n    \
         weft-proxy --version  print the version\n\nENVIRONMENT:\n",
    );
    for v in VARS {
        out.push_str(&format!(
            "    {}\n        {}\n        default: {}\n",
            v.name, v.help, v.default
        ));
    }
    out.push_str("\nAn invalid value exits with status 64 before any port is bound.\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry(IDENTITY_DISABLED.into()).or_insert("true".into());
        m
    }

    #[test]
    fn defaults() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.outbound_listen, "127.0.0.1:4140".parse().unwrap());
        assert_eq!(c.inbound_listen, "0.0.0.0:4143".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:4191".parse().unwrap());
        assert_eq!(c.detect_timeout, Duration::from_secs(10));
        for p in [25, 587, 3306, 4444, 5432, 6379, 9300, 11211] {
            assert!(c.opaque_ports.contains(p), "{p}");
        }
        assert!(!c.opaque_ports.contains(80));
        assert_eq!(c.response_timeout, None);
        assert_eq!(c.worker_threads, 1);
    }

    #[test]
    fn invalid_value_names_variable_and_value() {
        let e = Config::from_env(&env(&[(OUTBOUND_LISTEN_ADDR, "nope:1")])).unwrap_err();
        assert_eq!(e.var, OUTBOUND_LISTEN_ADDR);
        let msg = e.to_string();
        assert!(msg.contains("WEFT_PROXY_OUTBOUND_LISTEN_ADDR"), "{msg}");
        assert!(msg.contains("nope:1"), "{msg}");
        let e = Config::from_env(&env(&[(OPAQUE_PORTS, "25,70000")])).unwrap_err();
        assert_eq!(e.var, OPAQUE_PORTS);
        let e = Config::from_env(&env(&[(DETECT_TIMEOUT, "0s")])).unwrap_err();
        assert_eq!(e.var, DETECT_TIMEOUT);
    }

    #[test]
    fn identity_required_unless_disabled() {
        let m: HashMap<String, String> = HashMap::new();
        let e = Config::from_env(&m).unwrap_err();
        assert_eq!(e.var, IDENTITY_NAME);
        let mut m = HashMap::new();
        m.insert(IDENTITY_NAME.to_string(), "not an identity".to_string());
        let e = Config::from_env(&m).unwrap_err();
        assert_eq!(e.var, IDENTITY_NAME);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "s", "10", "1x", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_and_ranges() {
        let p = PortSet::parse(" 80, 8000-8002 ").unwrap();
        assert!(p.contains(80) && p.contains(8001) && !p.contains(8003));
        assert!(PortSet::parse("9-3").is_err());
        assert!(PortSet::parse("0").is_err());
        assert_eq!(PortSet::parse("").unwrap(), PortSet::default());
    }

    #[test]
    fn meshed_peers() {
        let c = Config::from_env(&env(&[(
            MESHED_PEERS,
            "Web-Svc:80=127.0.1.2:4143/8080, 127.0.0.1:8080=127.0.0.1:14143",
        )]))
        .unwrap();
        assert_eq!(c.meshed_peers.len(), 2);
        assert_eq!(c.meshed_peers[0].target, "web-svc:80");
        assert_eq!(c.meshed_peers[0].port, 8080);
        assert_eq!(c.meshed_peers[1].port, 8080);
        assert!(Config::from_env(&env(&[(MESHED_PEERS, "web:80=1.2.3.4:1/0")])).is_err());
        let c = Config::from_env(&env(&[(
            MESHED_PEERS,
            "web:80=127.0.0.1:4143/8080@web.emojivoto.serviceaccount.identity.weft.cluster.local",
        )]))
        .unwrap();
        assert_eq!(
            c.meshed_peers[0].identity.as_deref(),
            Some("web.emojivoto.serviceaccount.identity.weft.cluster.local")
        );
        assert_eq!(c.meshed_peers[0].port, 8080);
        assert!(Config::from_env(&env(&[(MESHED_PEERS, "web:80=127.0.0.1:1@not-an-id")])).is_err());
        assert!(Config::from_env(&env(&[(MESHED_PEERS, "web=1.2.3.4:1")])).is_err());
        assert!(Config::from_env(&env(&[(MESHED_PEERS, "web:80=nowhere")])).is_err());
    }

    #[test]
    fn destination_service() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.destination_svc_addr, None);
        assert_eq!(c.destination_idle_timeout, Duration::from_secs(60));
        let c = Config::from_env(&env(&[
            (DESTINATION_SVC_ADDR, "127.0.0.1:8086"),
            (DESTINATION_IDLE_TIMEOUT, "5s"),
        ]))
        .unwrap();
        assert_eq!(c.destination_svc_addr.as_deref(), Some("127.0.0.1:8086"));
        assert_eq!(c.destination_idle_timeout, Duration::from_secs(5));
        for bad in ["8086", "http://x:8086", ":8086", "x:0", "x:port"] {
            let e = Config::from_env(&env(&[(DESTINATION_SVC_ADDR, bad)])).unwrap_err();
            assert_eq!(e.var, DESTINATION_SVC_ADDR, "{bad}");
        }
        let e = Config::from_env(&env(&[(DESTINATION_IDLE_TIMEOUT, "0s")])).unwrap_err();
        assert_eq!(e.var, DESTINATION_IDLE_TIMEOUT);
    }

    #[test]
    fn tap_needs_a_name_and_identity() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.tap_listen, "0.0.0.0:4190".parse().unwrap());
        assert_eq!(c.tap_svc_name, None);
        assert_eq!(c.tap_enabled(), None);
        let name = "tap.weft-viz.serviceaccount.identity.weft.cluster.local";
        let c = Config::from_env(&env(&[(TAP_SVC_NAME, &name.to_ascii_uppercase())])).unwrap();
        assert_eq!(c.tap_svc_name.as_deref(), Some(name));
        // Identity is disabled in these tests: no mTLS, no tap.
        assert_eq!(c.tap_enabled(), None);
        let e = Config::from_env(&env(&[(TAP_SVC_NAME, "viz")])).unwrap_err();
        assert_eq!(e.var, TAP_SVC_NAME);
        let e = Config::from_env(&env(&[(TAP_LISTEN_ADDR, "4190")])).unwrap_err();
        assert_eq!(e.var, TAP_LISTEN_ADDR);
    }

    #[test]
    fn unknown_vars_are_found() {
        let e = env(&[("WEFT_PROXY_OUTBOUND_LISTEN_ADR", "x"), (LOG, "debug")]);
        assert_eq!(
            Config::unknown_vars(&e),
            vec!["WEFT_PROXY_OUTBOUND_LISTEN_ADR"]
        );
    }

    #[test]
    fn docs_list_every_variable() {
        let docs = include_str!("../../../docs/proxy.md");
        for v in VARS {
            assert!(
                docs.contains(&format!("`{}`", v.name)),
                "docs/proxy.md lacks {}",
                v.name
            );
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let h = help_text();
        for v in VARS {
            assert!(h.contains(v.name));
        }
    }
}
