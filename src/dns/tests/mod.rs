//! End-to-end tests of the DNS service against a fake upstream server on 127.0.0.1.

mod fake_upstream;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use fake_upstream::{FakeUpstream, MANY_TXT_RECORDS, SHORT_TTL};

/// The jail's address as the supervisor would pass it.
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)), 40000);

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Harness {
    service: DnsService,
    upstream: FakeUpstream,
    audit: SharedBuffer,
}

impl Harness {
    /// Starts a fake upstream and a service whose policy allows every name under `.test` and
    /// under `in-addr.arpa`, except names under `evil.test`.
    async fn start() -> Harness {
        let upstream = FakeUpstream::start().await;
        let allow = [
            "domain=*.test".to_string(),
            "domain=*.in-addr.arpa".to_string(),
        ];
        let deny = ["domain=*.evil.test".to_string()];
        let policy = Arc::new(Policy::parse(&allow, &deny).unwrap());
        let audit = SharedBuffer::default();
        let log = Arc::new(AuditLog::with_writer(Box::new(audit.clone())));
        let resolver = resolver_for(upstream.addr).unwrap();
        let service = DnsService::new(policy, Arc::new(NameTable::new()), resolver, log);
        Harness {
            service,
            upstream,
            audit,
        }
    }

    async fn ask(&self, name: &str, record_type: RecordType) -> Message {
        self.ask_message(&query(name, record_type, None)).await
    }

    async fn ask_message(&self, request: &Message) -> Message {
        let bytes = request.to_vec().unwrap();
        let response = self
            .service
            .answer_udp(&bytes, CLIENT)
            .await
            .expect("no response");
        Message::from_vec(&response).unwrap()
    }

    fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.audit.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn last_audit_event(&self) -> serde_json::Value {
        self.audit_events().pop().expect("no audit event")
    }
}

fn query(name: &str, record_type: RecordType, edns_payload: Option<u16>) -> Message {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        request.set_edns(edns);
    }
    request
}

fn only_a(response: &Message) -> Ipv4Addr {
    assert_eq!(response.answers.len(), 1, "{response}");
    match &response.answers[0].data {
        RData::A(a) => a.0,
        other => panic!("expected an A record, found {other:?}"),
    }
}

fn only_aaaa(response: &Message) -> Ipv6Addr {
    assert_eq!(response.answers.len(), 1, "{response}");
    match &response.answers[0].data {
        RData::AAAA(aaaa) => aaaa.0,
        other => panic!("expected an AAAA record, found {other:?}"),
    }
}

fn texts(value: &serde_json::Value) -> Vec<String> {
    let list = value.as_array().expect("not a list");
    list.iter()
        .map(|item| item.as_str().unwrap().to_string())
        .collect()
}

/// Fails to compile if the service can no longer be shared between threads or its futures
/// can no longer be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn service_is_thread_safe(service: &DnsService, stream: tokio::net::TcpStream) {
    fn require_send<T: Send>(_: T) {}
    fn require_send_sync<T: Send + Sync>() {}

    require_send_sync::<DnsService>();
    require_send_sync::<NameTable>();
    require_send(service.answer_udp(&[], CLIENT));
    require_send(service.serve_tcp(stream, CLIENT));
}

#[tokio::test]
async fn synthetic_answers_are_stable_per_name() {
    let harness = Harness::start().await;

    let web_a = harness.ask("web.test.", RecordType::A).await;
    assert_eq!(web_a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(only_a(&web_a), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(
        web_a.answers[0].ttl, 60,
        "upstream TTL 300 is clamped to 60"
    );

    let web_aaaa = harness.ask("web.test.", RecordType::AAAA).await;
    assert_eq!(
        only_aaaa(&web_aaaa),
        "fd6e:6a00:0:1::1".parse::<Ipv6Addr>().unwrap()
    );

    let other = harness.ask("v4only.test.", RecordType::A).await;
    assert_eq!(only_a(&other), Ipv4Addr::new(198, 18, 0, 2));

    let again = harness.ask("WEB.Test.", RecordType::A).await;
    assert_eq!(only_a(&again), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(
        again.answers[0].name.to_ascii(),
        "WEB.Test.",
        "owner echoes the query's case"
    );
}

#[tokio::test]
async fn name_table_returns_real_addresses() {
    let harness = Harness::start().await;
    let response = harness.ask("web.test.", RecordType::AAAA).await;
    let synthetic = IpAddr::V6(only_aaaa(&response));

    let entry = harness.service.names().lookup(synthetic).expect("no entry");
    assert_eq!(entry.name, "web.test");
    let expected: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    assert_eq!(entry.addrs, expected);

    let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(harness.service.names().lookup(v4), Some(entry));
}

#[tokio::test]
async fn ipv4_only_name_gets_ipv6_synthetic() {
    let harness = Harness::start().await;
    let response = harness.ask("v4only.test.", RecordType::AAAA).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        only_aaaa(&response),
        "fd6e:6a00:0:1::1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(response.answers[0].ttl, SHORT_TTL);

    let synthetic = IpAddr::V6(only_aaaa(&response));
    let entry = harness.service.names().lookup(synthetic).unwrap();
    assert_eq!(entry.addrs, vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
}

#[tokio::test]
async fn denied_name_never_goes_upstream() {
    let harness = Harness::start().await;

    let denied = harness.ask("c2VjcmV0.evil.test.", RecordType::A).await;
    assert_eq!(denied.metadata.response_code, ResponseCode::NXDomain);
    assert!(denied.answers.is_empty());
    let event = harness.last_audit_event();
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["rule"], "domain=*.evil.test");
    assert_eq!(event["rcode"], "NXDOMAIN");

    let unlisted = harness.ask("data.example.", RecordType::TXT).await;
    assert_eq!(unlisted.metadata.response_code, ResponseCode::NXDomain);
    let event = harness.last_audit_event();
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["rule"], serde_json::Value::Null);
    assert!(
        event["reason"].as_str().unwrap().contains("no allow rule"),
        "{event}"
    );

    assert!(
        !harness.upstream.saw_name_containing("evil"),
        "{:?}",
        harness.upstream.questions()
    );
    assert!(
        !harness.upstream.saw_name_containing("example"),
        "{:?}",
        harness.upstream.questions()
    );
    assert!(harness.service.names().is_empty());
}

#[tokio::test]
async fn upstream_errors_map_to_response_codes() {
    let harness = Harness::start().await;

    let missing = harness.ask("missing.test.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(harness.last_audit_event()["decision"], "allow");

    let broken = harness.ask("broken.test.", RecordType::A).await;
    assert_eq!(broken.metadata.response_code, ResponseCode::ServFail);
    let event = harness.last_audit_event();
    assert_eq!(event["rcode"], "SERVFAIL");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .contains("upstream lookup failed"),
        "{event}"
    );

    let no_addresses = harness.ask("txt.test.", RecordType::A).await;
    assert_eq!(no_addresses.metadata.response_code, ResponseCode::NoError);
    assert!(no_addresses.answers.is_empty());
    assert!(
        harness.service.names().is_empty(),
        "a name without addresses gets no entry"
    );
}

#[tokio::test]
async fn txt_records_are_relayed() {
    let harness = Harness::start().await;
    let response = harness.ask("Txt.test.", RecordType::TXT).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(response.answers.len(), 2, "{response}");
    for record in &response.answers {
        assert_eq!(record.name.to_ascii(), "Txt.test.");
        assert!(matches!(record.data, RData::TXT(_)), "{record}");
    }

    let event = harness.last_audit_event();
    assert_eq!(event["qtype"], "TXT");
    assert_eq!(event["name"], "txt.test");
    assert_eq!(texts(&event["answers"]).len(), 2);
    assert_eq!(texts(&event["upstream_answers"]).len(), 2);
    assert!(
        harness
            .upstream
            .questions()
            .contains(&("txt.test".to_string(), RecordType::TXT))
    );
}

#[tokio::test]
async fn https_records_lose_address_hints() {
    let harness = Harness::start().await;
    let response = harness.ask("svc.test.", RecordType::HTTPS).await;
    assert_eq!(response.answers.len(), 1, "{response}");
    let RData::HTTPS(https) = &response.answers[0].data else {
        panic!("{response}")
    };

    let keys: Vec<SvcParamKey> = https.0.svc_params.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, vec![SvcParamKey::Mandatory, SvcParamKey::Alpn]);
    let expected = SvcParamValue::Mandatory(svcb_mandatory(vec![SvcParamKey::Alpn]));
    assert_eq!(https.0.svc_params[0].1, expected);

    let event = harness.last_audit_event();
    let upstream = texts(&event["upstream_answers"]).join(" ");
    assert!(
        upstream.contains("127.0.0.1"),
        "the audit log keeps the real hints: {upstream}"
    );
    let answers = texts(&event["answers"]).join(" ");
    assert!(!answers.contains("127.0.0.1"), "{answers}");
}

fn svcb_mandatory(keys: Vec<SvcParamKey>) -> hickory_proto::rr::rdata::svcb::Mandatory {
    hickory_proto::rr::rdata::svcb::Mandatory(keys)
}

#[tokio::test]
async fn cname_chain_yields_one_synthetic_address() {
    let harness = Harness::start().await;
    let response = harness.ask("alias.test.", RecordType::A).await;
    assert_eq!(only_a(&response), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(response.answers[0].name.to_ascii(), "alias.test.");

    let entry = harness
        .service
        .names()
        .lookup(Ipv4Addr::new(198, 18, 0, 1).into())
        .unwrap();
    assert_eq!(entry.name, "alias.test");
    assert!(
        entry.addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{entry:?}"
    );

    let upstream = texts(&harness.last_audit_event()["upstream_answers"]);
    assert!(upstream.contains(&"web.test.".to_string()), "{upstream:?}");
}

#[tokio::test]
async fn any_query_is_not_implemented() {
    let harness = Harness::start().await;
    let response = harness.ask("web.test.", RecordType::ANY).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);
    assert!(harness.upstream.questions().is_empty());
}

#[tokio::test]
async fn synthetic_ptr_returns_name() {
    let harness = Harness::start().await;
    harness.ask("web.test.", RecordType::A).await;

    let v4 = harness
        .ask("1.0.18.198.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(v4.metadata.response_code, ResponseCode::NoError);
    assert_eq!(v4.answers.len(), 1, "{v4}");
    assert_eq!(v4.answers[0].data.to_string(), "web.test.");

    let v6_name = Name::from("fd6e:6a00:0:1::1".parse::<IpAddr>().unwrap());
    let v6 = harness.ask(&v6_name.to_ascii(), RecordType::PTR).await;
    assert_eq!(v6.answers.len(), 1, "{v6}");
    assert_eq!(v6.answers[0].data.to_string(), "web.test.");

    let unassigned = harness
        .ask("9.0.18.198.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(unassigned.metadata.response_code, ResponseCode::NXDomain);

    let upstream = harness.upstream.questions();
    assert!(
        upstream
            .iter()
            .all(|(_, record_type)| *record_type != RecordType::PTR),
        "{upstream:?}"
    );
}

#[tokio::test]
async fn private_reverse_lookup_stays_local() {
    let harness = Harness::start().await;
    let private = harness.ask("1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(private.metadata.response_code, ResponseCode::NXDomain);
    assert!(harness.upstream.questions().is_empty());

    let public = harness
        .ask("5.112.82.140.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(public.metadata.response_code, ResponseCode::NoError);
    assert_eq!(public.answers.len(), 1, "{public}");
    assert_eq!(public.answers[0].data.to_string(), "forward.test.");
}

#[tokio::test]
async fn udp_response_is_truncated_to_edns_size() {
    let harness = Harness::start().await;

    let small = harness
        .ask_message(&query("many.test.", RecordType::TXT, Some(512)))
        .await;
    assert!(small.metadata.truncation);
    assert!(
        small.answers.len() < MANY_TXT_RECORDS,
        "{} answers",
        small.answers.len()
    );
    assert!(small.edns.is_some(), "a query with OPT gets OPT back");

    let bytes = query("many.test.", RecordType::TXT, Some(1232))
        .to_vec()
        .unwrap();
    let wire = harness.service.answer_udp(&bytes, CLIENT).await.unwrap();
    assert!(wire.len() <= 1232, "{} bytes", wire.len());
    let medium = Message::from_vec(&wire).unwrap();
    assert!(medium.answers.len() > small.answers.len());

    let plain = harness.ask("many.test.", RecordType::TXT).await;
    assert!(plain.metadata.truncation);
    assert!(plain.edns.is_none());

    let event = harness.last_audit_event();
    assert_eq!(texts(&event["answers"]).len(), plain.answers.len());
    assert_eq!(texts(&event["upstream_answers"]).len(), MANY_TXT_RECORDS);
}

#[tokio::test]
async fn tcp_answers_pipelined_queries() {
    let harness = Harness::start().await;
    let (mut jail_side, service_side) = tokio::io::duplex(64 * 1024);
    let service = harness.service.clone();
    let server = tokio::spawn(async move { service.serve_tcp(service_side, CLIENT).await });

    let first = query("web.test.", RecordType::A, None);
    let second = query("many.test.", RecordType::TXT, None);
    let mut frames = Vec::new();
    for request in [&first, &second] {
        let wire = request.to_vec().unwrap();
        frames.extend_from_slice(&u16::try_from(wire.len()).unwrap().to_be_bytes());
        frames.extend_from_slice(&wire);
    }
    jail_side.write_all(&frames).await.unwrap();
    jail_side.shutdown().await.unwrap();

    let mut responses = Vec::new();
    for _ in 0..2 {
        let len = jail_side.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        jail_side.read_exact(&mut body).await.unwrap();
        responses.push(Message::from_vec(&body).unwrap());
    }
    responses.sort_by_key(|response| response.metadata.id != first.metadata.id);
    assert_eq!(responses[0].metadata.id, first.metadata.id);
    assert_eq!(only_a(&responses[0]), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(responses[1].metadata.id, second.metadata.id);
    assert!(!responses[1].metadata.truncation);
    assert_eq!(responses[1].answers.len(), MANY_TXT_RECORDS);

    let mut rest = Vec::new();
    assert_eq!(jail_side.read_to_end(&mut rest).await.unwrap(), 0);
    server.await.unwrap().unwrap();
    assert!(
        harness
            .audit_events()
            .iter()
            .all(|event| event["transport"] == "tcp")
    );
}

#[tokio::test]
async fn audit_event_records_both_answers() {
    let harness = Harness::start().await;
    harness.ask("web.test.", RecordType::A).await;

    let event = harness.last_audit_event();
    assert_eq!(event["event"], "dns");
    assert_eq!(event["transport"], "udp");
    assert_eq!(event["client"], "198.19.0.2:40000");
    assert_eq!(event["name"], "web.test");
    assert_eq!(event["qtype"], "A");
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["rule"], "domain=*.test");
    assert_eq!(event["rcode"], "NOERROR");
    assert_eq!(texts(&event["answers"]), vec!["198.18.0.1"]);
    assert_eq!(texts(&event["upstream_answers"]), vec!["127.0.0.1", "::1"]);
    assert_eq!(harness.service.queries_answered(), 1);
}

#[tokio::test]
async fn malformed_requests_are_answered_or_dropped() {
    let harness = Harness::start().await;

    let mut two_questions = query("web.test.", RecordType::A, None);
    two_questions.add_query(Query::query(
        Name::from_ascii("txt.test.").unwrap(),
        RecordType::A,
    ));
    let response = harness.ask_message(&two_questions).await;
    assert_eq!(response.metadata.response_code, ResponseCode::FormErr);

    let mut status = query("web.test.", RecordType::A, None);
    status.metadata.op_code = OpCode::Status;
    let response = harness.ask_message(&status).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(harness.last_audit_event()["decision"], "deny");

    let mut reply = harness.ask("web.test.", RecordType::A).await;
    reply.metadata.id = 7;
    let bytes = reply.to_vec().unwrap();
    assert_eq!(
        harness.service.answer_udp(&bytes, CLIENT).await,
        None,
        "responses are dropped"
    );
    assert_eq!(harness.service.answer_udp(&[], CLIENT).await, None);
    assert_eq!(harness.service.answer_udp(&[0; 11], CLIENT).await, None);
    assert_eq!(harness.service.dropped_messages(), 3);
}

#[tokio::test]
async fn garbage_input_never_panics() {
    let harness = Harness::start().await;
    let valid = query("web.test.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();

    for len in 0..valid.len() {
        harness.service.answer_udp(&valid[..len], CLIENT).await;
    }

    // A fixed-seed xorshift generator keeps the inputs the same on every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 600) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        harness.service.answer_udp(&bytes, CLIENT).await;
    }
    for _ in 0..500 {
        let mut flipped = valid.clone();
        let position = (next() as usize) % flipped.len();
        flipped[position] ^= 1 << (next() % 8);
        if let Some(wire) = harness.service.answer_udp(&flipped, CLIENT).await {
            assert!(
                Message::from_vec(&wire).is_ok(),
                "unparseable response to {flipped:?}"
            );
        }
    }
    assert!(harness.service.dropped_messages() > 0);
}
