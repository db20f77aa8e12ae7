//! The audit log schema as the tests expect it, and a parser for it.
//!
//! Every field the tests read is named here and nowhere else, so a change to
//! the schema means a change to this file.

use std::path::Path;

use serde::Deserialize;

use crate::jail::Mode;

/// Returns the `mode` that `session_start` reports for a run in `mode` with
/// netjail's default options.
pub fn session_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Root => "root",
        Mode::Rootless => "rootless",
    }
}

/// The `mode` that `session_start` reports for `--no-user-namespace`.
pub const SESSION_MODE_NO_USER_NAMESPACE: &str = "root-no-user-namespace";

/// The `close` value of a flow that both sides ended with a FIN.
pub const CLOSE_FIN: &str = "fin";

/// One line of the audit log.
#[derive(Clone, Debug, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// The run's id, hex.
    pub session: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The event-specific fields of a record, tagged by `"event"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    SessionStart(SessionStart),
    Dns(DnsEvent),
    FlowOpen(FlowOpen),
    FlowFailed(FlowFailed),
    Denied(Denied),
    FlowClose(FlowClose),
    Http(HttpEvent),
    SessionEnd(SessionEnd),
    /// An event this schema does not know yet.
    #[serde(other)]
    Other,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SessionStart {
    pub command: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub mode: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DnsEvent {
    /// "udp" or "tcp".
    pub transport: String,
    pub name: String,
    /// The record type's mnemonic, such as "A".
    pub qtype: String,
    /// "allow" or "deny".
    pub decision: String,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// Such as "NOERROR" or "NXDOMAIN".
    pub rcode: String,
    /// The records sent to the jail.
    pub answers: Vec<String>,
    /// The records the upstream resolver returned.
    pub upstream_answers: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FlowOpen {
    pub flow: u64,
    pub proto: String,
    /// "ip:port" as the jail saw it.
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
    pub decision: String,
    pub rule: Option<String>,
    /// The "ip:port" netjail connected to on the host.
    pub upstream: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FlowFailed {
    pub flow: u64,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
    pub decision: String,
    pub rule: Option<String>,
    /// The reason the upstream connect failed, such as "connection refused".
    pub error: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Denied {
    pub flow: Option<u64>,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
    pub decision: String,
    /// The deny rule that matched, or none when no allow rule matched.
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FlowClose {
    pub flow: u64,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
    pub upstream: String,
    /// Payload bytes the jail sent.
    pub bytes_from_jail: u64,
    /// Payload bytes the jail received.
    pub bytes_to_jail: u64,
    pub duration_ms: f64,
    /// The way the flow ended, such as a FIN or a reset.
    pub close: String,
}

/// One HTTP request on a plain-HTTP flow, forwarded or refused.
#[derive(Clone, Debug, Deserialize)]
pub struct HttpEvent {
    pub flow: u64,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub port: u16,
    /// None when the request head could not be parsed.
    pub method: Option<String>,
    /// The host the request names, lowercase, without port.
    pub host: Option<String>,
    /// The request target as the client sent it.
    pub path: Option<String>,
    /// "allow" or "deny".
    pub decision: String,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// The status of netjail's reply, or none for a forwarded request.
    pub status: Option<u16>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SessionEnd {
    pub exit_status: i32,
}

/// A parsed audit log.
#[derive(Clone, Debug)]
pub struct AuditLog {
    pub records: Vec<AuditRecord>,
    /// Each line as generic JSON, for fields the schema above leaves out.
    pub lines: Vec<serde_json::Value>,
}

impl AuditLog {
    /// Reads the log at `path`; every non-empty line must be one JSON object
    /// of a known shape.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("reading {} failed: {err}", path.display()))?;
        Self::parse(&text)
    }

    /// Parses JSON Lines text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut records = Vec::new();
        let mut lines = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let number = index + 1;
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|err| format!("line {number} is not JSON ({err}): {line}"))?;
            if !value.is_object() {
                return Err(format!("line {number} is not a JSON object: {line}"));
            }
            let record = serde_json::from_value(value.clone())
                .map_err(|err| format!("line {number} does not fit the schema ({err}): {line}"))?;
            records.push(record);
            lines.push(value);
        }
        Ok(Self { records, lines })
    }

    /// Checks what every record shares: a UTC RFC 3339 time, and one hex
    /// session id for the whole log.
    pub fn check_envelope(&self) -> Result<(), String> {
        let Some(first) = self.records.first() else {
            return Err("the audit log is empty".to_owned());
        };
        let is_hex = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hex(&first.session) {
            return Err(format!("session id {:?} is not hex", first.session));
        }
        for record in &self.records {
            if record.session != first.session {
                return Err(format!(
                    "session ids differ: {:?} and {:?}",
                    first.session, record.session
                ));
            }
            humantime::parse_rfc3339(&record.time)
                .map_err(|err| format!("time {:?} is not RFC 3339 in UTC: {err}", record.time))?;
        }
        Ok(())
    }

    /// Returns the event names in log order, for assertion messages.
    pub fn event_names(&self) -> Vec<String> {
        let name = |value: &serde_json::Value| value["event"].as_str().unwrap_or("?").to_owned();
        self.lines.iter().map(name).collect()
    }

    pub fn session_starts(&self) -> Vec<&SessionStart> {
        self.events(|event| match event {
            AuditEvent::SessionStart(start) => Some(start),
            _ => None,
        })
    }

    pub fn session_ends(&self) -> Vec<&SessionEnd> {
        self.events(|event| match event {
            AuditEvent::SessionEnd(end) => Some(end),
            _ => None,
        })
    }

    /// DNS events for `name` (compared without case or trailing dot).
    pub fn dns_events(&self, name: &str) -> Vec<&DnsEvent> {
        self.events(|event| match event {
            AuditEvent::Dns(dns) if same_name(&dns.name, name) => Some(dns),
            _ => None,
        })
    }

    /// Opened flows to `name`.
    pub fn flow_opens(&self, name: &str) -> Vec<&FlowOpen> {
        self.events(|event| match event {
            AuditEvent::FlowOpen(open) if open.name.as_deref().is_some_and(is(name)) => Some(open),
            _ => None,
        })
    }

    /// Flows to `name` whose upstream connect failed.
    pub fn flow_failures(&self, name: &str) -> Vec<&FlowFailed> {
        self.events(|event| match event {
            AuditEvent::FlowFailed(failed) if failed.name.as_deref().is_some_and(is(name)) => {
                Some(failed)
            }
            _ => None,
        })
    }

    /// Every denied flow, with or without a name.
    pub fn all_denials(&self) -> Vec<&Denied> {
        self.events(|event| match event {
            AuditEvent::Denied(denied) => Some(denied),
            _ => None,
        })
    }

    /// Denied flows to `name`.
    pub fn denials(&self, name: &str) -> Vec<&Denied> {
        self.events(|event| match event {
            AuditEvent::Denied(denied) if denied.name.as_deref().is_some_and(is(name)) => {
                Some(denied)
            }
            _ => None,
        })
    }

    /// Closed flows to `name`.
    pub fn flow_closes(&self, name: &str) -> Vec<&FlowClose> {
        self.events(|event| match event {
            AuditEvent::FlowClose(close) if close.name.as_deref().is_some_and(is(name)) => {
                Some(close)
            }
            _ => None,
        })
    }

    /// HTTP requests on flows to `name`, in log order.
    pub fn http_events(&self, name: &str) -> Vec<&HttpEvent> {
        self.events(|event| match event {
            AuditEvent::Http(http) if http.name.as_deref().is_some_and(is(name)) => Some(http),
            _ => None,
        })
    }

    fn events<'a, T>(&'a self, select: impl Fn(&'a AuditEvent) -> Option<&'a T>) -> Vec<&'a T> {
        self.records
            .iter()
            .filter_map(|record| select(&record.event))
            .collect()
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn is(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |candidate| same_name(candidate, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
{"time":"2026-01-02T03:04:05.678Z","session":"ab12","event":"session_start","command":["curl"],"allow":["domain=web.test"],"deny":[],"mode":"rootless"}
{"time":"2026-01-02T03:04:05.700Z","session":"ab12","event":"dns","transport":"udp","name":"web.test.","qtype":"A","decision":"allow","rule":"domain=web.test","reason":null,"rcode":"NOERROR","answers":["198.18.0.1"],"upstream_answers":["127.0.0.1"]}
{"time":"2026-01-02T03:04:05.800Z","session":"ab12","event":"flow_close","flow":1,"proto":"tcp","src":"198.19.0.2:40000","dst":"198.18.0.1:80","name":"web.test","port":80,"upstream":"127.0.0.1:80","bytes_from_jail":10,"bytes_to_jail":20,"duration_ms":3.5,"close":"fin"}
{"time":"2026-01-02T03:04:05.900Z","session":"ab12","event":"something_new","detail":1}
{"time":"2026-01-02T03:04:06Z","session":"ab12","event":"session_end","exit_status":0}
"#;

    #[test]
    fn sample_log_parses() {
        let log = AuditLog::parse(SAMPLE).unwrap();
        assert_eq!(log.records.len(), 5);
    }

    #[test]
    fn sample_envelope_is_valid() {
        let log = AuditLog::parse(SAMPLE).unwrap();
        assert_eq!(log.check_envelope(), Ok(()));
    }

    #[test]
    fn dns_name_ignores_trailing_dot() {
        let log = AuditLog::parse(SAMPLE).unwrap();
        assert_eq!(log.dns_events("web.test").len(), 1);
    }

    #[test]
    fn flow_close_byte_counts() {
        let log = AuditLog::parse(SAMPLE).unwrap();
        let closes = log.flow_closes("web.test");
        assert_eq!(closes.len(), 1);
        assert_eq!(closes[0].bytes_from_jail, 10);
        assert_eq!(closes[0].bytes_to_jail, 20);
    }

    #[test]
    fn unknown_event_is_kept() {
        let log = AuditLog::parse(SAMPLE).unwrap();
        assert!(matches!(log.records[3].event, AuditEvent::Other));
    }

    #[test]
    fn non_json_line_is_rejected() {
        let first_line = SAMPLE.trim_start().lines().next().unwrap();
        let err = AuditLog::parse(&format!("{first_line}\nnot json\n")).unwrap_err();
        assert!(err.starts_with("line 2 is not JSON"), "{err}");
    }

    #[test]
    fn mixed_sessions_are_rejected() {
        let text = SAMPLE.replacen("\"session\":\"ab12\"", "\"session\":\"cd34\"", 1);
        let log = AuditLog::parse(&text).unwrap();
        assert!(log.check_envelope().is_err());
    }
}
