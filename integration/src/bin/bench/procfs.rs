//! Memory and CPU time of another process, read from /proc.

use std::fs;
use std::time::Duration;

use crate::error::{Context, Result};

/// Returns VmHWM from /proc/PID/status: the peak resident set size since
/// the process started, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path} failed"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("{path} has no {name} line"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("invalid {name} line in {path}: {line}"))?;
        Ok(kib * 1024)
    };
    field("VmHWM:")
}

/// CPU time a process has used, summed over its threads.
#[derive(Clone, Copy, Debug)]
pub struct CpuTime {
    /// utime + stime from /proc/PID/stat, which count in clock ticks.
    pub ticks: Duration,
    /// The sum of each thread's time on the CPU from /proc/PID/task/*/schedstat,
    /// in nanoseconds. `None` when the kernel has no schedstat files.
    pub scheduled: Option<Duration>,
}

impl CpuTime {
    /// Returns the time used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        let scheduled = match (self.scheduled, earlier.scheduled) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        CpuTime {
            ticks: self.ticks.saturating_sub(earlier.ticks),
            scheduled,
        }
    }
}

/// Reads the CPU time of process `pid` and all of its threads.
pub fn cpu_time(pid: u32) -> Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path} failed"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("invalid {path}: {stat}"))?;
    let ticks_per_second = clock_ticks_per_second()?;
    Ok(CpuTime {
        ticks: Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64),
        scheduled: scheduled_time(pid),
    })
}

/// Returns utime + stime, fields 14 and 15 of /proc/PID/stat (proc(5)). The
/// command name in field 2 may contain spaces, so fields are counted from
/// the last ')'.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3, the state.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn scheduled_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let schedstat = fs::read_to_string(path).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

fn clock_ticks_per_second() -> Result<u64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .context("reading _SC_CLK_TCK failed")?
        .context("_SC_CLK_TCK is not set")?;
    Ok(ticks as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_with_spaces_in_name() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(12));
    }

    #[test]
    fn stat_ticks_of_own_process() {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat_ticks(&stat).is_some(), "{stat}");
    }
}
