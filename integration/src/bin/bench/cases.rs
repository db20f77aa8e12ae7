//! The benchmark cases. Cases that compare paths run every path once per
//! round, round after round, so a slow phase of the machine touches all
//! paths alike and the ratios stay comparable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Context, Result, bail};
use crate::options::{Case, Options};
use crate::paths::{Launcher, NetworkPath};
use crate::procfs;
use crate::results::{Cell, Metric, Results, Row};
use crate::servers::{BENCH_NAME, Servers};

const MIB: f64 = 1024.0 * 1024.0;

/// The number of idle connections the memory case holds, in rows.
const MEMORY_CONNECTIONS: [usize; 3] = [0, 1_000, 10_000];

/// The idle connections the idle CPU case holds.
const IDLE_CPU_CONNECTIONS: usize = 100;

/// The idle connections the throughput-under-load case holds.
const IDLE_THROUGHPUT_CONNECTIONS: usize = 10_000;

/// How long the hold client may take to open its connections.
const HOLD_OPEN_TIMEOUT: Duration = Duration::from_secs(600);

/// The hold client ends by itself after this long even if nobody releases it.
const HOLD_MAX: Duration = Duration::from_secs(1800);

/// The bytes of one request/response round trip.
const ROUND_TRIP_SIZE: usize = 16;

/// Everything a case needs to run clients and reach the servers.
pub struct Suite<'a> {
    pub options: &'a Options,
    pub launcher: &'a Launcher,
    pub servers: &'a Servers,
    /// The bench binary, where every path's user can run it.
    pub bench_bin: PathBuf,
    /// dnsperf's input file: one query for [`BENCH_NAME`].
    pub dnsperf_input: PathBuf,
    /// Paths that cannot run here, with the reason.
    pub unavailable: BTreeMap<NetworkPath, String>,
    pub results: Results,
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

    fn throughput(&mut self) {
        let cases = [
            ("tcp-up-1", "TCP jail→host, 1 stream", false, 1),
            ("tcp-down-1", "TCP host→jail, 1 stream", true, 1),
            ("tcp-up-4", "TCP jail→host, 4 streams", false, 4),
            ("tcp-down-4", "TCP host→jail, 4 streams", true, 4),
        ];
        for (key, label, reverse, streams) in cases {
            let metric = Metric {
                key,
                label,
                unit: "Gbit/s",
            };
            self.compare(&[metric], |suite, path| {
                let argv = suite.iperf3_argv(path, reverse, streams);
                let output = suite.launcher.run(path, &argv, suite.client_timeout())?;
                Ok(vec![parse_iperf3_gbits(&output)?])
            });
        }
    }

    fn iperf3_argv(&self, path: NetworkPath, reverse: bool, streams: usize) -> Vec<String> {
        let mut argv = strings(&["iperf3", "--client", &path.server_host()]);
        argv.extend(strings(&["--port", &self.servers.iperf.port.to_string()]));
        argv.extend(strings(&["--time", &self.options.seconds.to_string()]));
        argv.extend(strings(&[
            "--parallel",
            &streams.to_string(),
            "--json",
            "-4",
        ]));
        if reverse {
            argv.push("--reverse".to_owned());
        }
        argv
    }

    fn connection_rate(&mut self) {
        let metric = Metric {
            key: "connect",
            label: "HTTP, new connection per request",
            unit: "requests/s",
        };
        self.compare(&[metric], |suite, path| {
            let url = format!(
                "http://{}:{}/pages/bench",
                path.server_host(),
                suite.servers.http.port()
            );
            let duration = format!("{}s", suite.options.seconds);
            let argv = strings(&["wrk", "--threads", "1", "--connections", "8"])
                .into_iter()
                .chain(strings(&["--duration", &duration]))
                .chain(strings(&["--header", "Connection: close", &url]))
                .collect::<Vec<_>>();
            let output = suite.launcher.run(path, &argv, suite.client_timeout())?;
            let (rate, errors) = parse_wrk(&output)?;
            if let Some(errors) = errors {
                suite.note(format!("wrk on {path}: {errors}"));
            }
            Ok(vec![rate])
        });
    }

    fn round_trip_latency(&mut self) {
        let metrics = [
            Metric {
                key: "rr-p50",
                label: "16-byte round trip, kept-alive, p50",
                unit: "µs",
            },
            Metric {
                key: "rr-p99",
                label: "16-byte round trip, kept-alive, p99",
                unit: "µs",
            },
        ];
        self.compare(&metrics, |suite, path| {
            let mut argv = suite.client_argv("round-trips");
            argv.extend(strings(&["--host", &path.server_host()]));
            argv.extend(strings(&["--port", &suite.servers.echo_port.to_string()]));
            argv.extend(strings(&[
                "--count",
                &suite.options.round_trips.to_string(),
            ]));
            argv.extend(strings(&["--size", &ROUND_TRIP_SIZE.to_string()]));
            let output = suite.launcher.run(path, &argv, suite.client_timeout())?;
            let result = parse_json(&output)?;
            Ok(vec![
                json_f64(&result, "p50_us")?,
                json_f64(&result, "p99_us")?,
            ])
        });
    }

    fn dns(&mut self) {
        let rate = Metric {
            key: "dns-qps",
            label: "DNS A queries (dnsperf, 100 outstanding)",
            unit: "queries/s",
        };
        self.compare(&[rate], |suite, path| {
            let server = path.dns_server(suite.servers.dns.addr());
            let mut argv = strings(&["dnsperf", "-s", &server.ip().to_string()]);
            argv.extend(strings(&["-p", &server.port().to_string()]));
            argv.extend(strings(&["-l", &suite.options.seconds.to_string()]));
            argv.push("-d".to_owned());
            argv.push(suite.dnsperf_input.display().to_string());
            let output = suite.launcher.run(path, &argv, suite.client_timeout())?;
            let (rate, lost) = parse_dnsperf(&output)?;
            if lost > 0 {
                suite.note(format!("dnsperf on {path}: {lost} queries lost"));
            }
            Ok(vec![rate])
        });

        let latency = [
            Metric {
                key: "dns-p50",
                label: "DNS A query, sequential, p50",
                unit: "µs",
            },
            Metric {
                key: "dns-p99",
                label: "DNS A query, sequential, p99",
                unit: "µs",
            },
        ];
        self.compare(&latency, |suite, path| {
            let server = path.dns_server(suite.servers.dns.addr());
            let mut argv = suite.client_argv("dns");
            argv.extend(strings(&[
                "--server",
                &server.to_string(),
                "--name",
                BENCH_NAME,
            ]));
            argv.extend(strings(&[
                "--count",
                &suite.options.dns_queries.to_string(),
            ]));
            let output = suite.launcher.run(path, &argv, suite.client_timeout())?;
            let result = parse_json(&output)?;
            let lost = json_f64(&result, "lost")?;
            if lost > 0.0 {
                suite.note(format!("DNS latency client on {path}: {lost} queries lost"));
            }
            Ok(vec![
                json_f64(&result, "p50_us")?,
                json_f64(&result, "p99_us")?,
            ])
        });
    }

    /// Measures the supervisor's peak RSS with idle connections held open.
    fn memory(&mut self) {
        for count in MEMORY_CONNECTIONS {
            let metric = Metric {
                key: memory_key(count),
                label: memory_label(count),
                unit: "MiB",
            };
            self.netjail_only(metric, self.options.runs.min(3), |suite| {
                let mut running = suite.start_hold(count, &[])?;
                let peak_rss = procfs::peak_rss(running.pid())?;
                running.close_stdin();
                running.finish(suite.client_timeout())?;
                Ok(peak_rss as f64 / MIB)
            });
        }
    }

    /// Measures the supervisor's CPU time while the jail holds idle
    /// connections and does nothing else.
    fn idle_cpu(&mut self) {
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
    fn idle_throughput(&mut self) {
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
                let measured = self.iperf3_with_idle_connections(count);
                eprintln!(
                    "bench: {} run {}/{}: {}",
                    self.results.rows[first + offset].metric.label,
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

    /// Starts the hold client in netjail with `count` connections to the hold
    /// server and returns once they are all open on both ends. With a
    /// `command`, the client runs it next and then exits.
    fn start_hold(&self, count: usize, command: &[String]) -> Result<crate::paths::Running> {
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
    /// one row per metric. A path whose run fails is not run again in this
    /// case, and its cells keep the error.
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
                let measured = measure(self, path).and_then(|values| {
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

    /// Runs `measure` `runs` times in netjail and appends one row.
    fn netjail_only(
        &mut self,
        metric: Metric,
        runs: usize,
        measure: impl Fn(&mut Self) -> Result<f64>,
    ) {
        let mut cell = Cell::default();
        for run in 0..runs {
            let measured = measure(self);
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

    fn client_argv(&self, client: &str) -> Vec<String> {
        vec![
            self.bench_bin.display().to_string(),
            "client".to_owned(),
            client.to_owned(),
        ]
    }

    /// The limit on one client run: its measuring time plus a minute for
    /// namespace setup and teardown.
    fn client_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.options.seconds) + 60)
    }

    fn note(&mut self, note: String) {
        eprintln!("bench: note: {note}");
        self.results.notes.push(note);
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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

fn parse_json(output: &str) -> Result<serde_json::Value> {
    serde_json::from_str(output.trim()).with_context(|| format!("invalid JSON output: {output}"))
}

fn json_f64(value: &serde_json::Value, key: &str) -> Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("no number {key:?} in {value}"))
}

/// Returns the receiver's throughput from `iperf3 --json`, in Gbit/s.
fn parse_iperf3_gbits(output: &str) -> Result<f64> {
    let report = parse_json(output)?;
    if let Some(error) = report["error"].as_str() {
        bail!("iperf3 reported: {error}");
    }
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 output has no end.sum_received.bits_per_second")?;
    Ok(bits / 1e9)
}

/// Returns wrk's requests per second, and its socket-error line when any
/// count in it is not zero.
fn parse_wrk(output: &str) -> Result<(f64, Option<String>)> {
    let rate = line_value(output, "Requests/sec:")
        .with_context(|| format!("wrk printed no Requests/sec line:\n{output}"))?;
    let errors: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("Socket errors:") || line.starts_with("Non-2xx"))
        .filter(|line| has_nonzero_count(line))
        .collect();
    Ok((rate, (!errors.is_empty()).then(|| errors.join("; "))))
}

/// Returns whether any number after the colon in `line` is not zero.
fn has_nonzero_count(line: &str) -> bool {
    let counts = line.split_once(':').map_or("", |(_, counts)| counts);
    counts
        .split(|c: char| !c.is_ascii_digit())
        .filter(|digits| !digits.is_empty())
        .any(|digits| digits.bytes().any(|b| b != b'0'))
}

/// Returns dnsperf's queries per second and lost queries.
fn parse_dnsperf(output: &str) -> Result<(f64, u64)> {
    let rate = line_value(output, "Queries per second:")
        .with_context(|| format!("dnsperf printed no queries per second:\n{output}"))?;
    let lost = line_value(output, "Queries lost:").unwrap_or(0.0);
    Ok((rate, lost as u64))
}

/// Returns the number after `label` on the first line that starts with it,
/// ignoring leading spaces and anything after the number.
fn line_value(output: &str, label: &str) -> Option<f64> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 5s test @ http://127.0.0.1:1/pages/bench
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.00us  100.00us   2.00ms   90.00%
    Req/Sec     7.50k   500.00     8.00k    70.00%
  37500 requests in 5.00s, 5.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:   7500.12
Transfer/sec:      1.00MB";

    const DNSPERF_OUTPUT: &str = "Statistics:

  Queries sent:         100000
  Queries completed:    99990 (99.99%)
  Queries lost:         10 (0.01%)

  Queries per second:   19998.000000

  Average Latency (s):  0.000500 (min 0.000100, max 0.002000)";

    #[test]
    fn wrk_rate_and_errors() {
        let (rate, errors) = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(rate, 7500.12);
        assert_eq!(
            errors.as_deref(),
            Some("Socket errors: connect 0, read 3, write 0, timeout 0")
        );
    }

    #[test]
    fn wrk_without_errors() {
        let output = WRK_OUTPUT.replace("read 3", "read 0");
        let (_, errors) = parse_wrk(&output).unwrap();
        assert_eq!(errors, None);
    }

    #[test]
    fn dnsperf_rate_and_lost() {
        let (rate, lost) = parse_dnsperf(DNSPERF_OUTPUT).unwrap();
        assert_eq!(rate, 19998.0);
        assert_eq!(lost, 10);
    }

    #[test]
    fn iperf3_receiver_rate() {
        let output = r#"{"end": {"sum_received": {"bits_per_second": 2.5e10}}}"#;
        assert_eq!(parse_iperf3_gbits(output).unwrap(), 25.0);
    }

    #[test]
    fn iperf3_error_is_reported() {
        let output = r#"{"error": "unable to connect to server"}"#;
        let err = parse_iperf3_gbits(output).unwrap_err();
        assert!(err.to_string().contains("unable to connect"), "{err}");
    }
}
