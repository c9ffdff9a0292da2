//! `weft-proxy init`: the iptables rules of transparent mode.
//!
//! Run once in a workload's network namespace (as an init container in Kubernetes, or by hand in a
//! netns) before the app starts. It installs `nat` table rules, like Linkerd's proxy-init, so that
//!
//! - TCP arriving in the namespace (`PREROUTING`) is redirected to the proxy's inbound port, except
//!   for the ports in `--skip-inbound-ports` (by default the proxy's own tap and admin ports);
//! - TCP opened locally (`OUTPUT`) is redirected to the proxy's outbound port, except the proxy's
//!   own connections (`-m owner --uid-owner`, or the proxy would loop into itself), anything sent
//!   over `lo` (loopback, including connections to the namespace's own address, as in Linkerd),
//!   and the ports and subnets the operator lists.
//!
//! The proxy then recovers the address the app asked for with `SO_ORIGINAL_DST`.
//!
//! Each direction has a chain of its own, reached by one jump from the built-in chain, so that a
//! second run replaces our rules instead of stacking a second copy: chains are created if missing
//! and flushed, and a jump is appended only if `iptables -C` does not find it already.
//!
//! Everything the operator typed is validated before the first command runs (exit status 64);
//! a failing command is reported with its command line and stderr (exit status 1).

use std::fmt;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Chain holding the inbound rules, jumped to from `PREROUTING`.
pub const INBOUND_CHAIN: &str = "WEFT_PROXY_INBOUND";
/// Chain holding the outbound rules, jumped to from `OUTPUT`.
pub const OUTBOUND_CHAIN: &str = "WEFT_PROXY_OUTPUT";

/// How often a command is retried while another process holds the xtables lock
/// (only `iptables-legacy` takes that lock; `iptables-nft` never reports it), and how long to wait
/// between tries: 20 × 100 ms covers another init or kube-proxy sync finishing its batch.
const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Flags of `weft-proxy init`.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Port of the proxy's inbound listener, where TCP arriving in the namespace is redirected.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_INBOUND_PORT",
        value_name = "PORT",
        default_value = "4143"
    )]
    pub inbound_port: String,

    /// Port of the proxy's outbound listener, where TCP opened in the namespace is redirected.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_OUTBOUND_PORT",
        value_name = "PORT",
        default_value = "4140"
    )]
    pub outbound_port: String,

    /// Numeric uid the proxy runs as; its own connections are never redirected (it would loop).
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_PROXY_UID",
        value_name = "UID",
        default_value = "2102"
    )]
    pub proxy_uid: String,

    /// Inbound destination ports left alone, comma-separated; ranges as `LOW-HIGH`. The default
    /// keeps the proxy's tap (4190) and admin (4191) ports reachable directly.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_SKIP_INBOUND_PORTS",
        value_name = "PORTS",
        default_value = "4190,4191"
    )]
    pub skip_inbound_ports: String,

    /// Outbound destination ports left alone, comma-separated; ranges as `LOW-HIGH`
    /// (e.g. a database whose protocol talks first and that must not wait for detection).
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_SKIP_OUTBOUND_PORTS",
        value_name = "PORTS",
        default_value = ""
    )]
    pub skip_outbound_ports: String,

    /// Outbound destination subnets left alone, comma-separated CIDRs (`10.0.0.0/8`); a bare
    /// address means that single host. IPv6 subnets need `--ipv6`.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_SKIP_SUBNETS",
        value_name = "CIDRS",
        default_value = ""
    )]
    pub skip_subnets: String,

    /// iptables binary to run: `iptables` (on Debian, the nf_tables backend), `iptables-nft`,
    /// `iptables-legacy`, or a path.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_IPTABLES",
        value_name = "PATH",
        default_value = "iptables"
    )]
    pub iptables: String,

    /// Also install the same rules for IPv6 (with ip6tables). In the environment: true/false,
    /// 1/0, yes/no, on/off.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_IPV6",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ipv6: bool,

    /// ip6tables binary used with `--ipv6`. Default: the `--iptables` binary with `iptables` in its
    /// file name replaced by `ip6tables` (`iptables-legacy` gives `ip6tables-legacy`).
    #[arg(long, env = "WEFT_PROXY_INIT_IP6TABLES", value_name = "PATH")]
    pub ip6tables: Option<String>,

    /// Print the commands that would run, one per line, and change nothing.
    #[arg(
        long,
        env = "WEFT_PROXY_INIT_DRY_RUN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub dry_run: bool,
}

impl Default for InitArgs {
    /// The same values as the flags' defaults (convenient for tests and embedding).
    fn default() -> Self {
        Self {
            inbound_port: "4143".into(),
            outbound_port: "4140".into(),
            proxy_uid: "2102".into(),
            skip_inbound_ports: "4190,4191".into(),
            skip_outbound_ports: String::new(),
            skip_subnets: String::new(),
            iptables: "iptables".into(),
            ipv6: false,
            ip6tables: None,
            dry_run: false,
        }
    }
}

/// Why `init` failed.
#[derive(thiserror::Error, Debug)]
pub enum InitError {
    /// A flag's value is unusable; nothing was run.
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidArg {
        /// The flag, as typed on the command line (`--skip-subnets`).
        flag: &'static str,
        /// The offending value (one entry of a list).
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An iptables command could not be started (binary missing, not executable).
    #[error("could not run `{command}`: {source} (is iptables installed? pick the binary with --iptables PATH)")]
    Spawn {
        /// The command line.
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// An iptables command ran and failed. Earlier commands of the plan stay applied; running
    /// `init` again once the cause is fixed converges to the intended rules.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it exited, e.g. `exit status: 4`.
        status: String,
        /// Its stderr, trimmed (iptables explains itself there: "Permission denied (you must be root)").
        stderr: String,
    },

    /// The dry-run listing could not be written to stdout.
    #[error("could not write the dry-run commands to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

impl InitError {
    /// Process exit status for this error: 64 (`EX_USAGE`) for bad input, 1 for failures while
    /// running.
    pub fn exit_code(&self) -> i32 {
        match self {
            InitError::InvalidArg { .. } => 64,
            InitError::Spawn { .. } | InitError::CommandFailed { .. } | InitError::Stdout(_) => 1,
        }
    }
}

/// The full command lines `init` runs on a namespace without our rules, first element the binary.
///
/// On a namespace that already has them, [`run`] executes the same list with two differences that
/// make it idempotent: a `-N` whose chain already exists is not an error, and a jump (`-A PREROUTING
/// -j WEFT_PROXY_INBOUND`, `-A OUTPUT -j WEFT_PROXY_OUTPUT`) is first checked with `-C` and appended
/// only if missing. `--dry-run` prints exactly this list.
pub fn plan(args: &InitArgs) -> Result<Vec<Vec<String>>, InitError> {
    Ok(steps(args)?.into_iter().map(|s| s.argv).collect())
}

/// Validates `args` and installs the rules, or with `--dry-run` prints [`plan`] to stdout.
pub fn run(args: &InitArgs) -> Result<(), InitError> {
    let steps = steps(args)?;
    if args.dry_run {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for step in &steps {
            writeln!(out, "{}", display_command(&step.argv)).map_err(InitError::Stdout)?;
        }
        return out.flush().map_err(InitError::Stdout);
    }
    execute(&steps, &mut SystemRunner)?;
    tracing::info!(
        commands = steps.len(),
        "transparent-mode iptables rules installed"
    );
    Ok(())
}

// === Validation ===

/// The validated settings one address family's rules are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    inbound_port: u16,
    outbound_port: u16,
    proxy_uid: u32,
    skip_inbound: Vec<PortRange>,
    skip_outbound: Vec<PortRange>,
    skip_subnets_v4: Vec<String>,
    skip_subnets_v6: Vec<String>,
    iptables: String,
    ip6tables: Option<String>,
}

/// A destination port or an inclusive range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortRange {
    low: u16,
    high: u16,
}

impl fmt::Display for PortRange {
    /// In iptables' `--dport` syntax: `4190`, or `8000:8100` for a range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}:{}", self.low, self.high)
        }
    }
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> InitError {
    InitError::InvalidArg {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn validate(args: &InitArgs) -> Result<Config, InitError> {
    let inbound_port = parse_port("--inbound-port", &args.inbound_port)?;
    let outbound_port = parse_port("--outbound-port", &args.outbound_port)?;
    let proxy_uid = parse_uid(&args.proxy_uid)?;
    let skip_inbound = parse_port_list("--skip-inbound-ports", &args.skip_inbound_ports)?;
    let skip_outbound = parse_port_list("--skip-outbound-ports", &args.skip_outbound_ports)?;

    let mut skip_subnets_v4 = Vec::new();
    let mut skip_subnets_v6 = Vec::new();
    for entry in list_entries(&args.skip_subnets) {
        match parse_cidr(entry)? {
            (IpAddr::V4(addr), len) => skip_subnets_v4.push(format!("{addr}/{len}")),
            (IpAddr::V6(addr), len) if args.ipv6 => skip_subnets_v6.push(format!("{addr}/{len}")),
            (IpAddr::V6(_), _) => {
                return Err(invalid(
                    "--skip-subnets",
                    entry,
                    "an IPv6 subnet, but IPv6 rules are not installed without --ipv6",
                ))
            }
        }
    }

    let iptables = check_binary("--iptables", &args.iptables)?;
    let ip6tables = if args.ipv6 {
        Some(match &args.ip6tables {
            Some(bin) => check_binary("--ip6tables", bin)?,
            None => default_ip6tables(&iptables),
        })
    } else {
        None
    };

    Ok(Config {
        inbound_port,
        outbound_port,
        proxy_uid,
        skip_inbound,
        skip_outbound,
        skip_subnets_v4,
        skip_subnets_v6,
        iptables,
        ip6tables,
    })
}

/// Non-empty, trimmed entries of a comma-separated list. Empty entries are dropped so that a
/// templated `"4190,4191,"` or `" "` means what it obviously means.
fn list_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

fn parse_port_number(flag: &'static str, entry: &str, text: &str) -> Result<u16, InitError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(flag, entry, "not a port number (1-65535)"));
    }
    match text.parse::<u32>() {
        Ok(n @ 1..=65535) => {
            u16::try_from(n).map_err(|_| invalid(flag, entry, "port out of range"))
        }
        _ => Err(invalid(flag, entry, "port out of range (1-65535)")),
    }
}

fn parse_port(flag: &'static str, value: &str) -> Result<u16, InitError> {
    parse_port_number(flag, value, value)
}

fn parse_port_list(flag: &'static str, value: &str) -> Result<Vec<PortRange>, InitError> {
    let mut ranges: Vec<PortRange> = Vec::new();
    for entry in list_entries(value) {
        let range = match entry.split_once('-') {
            Some((low, high)) => {
                let low = parse_port_number(flag, entry, low)?;
                let high = parse_port_number(flag, entry, high)?;
                if low > high {
                    return Err(invalid(
                        flag,
                        entry,
                        format!("range is backwards (did you mean {high}-{low}?)"),
                    ));
                }
                PortRange { low, high }
            }
            None => {
                let port = parse_port_number(flag, entry, entry)?;
                PortRange {
                    low: port,
                    high: port,
                }
            }
        };
        // A repeated entry would only add a redundant rule.
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    Ok(ranges)
}

fn parse_uid(value: &str) -> Result<u32, InitError> {
    let text = value.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "--proxy-uid",
            value,
            "not a numeric uid (user names are not resolved: the namespace may not share /etc/passwd)",
        ));
    }
    text.parse::<u32>()
        .ok()
        // (uid_t)-1 means "no uid" to the kernel; no process can own it.
        .filter(|uid| *uid != u32::MAX)
        .ok_or_else(|| invalid("--proxy-uid", value, "uid out of range (0-4294967294)"))
}

/// Parses `ADDR/LEN` (or a bare address, meaning the single host). Host bits must be zero: iptables
/// would silently mask them, and `10.1.2.3/8` is more often a typo than a wish to skip all of 10/8.
fn parse_cidr(entry: &str) -> Result<(IpAddr, u8), InitError> {
    const FLAG: &str = "--skip-subnets";
    let (addr_text, len_text) = match entry.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (entry, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        invalid(
            FLAG,
            entry,
            format!(
                "{addr_text:?} is not an IPv4 or IPv6 address (expected a CIDR like 10.0.0.0/8)"
            ),
        )
    })?;
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max_len,
        Some(text) => match text.parse::<u8>() {
            Ok(len) if len <= max_len && text.bytes().all(|b| b.is_ascii_digit()) => len,
            _ => {
                return Err(invalid(
                    FLAG,
                    entry,
                    format!("prefix length {text:?} is not a number from 0 to {max_len}"),
                ))
            }
        },
    };
    let network = mask(addr, len);
    if network != addr {
        return Err(invalid(
            FLAG,
            entry,
            format!("host bits are set (did you mean {network}/{len}?)"),
        ));
    }
    Ok((addr, len))
}

/// The network address of `addr/len`.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

fn check_binary(flag: &'static str, value: &str) -> Result<String, InitError> {
    if value.trim().is_empty() {
        return Err(invalid(
            flag,
            value,
            "empty; name an iptables binary or its path",
        ));
    }
    if value.chars().any(char::is_whitespace) {
        // Likely `--iptables "iptables -w"`: it is a binary, not a command line.
        return Err(invalid(
            flag,
            value,
            "contains whitespace; give only the binary or its path",
        ));
    }
    Ok(value.to_string())
}

/// `iptables` → `ip6tables`, `/usr/sbin/iptables-legacy` → `/usr/sbin/ip6tables-legacy`.
fn default_ip6tables(iptables: &str) -> String {
    let (dir, file) = match iptables.rfind('/') {
        Some(i) => iptables.split_at(i + 1),
        None => ("", iptables),
    };
    if file.contains("iptables") {
        format!("{dir}{}", file.replacen("iptables", "ip6tables", 1))
    } else {
        "ip6tables".to_string()
    }
}

// === Plan ===

/// One command of the plan and how [`execute`] treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    argv: Vec<String>,
    kind: StepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// Run; failure is an error.
    Plain,
    /// `-N CHAIN`: a failure is fine if the chain exists (checked with `-S CHAIN`).
    NewChain,
    /// `-A BUILTIN -j CHAIN`: run `-C` first and append only if the rule is missing.
    AppendIfMissing,
}

fn steps(args: &InitArgs) -> Result<Vec<Step>, InitError> {
    let config = validate(args)?;
    let mut steps = family_steps(&config, &config.iptables, &config.skip_subnets_v4);
    if let Some(ip6tables) = &config.ip6tables {
        steps.extend(family_steps(&config, ip6tables, &config.skip_subnets_v6));
    }
    Ok(steps)
}

/// The rules of one address family, in the order they are applied.
fn family_steps(config: &Config, bin: &str, skip_subnets: &[String]) -> Vec<Step> {
    let cmd = |kind: StepKind, rest: &[&str]| Step {
        argv: [bin, "-t", "nat"]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect(),
        kind,
    };
    let plain = |rest: &[&str]| cmd(StepKind::Plain, rest);
    let inbound_port = config.inbound_port.to_string();
    let outbound_port = config.outbound_port.to_string();
    let uid = config.proxy_uid.to_string();

    let mut steps = Vec::new();

    // Inbound: everything TCP to the proxy's inbound port but the skipped ports.
    steps.push(cmd(StepKind::NewChain, &["-N", INBOUND_CHAIN]));
    steps.push(plain(&["-F", INBOUND_CHAIN]));
    for port in &config.skip_inbound {
        let port = port.to_string();
        steps.push(plain(&[
            "-A",
            INBOUND_CHAIN,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "RETURN",
        ]));
    }
    steps.push(plain(&[
        "-A",
        INBOUND_CHAIN,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &inbound_port,
    ]));

    // Outbound. Order matters: the proxy's own connections first (including those it makes to the
    // app after accepting inbound, and to the original destination after accepting outbound).
    steps.push(cmd(StepKind::NewChain, &["-N", OUTBOUND_CHAIN]));
    steps.push(plain(&["-F", OUTBOUND_CHAIN]));
    steps.push(plain(&[
        "-A",
        OUTBOUND_CHAIN,
        "-m",
        "owner",
        "--uid-owner",
        &uid,
        "-j",
        "RETURN",
    ]));
    // Loopback is the app talking to itself or to the proxy's loopback ports; as in Linkerd this
    // includes connections to the namespace's own address, which the kernel also routes over lo.
    steps.push(plain(&["-A", OUTBOUND_CHAIN, "-o", "lo", "-j", "RETURN"]));
    for port in &config.skip_outbound {
        let port = port.to_string();
        steps.push(plain(&[
            "-A",
            OUTBOUND_CHAIN,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "RETURN",
        ]));
    }
    for subnet in skip_subnets {
        steps.push(plain(&["-A", OUTBOUND_CHAIN, "-d", subnet, "-j", "RETURN"]));
    }
    steps.push(plain(&[
        "-A",
        OUTBOUND_CHAIN,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &outbound_port,
    ]));

    // The jumps last, so traffic is redirected only once the chains are complete.
    steps.push(cmd(
        StepKind::AppendIfMissing,
        &["-A", "PREROUTING", "-j", INBOUND_CHAIN],
    ));
    steps.push(cmd(
        StepKind::AppendIfMissing,
        &["-A", "OUTPUT", "-j", OUTBOUND_CHAIN],
    ));
    steps
}

// === Execution ===

/// What running one command produced.
#[derive(Debug, Clone)]
struct Outcome {
    success: bool,
    status: String,
    stderr: String,
}

/// Runs command lines; the real one spawns processes, tests substitute a model of the nat table.
trait Runner {
    fn run(&mut self, argv: &[String]) -> Result<Outcome, InitError>;
}

struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, argv: &[String]) -> Result<Outcome, InitError> {
        let Some((bin, rest)) = argv.split_first() else {
            return Ok(Outcome {
                success: true,
                status: "empty command".into(),
                stderr: String::new(),
            });
        };
        let mut tries = 0;
        loop {
            tracing::debug!(command = %display_command(argv), "running");
            let output =
                Command::new(bin)
                    .args(rest)
                    .output()
                    .map_err(|source| InitError::Spawn {
                        command: display_command(argv),
                        source,
                    })?;
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if !output.status.success() && stderr.contains("xtables lock") && tries < LOCK_RETRIES {
                tries += 1;
                std::thread::sleep(LOCK_RETRY_DELAY);
                continue;
            }
            return Ok(Outcome {
                success: output.status.success(),
                status: output.status.to_string(),
                stderr,
            });
        }
    }
}

fn failed(argv: &[String], outcome: Outcome) -> InitError {
    InitError::CommandFailed {
        command: display_command(argv),
        status: outcome.status,
        stderr: if outcome.stderr.is_empty() {
            "(no output on stderr)".into()
        } else {
            outcome.stderr
        },
    }
}

/// Runs the plan, stopping at the first failure.
fn execute(steps: &[Step], runner: &mut dyn Runner) -> Result<(), InitError> {
    for step in steps {
        match step.kind {
            StepKind::Plain => {
                let outcome = runner.run(&step.argv)?;
                if !outcome.success {
                    return Err(failed(&step.argv, outcome));
                }
            }
            StepKind::NewChain => {
                let outcome = runner.run(&step.argv)?;
                // Rather than matching iptables' message ("Chain already exists", worded differently
                // across versions and backends), ask whether the chain is there.
                if !outcome.success && !runner.run(&with_op(&step.argv, "-S"))?.success {
                    return Err(failed(&step.argv, outcome));
                }
            }
            StepKind::AppendIfMissing => {
                if runner.run(&with_op(&step.argv, "-C"))?.success {
                    continue;
                }
                let outcome = runner.run(&step.argv)?;
                if !outcome.success {
                    return Err(failed(&step.argv, outcome));
                }
            }
        }
    }
    Ok(())
}

/// The same command line with its operation (`-N`, `-A`, …, the word after `-t nat`) replaced.
fn with_op(argv: &[String], op: &str) -> Vec<String> {
    let mut argv = argv.to_vec();
    if let Some(slot) = argv.get_mut(3) {
        *slot = op.to_string();
    }
    argv
}

/// A command line as a shell would take it: words joined by spaces, quoted where needed.
fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
