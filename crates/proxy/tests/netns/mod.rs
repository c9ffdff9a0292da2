//! Network-namespace fixtures for transparent-mode tests: namespaces, veth links, processes run
//! inside them, and clean-up that happens even when a test fails.
//!
//! Everything is torn down by `Drop` guards in a fixed order (processes, then namespaces, then the
//! scratch directory), and when the test is panicking the logs of every process are printed first,
//! so a failure explains itself in CI output.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The uid (and gid) the proxies run as: the default `--proxy-uid` of `weft-proxy init`.
pub const PROXY_UID: &str = "2102";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call, e.g. `12345-3`.
pub fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A byte from 1 to 254 that differs between runs, for the namespaces' subnet (10.123.N.0/24).
/// Only needs to look random: the addresses exist only inside this run's namespaces.
pub fn random_octet() -> u8 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed =
        nanos ^ std::process::id().rotate_left(16) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    (mixed % 254 + 1) as u8
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Keeps variables starting with `prefix` (a developer's shell may set some `WEFT_PROXY_*`) out
/// of `cmd`'s environment.
pub fn remove_env(cmd: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(key);
        }
    }
}

/// Runs `cmd` to completion and returns its output; panics if it cannot be started.
pub fn output(cmd: &mut Command) -> Output {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => panic!("could not run `{}`: {e}", describe(cmd)),
    }
}

/// Runs `cmd` and panics with its stderr unless it succeeds; returns stdout.
pub fn check(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\nstdout: {}\nstderr: {}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails the test (never skips) unless it runs as root with the tools it needs.
pub fn require_root_and_tools() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    assert_eq!(
        euid, "0",
        "the transparent-mode test creates network namespaces and iptables rules and must run as \
         root (CI does); effective uid is {euid}"
    );
    for (tool, args, package) in [
        ("ip", &["netns", "list"][..], "iproute2"),
        ("iptables", &["--version"][..], "iptables"),
        ("setpriv", &["--version"][..], "util-linux"),
        ("curl", &["--version"][..], "curl"),
        ("python3", &["--version"][..], "python3"),
    ] {
        let ok = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "`{tool} {}` is unavailable; the transparent-mode test needs it (apt-get install {package})",
            args.join(" ")
        );
    }
}

/// Deletes namespaces left behind by earlier runs of these tests that were killed before their
/// guards ran (`weft-<tag>-<pid>-<n>` whose test process no longer exists), with the processes
/// those runs started inside them. Namespaces of live runs are left alone.
pub fn reap_stale_namespaces() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let parts: Vec<&str> = name.split('-').collect();
            let [prefix, tag, pid, n] = parts[..] else {
                continue;
            };
            let ours = prefix == "weft"
                && (tag == "a" || tag == "b")
                && pid.parse::<u32>().is_ok()
                && n.parse::<u32>().is_ok();
            if ours && !Path::new("/proc").join(pid).exists() {
                drop(Netns {
                    name: name.to_string(),
                });
            }
        }
    });
}

/// The weft-proxy binary Cargo built for this test.
pub fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-proxy"))
}

/// target/<profile>/weft-testapp, built on first use if missing. (It is a dev-dependency of the
/// proxy only as a library, so `cargo test` does not build its binary.)
pub fn testapp_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        // target/debug/deps/transparent-HASH → target/debug
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
            .to_path_buf();
        let bin = profile_dir.join("weft-testapp");
        if !bin.exists() {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "weft-testapp", "--bin", "weft-testapp"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .unwrap_or_else(|e| panic!("could not run `{}`: {e}", describe(&cmd)));
            assert!(status.success(), "`{}` failed: {status}", describe(&cmd));
        }
        assert!(bin.exists(), "{} missing after building it", bin.display());
        bin
    })
    .clone()
}

/// Whether a process running as an unprivileged uid can execute `path` (every directory on the
/// way searchable by others, the file executable by others).
pub fn executable_by_others(path: &Path) -> bool {
    let others_x = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    };
    others_x(path) && path.ancestors().skip(1).all(others_x)
}

/// A network namespace, deleted on drop. Processes still inside it are killed first (all of them
/// were started by this test: the namespace is ours alone).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("weft-{tag}-{}", unique_suffix());
        check(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        check(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// `ip netns exec NAME program args…`, not yet run.
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, program: S) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `ip -n NAME args…`, checked.
    pub fn ip(&self, args: &[&str]) -> String {
        check(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs curl inside the namespace as root (with `-sS --max-time 10` and `args`); stdout on
    /// success, else the exit status and stderr.
    pub fn curl(&self, args: &[&str]) -> Result<String, String> {
        let out = output(
            self.cmd("curl")
                .args(["-sS", "--max-time", "10"])
                .args(args),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "curl {} in {}: {}: {}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Joins two namespaces with a veth pair named `eth0` on both ends and gives them
/// `10.123.<octet>.1/24` and `.2/24`.
pub fn link(a: &Netns, b: &Netns, octet: u8) -> (String, String) {
    let (ip_a, ip_b) = (format!("10.123.{octet}.1"), format!("10.123.{octet}.2"));
    // Created inside A with its peer placed straight into B: no name ever exists in the host's
    // namespace, so parallel runs cannot collide.
    a.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ]);
    for (ns, ip) in [(a, &ip_a), (b, &ip_b)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    (ip_a, ip_b)
}

/// A scratch directory for logs and scripts, removed on drop unless the test failed.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let path = std::env::temp_dir().join(format!("weft-transparent-{}", unique_suffix()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // Searchable by the proxy's uid (for a copied binary).
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept logs of the failed test in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A background process, killed (by its pid) and reaped on drop.
pub struct Proc {
    pub label: String,
    pub log: PathBuf,
    child: Mutex<Child>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `dir/<label>.log`.
    pub fn spawn(label: &str, dir: &Path, mut cmd: Command) -> Proc {
        let log = dir.join(format!("{label}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {label} (`{}`): {e}", describe(&cmd)));
        Proc {
            label: label.to_string(),
            log,
            child: Mutex::new(child),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the process's log if it has exited.
    pub fn assert_running(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.label,
                self.log_text()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `timeout`; `None` on timeout.
/// While waiting, fails the test at once if one of `procs` died (with its log).
pub fn poll<T>(
    timeout: Duration,
    procs: &[&Proc],
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        for p in procs {
            p.assert_running();
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll`], panicking with `what` on timeout.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    procs: &[&Proc],
    probe: impl FnMut() -> Option<T>,
) -> T {
    poll(timeout, procs, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Sum of the samples of metric `name` whose labels contain every one of `labels` (`key="value"`
/// fragments) in a Prometheus text exposition.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labelset, value) = if let Some(rest) = rest.strip_prefix('{') {
                let (labelset, value) = rest.split_once('}')?;
                (labelset, value)
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None; // another metric whose name starts with `name`
            };
            let has =
                |want: &&str| labelset.starts_with(*want) || labelset.contains(&format!(",{want}"));
            if !labels.iter().all(has) {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}
