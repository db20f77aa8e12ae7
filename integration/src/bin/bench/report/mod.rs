//! The Markdown page the suite writes: machine, command, results tables and
//! one sentence per target.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::cases::memory_runs;
use crate::machine::{Machine, package_version};
use crate::options::Options;
use crate::paths::NetworkPath;
use crate::results::{Results, Row};

/// The maximum length of a reason shown for a missing value. The full
/// reason is in the suite's log on standard error.
const MAX_REASON_LEN: usize = 300;

pub struct Report<'a> {
    pub options: &'a Options,
    pub machine: Machine,
    /// The user netjail, slirp4netns and pasta ran as, when not the current one.
    pub user: Option<String>,
    pub started: SystemTime,
    pub finished: SystemTime,
    /// /proc/loadavg before the first case and after the last one.
    pub load_before: String,
    pub load_after: String,
    pub results: &'a Results,
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut page = String::new();
        let mut footnotes = Footnotes::default();
        self.write_intro(&mut page);
        self.write_setup(&mut page);
        self.write_targets(&mut page);
        self.write_comparison(&mut page, &mut footnotes);
        self.write_netjail_only(&mut page, &mut footnotes);
        self.write_runs(&mut page);
        self.write_notes(&mut page, &footnotes);
        page.push_str(CASES_TEXT);
        page
    }

    fn write_intro(&self, page: &mut String) {
        page.push_str(INTRO_TEXT);
    }

    fn write_setup(&self, page: &mut String) {
        let machine = &self.machine;
        let _ = writeln!(page, "## This run\n");
        let _ = writeln!(
            page,
            "- Machine: {}, {} cores, {:.1} GiB memory",
            machine.cpu_model, machine.cores, machine.memory_gib
        );
        let _ = writeln!(page, "- System: {}, Linux {}", machine.os, machine.kernel);
        let _ = writeln!(
            page,
            "- Load average (1, 5, 15 min): {} before, {} after",
            self.load_before, self.load_after
        );

        let _ = writeln!(page, "- Command: `{}`", self.options.command);
        let _ = writeln!(
            page,
            "- Date: {} to {} (UTC)",
            format_time(self.started),
            format_time(self.finished)
        );
        if let Some(revision) = git_revision() {
            let _ = writeln!(page, "- Workspace revision: {revision}, release build");
        }
        let user = match &self.user {
            Some(user) => format!("the unprivileged user `{user}`"),
            None => "the current user".to_owned(),
        };
        let _ = writeln!(page, "- netjail, slirp4netns and pasta ran as {user}");

        let _ = writeln!(
            page,
            "- Runs per case: {} (memory: {}, idle CPU: 1 of {} s), and each value is their \
             median; iperf3, wrk and dnsperf ran {} s per run",
            self.options.runs,
            memory_runs(self.options.runs),
            self.options.idle_seconds,
            self.options.seconds
        );
        let _ = writeln!(page, "- Tools: {}\n", tool_versions().join("; "));
    }

    fn write_targets(&self, page: &mut String) {
        let _ = writeln!(page, "## Targets\n");
        for sentence in crate::report::targets::sentences(self.results, self.options) {
            let _ = writeln!(page, "- {sentence}");
        }
        page.push('\n');
    }

    fn write_comparison(&self, page: &mut String, footnotes: &mut Footnotes) {
        if self.compared_rows().next().is_none() {
            return;
        }
        let _ = writeln!(page, "## Compared with direct loopback\n");
        let _ = writeln!(
            page,
            "Median, and in brackets the ratio to the direct path's median.\n"
        );
        let paths = &self.options.paths;
        let mut header = "| case | unit |".to_owned();
        let mut rule = "| --- | --- |".to_owned();
        for path in paths {
            let _ = write!(header, " {path} |");
            rule.push_str(" ---: |");
        }
        let _ = writeln!(page, "{header}\n{rule}");
        for row in self.compared_rows() {
            let _ = write!(page, "| {} | {} |", row.metric.label, row.metric.unit);
            for &path in paths {
                let cell = self.format_cell(row, path, footnotes);
                let _ = write!(page, " {cell} |");
            }
            page.push('\n');
        }
        page.push('\n');
    }

    fn write_netjail_only(&self, page: &mut String, footnotes: &mut Footnotes) {
        let rows: Vec<&Row> = self.netjail_only_rows().collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(page, "## netjail alone\n");
        let _ = writeln!(
            page,
            "| case | unit | median | runs |\n| --- | --- | ---: | ---: |"
        );
        for row in rows {
            let cell = self.format_cell(row, NetworkPath::Netjail, footnotes);
            let runs = row
                .cells
                .get(&NetworkPath::Netjail)
                .map_or(0, |cell| cell.values.len());
            let _ = writeln!(
                page,
                "| {} | {} | {cell} | {runs} |",
                row.metric.label, row.metric.unit
            );
        }
        page.push('\n');
    }

    fn write_runs(&self, page: &mut String) {
        let _ = writeln!(page, "## Every run\n");
        let _ = writeln!(
            page,
            "| case | path | values, in run order |\n| --- | --- | --- |"
        );
        for row in &self.results.rows {
            for (path, cell) in &row.cells {
                if cell.values.is_empty() {
                    continue;
                }
                let values: Vec<String> = cell
                    .values
                    .iter()
                    .map(|value| format_value(*value, row.metric.unit))
                    .collect();
                let _ = writeln!(
                    page,
                    "| {} | {path} | {} {} |",
                    row.metric.label,
                    values.join(", "),
                    row.metric.unit
                );
            }
        }
        page.push('\n');
    }

    fn write_notes(&self, page: &mut String, footnotes: &Footnotes) {
        if footnotes.reasons.is_empty() && self.results.notes.is_empty() {
            return;
        }
        let _ = writeln!(page, "## Notes\n");
        for (i, reason) in footnotes.reasons.iter().enumerate() {
            let _ = writeln!(page, "{}. n/a: {reason}", i + 1);
        }
        if !footnotes.reasons.is_empty() {
            page.push('\n');
        }
        for note in &self.results.notes {
            let _ = writeln!(page, "- {}", escape(note));
        }
        page.push('\n');
    }

    /// Rows measured on more than the netjail path.
    fn compared_rows(&self) -> impl Iterator<Item = &Row> {
        self.results
            .rows
            .iter()
            .filter(|row| row.cells.keys().any(|path| *path != NetworkPath::Netjail))
    }

    fn netjail_only_rows(&self) -> impl Iterator<Item = &Row> {
        self.results
            .rows
            .iter()
            .filter(|row| row.cells.keys().all(|path| *path == NetworkPath::Netjail))
    }

    /// Formats one cell: the median and ratio, or "n/a" with a footnote.
    fn format_cell(&self, row: &Row, path: NetworkPath, footnotes: &mut Footnotes) -> String {
        let Some(cell) = row.cells.get(&path) else {
            return "n/a".to_owned();
        };
        if let Some(reason) = &cell.missing {
            let number = footnotes.add(format!("{path}, {}: {}", row.metric.label, reason));
            return format!("n/a [{number}]");
        }
        let Some(median) = cell.median() else {
            return "n/a".to_owned();
        };
        let value = format_value(median, row.metric.unit);
        match row.ratio_to_direct(path) {
            Some(ratio) if path != NetworkPath::Direct => format!("{value} ({ratio:.2}×)"),
            _ => value,
        }
    }
}

pub mod targets;

/// Reasons for missing values, numbered in the order they first appear.
#[derive(Default)]
struct Footnotes {
    reasons: Vec<String>,
}

impl Footnotes {
    fn add(&mut self, reason: String) -> usize {
        let reason = shorten(&reason);
        if let Some(i) = self.reasons.iter().position(|known| *known == reason) {
            return i + 1;
        }
        self.reasons.push(reason);
        self.reasons.len()
    }
}

/// Returns the first line of `text`, cut at [`MAX_REASON_LEN`] characters,
/// with characters that would break a Markdown table escaped.
fn shorten(text: &str) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    let mut short: String = first_line.chars().take(MAX_REASON_LEN).collect();
    if short.len() < first_line.len() {
        short.push_str(" …");
    }
    escape(&short)
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Formats `value` with the precision its unit needs.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "Gbit/s" => format!("{value:.2}"),
        "requests/s" | "queries/s" => format!("{value:.0}"),
        "ms" => format!("{value:.2}"),
        _ => format!("{value:.1}"),
    }
}

fn format_time(time: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.trim_end_matches('Z').replace('T', " ")
}

/// Returns `git describe --always --dirty` of the workspace, if it is a git
/// checkout.
fn git_revision() -> Option<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    let revision = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !revision.is_empty()).then_some(revision)
}

/// Returns "PACKAGE VERSION" for each tool's Debian package, from dpkg.
fn tool_versions() -> Vec<String> {
    ["iperf3", "wrk", "dnsperf", "slirp4netns", "passt"]
        .iter()
        .map(|package| {
            let version = package_version(package).unwrap_or_else(|| "not installed".to_owned());
            format!("{package} {version}")
        })
        .collect()
}

const INTRO_TEXT: &str = "\
# Benchmarks

netjail compared with direct loopback, slirp4netns and pasta, in one run on
one machine, so the ratios hold even where the absolute figures are noisy.
`scripts/bench` regenerates this page; change the generator
(`integration/src/bin/bench/`), not the page. docs/performance.md says
where the time of a new connection and of a bulk transfer goes and what
was tried to cut it.

```
scripts/bench                  # the full suite
scripts/bench --runs 1 --seconds 2 --idle-seconds 5   # a quick check
scripts/bench --cases throughput,latency --paths direct,netjail
```

The full suite takes about 14 minutes on two cores; the date line below
shows how long this run took. Other work on the machine lowers the
figures, so the load average before and after is recorded too.

Run as root, `scripts/bench` installs what is missing (iperf3, wrk, dnsperf,
slirp4netns, passt for pasta), creates the user `netjail-test` and makes
/dev/net/tun usable by every user, as `scripts/test` does. The suite is not
part of `scripts/test` or `cargo test`. All traffic goes to 127.0.0.1 or to
addresses inside the namespaces the suite and netjail create, and netjail
always uses the suite's own DNS server on 127.0.0.1 as its resolver.

";

const CASES_TEXT: &str = "\
## What each case does

Servers run on the host's 127.0.0.1. Each client runs directly on the host
(direct) or inside the namespace of a path:

- **direct**: the client connects to 127.0.0.1.
- **netjail**: `netjail run --allow 'domain=bench.test cidr=127.0.0.0/8'
  --resolver 127.0.0.1:PORT --audit-log FILE -- CLIENT`. The client connects
  to `bench.test`, which the suite's DNS server resolves to 127.0.0.1; the
  jail gets a synthetic address and netjail connects to 127.0.0.1.
- **slirp4netns**: `unshare --user --map-root-user --net` and
  `slirp4netns --configure --mtu=65520 --disable-dns PID tap0`. Without
  `--disable-host-loopback`, slirp4netns connects traffic for the gateway
  10.0.2.2 to the host's 127.0.0.1, so the client connects to 10.0.2.2.
- **pasta**: `pasta --config-net --ipv4-only --address 10.0.2.100 --netmask 24
  --gateway 10.0.2.2 -t none -u none -T none -U none -- CLIENT`. pasta
  connects traffic for the gateway address to the host's loopback (unless
  `--no-map-gw` is given), so the client connects to 10.0.2.2. pasta refuses
  to run as root, which is why the namespace paths run as an unprivileged
  user when the suite runs as root.

The cases:

- **TCP throughput**: `iperf3 --client HOST --time S --json -4` with
  `--parallel 1` or `4`, and `--reverse` for host→jail; the receiver's rate.
- **HTTP, new connection per request**: `wrk --threads 1 --connections 8
  --header 'Connection: close'` against the suite's HTTP/1.1 server
  (hyper), so every request opens and closes one TCP connection.
- **Round trip, kept-alive**: `bench client round-trips` sends 16 bytes and
  reads the 16-byte echo, on one connection with TCP_NODELAY, 200 untimed
  round trips and then 20,000 timed ones; p50 and p99 of those.
- **DNS**: `dnsperf -l S` with the query `dual.test A`, 100 queries
  outstanding, for queries per second. Then `bench client dns` sends 200
  untimed and 5,000 timed sequential A queries, for `dual.test` (A and
  AAAA records) and for `bench.test` (an A record only), and reports p50
  and p99. The suite's DNS server answers the AAAA query for `bench.test`
  with no record and no SOA, and netjail's resolver (hickory-resolver) does
  not cache that answer. So that row shows what a query costs when netjail
  has to ask upstream, and the notes count the queries it sent upstream.
  In netjail the queries go to
  the jail's DNS (198.19.0.1). slirp4netns and pasta have no DNS server of
  their own that does not use the host's resolver, so there the queries go
  through the path to the suite's DNS server, and direct queries that
  server on 127.0.0.1.
- **Supervisor peak RSS**: `bench client hold` in netjail opens N
  connections to a server that keeps them open; once all are open on both
  ends, the suite reads VmHWM from /proc/PID/status of the netjail process.
- **Supervisor CPU, idle**: the hold client keeps 100 connections open and
  does nothing. After one second to settle, the suite reads utime+stime
  from /proc/PID/stat and the threads' schedstat time before and after the
  window. utime and stime count clock ticks (10 ms each with the usual
  USER_HZ of 100), and schedstat counts nanoseconds.
- **TCP with idle connections**: one jail per run opens 0 or 10,000 idle
  connections and then runs the one-stream iperf3 jail→host; the two
  alternate run by run.

A failed run is repeated once and the failure is listed in the notes. A
path whose repeated run fails too shows n/a for that case, with the
reason in the notes.

## Profiling netjail

`bench serve` starts the suite's servers and DNS server, prints their
ports and an example command, and keeps them up until its standard input
closes. In one terminal:

```
target/release/bench serve
```

In another, with the resolver address and iperf3 port it printed:

```
target/release/netjail run --resolver 127.0.0.1:DNS_PORT \\
    --allow 'domain=bench.test cidr=127.0.0.0/8' -- \\
    iperf3 --client bench.test --port IPERF_PORT --time 20 &
perf record -g -p \"$(pgrep -o -x netjail)\" -- sleep 10
perf report --no-children --sort dso,symbol
```

When no other netjail runs, the oldest process named netjail is the
supervisor, and its child is the jail's init.
";
