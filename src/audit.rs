//! The audit log: one JSON object per line for every DNS query and every flow.
//!
//! The schema is documented in docs/audit-log.md. Every line is written and flushed before
//! `record` returns, so a crash loses no event that was already recorded.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

/// One audit event. The variant name becomes the `event` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SessionStart {
        command: Vec<String>,
        allow: Vec<String>,
        deny: Vec<String>,
        mode: String,
        resolver: String,
    },
    Dns(DnsEvent),
    FlowOpen(FlowOpen),
    FlowFailed(FlowFailed),
    Denied(Denied),
    FlowClose(FlowClose),
    Http(HttpEvent),
    SessionEnd {
        exit_status: i32,
        flows: u64,
        dns_queries: u64,
        dropped_packets: u64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsEvent {
    pub transport: &'static str,
    pub client: String,
    pub name: String,
    pub qtype: String,
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub rcode: String,
    /// The answers the jail received.
    pub answers: Vec<String>,
    /// The answers the upstream resolver returned.
    pub upstream_answers: Vec<String>,
}

/// The fields every flow event carries.
#[derive(Debug, Clone, Serialize)]
pub struct FlowId {
    pub flow: u64,
    pub proto: &'static str,
    /// The jail's address and port.
    pub src: String,
    /// The destination as the jail addressed it (a synthetic address for names).
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
}

impl FlowId {
    /// Builds the fields of `flow`, which the jail opened to `name` if it used one.
    pub fn new(flow: &netstack::FlowInfo, proto: &'static str, name: Option<String>) -> FlowId {
        FlowId {
            flow: flow.id,
            proto,
            src: flow.src.to_string(),
            dst: flow.dst.to_string(),
            name,
            port: flow.dst.port(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowOpen {
    #[serde(flatten)]
    pub id: FlowId,
    pub decision: &'static str,
    pub rule: String,
    /// The host-side address netjail connected to.
    pub upstream: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowFailed {
    #[serde(flatten)]
    pub id: FlowId,
    pub decision: &'static str,
    pub rule: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Denied {
    #[serde(flatten)]
    pub id: FlowId,
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowClose {
    #[serde(flatten)]
    pub id: FlowId,
    pub upstream: String,
    pub bytes_from_jail: u64,
    pub bytes_to_jail: u64,
    pub duration_ms: f64,
    pub close: String,
}

/// One HTTP request on an inspected flow.
#[derive(Debug, Clone, Serialize)]
pub struct HttpEvent {
    #[serde(flatten)]
    pub id: FlowId,
    /// `None` when the request head could not be parsed.
    pub method: Option<String>,
    pub host: Option<String>,
    /// The request target as sent, percent-encoding untouched.
    pub path: Option<String>,
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// The status netjail answered with; `None` for requests sent upstream.
    pub status: Option<u16>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    time: String,
    session: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// The audit log writer, shared by the supervisor's threads.
pub struct AuditLog {
    session: String,
    out: Mutex<Box<dyn Write + Send>>,
    dns_queries: AtomicU64,
}

impl AuditLog {
    /// Opens the log: `-` is standard error, anything else a file opened for appending.
    pub fn open(target: &str) -> io::Result<AuditLog> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(io::stderr())
        } else {
            Box::new(open_append(Path::new(target))?)
        };
        Ok(AuditLog::with_writer(out))
    }

    /// Creates a log that records nothing, for runs without `--audit-log`.
    pub fn discard() -> AuditLog {
        AuditLog::with_writer(Box::new(io::sink()))
    }

    pub fn with_writer(out: Box<dyn Write + Send>) -> AuditLog {
        AuditLog {
            session: new_session_id(),
            out: Mutex::new(out),
            dns_queries: AtomicU64::new(0),
        }
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Counts the `dns` events recorded so far.
    pub fn dns_queries(&self) -> u64 {
        self.dns_queries.load(Ordering::Relaxed)
    }

    /// Writes one event as one line.
    pub fn record(&self, event: Event) {
        if matches!(event, Event::Dns(_)) {
            self.dns_queries.fetch_add(1, Ordering::Relaxed);
        }
        let envelope = Envelope {
            time: now_rfc3339(),
            session: &self.session,
            event: &event,
        };
        let mut line = serde_json::to_vec(&envelope).expect("audit events always serialize");
        line.push(b'\n');

        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = out.write_all(&line).and_then(|()| out.flush());
        if let Err(err) = written {
            tracing::error!(error = %err, "writing the audit log failed");
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_are_one_json_object_per_line() {
        let shared = Shared::default();
        let log = AuditLog::with_writer(Box::new(shared.clone()));
        log.record(Event::SessionEnd {
            exit_status: 7,
            flows: 1,
            dns_queries: 2,
            dropped_packets: 0,
        });
        let id = FlowId {
            flow: 3,
            proto: "tcp",
            src: "198.19.0.2:4000".into(),
            dst: "198.18.0.1:80".into(),
            name: Some("web.test".into()),
            port: 80,
        };
        log.record(Event::Denied(Denied {
            id,
            decision: "deny",
            rule: None,
            reason: "no allow rule matches".into(),
        }));

        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "session_end");
        assert_eq!(lines[0]["exit_status"], 7);
        assert_eq!(lines[1]["event"], "denied");
        assert_eq!(lines[1]["flow"], 3);
        assert_eq!(lines[1]["name"], "web.test");
        assert_eq!(lines[1]["session"], log.session());
        assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));
    }
}
