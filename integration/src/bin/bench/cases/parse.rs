//! Parsers for the output of iperf3, wrk, dnsperf and the bench clients.

use crate::error::{Context, Result, bail};

pub(super) fn parse_json(output: &str) -> Result<serde_json::Value> {
    serde_json::from_str(output.trim()).with_context(|| format!("invalid JSON output: {output}"))
}

pub(super) fn json_f64(value: &serde_json::Value, key: &str) -> Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("no number {key:?} in {value}"))
}

/// Returns the receiver's throughput from `iperf3 --json`, in Gbit/s.
pub(super) fn parse_iperf3_gbits(output: &str) -> Result<f64> {
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
pub(super) fn parse_wrk(output: &str) -> Result<(f64, Option<String>)> {
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
pub(super) fn parse_dnsperf(output: &str) -> Result<(f64, u64)> {
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
