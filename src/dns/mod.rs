//! The DNS server the jail talks to.
//!
//! Every query the jail sends to port 53, over UDP or TCP, ends here. A name that no allow rule
//! could match is answered NXDOMAIN without any upstream query, so a denied name cannot carry
//! data out in its labels. Allowed names are resolved on the host with hickory-resolver, and
//! the jail receives one synthetic address per name from the [`NameTable`]. The flow path maps
//! a synthetic address back to its name and to the real addresses. Every query produces one
//! `dns` audit event with the real answers next to what the jail received.

mod message;
mod names;
mod question;
mod reverse;
mod tcp;
mod upstream;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hickory_proto::op::{Message, ResponseCode};
use hickory_resolver::TokioResolver;

pub use names::{
    MAX_NAMES, NameTable, SYNTHETIC_V4_NET, SYNTHETIC_V4_PREFIX_LEN, SYNTHETIC_V6_NET,
    SYNTHETIC_V6_PREFIX_LEN, SyntheticAddrs, SyntheticEntry, TableFull,
};
pub use upstream::{InvalidResolverAddr, build_resolver, parse_resolver_addr, resolver_for};

use crate::audit::{AuditLog, DnsEvent, Event};
use crate::policy::Policy;
use question::Outcome;

/// The transport a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    fn response_limit(self, request: &Message) -> usize {
        match self {
            Transport::Udp => message::udp_response_limit(request),
            Transport::Tcp => message::MAX_TCP_MESSAGE,
        }
    }
}

/// The jail's DNS server. Cloning is cheap and every clone shares the same state, so one
/// service can answer UDP queries and several TCP connections concurrently.
#[derive(Clone)]
pub struct DnsService {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Arc<Policy>,
    names: Arc<NameTable>,
    resolver: TokioResolver,
    audit: Arc<AuditLog>,
    queries: AtomicU64,
    dropped: AtomicU64,
    table_full_logged: AtomicBool,
}

impl DnsService {
    pub fn new(
        policy: Arc<Policy>,
        names: Arc<NameTable>,
        resolver: TokioResolver,
        audit: Arc<AuditLog>,
    ) -> Self {
        let inner = Inner {
            policy,
            names,
            resolver,
            audit,
            queries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            table_full_logged: AtomicBool::new(false),
        };
        DnsService {
            inner: Arc::new(inner),
        }
    }

    /// Answers one query that arrived over UDP from `client`, the jail's address and port.
    ///
    /// Returns the response, truncated with the TC bit set if it exceeds the client's EDNS
    /// payload size (512 bytes without EDNS). Returns `None` for bytes that are not a DNS
    /// query, which are counted in [`DnsService::dropped_messages`].
    pub async fn answer_udp(&self, query: &[u8], client: SocketAddr) -> Option<Vec<u8>> {
        self.answer(query, Transport::Udp, client).await
    }

    /// Returns the number of queries answered so far, over both transports.
    pub fn queries_answered(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Returns the number of messages dropped because they were not DNS queries.
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub fn names(&self) -> &Arc<NameTable> {
        &self.inner.names
    }

    async fn answer(
        &self,
        bytes: &[u8],
        transport: Transport,
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let Some(request) = message::parse_request(bytes) else {
            let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(
                %client,
                len = bytes.len(),
                dropped,
                "dropped a message that is not a DNS query"
            );
            return None;
        };
        self.inner.queries.fetch_add(1, Ordering::Relaxed);

        let (name, qtype) = match request.queries.first() {
            Some(query) => (
                question::policy_name(query.name()),
                message::record_type_text(query.query_type()),
            ),
            None => (String::new(), String::new()),
        };
        let mut outcome = match message::check_request(&request) {
            Some((response_code, reason)) => Outcome::deny(response_code, None, reason),
            None => self.answer_question(&request.queries[0], &name).await,
        };

        let (wire, kept) = self.encode_response(&request, &mut outcome, transport)?;
        let answers = question::rdata_texts(&outcome.answers[..kept]);
        self.record(transport, client, name, qtype, outcome, answers);
        Some(wire)
    }

    /// Encodes the response for `outcome` and returns it with the number of answers kept.
    /// A response that cannot be encoded becomes SERVFAIL, and `outcome` is updated to match.
    fn encode_response(
        &self,
        request: &Message,
        outcome: &mut Outcome,
        transport: Transport,
    ) -> Option<(Vec<u8>, usize)> {
        let limit = transport.response_limit(request);
        let response =
            message::build_response(request, outcome.response_code, outcome.answers.clone());
        match message::encode(&response, limit) {
            Ok(encoded) => Some(encoded),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    id = request.metadata.id,
                    "encoding a DNS response failed, sending SERVFAIL instead"
                );
                outcome.response_code = ResponseCode::ServFail;
                outcome.answers.clear();
                outcome.reason = Some(format!("encoding the response failed: {err}"));
                let failure = message::build_response(request, ResponseCode::ServFail, Vec::new());
                message::encode(&failure, limit).ok()
            }
        }
    }

    fn record(
        &self,
        transport: Transport,
        client: SocketAddr,
        name: String,
        qtype: String,
        outcome: Outcome,
        answers: Vec<String>,
    ) {
        let event = DnsEvent {
            transport: transport.as_str(),
            client: client.to_string(),
            name,
            qtype,
            decision: outcome.decision,
            rule: outcome.rule,
            reason: outcome.reason,
            rcode: message::response_code_text(outcome.response_code),
            answers,
            upstream_answers: outcome.upstream_answers,
        };
        self.inner.audit.record(Event::Dns(event));
    }
}
