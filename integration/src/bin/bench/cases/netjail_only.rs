//! The cases that measure netjail alone: the supervisor's memory and idle
//! CPU time, and throughput while many idle connections are open.

use std::time::Duration;

use super::parse::parse_iperf3_gbits;
use super::{HOLD_OPEN_TIMEOUT, Suite, record, show, values};
use crate::error::Result;
use crate::paths::NetworkPath;
use crate::procfs;
use crate::results::{Cell, Metric, Row};

const MIB: f64 = 1024.0 * 1024.0;

/// The idle connection counts of the memory case, one row each.
const MEMORY_CONNECTIONS: [usize; 3] = [0, 1_000, 10_000];

/// The maximum number of runs of each memory row: peak RSS varies little
/// from run to run, and 10,000 connections take a while to open and close.
const MAX_MEMORY_RUNS: usize = 3;

/// Idle connections kept open during the idle CPU window.
const IDLE_CPU_CONNECTIONS: usize = 100;

/// Idle connections kept open while the idle-throughput case runs iperf3.
const IDLE_THROUGHPUT_CONNECTIONS: usize = 10_000;

impl Suite<'_> {
    /// Measures the supervisor's peak RSS with idle connections held open.
    pub(super) fn memory(&mut self) {
        for count in MEMORY_CONNECTIONS {
            let metric = Metric {
                key: memory_key(count),
                label: memory_label(count),
                unit: "MiB",
            };
            self.netjail_only(metric, memory_runs(self.options.runs), |suite| {
                let mut running = suite.start_hold(count, &[])?;
                let peak_rss = procfs::peak_rss(running.pid())?;
                running.close_stdin();
                running.finish(suite.client_timeout())?;
                Ok(peak_rss as f64 / MIB)
            });
        }
    }

    /// Measures the supervisor's CPU time while the jail keeps idle
    /// connections open and does nothing else.
    pub(super) fn idle_cpu(&mut self) {
        let seconds = self.options.idle_seconds;
        let ticks = Metric {
            key: "idle-cpu",
            label: "supervisor CPU (utime+stime), idle with 100 connections",
            unit: "ms",
        };
        let scheduled = Metric {
            key: "idle-cpu-schedstat",
            label: "supervisor CPU (schedstat), idle with 100 connections",
            unit: "ms",
        };
        let mut rows = [Row::new(ticks), Row::new(scheduled)];
        let measured = self
            .start_hold(IDLE_CPU_CONNECTIONS, &[])
            .and_then(|mut running| {
                // Let the connection setup finish before the window opens.
                std::thread::sleep(Duration::from_secs(1));
                let pid = running.pid();
                let before = procfs::cpu_time(pid)?;
                eprintln!("bench: idle CPU: waiting {seconds} s");
                std::thread::sleep(Duration::from_secs(seconds));
                let used = procfs::cpu_time(pid)?.since(&before);
                running.close_stdin();
                running.finish(self.client_timeout())?;
                Ok(used)
            });
        match measured {
            Ok(used) => {
                rows[0]
                    .cells
                    .insert(NetworkPath::Netjail, values(used.ticks.as_secs_f64() * 1e3));
                let cell = match used.scheduled {
                    Some(time) => values(time.as_secs_f64() * 1e3),
                    None => Cell::missing("the kernel has no /proc/PID/task/TID/schedstat"),
                };
                rows[1].cells.insert(NetworkPath::Netjail, cell);
            }
            Err(err) => {
                for row in &mut rows {
                    row.cells
                        .insert(NetworkPath::Netjail, Cell::missing(err.to_string()));
                }
            }
        }
        self.results.rows.extend(rows);
    }

    /// Measures one-stream throughput jail→host with no idle connections and
    /// with 10,000, alternating, in one jail per run.
    pub(super) fn idle_throughput(&mut self) {
        for count in [0, IDLE_THROUGHPUT_CONNECTIONS] {
            let metric = Metric {
                key: idle_throughput_key(count),
                label: idle_throughput_label(count),
                unit: "Gbit/s",
            };
            self.results.rows.push(Row::new(metric));
        }
        let first = self.results.rows.len() - 2;
        for run in 0..self.options.runs {
            for (offset, count) in [0, IDLE_THROUGHPUT_CONNECTIONS].into_iter().enumerate() {
                let label = self.results.rows[first + offset].metric.label;
                let what = format!("{label}, run {},", run + 1);
                let measured = self
                    .repeat_on_failure(&what, |suite| suite.iperf3_with_idle_connections(count));
                eprintln!(
                    "bench: {label} run {}/{}: {}",
                    run + 1,
                    self.options.runs,
                    show(&measured)
                );
                let cell = self.results.rows[first + offset]
                    .cells
                    .entry(NetworkPath::Netjail)
                    .or_default();
                record(cell, measured);
            }
        }
    }

    fn iperf3_with_idle_connections(&self, count: usize) -> Result<f64> {
        let iperf3 = self.iperf3_argv(NetworkPath::Netjail, false, 1);
        let running = self.start_hold(count, &iperf3)?;
        let output = running.finish(HOLD_OPEN_TIMEOUT)?;
        parse_iperf3_gbits(&output)
    }
}

/// Returns the number of runs of each memory row when the other cases run
/// `runs` times.
pub fn memory_runs(runs: usize) -> usize {
    runs.min(MAX_MEMORY_RUNS)
}

pub fn memory_key(count: usize) -> &'static str {
    match count {
        0 => "memory-0",
        1_000 => "memory-1000",
        _ => "memory-10000",
    }
}

fn memory_label(count: usize) -> &'static str {
    match count {
        0 => "supervisor peak RSS, no connections",
        1_000 => "supervisor peak RSS, 1,000 idle connections",
        _ => "supervisor peak RSS, 10,000 idle connections",
    }
}

pub fn idle_throughput_key(count: usize) -> &'static str {
    match count {
        0 => "idle-tcp-0",
        _ => "idle-tcp-10000",
    }
}

fn idle_throughput_label(count: usize) -> &'static str {
    match count {
        0 => "TCP jail→host, 1 stream, no idle connections",
        _ => "TCP jail→host, 1 stream, 10,000 idle connections",
    }
}
