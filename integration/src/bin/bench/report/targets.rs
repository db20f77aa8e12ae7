//! The performance targets and whether this run met them, one sentence each.

use std::collections::BTreeSet;

use crate::cases::{idle_throughput_key, memory_key};
use crate::options::Options;
use crate::paths::NetworkPath;
use crate::report::{format_value, shorten};
use crate::results::{Results, Row};

/// TCP throughput must reach this share of direct loopback, both ways.
const MIN_THROUGHPUT_RATIO: f64 = 0.5;
/// Connection setup must reach this share of direct loopback.
const MIN_CONNECT_RATIO: f64 = 0.5;
/// The kept-alive p50 may exceed direct loopback's by at most this much.
const MAX_ROUND_TRIP_EXTRA_MICROS: f64 = 50.0;
/// The jail's DNS p50 must be below this.
const MAX_DNS_P50_MICROS: f64 = 100.0;
/// The supervisor's peak RSS with 1,000 idle connections must be below this.
const MAX_RSS_1000_MIB: f64 = 64.0;
/// Supervisor CPU time in 60 s idle with 100 connections must be below this.
const MAX_IDLE_CPU_MS_PER_MINUTE: f64 = 10.0;
/// 10,000 idle connections may cost at most this share of throughput.
const MAX_IDLE_THROUGHPUT_LOSS: f64 = 0.2;

/// Returns one sentence per target, saying met or not met with the figure.
pub fn sentences(results: &Results, options: &Options) -> Vec<String> {
    vec![
        throughput(results),
        connect(results),
        round_trip(results),
        dns(results),
        memory(results),
        idle_cpu(results, options),
        idle_throughput(results),
    ]
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

/// Returns the sentence for a target without a verdict, which gives the
/// reason: its case did not run, or the netjail or direct value is missing.
fn not_measured(target: &str, results: &Results, key: &str) -> String {
    let Some(row) = results.row(key) else {
        return format!("{target}: **not run** (its case was not selected).");
    };
    let reason = [NetworkPath::Netjail, NetworkPath::Direct]
        .iter()
        .filter_map(|path| row.cells.get(path)?.missing.as_deref())
        .next()
        .unwrap_or("no value");
    format!("{target}: **not measured**: {}.", shorten(reason))
}

fn throughput(results: &Results) -> String {
    const TARGET: &str = "TCP throughput both ways at least 0.5 of direct and ahead of \
                          slirp4netns and pasta";
    let keys = ["tcp-up-1", "tcp-down-1", "tcp-up-4", "tcp-down-4"];
    let mut met = true;
    let mut unmeasured = BTreeSet::new();
    let mut figures = Vec::new();
    for key in keys {
        let Some(row) = results.row(key) else {
            return not_measured(TARGET, results, key);
        };
        let (Some(value), Some(ratio)) = (
            row.median(NetworkPath::Netjail),
            row.ratio_to_direct(NetworkPath::Netjail),
        ) else {
            return not_measured(TARGET, results, key);
        };
        met &= ratio >= MIN_THROUGHPUT_RATIO;
        let mut others = Vec::new();
        for other in [NetworkPath::Slirp4netns, NetworkPath::Pasta] {
            match row.median(other) {
                Some(theirs) => {
                    met &= value > theirs;
                    others.push(format!("{other} {theirs:.2}"));
                }
                None => {
                    unmeasured.insert(other.name());
                    others.push(format!("{other} n/a"));
                }
            }
        }
        figures.push(format!(
            "{}: {value:.2} Gbit/s, {ratio:.2}× direct ({})",
            row.metric.label,
            others.join(", ")
        ));
    }
    let list: String = figures
        .iter()
        .map(|figure| format!("\n  - {figure}"))
        .collect();
    // Without figures for slirp4netns or pasta, "ahead of" them is unproven.
    let caveat = match (met, unmeasured.is_empty()) {
        (true, false) => format!(
            " against direct, but not compared with {}, which have no figures",
            unmeasured.into_iter().collect::<Vec<_>>().join(" and ")
        ),
        _ => String::new(),
    };
    format!("{TARGET}: {}{caveat}.{list}", verdict(met))
}

fn connect(results: &Results) -> String {
    const TARGET: &str = "Connection setup at least 0.5 of direct";
    let Some((value, ratio)) = netjail_and_ratio(results.row("connect")) else {
        return not_measured(TARGET, results, "connect");
    };
    format!(
        "{TARGET}: {}. {value:.0} requests/s with a new connection each, {ratio:.2}× direct.",
        verdict(ratio >= MIN_CONNECT_RATIO)
    )
}

fn round_trip(results: &Results) -> String {
    const TARGET: &str = "Kept-alive round trip p50 at most 50 µs above direct";
    let row = results.row("rr-p50");
    let direct = row.and_then(|row| row.median(NetworkPath::Direct));
    let (Some(row), Some(direct)) = (row, direct) else {
        return not_measured(TARGET, results, "rr-p50");
    };
    let Some(value) = row.median(NetworkPath::Netjail) else {
        return not_measured(TARGET, results, "rr-p50");
    };
    let extra = value - direct;
    format!(
        "{TARGET}: {}. p50 {value:.1} µs against {direct:.1} µs direct, {extra:+.1} µs.",
        verdict(extra <= MAX_ROUND_TRIP_EXTRA_MICROS)
    )
}

fn dns(results: &Results) -> String {
    const TARGET: &str = "DNS p50 in the jail under 100 µs";
    let Some(value) = results.netjail("dns-p50") else {
        return not_measured(TARGET, results, "dns-p50");
    };
    format!(
        "{TARGET}: {}. p50 {value:.1} µs for an allowed name already resolved.",
        verdict(value < MAX_DNS_P50_MICROS)
    )
}

fn memory(results: &Results) -> String {
    const TARGET: &str = "Supervisor peak RSS under 64 MiB with 1,000 idle connections";
    let key = memory_key(1_000);
    let Some(value) = results.netjail(key) else {
        return not_measured(TARGET, results, key);
    };
    let mut sentence = format!(
        "{TARGET}: {}. {} MiB.",
        verdict(value < MAX_RSS_1000_MIB),
        format_value(value, "MiB")
    );
    if let Some(large) = results.netjail(memory_key(10_000)) {
        sentence.push_str(&format!(
            " With 10,000: {} MiB.",
            format_value(large, "MiB")
        ));
        if let Some(empty) = results.netjail(memory_key(0)) {
            let per_connection_kib = (large - empty) * 1024.0 / 10_000.0;
            sentence.push_str(&format!(
                " That is about {per_connection_kib:.1} KiB per idle connection over the \
                 {} MiB with none.",
                format_value(empty, "MiB")
            ));
        }
    }
    sentence
}

fn idle_cpu(results: &Results, options: &Options) -> String {
    const TARGET: &str = "Supervisor CPU under 10 ms in 60 s idle with 100 connections";
    let Some(value) = results.netjail("idle-cpu") else {
        return not_measured(TARGET, results, "idle-cpu");
    };
    let seconds = options.idle_seconds as f64;
    let per_minute = value * 60.0 / seconds;
    let scheduled = results
        .netjail("idle-cpu-schedstat")
        .map(|ms| format!(" (schedstat: {ms:.2} ms)"))
        .unwrap_or_default();
    let window = if options.idle_seconds == 60 {
        String::new()
    } else {
        format!(
            " This run idled {} s, so the figure is scaled to 60 s, an estimate.",
            options.idle_seconds
        )
    };
    format!(
        "{TARGET}: {}. {value:.1} ms utime+stime in {} s{scheduled}.{window}",
        verdict(per_minute < MAX_IDLE_CPU_MS_PER_MINUTE),
        options.idle_seconds
    )
}

fn idle_throughput(results: &Results) -> String {
    const TARGET: &str = "10,000 idle connections cost at most 20% throughput";
    let none = results.netjail(idle_throughput_key(0));
    let held = results.netjail(idle_throughput_key(10_000));
    let (Some(none), Some(held)) = (none, held) else {
        return not_measured(TARGET, results, idle_throughput_key(10_000));
    };
    let ratio = held / none;
    format!(
        "{TARGET}: {}. {held:.2} Gbit/s with them against {none:.2} without, {ratio:.2}×.",
        verdict(ratio >= 1.0 - MAX_IDLE_THROUGHPUT_LOSS)
    )
}

fn netjail_and_ratio(row: Option<&Row>) -> Option<(f64, f64)> {
    let row = row?;
    Some((
        row.median(NetworkPath::Netjail)?,
        row.ratio_to_direct(NetworkPath::Netjail)?,
    ))
}
