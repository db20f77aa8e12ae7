//! An upstream DNS server for tests: a small fixed zone served over UDP and TCP on one
//! 127.0.0.1 port, recording every question it receives.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, PTR, SVCB, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// TTL of every record in the zone except `v4only.test`.
pub const ZONE_TTL: u32 = 300;
/// TTL of the A record of `v4only.test`, below the synthetic maximum of 60 seconds.
pub const SHORT_TTL: u32 = 5;
/// Number of TXT records of `many.test`, enough to exceed any UDP size.
pub const MANY_TXT_RECORDS: usize = 100;

/// A running fake upstream server. Dropping it stops the server.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    questions: Arc<Mutex<Vec<(String, RecordType)>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts the server on a port that is free for both UDP and TCP on 127.0.0.1.
    pub async fn start() -> FakeUpstream {
        let (udp, tcp) = bind_same_port().await;
        let addr = udp.local_addr().unwrap();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, questions.clone())),
            tokio::spawn(serve_tcp(tcp, questions.clone())),
        ];
        FakeUpstream {
            addr,
            questions,
            tasks,
        }
    }

    /// Returns every question received so far: lowercase name without the trailing dot, and type.
    pub fn questions(&self) -> Vec<(String, RecordType)> {
        self.questions.lock().unwrap().clone()
    }

    /// Reports whether any question received so far contains `fragment` in its name.
    pub fn saw_name_containing(&self, fragment: &str) -> bool {
        self.questions()
            .iter()
            .any(|(name, _)| name.contains(fragment))
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind_same_port() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port on 127.0.0.1 was free for both UDP and TCP after 50 attempts");
}

async fn serve_udp(socket: UdpSocket, questions: Arc<Mutex<Vec<(String, RecordType)>>>) {
    let mut buffer = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Some(request) = Message::from_vec(&buffer[..len]).ok() else {
            continue;
        };
        let response = respond(&request, &questions);

        // Like a real server, answer with only the header and the question when the response
        // exceeds what the client accepts, so the client retries over TCP.
        let limit = usize::from(request.max_payload());
        let mut wire = response.to_vec().unwrap();
        if wire.len() > limit {
            wire = response.truncate().to_vec().unwrap();
        }
        let _ = socket.send_to(&wire, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, questions: Arc<Mutex<Vec<(String, RecordType)>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(serve_tcp_connection(stream, questions.clone()));
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    questions: Arc<Mutex<Vec<(String, RecordType)>>>,
) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut body = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let Ok(request) = Message::from_vec(&body) else {
            return;
        };
        let wire = respond(&request, &questions).to_vec().unwrap();
        let mut frame = u16::try_from(wire.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(&wire);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn respond(request: &Message, questions: &Mutex<Vec<(String, RecordType)>>) -> Message {
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        response.set_edns(edns);
    }

    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let name = query.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.').to_string();
    questions
        .lock()
        .unwrap()
        .push((name.clone(), query.query_type()));

    let (response_code, answers) = zone_answer(&name, query);
    response.metadata.response_code = response_code;
    response.add_answers(answers);
    response
}

/// Returns the response code and answer records of the zone, NXDOMAIN for unknown names.
fn zone_answer(name: &str, query: &Query) -> (ResponseCode, Vec<Record>) {
    let owner = query.name().clone();
    let record = |rdata: RData| Record::from_rdata(owner.clone(), ZONE_TTL, rdata);
    let record_type = query.query_type();
    let answers = match (name, record_type) {
        ("web.test", RecordType::A) => vec![record(RData::A(A(Ipv4Addr::LOCALHOST)))],
        ("web.test", RecordType::AAAA) => vec![record(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)))],
        ("v4only.test", RecordType::A) => {
            let rdata = RData::A(A(Ipv4Addr::new(127, 0, 0, 2)));
            vec![Record::from_rdata(owner.clone(), SHORT_TTL, rdata)]
        }
        ("alias.test", RecordType::A | RecordType::AAAA) => {
            let target = Name::from_ascii("web.test.").unwrap();
            let mut chain = vec![record(RData::CNAME(CNAME(target.clone())))];
            let (_, mut target_records) =
                zone_answer("web.test", &Query::query(target, record_type));
            chain.append(&mut target_records);
            chain
        }
        ("txt.test", RecordType::TXT) => vec![
            record(RData::TXT(TXT::new(vec!["hello world".into()]))),
            record(RData::TXT(TXT::new(vec!["second".into()]))),
        ],
        ("many.test", RecordType::TXT) => (0..MANY_TXT_RECORDS)
            .map(|i| {
                record(RData::TXT(TXT::new(vec![format!(
                    "record {i:03} of many.test"
                )])))
            })
            .collect(),
        ("svc.test", RecordType::HTTPS) => vec![record(RData::HTTPS(HTTPS(svc_record())))],
        ("5.112.82.140.in-addr.arpa", RecordType::PTR) => {
            vec![record(RData::PTR(PTR(
                Name::from_ascii("forward.test.").unwrap()
            )))]
        }
        ("broken.test", _) => return (ResponseCode::ServFail, Vec::new()),
        ("web.test" | "v4only.test" | "alias.test" | "txt.test" | "many.test" | "svc.test", _) => {
            Vec::new()
        }
        _ => return (ResponseCode::NXDomain, Vec::new()),
    };
    (ResponseCode::NoError, answers)
}

fn svc_record() -> SVCB {
    let mandatory = vec![SvcParamKey::Alpn, SvcParamKey::Ipv4Hint];
    let params = vec![
        (
            SvcParamKey::Mandatory,
            SvcParamValue::Mandatory(Mandatory(mandatory)),
        ),
        (
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
        ),
        (
            SvcParamKey::Ipv4Hint,
            SvcParamValue::Ipv4Hint(IpHint(vec![A(Ipv4Addr::LOCALHOST)])),
        ),
        (
            SvcParamKey::Ipv6Hint,
            SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(Ipv6Addr::LOCALHOST)])),
        ),
    ];
    SVCB::new(1, Name::root(), params)
}
