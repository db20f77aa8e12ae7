//! The benchmark cases. Cases that compare paths run every path once per
//! round, round after round, so a slow phase of the machine touches all
//! paths alike and the ratios stay comparable.

mod compared;
mod netjail_only;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, bail};
use crate::options::{Case, Options};
use crate::paths::{Launcher, NetworkPath, Running};
use crate::results::{Cell, Metric, Results, Row};
use crate::servers::{BENCH_NAME, Servers};

pub use netjail_only::{idle_throughput_key, memory_key, memory_runs};

/// How long the hold client may take to open its connections.
const HOLD_OPEN_TIMEOUT: Duration = Duration::from_secs(600);

/// The hold client exits after this long even when the suite never closes
/// its standard input.
const HOLD_MAX: Duration = Duration::from_secs(1800);

/// Everything a case needs to run clients and reach the servers.
pub struct Suite<'a> {
    pub options: &'a Options,
    pub launcher: &'a Launcher,
    pub servers: &'a Servers,
    /// The bench binary, where every path's user can run it.
    pub bench_bin: PathBuf,
    /// dnsperf's input file: one A query for the dual-stack name.
    pub dnsperf_input: PathBuf,
    /// Paths that cannot run here, with the reason.
    pub unavailable: BTreeMap<NetworkPath, String>,
    pub results: Results,
    /// Names whose upstream query count is already in the notes.
    pub upstream_noted: BTreeSet<String>,
}

impl Suite<'_> {
    /// Runs every case the options select.
    pub fn run_all(&mut self) {
        for case in self.options.cases.clone() {
            match case {
                Case::Throughput => self.throughput(),
                Case::Connect => self.connection_rate(),
                Case::Latency => self.round_trip_latency(),
                Case::Dns => self.dns(),
                Case::Memory => self.memory(),
                Case::IdleCpu => self.idle_cpu(),
                Case::IdleThroughput => self.idle_throughput(),
            }
        }
    }

    /// Starts the hold client in netjail with `count` connections to the hold
    /// server and returns once they are all open on both ends. With a
    /// `command`, the client runs it next and then exits.
    fn start_hold(&self, count: usize, command: &[String]) -> Result<Running> {
        let mut argv = self.client_argv("hold");
        argv.extend(strings(&["--host", BENCH_NAME]));
        argv.extend(strings(&["--port", &self.servers.hold.port.to_string()]));
        argv.extend(strings(&["--count", &count.to_string()]));
        argv.extend(strings(&["--max-hold", &HOLD_MAX.as_secs().to_string()]));
        if !command.is_empty() {
            argv.push("--".to_owned());
            argv.extend(command.iter().cloned());
        }
        let baseline = self.servers.hold.open_connections();
        let mut running = self.launcher.spawn(NetworkPath::Netjail, &argv, true)?;
        running.expect_line("ready", HOLD_OPEN_TIMEOUT)?;
        let open = self
            .servers
            .hold
            .wait_for_open(baseline + count, Duration::from_secs(30));
        if open < baseline + count {
            bail!(
                "the hold server has {} of {count} connections open",
                open - baseline.min(open)
            );
        }
        Ok(running)
    }

    /// Runs `measure` on every available path, once per round, and appends
    /// one row per metric. A failed run is repeated once. A path whose
    /// repeated run fails too is not run again in this case, and its cells
    /// keep the error.
    fn compare(
        &mut self,
        metrics: &[Metric],
        measure: impl Fn(&mut Self, NetworkPath) -> Result<Vec<f64>>,
    ) {
        let mut rows: Vec<Row> = metrics.iter().copied().map(Row::new).collect();
        for row in &mut rows {
            for (path, reason) in &self.unavailable {
                row.cells.insert(*path, Cell::missing(reason.clone()));
            }
        }
        let paths: Vec<NetworkPath> = self
            .options
            .paths
            .iter()
            .copied()
            .filter(|path| !self.unavailable.contains_key(path))
            .collect();

        for run in 0..self.options.runs {
            for &path in &paths {
                if rows[0]
                    .cells
                    .get(&path)
                    .is_some_and(|cell| cell.missing.is_some())
                {
                    continue;
                }
                let what = format!("{}, run {} on {path},", metrics[0].label, run + 1);
                let measured = self
                    .repeat_on_failure(&what, |suite| measure(suite, path))
                    .and_then(|values| {
                        if values.len() != rows.len() {
                            bail!("expected {} values, got {}", rows.len(), values.len());
                        }
                        Ok(values)
                    });
                eprintln!(
                    "bench: {} run {}/{} on {path}: {}",
                    metrics[0].label,
                    run + 1,
                    self.options.runs,
                    match &measured {
                        Ok(values) => format!("{values:.3?}"),
                        Err(err) => format!("failed: {err}"),
                    }
                );
                for (i, row) in rows.iter_mut().enumerate() {
                    let cell = row.cells.entry(path).or_default();
                    match &measured {
                        Ok(values) => cell.values.push(values[i]),
                        Err(err) => cell.missing = Some(err.to_string()),
                    }
                }
            }
        }
        self.results.rows.extend(rows);
    }

    /// Runs `measure` `runs` times in netjail and appends one row. A failed
    /// run is repeated once, and when that fails too, the row keeps the error.
    fn netjail_only(
        &mut self,
        metric: Metric,
        runs: usize,
        measure: impl Fn(&mut Self) -> Result<f64>,
    ) {
        let mut cell = Cell::default();
        for run in 0..runs {
            let what = format!("{}, run {},", metric.label, run + 1);
            let measured = self.repeat_on_failure(&what, &measure);
            eprintln!(
                "bench: {} run {}/{runs}: {}",
                metric.label,
                run + 1,
                show(&measured)
            );
            let failed = measured.is_err();
            record(&mut cell, measured);
            if failed {
                break;
            }
        }
        let mut row = Row::new(metric);
        row.cells.insert(NetworkPath::Netjail, cell);
        self.results.rows.push(row);
    }

    /// Runs `measure`, and once more when it fails, after noting the first
    /// failure, so one flaky run does not cost a path its whole row.
    fn repeat_on_failure<T>(
        &mut self,
        what: &str,
        measure: impl Fn(&mut Self) -> Result<T>,
    ) -> Result<T> {
        match measure(self) {
            Ok(value) => Ok(value),
            Err(err) => {
                self.note(format!("{what} failed and was repeated: {err}"));
                measure(self)
            }
        }
    }

    fn client_argv(&self, client: &str) -> Vec<String> {
        vec![
            self.bench_bin.display().to_string(),
            "client".to_owned(),
            client.to_owned(),
        ]
    }

    /// Returns the limit on one client run: its measuring time plus a minute
    /// for namespace setup and teardown.
    fn client_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.options.seconds) + 60)
    }

    /// Adds the first line of `note` to the report's notes and prints all of
    /// it, since error messages continue with the command and its stderr.
    fn note(&mut self, note: String) {
        eprintln!("bench: note: {note}");
        let first_line = note.lines().next().unwrap_or_default().to_owned();
        self.results.notes.push(first_line);
    }
}

fn record(cell: &mut Cell, measured: Result<f64>) {
    match measured {
        Ok(value) => cell.values.push(value),
        Err(err) => cell.missing = Some(err.to_string()),
    }
}

fn show(measured: &Result<f64>) -> String {
    match measured {
        Ok(value) => format!("{value:.3}"),
        Err(err) => format!("failed: {err}"),
    }
}

fn values(value: f64) -> Cell {
    Cell {
        values: vec![value],
        missing: None,
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
