//! Processes of the local mesh: starting them detached (their own process group, output to a
//! log file, so Ctrl-C in the terminal that ran `weft install` does not reach them), telling
//! whether one still runs, and stopping them (SIGTERM, then SIGKILL after a grace period).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The path of a sibling binary (`weft-controller`, `weft-proxy`, `weft-testapp`): next to the
/// running `weft`, else on `$PATH`. `WEFT_BIN_DIR` overrides the directory.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    if let Ok(exe) = std::env::current_exe() {
        let sibling = exe.with_file_name(name);
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from(name)
}

/// Starts `command` in its own process group with stdin closed and stdout and stderr appended
/// to `log`.
pub fn spawn_detached(mut command: Command, log: &Path) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("{}: cannot open the log", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("{}: cannot open the log", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .spawn()
        .with_context(|| format!("cannot start {program}"))
}

/// Whether process `pid` is alive and runs `program` (by its `/proc/<pid>/cmdline`), so a pid
/// reused by another program after a crash is not mistaken for ours.
pub fn is_running(pid: u32, program: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if is_zombie(pid) {
        return false;
    }
    cmdline
        .split(|b| *b == 0)
        .next()
        .is_some_and(|argv0| String::from_utf8_lossy(argv0).ends_with(program))
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Stops `pid` if it runs `program`: SIGTERM, then SIGKILL if it is still there after `grace`.
/// Returns whether it was running.
pub fn stop(pid: u32, program: &str, grace: Duration) -> bool {
    if !is_running(pid, program) {
        return false;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let target = Pid::from_raw(raw);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_running(pid, program) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = kill(target, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && is_running(pid, program) {
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
