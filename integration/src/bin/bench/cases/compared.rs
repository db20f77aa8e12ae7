//! The cases that compare every path with direct loopback: TCP throughput,
//! connection setup, kept-alive round trips and DNS.

use super::Suite;
use super::parse::{json_f64, parse_dnsperf, parse_iperf3_gbits, parse_json, parse_wrk};
use super::strings;
use crate::clients::WARMUP_COUNT;
use crate::error::Result;
use crate::paths::NetworkPath;
use crate::results::Metric;
use crate::servers::{BENCH_NAME, DUAL_STACK_NAME};

/// The bytes of one request/response round trip.
const ROUND_TRIP_SIZE: usize = 16;

impl Suite<'_> {
    pub(super) fn throughput(&mut self) {
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

    pub(super) fn iperf3_argv(
        &self,
        path: NetworkPath,
        reverse: bool,
        streams: usize,
    ) -> Vec<String> {
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

    pub(super) fn connection_rate(&mut self) {
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

    pub(super) fn round_trip_latency(&mut self) {
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

    pub(super) fn dns(&mut self) {
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

        let dual_stack = [
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
        self.compare(&dual_stack, |suite, path| {
            suite.dns_latency(path, DUAL_STACK_NAME)
        });

        let a_only = [
            Metric {
                key: "dns-a-only-p50",
                label: "DNS A query, sequential, name without AAAA, p50",
                unit: "µs",
            },
            Metric {
                key: "dns-a-only-p99",
                label: "DNS A query, sequential, name without AAAA, p99",
                unit: "µs",
            },
        ];
        self.compare(&a_only, |suite, path| suite.dns_latency(path, BENCH_NAME));
    }

    /// Runs the sequential DNS client for `name` on `path` and returns p50
    /// and p99. On netjail's first run it also notes how many queries
    /// netjail sent upstream, which shows whether netjail served the name from a cache.
    fn dns_latency(&mut self, path: NetworkPath, name: &str) -> Result<Vec<f64>> {
        let server = path.dns_server(self.servers.dns.addr());
        let mut argv = self.client_argv("dns");
        argv.extend(strings(&["--server", &server.to_string(), "--name", name]));
        argv.extend(strings(&["--count", &self.options.dns_queries.to_string()]));

        let upstream_before = self.servers.dns.queries().len();
        let output = self.launcher.run(path, &argv, self.client_timeout())?;
        let upstream = self.servers.dns.queries().len() - upstream_before;
        let result = parse_json(&output)?;

        let lost = json_f64(&result, "lost")?;
        if lost > 0.0 {
            self.note(format!(
                "DNS client for {name} on {path}: {lost} queries lost"
            ));
        }
        if path == NetworkPath::Netjail && self.upstream_noted.insert(name.to_owned()) {
            let sent = WARMUP_COUNT + self.options.dns_queries;
            self.note(format!(
                "While the DNS client sent {sent} A queries for {name} in the jail, netjail \
                 sent {upstream} queries to the suite's DNS server."
            ));
        }
        Ok(vec![
            json_f64(&result, "p50_us")?,
            json_f64(&result, "p99_us")?,
        ])
    }
}
