use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::*;

#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SharedLog {
    fn events(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

fn inspector(allow: &[&str], deny: &[&str], log: &SharedLog) -> FlowInspector {
    let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let policy = Arc::new(Policy::parse(&own(allow), &own(deny)).unwrap());
    let addr: IpAddr = "140.82.112.5".parse().unwrap();
    let facts = FlowFacts {
        name: Some("api.test"),
        addr,
        port: 80,
        proto: Proto::Tcp,
    };
    let Decision::Allow { rule } = policy.decide_flow(&facts) else {
        panic!("flow denied")
    };
    let check_requests = policy.checks_requests(&facts, rule);
    let rule = rule.text.clone();
    let flow = FlowInfo {
        id: 9,
        src: "198.19.0.2:40000".parse().unwrap(),
        dst: "198.18.0.1:80".parse().unwrap(),
    };
    let audit = Arc::new(AuditLog::with_writer(Box::new(log.clone())));
    FlowInspector::new(FlowContext {
        policy,
        audit,
        flow,
        id: crate::audit::FlowId::new(&flow, "tcp", Some("api.test".into())),
        addr,
        check_requests,
        rule,
    })
}

/// What the stack would do with a byte stream: the bytes forwarded upstream and the final
/// decision that stopped forwarding, if any.
fn run(inspector: &mut FlowInspector, stream: &[u8]) -> (Vec<u8>, Option<Inspection>) {
    let mut forwarded = Vec::new();
    let mut offset = 0;
    while offset < stream.len() {
        match inspector.inspect(&stream[offset..]) {
            Inspection::Forward(n) => {
                let end = (offset + n as usize).min(stream.len());
                forwarded.extend_from_slice(&stream[offset..end]);
                offset = end;
            }
            Inspection::PassThrough => {
                forwarded.extend_from_slice(&stream[offset..]);
                return (forwarded, Some(Inspection::PassThrough));
            }
            Inspection::NeedMore => return (forwarded, Some(Inspection::NeedMore)),
            other => return (forwarded, Some(other)),
        }
    }
    (forwarded, None)
}

fn reply_text(decision: Option<Inspection>) -> String {
    match decision {
        Some(Inspection::Refuse { reply }) => String::from_utf8(reply).unwrap(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const GET: &[u8] = b"GET /repos/a HTTP/1.1\r\nHost: api.test\r\n\r\n";

#[test]
fn allowed_get_is_forwarded() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=GET"], &[], &log);
    let (forwarded, end) = run(&mut inspector, GET);
    assert_eq!(forwarded, GET);
    assert_eq!(end, None);
    let events = log.events();
    assert_eq!(events[0]["event"], "http");
    assert_eq!(events[0]["method"], "GET");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["rule"], "domain=api.test method=GET");
}

#[test]
fn denied_post_gets_403_naming_the_rule() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=GET"], &[], &log);
    let request = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc";
    let (forwarded, end) = run(&mut inspector, request);
    assert!(forwarded.is_empty());
    let reply = reply_text(end);
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
    assert!(reply.contains("Connection: close"), "{reply}");
    assert!(
        reply.contains("--allow 'domain=api.test method=POST path=/upload'"),
        "{reply}"
    );
    let events = log.events();
    assert_eq!(events[0]["decision"], "deny");
    assert_eq!(events[0]["status"], 403);
}

#[test]
fn keep_alive_requests_are_each_decided() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=GET path=/ok"], &[], &log);
    let allowed = b"GET /ok HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let denied = b"GET /no HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let stream = [&allowed[..], &allowed[..], &denied[..]].concat();
    let (forwarded, end) = run(&mut inspector, &stream);
    assert_eq!(forwarded, [&allowed[..], &allowed[..]].concat());
    assert!(reply_text(end).contains("path=/no"));
}

#[test]
fn content_length_body_is_forwarded_then_next_head_parsed() {
    let log = SharedLog::default();
    let mut inspector = inspector(
        &["domain=api.test"],
        &["domain=api.test method=DELETE"],
        &log,
    );
    let stream = b"PUT /x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nDELETDELETE /x HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let (forwarded, end) = run(&mut inspector, stream);
    assert!(forwarded.ends_with(b"DELET"));
    assert!(reply_text(end).contains("deny rule 'domain=api.test method=DELETE'"));
}

#[test]
fn chunked_body_is_framed() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=POST,GET"], &[], &log);
    let body = b"POST /u HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let next = b"GET /n HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let stream = [&body[..], &next[..]].concat();
    let (forwarded, end) = run(&mut inspector, &stream);
    assert_eq!(forwarded, stream);
    assert_eq!(end, None);
    assert_eq!(log.events().len(), 2);
}

#[test]
fn host_header_must_be_the_flow_name() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test"], &[], &log);
    let (_, end) = run(
        &mut inspector,
        b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n",
    );
    assert!(reply_text(end).contains("other.test"));

    let mut inspector = inspector_for_port(&log);
    let (forwarded, end) = run(
        &mut inspector,
        b"GET / HTTP/1.1\r\nHost: API.test.:8080\r\n\r\n",
    );
    assert!(!forwarded.is_empty());
    assert_eq!(end, None);
}

fn inspector_for_port(log: &SharedLog) -> FlowInspector {
    inspector(&["domain=api.test"], &[], log)
}

#[test]
fn absolute_form_host_is_checked() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test"], &[], &log);
    let request = b"GET http://other.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let (_, end) = run(&mut inspector, request);
    assert!(reply_text(end).contains("other.test"));
}

#[test]
fn smuggling_shapes_are_refused() {
    let log = SharedLog::default();
    let cases: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\n\r\n",
    ];
    for request in cases {
        let mut inspector = inspector(&["domain=api.test"], &[], &log);
        let (forwarded, end) = run(&mut inspector, request);
        assert!(forwarded.is_empty(), "{}", String::from_utf8_lossy(request));
        assert!(reply_text(end).starts_with("HTTP/1.1 400"));
    }
}

#[test]
fn upgrade_passes_through_after_head() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=GET path=/ws"], &[], &log);
    let stream = b"GET /ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello";
    let (forwarded, end) = run(&mut inspector, stream);
    assert_eq!(forwarded, stream);
    assert_eq!(end, Some(Inspection::PassThrough));
}

#[test]
fn partial_head_needs_more() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test"], &[], &log);
    assert_eq!(inspector.inspect(b"GE"), Inspection::NeedMore);
    assert_eq!(
        inspector.inspect(b"GET /x HTTP/1.1\r\nHo"),
        Inspection::NeedMore
    );
    let full = b"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n";
    assert_eq!(
        inspector.inspect(full),
        Inspection::Forward(full.len() as u64)
    );
}

#[test]
fn other_protocols_pass_unless_requests_are_checked() {
    let log = SharedLog::default();
    let mut plain = inspector(&["domain=api.test"], &[], &log);
    assert_eq!(
        plain.inspect(b"SSH-2.0-OpenSSH_9.2\r\n"),
        Inspection::PassThrough
    );
    let mut checked = inspector(&["domain=api.test method=GET"], &[], &log);
    assert_eq!(
        checked.inspect(b"SSH-2.0-OpenSSH_9.2\r\n"),
        Inspection::Reset
    );
}

#[test]
fn tls_with_request_rules_is_reset() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test method=GET"], &[], &log);
    let hello = tls_hello("api.test");
    assert_eq!(inspector.inspect(&hello), Inspection::Reset);
    let events = log.events();
    assert_eq!(events[0]["event"], "denied");
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("plain HTTP/1.x")
    );
}

#[test]
fn tls_sni_mismatch_is_reset() {
    let log = SharedLog::default();
    let mut matching = inspector(&["domain=api.test"], &[], &log);
    assert_eq!(
        matching.inspect(&tls_hello("api.test")),
        Inspection::PassThrough
    );
    let mut other = inspector(&["domain=api.test"], &[], &log);
    assert_eq!(other.inspect(&tls_hello("evil.test")), Inspection::Reset);
    let mut allowed_other = inspector(&["domain=api.test", "domain=cdn.test"], &[], &log);
    assert_eq!(
        allowed_other.inspect(&tls_hello("cdn.test")),
        Inspection::PassThrough
    );
}

#[test]
fn oversized_head_gets_431() {
    let log = SharedLog::default();
    let mut inspector = inspector(&["domain=api.test"], &[], &log);
    let mut head = b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD + 10, b'a');
    let reply = reply_text(Some(inspector.inspect(&head)));
    assert!(reply.starts_with("HTTP/1.1 431"));
}

/// A ClientHello with one server name, as a TLS 1.2 record.
fn tls_hello(name: &str) -> Vec<u8> {
    let mut sni = vec![0u8];
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&sni);
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&(list.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&list);

    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend_from_slice(&message);
    record
}
