//! The command line of `bench run` and `bench client ...`.

use std::path::PathBuf;

use crate::error::{Context, Result, bail};
use crate::paths::NetworkPath;

pub const USAGE: &str = "\
Usage:
  bench run [OPTIONS]      run the suite and write the report
  bench serve [SECONDS]    start the servers, print their addresses and keep
                           them up until standard input closes or SECONDS
                           pass (default 3600), for runs by hand, e.g. under perf
  bench client CLIENT ...  run one client (the suite starts these itself)

Options of `bench run`:
  --runs N             runs per case; each case reports the median (default 5)
  --seconds S          length of each iperf3, wrk and dnsperf run, in seconds (default 5)
  --idle-seconds S     length of the idle CPU window, in seconds (default 60)
  --round-trips N      timed round trips per latency run (default 20000)
  --dns-queries N      timed queries per DNS latency run (default 5000)
  --paths LIST         comma-separated: direct,netjail,slirp4netns,pasta (default all)
  --cases LIST         comma-separated: throughput,connect,latency,dns,memory,
                       idle-cpu,idle-throughput (default all)
  --user NAME          run netjail, slirp4netns and pasta as NAME; default
                       netjail-test when run as root, else the current user
  --netjail PATH       the netjail binary (default $NETJAIL_BIN or
                       target/release/netjail)
  --output PATH        write the Markdown report to PATH (default standard output)
  --command TEXT       the command line the report names (default this one)

Clients:
  bench client round-trips --host H --port P --count N --size B
  bench client dns --server IP:PORT --name NAME --count N
  bench client hold --host H --port P --count N --max-hold S [-- COMMAND...]";

/// A benchmark case. docs/benchmarks.md describes what each one measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Throughput,
    Connect,
    Latency,
    Dns,
    Memory,
    IdleCpu,
    IdleThroughput,
}

impl Case {
    pub const ALL: [Case; 7] = [
        Case::Throughput,
        Case::Connect,
        Case::Latency,
        Case::Dns,
        Case::Memory,
        Case::IdleCpu,
        Case::IdleThroughput,
    ];

    fn from_name(name: &str) -> Option<Self> {
        let case = match name {
            "throughput" => Case::Throughput,
            "connect" => Case::Connect,
            "latency" => Case::Latency,
            "dns" => Case::Dns,
            "memory" => Case::Memory,
            "idle-cpu" => Case::IdleCpu,
            "idle-throughput" => Case::IdleThroughput,
            _ => return None,
        };
        Some(case)
    }
}

/// The options of `bench run`.
#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub seconds: u32,
    pub idle_seconds: u64,
    pub round_trips: usize,
    pub dns_queries: usize,
    pub paths: Vec<NetworkPath>,
    pub cases: Vec<Case>,
    pub user: Option<String>,
    pub netjail: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub command: String,
}

impl Options {
    /// Parses the arguments after `run`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            runs: 5,
            seconds: 5,
            idle_seconds: 60,
            round_trips: 20_000,
            dns_queries: 5_000,
            paths: NetworkPath::ALL.to_vec(),
            cases: Case::ALL.to_vec(),
            user: None,
            netjail: None,
            output: None,
            command: format!("bench run {}", args.join(" ")),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("missing value after {flag}\n\n{USAGE}"))?;
            match flag.as_str() {
                "--runs" => options.runs = parse_number(flag, value)?,
                "--seconds" => options.seconds = parse_number(flag, value)?,
                "--idle-seconds" => options.idle_seconds = parse_number(flag, value)?,
                "--round-trips" => options.round_trips = parse_number(flag, value)?,
                "--dns-queries" => options.dns_queries = parse_number(flag, value)?,
                "--paths" => options.paths = parse_list(flag, value, NetworkPath::from_name)?,
                "--cases" => options.cases = parse_list(flag, value, Case::from_name)?,
                "--user" => options.user = Some(value.clone()),
                "--netjail" => options.netjail = Some(PathBuf::from(value)),
                "--output" => options.output = Some(PathBuf::from(value)),
                "--command" => options.command = value.clone(),
                _ => bail!("unknown option {flag}\n\n{USAGE}"),
            }
        }
        if options.runs == 0 || options.seconds == 0 {
            bail!("--runs and --seconds must be at least 1");
        }
        if !options.paths.contains(&NetworkPath::Direct) {
            // Every ratio is relative to the direct path.
            options.paths.insert(0, NetworkPath::Direct);
        }
        Ok(options)
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .ok()
        .with_context(|| format!("invalid value {value:?} for {flag}: expected a whole number"))
}

fn parse_list<T>(flag: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    value
        .split(',')
        .map(|name| {
            parse(name.trim()).with_context(|| format!("invalid value {name:?} for {flag}"))
        })
        .collect()
}

/// Named options of a client: `--name value` pairs, then an optional `--`
/// and a command.
pub struct ClientArgs {
    pairs: Vec<(String, String)>,
    pub command: Vec<String>,
}

impl ClientArgs {
    pub fn parse(args: &[String]) -> Result<Self> {
        let (options, command) = match args.iter().position(|arg| arg == "--") {
            Some(split) => (&args[..split], args[split + 1..].to_vec()),
            None => (args, Vec::new()),
        };
        if options.len() % 2 != 0 {
            bail!("client options come in pairs: {options:?}\n\n{USAGE}");
        }
        let pairs = options
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Ok(Self { pairs, command })
    }

    pub fn string(&self, flag: &str) -> Result<String> {
        self.pairs
            .iter()
            .find(|(name, _)| name == flag)
            .map(|(_, value)| value.clone())
            .with_context(|| format!("missing {flag}\n\n{USAGE}"))
    }

    pub fn number<T: std::str::FromStr>(&self, flag: &str) -> Result<T> {
        parse_number(flag, &self.string(flag)?)
    }
}
