//! A description of the machine and the tools, for the head of the report.

use std::fs;
use std::process::Command;

/// Facts about the machine the suite ran on, for the report.
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub os: String,
}

impl Machine {
    /// Reads /proc/cpuinfo, /proc/meminfo, uname and /etc/os-release. A
    /// value that cannot be read is reported as "unknown".
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = first_value(&cpuinfo, "model name").unwrap_or_else(unknown);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let kernel = nix::sys::utsname::uname()
            .map(|uts| uts.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| unknown());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = first_value(&meminfo, "MemTotal")
            .and_then(|value| value.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os = first_value(&os_release.replace('=', ":"), "PRETTY_NAME")
            .map(|name| name.trim_matches('"').to_owned())
            .unwrap_or_else(unknown);
        Self {
            cpu_model,
            cores,
            kernel,
            memory_gib: memory_kib / (1024.0 * 1024.0),
            os,
        }
    }
}

/// Returns the value after `key:` on the first line that starts with `key`.
fn first_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_owned())
}

fn unknown() -> String {
    "unknown".to_owned()
}

/// Returns the first three fields of /proc/loadavg: the load averages over
/// 1, 5 and 15 minutes.
pub fn load_average() -> String {
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    match fields.len() {
        3 => fields.join(", "),
        _ => unknown(),
    }
}

/// Returns the installed version of a Debian package, or `None` when it is
/// not installed or dpkg is missing.
pub fn package_version(package: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat", "${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !version.is_empty()).then_some(version)
}
