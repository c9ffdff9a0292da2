//! Process metrics from /proc: resident memory, CPU seconds, open and maximum file descriptors,
//! start time. On systems without /proc only the start time is reported.

use std::fmt::Write as _;
use std::time::SystemTime;

/// Clock ticks per second for /proc/self/stat times (USER_HZ, 100 on every Linux ABI in use).
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends the process families.
pub fn encode(out: &mut String, start: SystemTime) {
    let start = crate::telemetry::unix_seconds(start);
    gauge(
        out,
        "process_start_time_seconds",
        "Time the process started, in seconds since the Unix epoch.",
        start,
    );
    if let Some((utime, stime)) = cpu_ticks() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent, in seconds."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(
            out,
            "process_cpu_seconds_total {}",
            (utime + stime) as f64 / TICKS_PER_SECOND
        );
    }
    if let Some(kib) = status_kib("VmRSS:") {
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            (kib * 1024) as f64,
        );
    }
    if let Some(kib) = status_kib("VmSize:") {
        gauge(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            (kib * 1024) as f64,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// (utime, stime) in clock ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line; utime and stime are fields 14 and 15.
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_this_process() {
        let mut out = String::new();
        super::encode(&mut out, std::time::SystemTime::now());
        assert!(out.contains("process_start_time_seconds "));
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(out.contains("process_cpu_seconds_total "), "{out}");
            assert!(out.contains("process_resident_memory_bytes "));
            assert!(out.contains("process_open_fds "));
            assert!(out.contains("process_max_fds "));
        }
    }
}
